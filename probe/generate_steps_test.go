package probe

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"testing"
)

// TestGenerateStepsEqualFullForwards: every step of a KV-cache generation
// hands back what its hooks cached and reduced, and each equals what a full
// forward over the prompt plus the tokens so far gives at its last
// position(s): the residual stream, one layer's pattern row, and the top-2
// keys of that row (reduced by the fused attention, never materialised).
func TestGenerateStepsEqualFullForwards(t *testing.T) {
	for name := range testConfigs() {
		t.Run(name, func(t *testing.T) {
			m := newTestModel(name)
			L := m.Config.Layers
			resid := hookName(L-1, "hook_resid_post")
			pat := hookName(1, "attn.hook_pattern")
			red := hookName(0, "attn.hook_pattern")
			hooks := &Hooks{Cache: []string{"blocks.*.hook_resid_post", pat},
				Reduce: []Reduction{{Hook: red, Op: TopK, K: 2, Rows: []int{-1}}}}
			var streamed []int
			g, err := m.GenerateSteps(context.Background(), prompt, GenerateOptions{MaxTokens: 6, Hooks: hooks,
				OnCache: func(step int, c map[string]*Activation) { streamed = append(streamed, step) }})
			if err != nil {
				t.Fatal(err)
			}
			plain, err := m.Generate(context.Background(), prompt, GenerateOptions{MaxTokens: 6})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(g.Tokens, plain) || len(g.Steps) != len(g.Tokens) || !slices.Equal(streamed, []int{0, 1, 2, 3, 4, 5}) {
				t.Fatalf("tokens %v (plain %v), %d steps, OnCache steps %v", g.Tokens, plain, len(g.Steps), streamed)
			}
			H, D := m.Config.Heads, m.Config.DModel
			for s, st := range g.Steps {
				if st.Token != g.Tokens[s] {
					t.Fatalf("step %d chose %d, the generation %d", s, st.Token, g.Tokens[s])
				}
				seq := append(slices.Clone(prompt), g.Tokens[:s]...)
				full := forward(t, m, [][]int{seq}, &Hooks{Cache: []string{resid, pat, red}})
				T := len(seq)
				newPos := 1 // positions this step ran
				if s == 0 {
					newPos = T
				}
				got, want := st.Cache[resid], full.Cache[resid]
				if got == nil || !slices.Equal(got.Shape, []int{1, newPos, D}) {
					t.Fatalf("step %d: %s cached as %v", s, resid, got)
				}
				if d := maxDiff(got.Data, want.Data[(T-newPos)*D:]); d > 1e-4 {
					t.Fatalf("step %d: %s differs from a full forward by %g", s, resid, d)
				}
				gp, fp := st.Cache[pat], full.Cache[pat]
				if gp == nil || !slices.Equal(gp.Shape, []int{1, H, newPos, T}) {
					t.Fatalf("step %d: %s cached as shape %v, want [1 %d %d %d]", s, pat, gp.Shape, H, newPos, T)
				}
				for h := range H {
					g := gp.Data[(h*newPos+newPos-1)*T : (h*newPos+newPos)*T]
					w := fp.Data[(h*T+T-1)*T : (h*T+T)*T]
					if d := maxDiff(g, w); d > 1e-5 {
						t.Fatalf("step %d head %d: last pattern row differs by %g", s, h, d)
					}
				}
				if len(st.Reduced) != 1 || !slices.Equal(st.Reduced[0].Shape, []int{1, H, 1, 2}) {
					t.Fatalf("step %d: reductions %+v", s, st.Reduced)
				}
				fr := full.Cache[red].Data
				for h := range H {
					row := fr[(h*T+T-1)*T : (h*T+T)*T]
					order := make([]int, T)
					for i := range order {
						order[i] = i
					}
					sort.SliceStable(order, func(a, b int) bool { return row[order[a]] > row[order[b]] })
					gotIdx := st.Reduced[0].Index[h*2 : h*2+2]
					if fmt.Sprint(gotIdx) != fmt.Sprint([]int32{int32(order[0]), int32(order[1])}) {
						// Near-ties may swap; the weights must still agree.
						if d := maxDiff([]float32{row[gotIdx[0]], row[gotIdx[1]]}, []float32{row[order[0]], row[order[1]]}); d > 1e-5 {
							t.Fatalf("step %d head %d: top-2 keys %v, the full pattern's %v", s, h, gotIdx, order[:2])
						}
					}
					if d := maxDiff(st.Reduced[0].Values[h*2:h*2+2], []float32{row[order[0]], row[order[1]]}); d > 1e-5 {
						t.Fatalf("step %d head %d: top-2 weights differ by %g", s, h, d)
					}
				}
			}
		})
	}
}
