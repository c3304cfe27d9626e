package probe

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// A pass resumed at block l on what blocks.l.hook_resid_pre held gives the
// full pass's logits and later hooks, on every test architecture and a
// padded batch; the blocks before l fire no hook.
func TestResumeAtBlock(t *testing.T) {
	ctx := context.Background()
	batch := [][]int{prompt, prompt[:len(prompt)-2]}
	for name := range testConfigs() {
		t.Run(name, func(t *testing.T) {
			m := newTestModel(name)
			full, err := m.Forward(ctx, batch, Options{Hooks: &Hooks{Cache: []string{"*"}}, Logits: LogitsAll})
			if err != nil {
				t.Fatal(err)
			}
			for l := 0; l < m.Config.Layers; l++ {
				resid := full.Cache[fmt.Sprintf("blocks.%d.hook_resid_pre", l)].Data
				r, err := m.Forward(ctx, batch, Options{Hooks: &Hooks{Cache: []string{"*"}}, Logits: LogitsAll, From: &Resume{Layer: l, Resid: resid}})
				if err != nil {
					t.Fatal(err)
				}
				if d := maxDiff(full.Logits, r.Logits); d > 1e-5 {
					t.Errorf("resumed at block %d: logits differ by %g", l, d)
				}
				for h, a := range r.Cache {
					var hl int
					if _, err := fmt.Sscanf(h, "blocks.%d.", &hl); err == nil && hl < l || strings.HasPrefix(h, "hook_") {
						t.Errorf("resumed at block %d, hook %s fired", l, h)
						continue
					}
					if d := maxDiff(full.Cache[h].Data, a.Data); d > 1e-5 {
						t.Errorf("resumed at block %d: %s differs by %g", l, h, d)
					}
				}
			}
		})
	}
}

func TestResumeRefusesBadInput(t *testing.T) {
	m := newTestModel("gpt2")
	ctx := context.Background()
	for _, c := range []struct {
		from *Resume
		want string
	}{
		{&Resume{Layer: m.Config.Layers, Resid: make([]float32, len(prompt)*m.Config.DModel)}, "blocks 0.."},
		{&Resume{Layer: 0, Resid: make([]float32, 3)}, "residual stream of 3 values"},
	} {
		if _, err := m.Forward(ctx, [][]int{prompt}, Options{From: c.from}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("From %d/%d values: error %v, want %q", c.from.Layer, len(c.from.Resid), err, c.want)
		}
	}
}
