package probe

import (
	"context"
	"slices"
	"testing"

	"github.com/loupe-dev/loupe/probe/compute"
)

// fusedCPU is the CPU backend with compute.FusedProjector (as the GPU has
// it), built from the CPU's own operations and counting its calls, so that
// the CPU runs the GPU's path of the Llama block: weights stacked at load,
// one product for q/k/v and one for gate/up where no hook needs them apart.
type fusedCPU struct {
	*compute.CPU
	qkv, gateUp *int
}

func (f fusedCPU) RowsView(w compute.Tensor, lo, hi int) compute.Tensor { return f.CPU.Rows(w, lo, hi) }

func (f fusedCPU) LinearQKVRotary(x, w compute.Tensor, H, Hkv, dh int, pos []int, invFreq []float32) (q, k, v compute.Tensor) {
	*f.qkv++
	y := f.CPU.Linear(x, w, nil)
	q, k, v = f.CPU.Columns(y, 0, H*dh), f.CPU.Columns(y, H*dh, (H+Hkv)*dh), f.CPU.Columns(y, (H+Hkv)*dh, (H+2*Hkv)*dh)
	f.CPU.RotaryInPlace(q, H, dh, dh, pos, invFreq)
	f.CPU.RotaryInPlace(k, Hkv, dh, dh, pos, invFreq)
	return q, k, v
}

func (f fusedCPU) LinearSwiGLU(x, w compute.Tensor) compute.Tensor {
	*f.gateUp++
	y := f.CPU.Linear(x, w, nil)
	F := w.Shape()[0] / 2
	return f.CPU.SwiGLU(f.CPU.Columns(y, 0, F), f.CPU.Columns(y, F, 2*F))
}

// On a backend with fused products, a Llama block makes q, k, v in one
// product where the checkpoint allows it (full rotary, no biases, no
// QK-norm: not Qwen2, Qwen3 or Phi-3) and gate, up in one, except in the
// layers where a hook reads or edits q, k, v (before or after RoPE), gate
// or up, which then exist on their own; split attention inputs use the
// separate weights (views). Logits, every cached activation, reductions
// and KV-cache generation equal the plain path's, and the weights the
// model reports (Params) are the checkpoint's.
func TestLlamaFusedProducts(t *testing.T) {
	ctx := context.Background()
	batch := [][]int{{1, 5, 9, 2, 7, 3}, {4, 4, 8}}
	for _, fam := range []string{"llama", "mistral", "qwen2", "qwen3", "phi3"} {
		c := testConfigs()[fam]
		var qkv, gateUp int
		fused, err := New(c, randomTensors(c, 1), fusedCPU{compute.NewCPU(), &qkv, &gateUp})
		if err != nil {
			t.Fatal(err)
		}
		plain, err := New(c, randomTensors(c, 1), compute.NewCPU())
		if err != nil {
			t.Fatal(err)
		}
		L := c.Layers
		qkvLayers := L // where the checkpoint lets q/k/v be one product
		gateUpLayers := L
		switch fam {
		case "qwen2", "qwen3":
			qkvLayers = 0
		case "phi3":
			qkvLayers, gateUpLayers = 0, 0 // partial rotary; Phi-3 loads its own stacked weights
		}
		for _, name := range []string{"attn.W_Q", "attn.W_K", "attn.W_V", "mlp.W_gate", "mlp.W_in"} {
			g, gerr := fused.Param("blocks.1." + name)
			w, werr := plain.Param("blocks.1." + name)
			if gerr != nil || werr != nil || !slices.Equal(g.Shape, w.Shape) || maxDiff(g.Data, w.Data) != 0 {
				t.Errorf("%s: weight %s differs from the checkpoint's", fam, name)
			}
		}
		identity := func(hook string) Edit {
			return Edit{Hook: hook, Fn: func(_ compute.Backend, _ string, x compute.Tensor, _ []int) (compute.Tensor, error) { return x, nil }}
		}
		for _, tc := range []struct {
			name           string
			hooks          *Hooks
			qkvOff, mlpOff int // layers that must run the separate products
		}{
			{"no hooks", nil, 0, 0},
			{"resid stream and patterns", &Hooks{Cache: []string{"blocks.*.hook_resid_*", "blocks.*.attn.hook_pattern"},
				Reduce: []Reduction{{Hook: "blocks.*.attn.hook_pattern", Op: Entropy}}}, 0, 0},
			{"q of block 0", &Hooks{Cache: []string{"blocks.0.attn.hook_q"}}, 1, 0},
			{"rotated k of block 2", &Hooks{Cache: []string{"blocks.2.attn.hook_rot_k"}}, 1, 0},
			{"v edited in block 1", &Hooks{Edit: []Edit{identity("blocks.1.attn.hook_v")}}, 1, 0},
			{"gate everywhere", &Hooks{Cache: []string{"blocks.*.mlp.hook_pre"}}, 0, L},
			{"up of block 1", &Hooks{Cache: []string{"blocks.1.mlp.hook_pre_linear"}}, 0, 1},
			{"split attention input of block 1", &Hooks{Edit: []Edit{identity("blocks.1.hook_attn_in")}}, 1, 0},
			{"everything", &Hooks{Cache: []string{"*"}}, L, L},
		} {
			qkv, gateUp = 0, 0
			got, err := fused.Forward(ctx, batch, Options{Hooks: tc.hooks, Logits: LogitsAll})
			if err != nil {
				t.Fatal(err)
			}
			wantQKV, wantMLP := max(0, qkvLayers-tc.qkvOff), max(0, gateUpLayers-tc.mlpOff)
			if qkvLayers == 0 {
				wantQKV = 0
			}
			if gateUpLayers == 0 {
				wantMLP = 0
			}
			if qkv != wantQKV || gateUp != wantMLP {
				t.Errorf("%s, %s: %d fused q/k/v and %d fused gate/up products, want %d and %d", fam, tc.name, qkv, gateUp, wantQKV, wantMLP)
			}
			want, err := plain.Forward(ctx, batch, Options{Hooks: tc.hooks, Logits: LogitsAll})
			if err != nil {
				t.Fatal(err)
			}
			if d := maxDiff(got.Logits, want.Logits); d != 0 {
				t.Errorf("%s, %s: logits differ from the plain path by %g", fam, tc.name, d)
			}
			if len(got.Cache) != len(want.Cache) || len(got.Reduced) != len(want.Reduced) {
				t.Errorf("%s, %s: %d cached and %d reduced, want %d and %d", fam, tc.name, len(got.Cache), len(got.Reduced), len(want.Cache), len(want.Reduced))
			}
			for name, a := range want.Cache {
				if g := got.Cache[name]; g == nil || maxDiff(g.Data, a.Data) != 0 {
					t.Errorf("%s, %s: %s differs from the plain path", fam, tc.name, name)
				}
			}
			for j := range want.Reduced {
				if j < len(got.Reduced) && maxDiff(got.Reduced[j].Values, want.Reduced[j].Values) != 0 {
					t.Errorf("%s, %s: reduction %s differs from the plain path", fam, tc.name, want.Reduced[j].Hook)
				}
			}
		}
		g, err := fused.Generate(ctx, batch[0], GenerateOptions{MaxTokens: 6})
		if err != nil {
			t.Fatal(err)
		}
		w, err := plain.Generate(ctx, batch[0], GenerateOptions{MaxTokens: 6})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(g, w) {
			t.Errorf("%s: KV-cache generation %v, plain path %v", fam, g, w)
		}
	}
}
