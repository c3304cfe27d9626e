package codebook

import (
	"context"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/loupe-dev/loupe/probe"
	"github.com/loupe-dev/loupe/probe/compute"
	"github.com/loupe-dev/loupe/probe/compute/cuda"
	"github.com/loupe-dev/loupe/sae/activations"
)

// gpuTokFSM loads the TokFSM model on a GPU (weights in dtype dt), or skips:
// the GPU tests run only with LOUPE_TEST_DEVICE=cuda (scripts/gpu-test.sh).
func gpuTokFSM(t *testing.T, dt compute.DType) *Model {
	t.Helper()
	if os.Getenv("LOUPE_TEST_DEVICE") != "cuda" {
		t.Skip("needs LOUPE_TEST_DEVICE=cuda (scripts/gpu-test.sh)")
	}
	g, err := cuda.New(cuda.Options{WeightDType: dt})
	if err != nil {
		t.Skipf("no usable GPU: %v", err)
	}
	t.Cleanup(func() { g.Close() })
	m, err := LoadModel(tokfsmDir, g)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// The codebook layer runs on the GPU backend: the TokFSM model with its
// codebooks on the GPU (f32 weights) gives PyTorch's logits to 1e-4 and the
// same code ids at every codebook, with and without interventions, as the
// CPU test does against the same committed reference.
func TestTokFSMModelOnGPUMatchesPyTorch(t *testing.T) {
	m := gpuTokFSM(t, compute.F32)
	_, ref := loadTokFSM(t)
	checkTokFSMReference(t, m, ref)
}

// A KV-cached generation with codes forced and disabled gives the same
// tokens on the GPU as on the CPU, and the codebook forward's time on each
// is logged (never asserted).
func TestTokFSMGenerationOnGPUEqualsCPU(t *testing.T) {
	gm := gpuTokFSM(t, compute.F32)
	cm, ref := loadTokFSM(t)
	prompt := ref.Tokens[0][:9]
	ivs := []Intervention{
		{Hook: "blocks.1.hook_mlp_out", Positions: []int{len(prompt) + 1, len(prompt) + 3}, Force: []int32{7}},
		{Hook: "blocks.0.attn.hook_z", Group: 1, Positions: []int{len(prompt) + 2}, Disable: []int32{0, 1, 2, 3}},
	}
	gen := func(m *Model) []int {
		sp, err := NewSplice(m.Set, ivs...)
		if err != nil {
			t.Fatal(err)
		}
		out, err := m.Generate(context.Background(), prompt, probe.GenerateOptions{MaxTokens: 24, Hooks: &probe.Hooks{Edit: sp.Edits()}})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if g, c := gen(gm), gen(cm); !slices.Equal(g, c) {
		t.Errorf("generation with codes forced: GPU %v, CPU %v", g, c)
	}
	batch := make([][]int, 32)
	for i := range batch {
		batch[i] = ref.Tokens[i%len(ref.Tokens)]
	}
	for _, m := range []*Model{gm, cm} {
		sp, _ := NewSplice(m.Set)
		runSplice(t, m, batch, sp) // warm-up
		start := time.Now()
		const n = 5
		for range n {
			sp, _ := NewSplice(m.Set)
			runSplice(t, m, batch, sp)
		}
		t.Logf("%s: forward with 8 codebooks, %d x %d tokens: %.2f ms", m.Backend().Name(), len(batch), len(batch[0]),
			float64(time.Since(start).Microseconds())/1000/n)
	}
}

// In the GPU's bf16 weight mode nearly every code chosen is the f32 one: a
// code flips only where two codes' similarities tie within bf16's rounding
// (on the H200, 1 December 2026: 3186 of 3200 ids equal). The logits are
// logged, not bounded: with k = 1 a flipped code replaces the whole
// activation, so one flip moves that position's logits, and through
// attention the later ones', by O(1) (1.58 at most in that run), which no
// rounding bound describes.
func TestTokFSMModelOnGPUBF16(t *testing.T) {
	m := gpuTokFSM(t, compute.BF16)
	_, ref := loadTokFSM(t)
	sp, err := NewSplice(m.Set)
	if err != nil {
		t.Fatal(err)
	}
	r := runSplice(t, m, ref.Tokens, sp)
	d := maxAbs(r.Logits, ref.Clean.Logits)
	same, all := 0, 0
	for _, l := range m.Set.Layers {
		for i, v := range r.Cache[IDsHook(l.Hook)].Data {
			all++
			if int32(v) == ref.Clean.IDs[l.Hook][i] {
				same++
			}
		}
	}
	t.Logf("bf16 weights: max |logit diff| vs PyTorch f32 %.3g, code ids equal %d of %d", d, same, all)
	if math.IsNaN(d) || math.IsInf(d, 0) || same < all*99/100 {
		t.Errorf("bf16 weights: logits differ by %g, %d of %d ids equal (want 99%%)", d, same, all)
	}
}

// The layer alone on the GPU against the PyTorch transcription of the
// reference (testdata/layer_ref.json): the same ids, outputs to 1e-5.
func TestLayerOnGPUMatchesReference(t *testing.T) {
	if os.Getenv("LOUPE_TEST_DEVICE") != "cuda" {
		t.Skip("needs LOUPE_TEST_DEVICE=cuda (scripts/gpu-test.sh)")
	}
	g, err := cuda.New(cuda.Options{WeightDType: compute.F32})
	if err != nil {
		t.Skipf("no usable GPU: %v", err)
	}
	defer g.Close()
	for _, c := range loadRefs(t) {
		l := c.layer()
		var disabled func(int, int) []int32
		if len(c.Disable) > 0 {
			disabled = func(int, int) []int32 { return c.Disable }
		}
		ids, err := l.Select(g, g.FromHost(c.X, c.Rows, l.Width()), nil, disabled)
		if err != nil {
			t.Fatal(err)
		}
		if c.Forced != nil {
			ids = c.Forced
		}
		if !slices.Equal(ids, c.WantIDs) {
			t.Errorf("%s: ids\n got %v\nwant %v", c.Name, ids, c.WantIDs)
			continue
		}
		out, err := l.DecodeOn(g, ids, c.Rows, nil)
		if err != nil {
			t.Fatal(err)
		}
		if d := maxAbs(g.ToHost(out), c.WantOut); d > 1e-5 {
			t.Errorf("%s: output differs from the reference by %g (tolerance 1e-5)", c.Name, d)
		}
	}
}

// The frozen-model training step with its codes chosen on the GPU (the
// default when the model runs there) equals the host's step: the same
// choices (the same per-code counts), the same gradient to 1e-5. The rows
// lie near planted codes and the codebook holds those codes perturbed, so
// each row's best code wins by a wide margin (no near-ties to flip).
func TestTrainStepOnGPUEqualsHost(t *testing.T) {
	if os.Getenv("LOUPE_TEST_DEVICE") != "cuda" {
		t.Skip("needs LOUPE_TEST_DEVICE=cuda (scripts/gpu-test.sh)")
	}
	g, err := cuda.New(cuda.Options{WeightDType: compute.F32})
	if err != nil {
		t.Skipf("no usable GPU: %v", err)
	}
	defer g.Close()
	const n, d, C = 2048, 64, 256
	x, planted0 := planted(n, C, d, 0.05, 3)
	steps := map[string]*Trainable{}
	for _, on := range []string{"host", "gpu"} {
		codes := slices.Clone(planted0)
		for i := range codes {
			codes[i] *= 1 + 0.01*float32(i%7-3)
		}
		l := &Layer{Hook: "blocks.0.hook_resid_post", Groups: 1, Dim: d, NumCodes: C, K: 1, Reduce: Mean, Codes: codes}
		tr, err := NewTrainable(l, 1, 0, 1)
		if err != nil {
			t.Fatal(err)
		}
		if on == "gpu" {
			tr.SetBackend(g)
		}
		if _, err := tr.Backward(&activations.Batch{Rows: n, Width: d, X: x}, 1); err != nil {
			t.Fatalf("%s step: %v", on, err)
		}
		steps[on] = tr
	}
	h, gp := steps["host"], steps["gpu"]
	if !slices.Equal(h.used, gp.used) {
		t.Fatalf("the GPU step chose other codes than the host's")
	}
	if dd := maxAbs(gp.param.Grad, h.param.Grad); dd > 1e-5 {
		t.Fatalf("the GPU step's gradient differs from the host's by %g (tolerance 1e-5)", dd)
	}
	if gp.Backend().Name() == h.Backend().Name() {
		t.Fatalf("both steps ran on %s", h.Backend().Name())
	}
}

// BenchmarkTrainStep is one frozen-model training step's Backward (the code
// choice, the output and the gradient) at the SmolLM2 codebook's shape
// (scripts/codebook-smollm2.sh: 1024 rows of 576 features, 4608 codes,
// k 32) on random codes and rows: the codes chosen on the host, and, with
// LOUPE_TEST_DEVICE=cuda, on the GPU, side by side in one run.
func BenchmarkTrainStep(b *testing.B) {
	const n, d, C, k = 1024, 576, 4608, 32
	rng := rand.New(rand.NewPCG(1, 2))
	x := make([]float32, n*d)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	codes := make([]float32, C*d)
	for i := range codes {
		codes[i] = float32(rng.NormFloat64())
	}
	backends := map[string]compute.Backend{"host": nil}
	names := []string{"host"}
	if os.Getenv("LOUPE_TEST_DEVICE") == "cuda" {
		g, err := cuda.New(cuda.Options{WeightDType: compute.F32})
		if err != nil {
			b.Fatalf("no usable GPU: %v", err)
		}
		defer g.Close()
		backends["gpu"] = g
		names = append(names, "gpu")
	}
	for _, on := range names {
		b.Run("codes-on-"+on, func(b *testing.B) {
			l := &Layer{Hook: "blocks.15.hook_resid_post", Groups: 1, Dim: d, NumCodes: C, K: k, Reduce: Mean, Codes: slices.Clone(codes)}
			tr, err := NewTrainable(l, 1, 0, 1)
			if err != nil {
				b.Fatal(err)
			}
			if g := backends[on]; g != nil {
				tr.SetBackend(g)
			}
			bt := &activations.Batch{Rows: n, Width: d, X: x}
			if _, err := tr.Backward(bt, 1); err != nil { // warm-up (kernel compilation)
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				if _, err := tr.Backward(bt, 1); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
