package probe

import (
	"context"
	"testing"

	"github.com/loupe-dev/loupe/probe/compute"
)

// adderCPU is the CPU backend with compute.LinearAdder (as the GPU has
// it), counting its calls, so that the CPU runs the GPU's fused-residual
// path of the Llama block.
type adderCPU struct {
	*compute.CPU
	calls *int
}

func (a adderCPU) LinearAdd(x, w, bias, r compute.Tensor) compute.Tensor {
	*a.calls++
	return a.CPU.Add(r, a.CPU.Linear(x, w, bias))
}

// On a backend with LinearAdd, a Llama block adds attention's and the
// MLP's outputs to the residual inside their output products, except in
// the layers where a hook reads or edits those outputs (attn_out,
// mlp_out, the per-head results), which then exist on their own. Logits
// and the residual stream are the plain path's.
func TestLlamaFusedResidualAdds(t *testing.T) {
	c := testConfigs()["llama"]
	calls := 0
	fused, err := New(c, randomTensors(c, 1), adderCPU{compute.NewCPU(), &calls})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := New(c, randomTensors(c, 1), compute.NewCPU())
	if err != nil {
		t.Fatal(err)
	}
	batch := [][]int{{1, 5, 9, 2, 7, 3}, {4, 4, 8}}
	for _, tc := range []struct {
		name  string
		hooks *Hooks
		want  int // LinearAdd calls
	}{
		{"no hooks", nil, 2 * c.Layers},
		{"resid stream cached", &Hooks{Cache: []string{"blocks.*.hook_resid_*"}}, 2 * c.Layers},
		{"attn_out of block 0", &Hooks{Cache: []string{"blocks.*.hook_resid_post", "blocks.0.hook_attn_out"}}, 2*c.Layers - 1},
		{"mlp_out everywhere", &Hooks{Cache: []string{"blocks.*.hook_resid_post", "blocks.*.hook_mlp_out"}}, c.Layers},
		{"per-head results of block 1", &Hooks{Cache: []string{"blocks.*.hook_resid_post", "blocks.1.attn.hook_result"}}, 2*c.Layers - 1},
		{"everything", &Hooks{Cache: []string{"*"}}, 0},
	} {
		calls = 0
		got, err := fused.Forward(context.Background(), batch, Options{Hooks: tc.hooks, Logits: LogitsAll})
		if err != nil {
			t.Fatal(err)
		}
		if calls != tc.want {
			t.Errorf("%s: %d fused residual adds, want %d", tc.name, calls, tc.want)
		}
		want, err := plain.Forward(context.Background(), batch, Options{Hooks: tc.hooks, Logits: LogitsAll})
		if err != nil {
			t.Fatal(err)
		}
		if d := maxDiff(got.Logits, want.Logits); d != 0 {
			t.Errorf("%s: logits differ from the plain path by %g", tc.name, d)
		}
		for name, a := range want.Cache {
			if g := got.Cache[name]; g == nil || maxDiff(g.Data, a.Data) != 0 {
				t.Errorf("%s: %s differs from the plain path", tc.name, name)
			}
		}
	}
}
