package probe

import (
	"testing"

	"github.com/loupe-dev/loupe/probe/compute"
)

// promptB has prompt's length, so the two runs' activations line up.
var promptB = []int{5, 9, 31, 2, 2, 44, 7, 19, 23, 6, 1}

func identity(name string) Edit {
	return Edit{Hook: name, Fn: func(_ compute.Backend, _ string, t compute.Tensor, _ []int) (compute.Tensor, error) { return t, nil }}
}

// Giving one head its own input from another run must make exactly that
// head compute what it computed in the other run, leave its neighbours as
// they were, and leave the residual stream alone; an unchanged copy must
// change nothing beyond rounding.
func TestSplitAttentionInput(t *testing.T) {
	for name := range testConfigs() {
		t.Run(name, func(t *testing.T) {
			m := newTestModel(name)
			c := m.Config
			const layer, head = 1, 2
			a := forward(t, m, [][]int{prompt}, &Hooks{Cache: []string{"*"}})
			b := forward(t, m, [][]int{promptB}, &Hooks{Cache: []string{"*"}})
			same := forward(t, m, [][]int{prompt}, &Hooks{Edit: []Edit{identity(hookName(layer, "hook_attn_in"))}})
			if d := maxDiff(a.Logits, same.Logits); d > 1e-4 {
				t.Fatalf("an unchanged hook_attn_in moved the logits by %g", d)
			}
			T, D, H, Dh := len(prompt), c.DModel, c.Heads, c.HeadDim
			fromB := b.Cache[hookName(layer, "hook_resid_pre")].Data
			edit := Edit{Hook: hookName(layer, "hook_attn_in"), Fn: func(be compute.Backend, _ string, x compute.Tensor, shape []int) (compute.Tensor, error) {
				if shape[2] != H || shape[3] != D {
					t.Fatalf("hook_attn_in shape %v", shape)
				}
				host := be.ToHost(x)
				for p := 0; p < T; p++ {
					copy(host[(p*H+head)*D:(p*H+head+1)*D], fromB[p*D:(p+1)*D])
				}
				return be.FromHost(host, x.Shape()...), nil
			}}
			r := forward(t, m, [][]int{prompt}, &Hooks{Cache: []string{"*"}, Edit: []Edit{edit}})
			za, zb, z := a.Cache[hookName(layer, "attn.hook_z")].Data, b.Cache[hookName(layer, "attn.hook_z")].Data, r.Cache[hookName(layer, "attn.hook_z")].Data
			var dOwn, dOthers float64
			for p := 0; p < T; p++ {
				for h := 0; h < H; h++ {
					s := (p*H + h) * Dh
					if h == head {
						dOwn = max(dOwn, maxDiff(z[s:s+Dh], zb[s:s+Dh]))
					} else {
						dOthers = max(dOthers, maxDiff(z[s:s+Dh], za[s:s+Dh]))
					}
				}
			}
			if dOwn > 1e-4 || dOthers > 1e-4 {
				t.Errorf("head %d.%d fed run B's input: its z is %g from B's, the other heads' %g from A's", layer, head, dOwn, dOthers)
			}
			if d := maxDiff(r.Cache[hookName(layer, "hook_resid_pre")].Data, a.Cache[hookName(layer, "hook_resid_pre")].Data); d != 0 {
				t.Errorf("editing hook_attn_in changed hook_resid_pre by %g", d)
			}
			if d := maxDiff(r.Logits, a.Logits); d == 0 {
				t.Errorf("a head fed another prompt left the logits unchanged")
			}
		})
	}
}

func TestSplitMLPInput(t *testing.T) {
	for name := range testConfigs() {
		t.Run(name, func(t *testing.T) {
			m := newTestModel(name)
			const layer = 1
			in := "hook_resid_mid"
			if m.Config.ParallelResidual {
				in = "hook_resid_pre"
			}
			a := forward(t, m, [][]int{prompt}, &Hooks{Cache: []string{"*"}})
			b := forward(t, m, [][]int{promptB}, &Hooks{Cache: []string{"*"}})
			r := forward(t, m, [][]int{prompt}, &Hooks{Cache: []string{"*"}, Edit: []Edit{Patch(hookName(layer, "hook_mlp_in"), b.Cache[hookName(layer, in)])}})
			if d := maxDiff(r.Cache[hookName(layer, "hook_mlp_out")].Data, b.Cache[hookName(layer, "hook_mlp_out")].Data); d > 1e-4 {
				t.Errorf("the MLP fed run B's input differs from B's MLP output by %g", d)
			}
			if d := maxDiff(r.Cache[hookName(layer, in)].Data, a.Cache[hookName(layer, in)].Data); d != 0 {
				t.Errorf("editing hook_mlp_in changed %s by %g", in, d)
			}
		})
	}
}
