package probe

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/loupe-dev/loupe/probe/compute"
)

var prompt = []int{3, 17, 4, 4, 29, 11, 8, 40, 2, 3, 17}

func forward(t *testing.T, m *Model, batch [][]int, h *Hooks) *Result {
	t.Helper()
	r, err := m.Forward(context.Background(), batch, Options{Hooks: h})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func maxDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	d := 0.0
	for i := range a {
		if a[i] == b[i] { // also equal infinities
			continue
		}
		d = max(d, math.Abs(float64(a[i])-float64(b[i])))
		if math.IsNaN(d) {
			return math.Inf(1)
		}
	}
	return d
}

func TestHookConsistency(t *testing.T) {
	for name := range testConfigs() {
		t.Run(name, func(t *testing.T) {
			m := newTestModel(name)
			c := m.Config
			plain := forward(t, m, [][]int{prompt}, nil)
			r := forward(t, m, [][]int{prompt}, &Hooks{Cache: []string{"*"}})
			if d := maxDiff(plain.Logits, r.Logits); d != 0 {
				t.Fatalf("caching every hook changed the logits by %g", d)
			}
			for _, want := range m.HookNames() {
				if r.Cache[want] == nil {
					t.Errorf("hook %s was not cached", want)
				}
			}
			T, D, H := len(prompt), c.DModel, c.Heads
			for l := 0; l < c.Layers; l++ {
				get := func(s string) []float32 { return r.Cache[hookName(l, s)].Data }
				// Per-head results plus the output bias sum to hook_attn_out
				// (Gemma: to what its post-attention norm normalises).
				res, out := get("attn.hook_result"), get("hook_attn_out")
				bo := make([]float32, D)
				if m.layers[l].bo != nil {
					bo = m.backend.ToHost(m.layers[l].bo)
				}
				for p := 0; p < T; p++ {
					sum := make([]float64, D)
					for d := 0; d < D; d++ {
						sum[d] = float64(bo[d])
						for h := 0; h < H; h++ {
							sum[d] += float64(res[(p*H+h)*D+d])
						}
					}
					if w := m.layers[l].ln1PostW; w != nil {
						rmsNorm64(sum, m.backend.ToHost(w), c.NormEps)
						if d := maxDiff(get("ln1_post.hook_normalized")[p*D:(p+1)*D], out[p*D:(p+1)*D]); d != 0 {
							t.Fatalf("layer %d pos %d: ln1_post.hook_normalized != hook_attn_out (%g)", l, p, d)
						}
					}
					for d, s := range sum {
						if math.Abs(s-float64(out[p*D+d])) > 1e-5 {
							t.Fatalf("layer %d pos %d dim %d: Σ hook_result + b_O = %g, hook_attn_out = %g", l, p, d, s, out[p*D+d])
						}
					}
				}
				// The residual stream adds up.
				post := get("hook_resid_post")
				var sum []float32
				if c.ParallelResidual {
					sum = add(get("hook_resid_pre"), add(get("hook_attn_out"), get("hook_mlp_out")))
				} else {
					sum = add(get("hook_resid_mid"), get("hook_mlp_out"))
					if d := maxDiff(get("hook_resid_mid"), add(get("hook_resid_pre"), get("hook_attn_out"))); d > 1e-5 {
						t.Errorf("layer %d: resid_mid - (resid_pre + attn_out) = %g", l, d)
					}
				}
				if d := maxDiff(post, sum); d > 1e-5 {
					t.Errorf("layer %d: resid_post differs from its parts by %g", l, d)
				}
				if l+1 < c.Layers {
					if d := maxDiff(post, r.Cache[hookName(l+1, "hook_resid_pre")].Data); d != 0 {
						t.Errorf("layer %d: resid_post != next resid_pre (%g)", l, d)
					}
				}
				// Every pattern row sums to 1 and is causal.
				pat := r.Cache[hookName(l, "attn.hook_pattern")]
				if !slices.Equal(pat.Shape, []int{1, H, T, T}) {
					t.Fatalf("pattern shape %v", pat.Shape)
				}
				for h := 0; h < H; h++ {
					for q := 0; q < T; q++ {
						row := pat.Data[(h*T+q)*T : (h*T+q+1)*T]
						s := 0.0
						for k, v := range row {
							s += float64(v)
							if k > q && v != 0 {
								t.Fatalf("layer %d head %d: query %d attends to later key %d", l, h, q, k)
							}
							if w := c.Window(l); w > 0 && q-k >= w && v != 0 {
								t.Fatalf("layer %d head %d: query %d attends to key %d outside its window %d", l, h, q, k, w)
							}
						}
						if math.Abs(s-1) > 1e-5 {
							t.Fatalf("layer %d head %d query %d: pattern row sums to %g", l, h, q, s)
						}
					}
				}
			}
		})
	}
}

