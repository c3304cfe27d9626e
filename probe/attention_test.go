package probe

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/loupe-dev/loupe/probe/compute"
)

// longTestModel is the llama test model with room for prompts longer than
// the fused attention's key block.
func longTestModel(t *testing.T) *Model {
	t.Helper()
	c := testConfigs()["llama"]
	c.MaxPos, c.Layers = 1024, 2
	m, err := New(c, randomTensors(c, 3), compute.NewCPU())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// testReductions uses every reduction feature: several K, row choices,
// absolute and relative spans, key sets, sums over rows.
func testReductions() []Reduction {
	pat := "blocks.*.attn.hook_pattern"
	prevAndBOS := func(b, q int) []int { return []int{q - 1, 0, q} }
	return []Reduction{
		{Hook: pat, Op: TopK, K: 3},
		{Hook: pat, Op: TopK, K: 1, Rows: []int{-1}},
		{Hook: pat, Op: SpanMass, Lo: 0, Hi: 4},
		{Hook: pat, Op: SpanMass, Lo: -15, Hi: 1, LoRelative: true, HiRelative: true, SumRows: true},
		{Hook: pat, Op: SpanMass, Lo: 1, Hi: 0, HiRelative: true, Rows: []int{-1, 0, 1, 200}},
		{Hook: pat, Op: SpanMass, Lo: 300, Hi: 0, Rows: []int{-1, 7, 400}},
		{Hook: pat, Op: KeyMass, Keys: prevAndBOS, Rows: []int{3, 299, -2}},
		{Hook: pat, Op: KeyMass, Keys: prevAndBOS, SumRows: true},
		{Hook: pat, Op: Entropy},
		{Hook: pat, Op: Entropy, Rows: []int{-1, 2}, SumRows: true},
	}
}

// wantReduced computes one Reduction from a cached pattern [B, H, T, T]
// (a run without KV cache: query q sits at key q), loop by loop.
func wantReduced(r Reduction, pat *Activation) (idx []int32, val []float64, shape []int) {
	B, H, T := pat.Shape[0], pat.Shape[1], pat.Shape[2]
	rows := []int{}
	if r.Rows == nil {
		for q := 0; q < T; q++ {
			rows = append(rows, q)
		}
	} else {
		for _, q := range r.Rows {
			if q < 0 {
				q += T
			}
			rows = append(rows, q)
		}
		slices.Sort(rows)
		rows = slices.Compact(rows)
	}
	for b := 0; b < B; b++ {
		for h := 0; h < H; h++ {
			sum := 0.0
			for _, q := range rows {
				row := pat.Data[((b*H+h)*T+q)*T:][:T]
				v := 0.0
				switch r.Op {
				case TopK:
					order := make([]int, T)
					for i := range order {
						order[i] = i
					}
					slices.SortStableFunc(order, func(a, b int) int {
						switch {
						case row[a] > row[b]:
							return -1
						case row[a] < row[b]:
							return 1
						}
						return 0
					})
					for _, j := range order[:r.K] {
						idx = append(idx, int32(j))
						val = append(val, float64(row[j]))
					}
					continue
				case SpanMass:
					lo, hi := r.Lo, r.Hi
					if r.LoRelative {
						lo += q
					}
					if r.HiRelative {
						hi += q
					} else if hi <= 0 {
						hi = T
					}
					for j := max(lo, 0); j < min(hi, T); j++ {
						v += float64(row[j])
					}
				case KeyMass:
					for _, j := range r.Keys(b, q) {
						if j >= 0 && j < T {
							v += float64(row[j])
						}
					}
				case Entropy:
					for _, w := range row {
						if w > 0 {
							v -= float64(w) * math.Log(float64(w))
						}
					}
				}
				if r.SumRows {
					sum += v
				} else {
					val = append(val, v)
				}
			}
			if r.SumRows {
				val = append(val, sum)
			}
		}
	}
	shape = []int{B, H, len(rows)}
	if r.Op == TopK {
		shape = append(shape, r.K)
	} else if r.SumRows {
		shape = shape[:2]
	}
	return idx, val, shape
}

// TestFusedReductionsEqualPattern: every reduction computed by the fused
// attention (no pattern built) and by the materialised path (an edit on the
// pattern forces it) equals the same quantity computed from the cached
// pattern, on a padded batch of prompts longer than one key block.
func TestFusedReductionsEqualPattern(t *testing.T) {
	m := longTestModel(t)
	rng := rand.New(rand.NewPCG(9, 9))
	batch := [][]int{make([]int, 520), make([]int, 490)}
	for _, s := range batch {
		for i := range s {
			s[i] = rng.IntN(m.Config.Vocab)
		}
	}
	pat := "blocks.*.attn.hook_pattern"
	cached := forward(t, m, batch, &Hooks{Cache: []string{pat}})
	identity := Edit{Hook: pat, Fn: func(_ compute.Backend, _ string, t compute.Tensor, _ []int) (compute.Tensor, error) { return t, nil }}
	reds := testReductions()
	for _, how := range []string{"fused", "materialised"} {
		hooks := &Hooks{Reduce: reds}
		if how == "materialised" {
			hooks.Edit = []Edit{identity}
		}
		r := forward(t, m, batch, hooks)
		if d := maxDiff(r.Logits, cached.Logits); how == "fused" && d != 0 {
			t.Fatalf("reductions changed the logits by %g", d)
		}
		if len(r.Reduced) != len(reds)*m.Config.Layers {
			t.Fatalf("%s: %d results for %d reductions × %d layers", how, len(r.Reduced), len(reds), m.Config.Layers)
		}
		for n, got := range r.Reduced {
			red := reds[n%len(reds)]
			l := n / len(reds)
			p := cached.Cache[hookName(l, "attn.hook_pattern")]
			if got.Hook != p.Name || got.Op != red.Op {
				t.Fatalf("%s: result %d is %s %s, want %s %s", how, n, got.Hook, got.Op, p.Name, red.Op)
			}
			wIdx, wVal, wShape := wantReduced(red, p)
			if !slices.Equal(got.Shape, wShape) || len(got.Values) != len(wVal) {
				t.Fatalf("%s: %s %s: shape %v (%d values), want %v (%d)", how, got.Hook, got.Op, got.Shape, len(got.Values), wShape, len(wVal))
			}
			for i, w := range wVal {
				if d := math.Abs(float64(got.Values[i]) - w); d > 1e-5*max(1, math.Abs(w)) {
					t.Fatalf("%s: %s reduction %d (%s): value %d is %g, from the pattern %g", how, got.Hook, n%len(reds), got.Op, i, got.Values[i], w)
				}
				if red.Op == TopK && got.Index[i] != wIdx[i] && math.Abs(float64(got.Values[i])-w) > 1e-6 {
					t.Fatalf("%s: %s top-k %d: key %d, from the pattern %d", how, got.Hook, i, got.Index[i], wIdx[i])
				}
			}
		}
	}
}

// TestGenerateReportsReductions: each decoding step's reductions reach
// OnReduced, and the last query's top-1 of step 0 equals that of a full
// forward over the prompt.
func TestGenerateReportsReductions(t *testing.T) {
	m := longTestModel(t)
	pat := "blocks.*.attn.hook_pattern"
	hooks := &Hooks{Reduce: []Reduction{{Hook: pat, Op: TopK, K: 1, Rows: []int{-1}}, {Hook: pat, Op: SpanMass, Lo: 0, Hi: len(prompt), Rows: []int{-1}}}}
	var steps [][]*Reduced
	_, err := m.Generate(context.Background(), prompt, GenerateOptions{MaxTokens: 4, Hooks: hooks,
		OnReduced: func(step int, r []*Reduced) {
			if step != len(steps) {
				t.Errorf("step %d reported as %d", len(steps), step)
			}
			steps = append(steps, r)
		}})
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 4 {
		t.Fatalf("%d steps reported, want 4", len(steps))
	}
	full := forward(t, m, [][]int{prompt}, &Hooks{Reduce: hooks.Reduce[:1]})
	for l := 0; l < m.Config.Layers; l++ {
		if !slices.Equal(steps[0][2*l].Index, full.Reduced[l].Index) {
			t.Fatalf("layer %d: step 0 top-1 %v, full forward %v", l, steps[0][2*l].Index, full.Reduced[l].Index)
		}
		for s, red := range steps {
			mass := steps[s][2*l+1]
			if red[2*l].KeysLen != len(prompt)+s || !slices.Equal(mass.Shape, []int{1, m.Config.Heads, 1}) {
				t.Fatalf("step %d layer %d: %d keys, span shape %v", s, l, red[2*l].KeysLen, mass.Shape)
			}
			for _, v := range mass.Values {
				if v <= 0 || v > 1+1e-6 || s == 0 && math.Abs(float64(v)-1) > 1e-6 {
					t.Fatalf("step %d layer %d: prompt mass %g", s, l, v)
				}
			}
		}
	}
}

// TestChunkedPrefillEqualsOnePass: a padded batch run in pieces of 100
// positions through the KV cache gives the logits, cached activations and
// reductions of one pass (rows counted in the whole prompt, per-head sums
// added up), and refuses to cache patterns.
func TestChunkedPrefillEqualsOnePass(t *testing.T) {
	m := longTestModel(t)
	rng := rand.New(rand.NewPCG(5, 6))
	batch := [][]int{make([]int, 520), make([]int, 430)}
	for _, s := range batch {
		for i := range s {
			s[i] = rng.IntN(m.Config.Vocab)
		}
	}
	hooks := &Hooks{Cache: []string{"blocks.*.hook_resid_post", "blocks.0.attn.hook_z", "hook_embed"}, Reduce: testReductions()}
	ctx := context.Background()
	one, err := m.Forward(ctx, batch, Options{Hooks: hooks, Logits: LogitsAll})
	if err != nil {
		t.Fatal(err)
	}
	for _, chunk := range []int{100, 256, 37} {
		got, err := m.Forward(ctx, batch, Options{Hooks: hooks, Logits: LogitsAll, Chunk: chunk})
		if err != nil {
			t.Fatal(err)
		}
		for b := range batch {
			for p := range batch[b] {
				if d := maxDiff(got.LogitsAt(b, p), one.LogitsAt(b, p)); d > 1e-4 {
					t.Fatalf("chunk %d: sequence %d position %d: logits differ by %g", chunk, b, p, d)
				}
			}
		}
		for name, a := range one.Cache {
			g := got.Cache[name]
			if g == nil || !slices.Equal(g.Shape, a.Shape) {
				t.Fatalf("chunk %d: %s cached as %v, one pass %v", chunk, name, g, a.Shape)
			}
			// Padding positions hold arbitrary values in both; compare all.
			if d := maxDiff(g.Data, a.Data); d > 1e-4 {
				t.Fatalf("chunk %d: %s differs by %g", chunk, name, d)
			}
		}
		if len(got.Reduced) != len(one.Reduced) {
			t.Fatalf("chunk %d: %d reductions, one pass %d", chunk, len(got.Reduced), len(one.Reduced))
		}
		for i, w := range one.Reduced {
			g := got.Reduced[i]
			if g.Hook != w.Hook || g.Op != w.Op || !slices.Equal(g.Shape, w.Shape) || !slices.Equal(g.Rows, w.Rows) {
				t.Fatalf("chunk %d: reduction %d is %s %s %v rows %v, one pass %s %s %v rows %v", chunk, i, g.Hook, g.Op, g.Shape, g.Rows, w.Hook, w.Op, w.Shape, w.Rows)
			}
			for j, v := range w.Values {
				if d := math.Abs(float64(g.Values[j] - v)); d > 2e-5*max(1, math.Abs(float64(v))) {
					t.Fatalf("chunk %d: %s %s value %d: %g, one pass %g", chunk, g.Hook, g.Op, j, g.Values[j], v)
				}
				if w.Index != nil && g.Index[j] != w.Index[j] && math.Abs(float64(g.Values[j]-v)) > 1e-6 {
					t.Fatalf("chunk %d: %s top-k %d: key %d, one pass %d", chunk, g.Hook, j, g.Index[j], w.Index[j])
				}
			}
		}
	}
	_, err = m.Forward(ctx, batch, Options{Hooks: &Hooks{Cache: []string{"blocks.1.attn.hook_pattern"}}, Chunk: 100})
	if err == nil || !strings.Contains(err.Error(), "chunked prefill") {
		t.Fatalf("caching a pattern in a chunked run gave %v", err)
	}
	// Generation with a chunked prefill: the same tokens and the same
	// reductions of the prompt.
	prompt := batch[0][:300]
	red := &Hooks{Reduce: []Reduction{{Hook: "blocks.*.attn.hook_pattern", Op: TopK, K: 2, Rows: []int{-1}}}}
	run := func(chunk int) ([]int, []*Reduced) {
		var first []*Reduced
		toks, err := m.Generate(ctx, prompt, GenerateOptions{MaxTokens: 5, Hooks: red, PrefillChunk: chunk,
			OnReduced: func(step int, r []*Reduced) {
				if step == 0 {
					first = r
				}
			}})
		if err != nil {
			t.Fatal(err)
		}
		return toks, first
	}
	wantTok, wantRed := run(0)
	gotTok, gotRed := run(64)
	if !slices.Equal(gotTok, wantTok) || len(gotRed) != len(wantRed) {
		t.Fatalf("chunked prefill generated %v (%d reductions), one pass %v (%d)", gotTok, len(gotRed), wantTok, len(wantRed))
	}
	for i := range wantRed {
		if !slices.Equal(gotRed[i].Index, wantRed[i].Index) {
			t.Fatalf("layer %d: top keys %v, one pass %v", i, gotRed[i].Index, wantRed[i].Index)
		}
	}
}

// TestMemoryRefusal: a pass whose full patterns would not fit is refused
// before it runs, naming the figures and the longest prompt that fits;
// that prompt runs, and the same reductions through the fused attention
// fit at the full length.
func TestMemoryRefusal(t *testing.T) {
	m := longTestModel(t)
	ids := make([]int, 900)
	for i := range ids {
		ids[i] = i % m.Config.Vocab
	}
	ctx := context.Background()
	cache := &Hooks{Cache: []string{"blocks.*.attn.hook_pattern"}}
	const limit = 20 << 20
	_, err := m.Forward(ctx, [][]int{ids}, Options{Hooks: cache, MemoryLimit: limit})
	if err == nil || !strings.Contains(err.Error(), "900 tokens") || !strings.Contains(err.Error(), "would fit") {
		t.Fatalf("caching every pattern of 900 tokens in 20 MiB gave %v", err)
	}
	var fit int
	if _, err := fmt.Sscanf(err.Error()[strings.Index(err.Error(), "up to ")+6:], "%d", &fit); err != nil || fit <= 0 || fit >= 900 {
		t.Fatalf("no usable length in %q", err.Error())
	}
	if _, err := m.Forward(ctx, [][]int{ids[:fit]}, Options{Hooks: cache, MemoryLimit: limit}); err != nil {
		t.Fatalf("the %d tokens said to fit: %v", fit, err)
	}
	if _, err := m.Forward(ctx, [][]int{ids[:fit+1]}, Options{Hooks: cache, MemoryLimit: limit}); err == nil {
		t.Fatalf("%d tokens fit too, the error said %d", fit+1, fit)
	}
	red := &Hooks{Reduce: []Reduction{{Hook: "blocks.*.attn.hook_pattern", Op: TopK, K: 1}}}
	if _, err := m.Forward(ctx, [][]int{ids}, Options{Hooks: red, MemoryLimit: limit}); err != nil {
		t.Fatalf("fused reductions over 900 tokens in 20 MiB: %v", err)
	}
	if _, err := m.Generate(ctx, ids, GenerateOptions{MaxTokens: 2, Hooks: red, MemoryLimit: 1 << 10}); err == nil || !strings.Contains(err.Error(), "needs about") {
		t.Fatalf("generating in 1 KiB gave %v", err)
	}
}

// TestSmolLM2FusedReductions: on SmolLM2 over LOUPE_REDUCE_TOKENS random
// tokens (default 1024 in CI; the figure is 4096), every layer's
// reductions from the fused attention equal those from the materialised
// pattern of the same q and k (the scores -> softmax kernels of the
// unfused path, reduced on the host as an edited pattern is): top-k keys
// except near-ties, weights and masses to 1e-5, entropies to 1e-5
// relative. Both also match a float64 reference of the same reductions on
// a sample of rows, within the same tolerances.
//
// Both sides read the q and k of one run on purpose: a second, unfused
// run is another fp32 trajectory (its z comes from the materialised
// pattern, not the flash loop), and at 4096 tokens its q and k at layers
// 10-11 differ from the fused run's by 3e-5, enough to move weights by
// 1.2e-5 while either path is within 1.3e-6 of float64 on its own inputs
// (docs/long-context.md).
func TestSmolLM2FusedReductions(t *testing.T) {
	m := loadSmolLM2(t)
	T := 1024
	if s := os.Getenv("LOUPE_REDUCE_TOKENS"); s != "" {
		var err error
		if T, err = strconv.Atoi(s); err != nil || T < 2 {
			t.Fatalf("LOUPE_REDUCE_TOKENS=%q is not a length", s)
		}
	}
	rng := rand.New(rand.NewPCG(11, 12))
	ids := make([]int, T)
	for i := range ids {
		ids[i] = rng.IntN(m.Config.Vocab)
	}
	pat := "blocks.*.attn.hook_pattern"
	reds := []Reduction{
		{Hook: pat, Op: TopK, K: 4},
		{Hook: pat, Op: SpanMass, Lo: 0, Hi: 4},
		{Hook: pat, Op: SpanMass, Lo: -63, Hi: 1, LoRelative: true, HiRelative: true},
		{Hook: pat, Op: KeyMass, Keys: func(_, q int) []int { return []int{q - 1} }},
		{Hook: pat, Op: Entropy},
	}
	hooks := &Hooks{Reduce: reds, Cache: []string{"blocks.*.attn.hook_rot_q", "blocks.*.attn.hook_rot_k"}}
	fused, err := m.Forward(context.Background(), [][]int{ids}, Options{Hooks: hooks, Logits: LogitsLast})
	if err != nil {
		t.Fatal(err)
	}
	c, b := m.Config, m.backend
	H, Hkv, Dh := c.Heads, c.KVHeads, c.HeadDim
	shape := compute.AttnShape{B: 1, Tq: T, Tk: T, Tcap: T, H: H, Hkv: Hkv, Dh: Dh}
	mask := compute.AttnMask{Causal: true}
	if len(fused.Reduced) != len(reds)*c.Layers {
		t.Fatalf("%d fused reductions for %d × %d layers", len(fused.Reduced), len(reds), c.Layers)
	}
	// The float64 reference covers every 16th row and the last 8.
	var sample []int
	for i := 0; i < T; i++ {
		if i%16 == 5 || i >= T-8 {
			sample = append(sample, i)
		}
	}
	worst := map[string]float64{}
	ties, bad := 0, 0
	check := func(what string, l, j int, got, want float64, op ReduceOp) {
		d := math.Abs(got - want)
		key := what + " " + op.String()
		worst[key] = max(worst[key], d)
		tol := 1e-5
		if op == Entropy {
			tol *= max(1, math.Abs(want))
		}
		if d > tol {
			t.Errorf("layer %d %s %s value %d: %g, want %g", l, what, op, j, got, want)
			if bad++; bad > 5 {
				t.FailNow()
			}
		}
	}
	for l := 0; l < c.Layers; l++ {
		qd := fused.Cache[hookName(l, "attn.hook_rot_q")].Data
		kd := fused.Cache[hookName(l, "attn.hook_rot_k")].Data
		name := hookName(l, "attn.hook_pattern")
		// The unfused path's kernels on this run's q and k.
		hs, err := newHookSet(&Hooks{Reduce: reds})
		if err != nil {
			t.Fatal(err)
		}
		scope := compute.Mark(b)
		q, k := b.FromHost(qd, T, H*Dh), b.FromHost(kd, T, Hkv*Dh)
		pattern := b.SoftmaxRows(b.AttentionScores(q, k, shape, c.AttnScale(), mask))
		if err := hs.reducePatternOnHost(b, name, pattern, []int{1, H, T, T}, mask); err != nil {
			t.Fatal(err)
		}
		if err := compute.Release(b, scope); err != nil {
			t.Fatal(err)
		}
		mat := hs.reduce
		fu := fused.Reduced[l*len(reds) : (l+1)*len(reds)]
		for ri, u := range mat {
			f := fu[ri]
			if f.Hook != name || f.Op != u.Op || len(f.Values) != len(u.Values) {
				t.Fatalf("layer %d reduction %d: fused %s %s (%d values), materialised %s %s (%d)", l, ri, f.Hook, f.Op, len(f.Values), u.Hook, u.Op, len(u.Values))
			}
			for j, v := range u.Values {
				check("fused-materialised", l, j, float64(f.Values[j]), float64(v), u.Op)
				if u.Index != nil && f.Index[j] != u.Index[j] {
					if math.Abs(float64(f.Values[j]-v)) > 1e-6 {
						t.Fatalf("layer %d top-k %d: key %d (%g), pattern %d (%g)", l, j, f.Index[j], f.Values[j], u.Index[j], v)
					}
					ties++
				}
			}
		}
		// float64 reference rows.
		for h := 0; h < H; h++ {
			for _, i := range sample {
				want := reduceRow64(qd, kd, i, h, H, Hkv, Dh, float64(c.AttnScale()))
				for _, side := range []struct {
					what string
					rs   []*Reduced
				}{{"fused", fu}, {"materialised", mat}} {
					r := side.rs
					for x := 0; x < 4; x++ {
						at := (h*T+i)*4 + x
						check(side.what+"-float64", l, at, float64(r[0].Values[at]), want.top[x], TopK)
						if int(r[0].Index[at]) != want.idx[x] && math.Abs(want.top[x]-want.p[r[0].Index[at]]) > 1e-6 {
							t.Fatalf("layer %d head %d row %d: %s top-%d key %d, float64 %d (%g vs %g)", l, h, i, side.what, x, r[0].Index[at], want.idx[x], want.p[r[0].Index[at]], want.top[x])
						}
					}
					for ri, w := range []float64{want.sink, want.recent, want.prev, want.entropy} {
						check(side.what+"-float64", l, h*T+i, float64(r[ri+1].Values[h*T+i]), w, r[ri+1].Op)
					}
				}
			}
		}
	}
	keys := make([]string, 0, len(worst))
	for k := range worst {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		t.Logf("SmolLM2 T=%d, all layers: max |%s| %.2g", T, k, worst[k])
	}
	t.Logf("%d top-k keys differ at near-ties between fused and materialised", ties)
}

// row64 is one (head, query row)'s reductions in float64: the four
// largest weights and their keys, the mass on keys 0-3, on the 64 most
// recent keys, on the previous key, and the entropy; p is the row.
type row64 struct {
	p                           []float64
	top                         [4]float64
	idx                         [4]int
	sink, recent, prev, entropy float64
}

// reduceRow64 computes row64 for causal query i of head h from fp32 q, k
// ([T, H*Dh] and [T, Hkv*Dh]) with float64 scores, log-sum-exp and sums.
func reduceRow64(q, k []float32, i, h, H, Hkv, Dh int, scale float64) row64 {
	kh := h / (H / Hkv)
	qi := q[i*H*Dh+h*Dh:][:Dh]
	s := make([]float64, i+1)
	mx := math.Inf(-1)
	for j := range s {
		kj := k[j*Hkv*Dh+kh*Dh:][:Dh]
		var d float64
		for x, v := range qi {
			d += float64(v) * float64(kj[x])
		}
		s[j] = d * scale
		mx = math.Max(mx, s[j])
	}
	var sum float64
	for _, x := range s {
		sum += math.Exp(x - mx)
	}
	lse := mx + math.Log(sum)
	var r row64
	r.p = make([]float64, len(s))
	for j, x := range s {
		p := math.Exp(x - lse)
		r.p[j] = p
		if j < 4 {
			r.sink += p
		}
		if j >= i-63 {
			r.recent += p
		}
		if j == i-1 {
			r.prev = p
		}
		r.entropy -= p * (x - lse)
	}
	order := make([]int, len(s))
	for j := range order {
		order[j] = j
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case r.p[a] > r.p[b]:
			return -1
		case r.p[a] < r.p[b]:
			return 1
		}
		return 0
	})
	for x := range r.top {
		if x < len(order) {
			r.idx[x], r.top[x] = order[x], r.p[order[x]]
		} else {
			// fewer keys than K: the contract completes with the lowest
			// unlisted keys at weight 0
			r.idx[x] = x
		}
	}
	return r
}
