package probe

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/loupe-dev/loupe/probe/compute"
	"github.com/loupe-dev/loupe/probe/compute/cuda"
	"github.com/loupe-dev/loupe/probe/weights"
)

// unfusedGPU is the GPU backend with its stacked products hidden: its
// RowsView has another signature, so it is no compute.FusedProjector and a
// model on it loads and runs q/k/v and gate/up as separate products (the
// path before proj.go), everything else the same.
type unfusedGPU struct{ *cuda.Backend }

func (unfusedGPU) RowsView() {}

// On the GPU the stacked products give the separate products' logits (to
// float32 rounding: the same sums in another tiling) for a padded batch,
// a chunked prefill and KV-cache generation, and a hook on q, k, v, gate
// or up sees, to the bit, what the separate products give (those layers
// run them).
func TestFusedProductsOnGPU(t *testing.T) {
	cb, ok := testBackend().(*cuda.Backend)
	if !ok {
		t.Skip("needs LOUPE_TEST_DEVICE=cuda (the CPU's wiring: TestLlamaFusedProducts)")
	}
	ctx := context.Background()
	c := testConfigs()["llama"]
	fused, err := New(c, randomTensors(c, 1), cb)
	if err != nil {
		t.Fatal(err)
	}
	apart, err := New(c, randomTensors(c, 1), unfusedGPU{cb})
	if err != nil {
		t.Fatal(err)
	}
	if fused.layers[0].wqkv == nil || apart.layers[0].wqkv != nil {
		t.Fatal("the GPU model did not stack its weights, or the hidden one did")
	}
	batch := [][]int{prompt, prompt[:5]}
	tol := 1e-4
	if compute.DTypeOf(fused.layers[0].wq) != compute.F32 {
		tol = 2e-2 // bf16 products: another tiling rounds differently
	}
	for _, o := range []Options{{Logits: LogitsAll}, {Logits: LogitsAll, Chunk: 4}} {
		g, err := fused.Forward(ctx, batch, o)
		if err != nil {
			t.Fatal(err)
		}
		w, err := apart.Forward(ctx, batch, o)
		if err != nil {
			t.Fatal(err)
		}
		if d := maxDiff(g.Logits, w.Logits); d > tol {
			t.Errorf("chunk %d: stacked products' logits differ from the separate ones by %g", o.Chunk, d)
		}
	}
	hooks := &Hooks{Cache: []string{"blocks.*.attn.hook_q", "blocks.*.attn.hook_rot_k", "blocks.*.attn.hook_v", "blocks.*.mlp.hook_pre", "blocks.*.mlp.hook_pre_linear", "blocks.*.hook_resid_post"}}
	g, w := forward(t, fused, batch, hooks), forward(t, apart, batch, hooks)
	for name, a := range w.Cache {
		if gc := g.Cache[name]; gc == nil || maxDiff(gc.Data, a.Data) != 0 {
			t.Errorf("%s differs between the stacked weights' views and separate weights", name)
		}
	}
	gt, err := fused.GenerateBatch(ctx, batch, GenerateOptions{MaxTokens: 8})
	if err != nil {
		t.Fatal(err)
	}
	wt, err := apart.GenerateBatch(ctx, batch, GenerateOptions{MaxTokens: 8})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(gt) != fmt.Sprint(wt) {
		t.Errorf("KV-cache generation: stacked %v, separate %v", gt, wt)
	}
}

// fastRandomLlama is random weights (uniform, std 0.02; norms 1) for a
// Llama config, filled on every core: an 8B-shaped layer is 218M values.
func fastRandomLlama(c Config) weights.Map {
	ts := weights.Map{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.NumCPU())
	seed := uint64(0)
	put := func(name string, ones bool, shape ...int) {
		seed++
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			d := make([]float32, compute.Numel(shape))
			if ones {
				for i := range d {
					d[i] = 1
				}
			} else {
				rng := rand.New(rand.NewPCG(seed, 99))
				a := float32(0.02 * math.Sqrt(3))
				for i := range d {
					d[i] = a * (2*rng.Float32() - 1)
				}
			}
			mu.Lock()
			ts[name] = weights.Array{Shape: shape, Data: d}
			mu.Unlock()
		}(seed)
	}
	D, Dh := c.DModel, c.HeadDim
	put("model.embed_tokens.weight", false, c.Vocab, D)
	put("lm_head.weight", false, c.Vocab, D)
	put("model.norm.weight", true, D)
	for l := 0; l < c.Layers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		put(p+"input_layernorm.weight", true, D)
		put(p+"post_attention_layernorm.weight", true, D)
		put(p+"self_attn.q_proj.weight", false, c.Heads*Dh, D)
		put(p+"self_attn.k_proj.weight", false, c.KVHeads*Dh, D)
		put(p+"self_attn.v_proj.weight", false, c.KVHeads*Dh, D)
		put(p+"self_attn.o_proj.weight", false, D, c.Heads*Dh)
		put(p+"mlp.gate_proj.weight", false, c.DMLP, D)
		put(p+"mlp.up_proj.weight", false, c.DMLP, D)
		put(p+"mlp.down_proj.weight", false, D, c.DMLP)
	}
	wg.Wait()
	return ts
}