// rmsNorm64 normalises x in place, in float64, and scales it by w.
func rmsNorm64(x []float64, w []float32, eps float64) {
	var ss float64
	for _, v := range x {
		ss += v * v
	}
	inv := 1 / math.Sqrt(ss/float64(len(x))+eps)
	for i := range x {
		x[i] *= inv * float64(w[i])
	}
}

func add(a, b []float32) []float32 {
	out := make([]float32, len(a))
	for i := range a {
		out[i] = a[i] + b[i]
	}
	return out
}

func TestAblationLeavesUpstreamUnchanged(t *testing.T) {
	for name := range testConfigs() {
		t.Run(name, func(t *testing.T) {
			m := newTestModel(name)
			const layer, head = 1, 2
			clean := forward(t, m, [][]int{prompt}, &Hooks{Cache: []string{"*"}})
			abl := forward(t, m, [][]int{prompt}, &Hooks{Cache: []string{"*"}, Edit: []Edit{ZeroAblateHead(m.Config, layer, head)}})
			downstream := false
			for _, n := range m.HookNames() {
				if n == hookName(layer, "attn.hook_z") {
					downstream = true
					// Only the ablated head's slice changes, to zero.
					z, z0 := abl.Cache[n].Data, clean.Cache[n].Data
					Dh, H := m.Config.HeadDim, m.Config.Heads
					for i := range z {
						h := (i / Dh) % H
						if h == head && z[i] != 0 || h != head && z[i] != z0[i] {
							t.Fatalf("%s[%d] = %g after ablating head %d (clean %g)", n, i, z[i], head, z0[i])
						}
					}
					continue
				}
				d := maxDiff(clean.Cache[n].Data, abl.Cache[n].Data)
				if !downstream && d != 0 {
					t.Errorf("%s is upstream of the ablated head but changed by %g", n, d)
				}
				if n == "logits" && d == 0 {
					t.Errorf("ablating head %d.%d did not change the logits", layer, head)
				}
			}
		})
	}
}

func TestPatchingEveryActivationReproducesLogits(t *testing.T) {
	for name := range testConfigs() {
		t.Run(name, func(t *testing.T) {
			m := newTestModel(name)
			a := forward(t, m, [][]int{prompt}, &Hooks{Cache: []string{"*"}})
			other := []int{9, 9, 1, 33, 2, 5, 7, 21, 30, 44, 6}
			var edits []Edit
			for n, act := range a.Cache {
				if n != "logits" {
					edits = append(edits, Patch(n, act))
				}
			}
			b := forward(t, m, [][]int{other}, &Hooks{Edit: edits})
			if d := maxDiff(a.Logits, b.Logits); d != 0 {
				t.Fatalf("patched run's logits differ from run A's by %g", d)
			}
			// Patching only the last layer's residual is enough too, and
			// a patch of the wrong shape is refused.
			last := hookName(m.Config.Layers-1, "hook_resid_post")
			b = forward(t, m, [][]int{other}, &Hooks{Edit: []Edit{Patch(last, a.Cache[last])}})
			if d := maxDiff(a.Logits, b.Logits); d != 0 {
				t.Fatalf("patching %s: logits differ by %g", last, d)
			}
			_, err := m.Forward(context.Background(), [][]int{other[:5]}, Options{Hooks: &Hooks{Edit: []Edit{Patch(last, a.Cache[last])}}})
			if err == nil || !strings.Contains(err.Error(), "patch") {
				t.Fatalf("a patch of the wrong shape gave %v", err)
			}
		})
	}
}

func TestBatchWithPaddingEqualsSingleRuns(t *testing.T) {
	for name := range testConfigs() {
		t.Run(name, func(t *testing.T) {
			m := newTestModel(name)
			batch := [][]int{prompt, {5, 6, 7}, prompt[:8]}
			r := forward(t, m, batch, nil)
			for b, s := range batch {
				one := forward(t, m, [][]int{s}, nil)
				for p := range s {
					if d := maxDiff(one.LogitsAt(0, p), r.LogitsAt(b, p)); d > 1e-4 {
						t.Fatalf("sequence %d position %d: batched logits differ by %g", b, p, d)
					}
				}
			}
		})
	}
}

