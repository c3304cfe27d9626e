package gputest

import (
	"context"
	"fmt"
	"github.com/loupe-dev/loupe/sae"
	"math/rand/v2"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/loupe-dev/loupe/probe"
	"github.com/loupe-dev/loupe/probe/compute"
	"github.com/loupe-dev/loupe/probe/compute/cuda"
	"github.com/loupe-dev/loupe/sae/activations"
	"github.com/loupe-dev/loupe/sae/train"
)

// randomLlama is a weights.Tensors of a Llama-family model's names and
// shapes whose values are N(0, 0.02) noise (norm weights 1), copied from
// one shared pool: a model of real shape for speed figures, built in
// memory with nothing to transfer.
type randomLlama struct {
	shapes map[string][]int
	pool   []float32
}

func newRandomLlama(layers, d, heads, kv, dmlp, vocab int, tied bool) *randomLlama {
	r := &randomLlama{shapes: map[string][]int{}, pool: make([]float32, 1<<24)}
	fillNormal(r.pool, 3)
	for i := range r.pool {
		r.pool[i] *= 0.02
	}
	dh := d / heads
	r.shapes["model.embed_tokens.weight"] = []int{vocab, d}
	r.shapes["model.norm.weight"] = []int{d}
	if !tied {
		r.shapes["lm_head.weight"] = []int{vocab, d}
	}
	for l := 0; l < layers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		r.shapes[p+"input_layernorm.weight"] = []int{d}
		r.shapes[p+"post_attention_layernorm.weight"] = []int{d}
		r.shapes[p+"self_attn.q_proj.weight"] = []int{heads * dh, d}
		r.shapes[p+"self_attn.k_proj.weight"] = []int{kv * dh, d}
		r.shapes[p+"self_attn.v_proj.weight"] = []int{kv * dh, d}
		r.shapes[p+"self_attn.o_proj.weight"] = []int{d, heads * dh}
		r.shapes[p+"mlp.gate_proj.weight"] = []int{dmlp, d}
		r.shapes[p+"mlp.up_proj.weight"] = []int{dmlp, d}
		r.shapes[p+"mlp.down_proj.weight"] = []int{d, dmlp}
	}
	return r
}

func (r *randomLlama) Names() []string {
	var n []string
	for k := range r.shapes {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

func (r *randomLlama) Shape(name string) ([]int, bool) { s, ok := r.shapes[name]; return s, ok }

func (r *randomLlama) Float32(name string) ([]float32, error) {
	s, ok := r.shapes[name]
	if !ok {
		return nil, fmt.Errorf("random model: no tensor %q", name)
	}
	n := 1
	for _, v := range s {
		n *= v
	}
	out := make([]float32, n)
	if len(s) == 1 {
		for i := range out {
			out[i] = 1
		}
		return out, nil
	}
	off := len(name) * 7919 % len(r.pool)
	for i := 0; i < n; {
		i += copy(out[i:], r.pool[off:])
		off = 0
	}
	return out, nil
}

// TestGPUPipelineSpeed measures the whole pipeline on the GPU (the model's
// forward pass to the hook, the shuffling buffer and the batches in device
// memory, the TopK training step) on random weights of SmolLM2-135M's and
// Llama-3-8B's shapes, bf16 weights and bf16 SAE encoder, and for SmolLM2
// also with the rows sent through host memory. The models have the layers
// up to the hook only: the forward stops after it, so the rest would be
// loaded and never run. Set LOUPE_SAE_BENCH=1.
func TestGPUPipelineSpeed(t *testing.T) {
	if os.Getenv("LOUPE_SAE_BENCH") == "" {
		t.Skip("set LOUPE_SAE_BENCH=1 to measure (on a GPU machine: scripts/gpu/sae-bench.sh)")
	}
	gpuForTest(t)
	for _, c := range []struct {
		name                          string
		hookLayer, d, heads, kv, dmlp int
		vocab                         int
		tied                          bool
		k, seqs                       int
		tokens                        int64
		onDevice                      []bool
	}{
		{"smollm2-135m", 15, 576, 9, 3, 1536, 49152, true, 32, 16, 1 << 21, []bool{true, false}},
		{"llama3-8b", 16, 4096, 32, 8, 14336, 128256, true, 64, 8, 1 << 19, []bool{true}},
	} {
		b, err := cuda.New(cuda.Options{WeightDType: compute.BF16}) // bf16 weights
		if err != nil {
			t.Fatal(err)
		}
		cfgJSON := fmt.Sprintf(`{"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":%d,"intermediate_size":%d,"num_hidden_layers":%d,"num_attention_heads":%d,"num_key_value_heads":%d,"vocab_size":%d,"rope_theta":500000.0,"max_position_embeddings":8192,"rms_norm_eps":1e-5,"tie_word_embeddings":%v,"bos_token_id":1,"eos_token_id":2,"hidden_act":"silu"}`,
			c.d, c.dmlp, c.hookLayer+1, c.heads, c.kv, c.vocab, c.tied)
		pc, err := probe.ParseConfig([]byte(cfgJSON))
		if err != nil {
			t.Fatal(err)
		}
		m, err := probe.New(pc, newRandomLlama(c.hookLayer+1, c.d, c.heads, c.kv, c.dmlp, c.vocab, c.tied), b)
		if err != nil {
			t.Fatal(err)
		}
		const ctxLen = 1024
		rng := rand.New(rand.NewPCG(1, 2))
		nctx := int(c.tokens/(ctxLen-1)) + 1
		ctxs := make([][]int32, nctx)
		for i := range ctxs {
			ctxs[i] = make([]int32, ctxLen)
			for j := range ctxs[i] {
				ctxs[i][j] = int32(rng.IntN(c.vocab))
			}
		}
		for _, onDev := range c.onDevice {
			src, err := activations.NewModelSource(m, activations.ModelConfig{Hook: activations.HookPoint{Name: fmt.Sprintf("blocks.%d.hook_resid_post", c.hookLayer), Head: -1},
				Contexts: ctxs, SeqsPerForward: c.seqs, SkipFirst: true})
			if err != nil {
				t.Fatal(err)
			}
			const batch = 4096
			pipe, err := activations.NewPipeline(src, activations.Config{BatchRows: batch, BufferRows: 16 * batch, Seed: 1, OnDevice: onDev})
			if err != nil {
				t.Fatal(err)
			}
			var t0 time.Time
			var rows0 int
			sp := sae.TrainSpec{Arch: sae.TopK, DSAE: 16 * c.d, K: c.k, Tokens: c.tokens, BatchRows: batch, LR: 1e-4, Seed: 1,
				Loss: sae.TrainConfig{DeadWindow: 10_000_000}, Normalize: true, GPU: b, BF16: true, InitRows: 4096,
				OnStep: func(step int, _ train.Stats) {
					if step == 20 { // after the first generations: warm
						t0, rows0 = time.Now(), step*batch
					}
				}}
			if _, _, _, err := sae.Train(context.Background(), pipe, sp); err != nil {
				t.Fatal(err)
			}
			secs := time.Since(t0).Seconds()
			rate := float64(int(c.tokens)/batch*batch-rows0) / secs
			fmt.Printf("sae-bench pipeline model=%s hook=blocks.%d.hook_resid_post sae=topk-x16-k%d-bf16 batch=%d rows_on_device=%v tok/s=%.0f\n",
				c.name, c.hookLayer, c.k, batch, onDev, rate)
			pipe.Close()
		}
		b.Close()
	}
}
