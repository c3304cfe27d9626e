package probe

import (
	"context"
	"math"
	"testing"

	"github.com/loupe-dev/loupe/probe/compute"
	"github.com/loupe-dev/loupe/probe/compute/cuda"
	"github.com/loupe-dev/loupe/probe/weights"
)

// TestBF16OnGPU runs tiny models whose attention takes the tensor-core
// path (head dimension 64, grouped-query) on a bf16 GPU backend, whatever
// LOUPE_TEST_DTYPE says: Llama, Qwen3 (QK-norm) and Gemma 3 (sliding
// windows, its own norms and scale). Their logits against the CPU's
// float32 run on the same bf16-rounded weights must agree to what
// rounding the activations to bf16 costs (a wrong row, a stale bf16 copy
// of an activation or of the KV cache would be off by the logits' own
// size, and the top-1 tokens would disagree), and generating with the KV cache on the GPU must give the
// logits a full forward pass over the same tokens gives, to 1e-2 of their
// scale (attention per row is the same arithmetic either way; only the
// products' summation order may differ).
func TestBF16OnGPU(t *testing.T) {
	if !onGPU() {
		t.Skip("needs LOUPE_TEST_DEVICE=cuda")
	}
	b16, err := cuda.New(cuda.Options{WeightDType: compute.BF16})
	if err != nil {
		t.Fatal(err)
	}
	defer b16.Close()
	ctx := context.Background()
	for _, name := range []string{"llama", "qwen3", "gemma3", "gpt2", "neox", "phi3"} {
		t.Run(name, func(t *testing.T) {
			c := testConfigs()[name]
			c.DModel, c.Heads, c.KVHeads, c.HeadDim, c.RotaryDim, c.DMLP, c.MaxPos = 128, 4, 2, 64, 64, 192, 512
			if c.QueryPreAttnScalar != 0 {
				c.QueryPreAttnScalar = 64
			}
			if c.Family == FamilyGPT2 || c.Family == FamilyGPTNeoX {
				// No grouped queries, and heads that tile the width.
				c.KVHeads, c.HeadDim, c.RotaryDim = c.Heads, c.DModel/c.Heads, c.DModel/c.Heads/2
			}
			ts := randomTensors(c, 7)
			m16, err := New(c, ts, b16)
			if err != nil {
				t.Fatal(err)
			}
			// The reference: the CPU in float32 on the weights the GPU
			// holds (matrices rounded to bf16, vectors as they are).
			rounded := weights.Map{}
			for name, a := range ts {
				if len(a.Shape) == 2 {
					d := make([]float32, len(a.Data))
					for i, x := range a.Data {
						d[i] = roundBF16(x)
					}
					a = weights.Array{Shape: a.Shape, Data: d}
				}
				rounded[name] = a
			}
			m32, err := New(c, rounded, compute.NewCPU())
			if err != nil {
				t.Fatal(err)
			}
			long := make([]int, 150)
			for i := range long {
				long[i] = (i*7 + 3) % c.Vocab
			}
			prompts := [][]int{long, long[40:110]} // the second left-padded
			r16, err := m16.Forward(ctx, prompts, Options{Logits: LogitsAll})
			if err != nil {
				t.Fatal(err)
			}
			r32, err := m32.Forward(ctx, prompts, Options{Logits: LogitsAll})
			if err != nil {
				t.Fatal(err)
			}
			rel, agree := compareLogits(r16, r32, prompts, c.Vocab)
			t.Logf("bf16 GPU vs f32 CPU: max |diff| / max |logit| %.3g, top-1 agreement %.3f", rel, agree)
			if rel > 0.25 || agree < 0.9 || math.IsNaN(rel) {
				t.Errorf("bf16 logits off by %.3g of their scale, top-1 agreement %.3f", rel, agree)
			}
			// KV-cache generation against full forwards, on the GPU.
			var steps [][]float32
			prompt := long[:60]
			gen, err := m16.Generate(ctx, prompt, GenerateOptions{MaxTokens: 6, Hooks: &Hooks{Cache: []string{"logits"}},
				OnCache: func(step int, cache map[string]*Activation) {
					a := cache["logits"]
					steps = append(steps, a.Data[len(a.Data)-c.Vocab:])
				}})
			if err != nil {
				t.Fatal(err)
			}
			full := append(append([]int(nil), prompt...), gen[:len(gen)-1]...)
			rf, err := m16.Forward(ctx, [][]int{full}, Options{Logits: LogitsAll})
			if err != nil {
				t.Fatal(err)
			}
			worst := 0.0
			for s, lg := range steps {
				want := rf.LogitsAt(0, len(prompt)-1+s)
				worst = max(worst, maxRel(lg, want))
			}
			t.Logf("KV-cache steps vs full forward: max |diff| / max |logit| %.3g over %d steps", worst, len(steps))
			if len(steps) != len(gen) || worst > 1e-2 || math.IsNaN(worst) {
				t.Errorf("%d steps for %d tokens; KV-cache logits off by %.3g of their scale", len(steps), len(gen), worst)
			}
			if err := compute.Err(b16); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// compareLogits gives the largest |a - b| over the largest |b| across
// every real position of every prompt, and the share of positions whose
// top-1 tokens agree.
func compareLogits(a, b *Result, prompts [][]int, V int) (rel, agree float64) {
	n, same := 0, 0
	for s, p := range prompts {
		for i := range p {
			x, y := a.LogitsAt(s, i), b.LogitsAt(s, i)
			rel = max(rel, maxRel(x, y))
			if argmax32(x) == argmax32(y) {
				same++
			}
			n++
		}
	}
	return rel, float64(same) / float64(n)
}

// roundBF16 rounds to the nearest bf16 (ties to even), as the GPU stores
// weights.
func roundBF16(f float32) float32 {
	u := math.Float32bits(f)
	u += 0x7fff + (u>>16)&1
	return math.Float32frombits(u &^ 0xffff)
}

func maxRel(x, y []float32) float64 {
	if len(x) != len(y) || len(y) == 0 {
		return math.Inf(1)
	}
	d, scale := 0.0, 0.0
	for i := range y {
		d = max(d, math.Abs(float64(x[i]-y[i])))
		scale = max(scale, math.Abs(float64(y[i])))
	}
	if math.IsNaN(d) {
		return math.NaN()
	}
	return d / scale
}