func TestGenerateWithKVCacheEqualsFullForward(t *testing.T) {
	for name := range testConfigs() {
		t.Run(name, func(t *testing.T) {
			m := newTestModel(name)
			got, err := m.Generate(context.Background(), prompt, GenerateOptions{MaxTokens: 12})
			if err != nil {
				t.Fatal(err)
			}
			seq := slices.Clone(prompt)
			for i := 0; i < 12; i++ {
				r := forward(t, m, [][]int{seq}, nil)
				last := r.LogitsAt(0, -1)
				want := slices.Index(last, slices.Max(last))
				if got[i] != want {
					t.Fatalf("token %d: KV-cache generation gave %d, a full forward %d", i, got[i], want)
				}
				seq = append(seq, want)
			}
			// Seeded sampling is reproducible.
			s := Sampling{Temperature: 0.8, TopK: 20, TopP: 0.9, Seed: 42}
			a, _ := m.Generate(context.Background(), prompt, GenerateOptions{MaxTokens: 8, Sampling: s})
			b, _ := m.Generate(context.Background(), prompt, GenerateOptions{MaxTokens: 8, Sampling: s})
			if !slices.Equal(a, b) {
				t.Fatalf("same seed, different samples: %v vs %v", a, b)
			}
		})
	}
}

func TestReductionsMatchCachedPattern(t *testing.T) {
	m := newTestModel("llama")
	pat := "blocks.1.attn.hook_pattern"
	r := forward(t, m, [][]int{prompt}, &Hooks{Cache: []string{pat}, Reduce: []Reduction{
		{Hook: pat, Op: TopK, K: 3}, {Hook: pat, Op: SpanMass, Lo: 0, Hi: 2}, {Hook: pat, Op: Entropy},
	}})
	full := r.Cache[pat].Data
	T := len(prompt)
	rows := m.Config.Heads * T
	if len(r.Reduced) != 3 {
		t.Fatalf("%d reductions, want 3", len(r.Reduced))
	}
	for row := 0; row < rows; row++ {
		p := full[row*T : (row+1)*T]
		// top-3 by a sort of the row
		idx := make([]int, T)
		for i := range idx {
			idx[i] = i
		}
		slices.SortStableFunc(idx, func(a, b int) int {
			if p[a] > p[b] {
				return -1
			} else if p[a] < p[b] {
				return 1
			}
			return 0
		})
		for k := 0; k < 3; k++ {
			if int(r.Reduced[0].Index[row*3+k]) != idx[k] || r.Reduced[0].Values[row*3+k] != p[idx[k]] {
				t.Fatalf("row %d top-%d: got %d (%g), want %d (%g)", row, k, r.Reduced[0].Index[row*3+k], r.Reduced[0].Values[row*3+k], idx[k], p[idx[k]])
			}
		}
		if d := math.Abs(float64(r.Reduced[1].Values[row]) - float64(p[0]+p[1])); d > 1e-6 {
			t.Fatalf("row %d span mass off by %g", row, d)
		}
		h := 0.0
		for _, v := range p {
			if v > 0 {
				h -= float64(v) * math.Log(float64(v))
			}
		}
		if d := math.Abs(float64(r.Reduced[2].Values[row]) - h); d > 1e-5 {
			t.Fatalf("row %d entropy off by %g", row, d)
		}
	}
}