// TestGPUFusedProductsSpeed is a benchmark (it asserts nothing about time
// and runs only with LOUPE_BENCH_FUSED=1 on a GPU): a Llama-3-8B-shaped
// model of LOUPE_BENCH_FUSED_LAYERS layers (default 4; vocabulary 32768:
// only the last position's logits are made), random weights made here, run
// with the stacked q/k/v and gate/up products and with the separate ones,
// side by side in one process: prefill at 2K and 8K tokens (best of 3, and
// one pass profiled by kernel), decode at batch 1 and 32 (128 + 32 tokens).
// One JSON line per figure ("kind":"fused-bench" / "fused-profile"); the
// per-layer figures scale to the 32-layer model.
func TestGPUFusedProductsSpeed(t *testing.T) {
	cb, ok := testBackend().(*cuda.Backend)
	if !ok || os.Getenv("LOUPE_BENCH_FUSED") == "" {
		t.Skip("a benchmark: LOUPE_TEST_DEVICE=cuda LOUPE_TEST_DTYPE=bf16 LOUPE_BENCH_FUSED=1")
	}
	layers := 4
	if n, err := strconv.Atoi(os.Getenv("LOUPE_BENCH_FUSED_LAYERS")); err == nil && n > 0 {
		layers = n
	}
	c := Config{Family: FamilyLlama, Act: "silu", Layers: layers, DModel: 4096, Heads: 32, KVHeads: 8, HeadDim: 128, DMLP: 14336,
		Vocab: 32768, MaxPos: 1 << 17, NormEps: 1e-5, RopeTheta: 500000, RotaryDim: 128, BOS: -1, EOS: -1}
	t0 := time.Now()
	ts := fastRandomLlama(c)
	emit := func(kv map[string]any) {
		kv["impl"], kv["layers"] = "loupe", layers
		b, _ := json.Marshal(kv)
		fmt.Println(string(b))
	}
	emit(map[string]any{"kind": "fused-bench", "what": "random weights", "seconds": time.Since(t0).Seconds()})
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 4))
	ids := func(B, T int) [][]int {
		out := make([][]int, B)
		for b := range out {
			out[b] = make([]int, T)
			for i := range out[b] {
				out[b][i] = rng.IntN(c.Vocab)
			}
		}
		return out
	}
	prompts := map[int][][]int{2048: ids(1, 2048), 8192: ids(1, 8192)}
	decode := map[int][][]int{1: ids(1, 128), 32: ids(32, 128)}
	logits := map[bool][]float32{}
	for _, stacked := range []bool{true, false} {
		var b compute.Backend = cb
		if !stacked {
			b = unfusedGPU{cb}
		}
		m, err := New(c, ts, b)
		if err != nil {
			t.Fatal(err)
		}
		for _, T := range []int{2048, 8192} {
			var r *Result
			pass := func() {
				var err error
				if r, err = m.Forward(ctx, prompts[T], Options{Logits: LogitsLast}); err != nil {
					t.Fatal(err)
				}
			}
			pass()
			best := math.Inf(1)
			for range 3 {
				s := time.Now()
				pass()
				best = min(best, time.Since(s).Seconds())
			}
			emit(map[string]any{"kind": "fused-bench", "stacked": stacked, "what": "prefill", "T": T, "seconds": best, "tokens_per_s": float64(T) / best})
			if T == 2048 {
				logits[stacked] = r.Logits
			}
			cb.ProfileStart()
			pass()
			prof, err := cb.ProfileStop()
			if err != nil {
				t.Fatal(err)
			}
			total := 0.0
			for _, p := range prof {
				total += p.MS
				emit(map[string]any{"kind": "fused-profile", "stacked": stacked, "T": T, "name": p.Name, "calls": p.Calls, "ms": p.MS})
			}
			emit(map[string]any{"kind": "fused-profile", "stacked": stacked, "T": T, "name": "total", "ms": total})
		}
		for _, B := range []int{1, 32} {
			const n = 32
			gen := func() {
				if _, err := m.GenerateBatch(ctx, decode[B], GenerateOptions{MaxTokens: n}); err != nil {
					t.Fatal(err)
				}
			}
			gen()
			s := time.Now()
			gen()
			sec := time.Since(s).Seconds()
			emit(map[string]any{"kind": "fused-bench", "stacked": stacked, "what": "decode", "B": B, "prompt": 128, "new": n, "seconds": sec, "tokens_per_s": float64(B*n) / sec})
		}
		m = nil
		runtime.GC()
		cb.TrimPool()
	}
	// The two paths compute the same function: the logits agree to bf16
	// products' rounding.
	d, scale := maxDiff(logits[true], logits[false]), 0.0
	for _, v := range logits[false] {
		scale = max(scale, math.Abs(float64(v)))
	}
	emit(map[string]any{"kind": "fused-bench", "what": "logits max |stacked - separate| / max |logit|", "value": d / scale})
	if !(d <= 0.05*scale) {
		t.Errorf("stacked and separate products' logits differ by %g (max |logit| %g)", d, scale)
	}
}