func TestBadInput(t *testing.T) {
	m := newTestModel("gpt2")
	ctx := context.Background()
	cases := map[string][][]int{
		"empty batch":     {},
		"empty prompt":    {{}},
		"id out of range": {{1, 2, 500}},
		"negative id":     {{-1}},
		"longer than ctx": {make([]int, 65)},
	}
	for name, batch := range cases {
		if _, err := m.Forward(ctx, batch, Options{}); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := m.Generate(ctx, make([]int, 60), GenerateOptions{MaxTokens: 10}); err == nil {
		t.Errorf("generation past the context: no error")
	}
	if _, err := m.Forward(ctx, [][]int{{1}}, Options{Hooks: &Hooks{Cache: []string{"[x"}}}); err == nil {
		t.Errorf("bad glob: no error")
	}
}

func TestParam(t *testing.T) {
	m := newTestModel("llama")
	c := m.Config
	for name, shape := range map[string][]int{
		"embed.W_E": {c.Vocab, c.DModel}, "blocks.2.attn.W_Q": {c.Heads * c.HeadDim, c.DModel},
		"blocks.0.attn.W_K": {c.KVHeads * c.HeadDim, c.DModel}, "blocks.1.mlp.W_out": {c.DModel, c.DMLP},
	} {
		p, err := m.Param(name)
		if err != nil || !slices.Equal(p.Shape, shape) || len(p.Data) != shape[0]*shape[1] {
			t.Errorf("%s: %v %v, want shape %v", name, p.Shape, err, shape)
		}
	}
	for _, bad := range []string{"blocks.9.attn.W_Q", "blocks.0.attn.b_Q", "nope"} {
		if _, err := m.Param(bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

// The logit lens of the last layer's residual stream is the model's logits.
func TestUnembedLastLayerGivesLogits(t *testing.T) {
	for name := range testConfigs() {
		m := newTestModel(name)
		last := hookName(m.Config.Layers-1, "hook_resid_post")
		r := forward(t, m, [][]int{prompt}, &Hooks{Cache: []string{last}})
		got, err := m.Unembed(r.Cache[last].Data, len(prompt))
		if err != nil {
			t.Fatal(err)
		}
		if d := maxDiff(got, r.Logits); d > 1e-5 {
			t.Errorf("%s: logit lens of %s differs from the logits by %g", name, last, d)
		}
		if _, err := m.Unembed(r.Cache[last].Data[1:], len(prompt)); err == nil {
			t.Errorf("%s: a ragged residual was accepted", name)
		}
	}
}

// An edit's nested hook point is cached and edited like any activation, and
// the edit that makes it does not apply to it.
func TestNestedHookPoint(t *testing.T) {
	m := newTestModel("llama")
	const site, nested = "blocks.1.hook_mlp_out", "blocks.1.hook_mlp_out.hook_derived"
	var derived []float32
	// The edit derives the first column, lets the hooks see (and replace)
	// it, then writes what comes back into its activation's first column.
	e := Edit{Hook: "blocks.1.hook_mlp_*", FnPoint: func(b compute.Backend, name string, x compute.Tensor, shape []int, point PointFunc) (compute.Tensor, error) {
		if name != site {
			return x, nil
		}
		col, err := point(nested, b.Columns(x, 0, 1), []int{shape[0], shape[1], 1})
		if err != nil {
			return nil, err
		}
		derived = b.ToHost(col)
		host := b.ToHost(x)
		for r, v := range derived {
			host[r*shape[2]] = v
		}
		return b.FromHost(host, x.Shape()...), nil
	}}
	plain := forward(t, m, [][]int{prompt}, &Hooks{Cache: []string{site}})
	r := forward(t, m, [][]int{prompt}, &Hooks{Cache: []string{"blocks.1.*"}, Edit: []Edit{e}})
	if d := maxDiff(plain.Logits, r.Logits); d != 0 {
		t.Fatalf("an edit writing back its own column changed the logits by %g", d)
	}
	got := r.Cache[nested]
	if got == nil || !slices.Equal(got.Shape, []int{1, len(prompt), 1}) {
		t.Fatalf("nested point not cached with shape [1 T 1]: %+v", got)
	}
	for i, v := range got.Data {
		if v != plain.Cache[site].Data[i*m.Config.DModel] {
			t.Fatalf("nested value %d = %g, want the site's first column", i, v)
		}
	}
	// A second edit on the nested point changes what the first writes back.
	zero := Edit{Hook: nested, Fn: func(b compute.Backend, _ string, x compute.Tensor, _ []int) (compute.Tensor, error) {
		return b.Zeros(x.Shape()...), nil
	}}
	r = forward(t, m, [][]int{prompt}, &Hooks{Cache: []string{site}, Edit: []Edit{e, zero}})
	for i := range len(prompt) {
		if v := r.Cache[site].Data[i*m.Config.DModel]; v != 0 {
			t.Fatalf("position %d: zeroed nested point gave %g", i, v)
		}
	}
	if d := maxDiff(plain.Logits, r.Logits); d == 0 {
		t.Fatalf("zeroing the nested point left the logits unchanged")
	}
}
