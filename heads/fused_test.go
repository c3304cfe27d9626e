package heads

import (
	"context"
	"math"
	"strconv"
	"testing"

	"github.com/loupe-dev/loupe/probe"
)

// The head scores read attention through the fused attention's reductions.
// These tests compare them with the definitions applied to full patterns:
// DetectionScore and SinkMass on the cached T×T patterns, and, for the
// scores measured while generating, the same scorer run through the
// scores → softmax → mix path (materialise).

// cachedPatterns runs one forward caching every pattern.
func cachedPatterns(t testing.TB, m *probe.Model, seqs [][]int) *probe.Result {
	t.Helper()
	r, err := m.Forward(context.Background(), seqs, probe.Options{Hooks: &probe.Hooks{Cache: []string{patternHook}}, Logits: probe.LogitsNone})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func patternOf(r *probe.Result, l, b, h int) []float32 {
	a := r.Cache["blocks."+strconv.Itoa(l)+".attn.hook_pattern"]
	T := a.Shape[2]
	H := a.Shape[1]
	return a.Data[(b*H+h)*T*T : (b*H+h+1)*T*T]
}

// detectFromPatterns is Detect computed the way TransformerLens does: the
// detection patterns against each head's full pattern.
func detectFromPatterns(t testing.TB, m *probe.Model, o DetectorOptions) (prev, dup, ind, dupHalf, indHalf Map) {
	cfg := m.Config
	ro := o.RepeatOptions.withDefaults(cfg)
	seqs, pre, err := RepeatedTokens(cfg, ro)
	if err != nil {
		t.Fatal(err)
	}
	if o.Measure == "" {
		o.Measure = Mul
	}
	T, L, H := len(seqs[0]), cfg.Layers, cfg.Heads
	r := cachedPatterns(t, m, seqs)
	maps := []Map{NewMap(L, H), NewMap(L, H), NewMap(L, H), NewMap(L, H), NewMap(L, H)}
	nb := float64(len(seqs))
	for b, s := range seqs {
		pats := [3][]float32{PreviousTokenPattern(T), DuplicateTokenPattern(s), InductionPattern(s)}
		for l := 0; l < L; l++ {
			for h := 0; h < H; h++ {
				a := patternOf(r, l, b, h)
				for i := range pats {
					maps[i].Add(l, h, DetectionScore(a, pats[i], T, o.ExcludeBOS, o.ExcludeCurrent, o.Measure)/nb)
				}
				var sd, si float64
				for q := pre + ro.Len; q < T; q++ {
					for k := 0; k <= q; k++ {
						sd += float64(a[q*T+k]) * float64(pats[1][q*T+k])
						si += float64(a[q*T+k]) * float64(pats[2][q*T+k])
					}
				}
				maps[3].Add(l, h, sd/float64(ro.Len)/nb)
				maps[4].Add(l, h, si/float64(ro.Len)/nb)
			}
		}
	}
	return maps[0], maps[1], maps[2], maps[3], maps[4]
}

func sinkFromPatterns(t testing.TB, m *probe.Model, seqs [][]int, o SinkOptions) (sink, recent, stream Map) {
	o = o.withDefaults()
	L, H, T := m.Config.Layers, m.Config.Heads, len(seqs[0])
	r := cachedPatterns(t, m, seqs)
	sink, recent, stream = NewMap(L, H), NewMap(L, H), NewMap(L, H)
	nb := float64(len(seqs))
	for b := range seqs {
		for l := 0; l < L; l++ {
			for h := 0; h < H; h++ {
				s, rc, st := SinkMass(patternOf(r, l, b, h), T, o.Sink, o.Window)
				sink.Add(l, h, s/nb)
				recent.Add(l, h, rc/nb)
				stream.Add(l, h, st/nb)
			}
		}
	}
	return sink, recent, stream
}

func sameMap(t *testing.T, what string, got, want Map, tol float64) {
	t.Helper()
	worst := 0.0
	for i, w := range want.Values {
		g := got.Values[i]
		if math.IsNaN(w) != math.IsNaN(g) {
			t.Fatalf("%s: head %d is %g, from the patterns %g", what, i, g, w)
		}
		if d := math.Abs(g - w); d > worst {
			worst = d
		}
		if d := math.Abs(g - w); d > tol {
			t.Fatalf("%s: head %d.%d is %.8f, from the patterns %.8f", what, i/want.Heads, i%want.Heads, g, w)
		}
	}
	t.Logf("%s: max |fused − pattern| %.2g over %d heads", what, worst, len(want.Values))
}

func checkFusedDetector(t *testing.T, m *probe.Model, ro RepeatOptions, variants int) {
	for _, o := range []DetectorOptions{
		{RepeatOptions: ro},
		{RepeatOptions: ro, ExcludeBOS: true, ExcludeCurrent: true, Measure: Abs},
		{RepeatOptions: ro, ExcludeBOS: true},
		{RepeatOptions: ro, ExcludeCurrent: true},
	}[:variants] {
		scores, err := Detect(context.Background(), m, o)
		if err != nil {
			t.Fatal(err)
		}
		prev, dup, ind, dh, ih := detectFromPatterns(t, m, o)
		tag := string(o.Measure) + map[bool]string{true: " bos", false: ""}[o.ExcludeBOS] + map[bool]string{true: " cur", false: ""}[o.ExcludeCurrent]
		sameMap(t, "previous-token "+tag, scores[0].Values, prev, 1e-5)
		sameMap(t, "duplicate-token "+tag, scores[1].Values, dup, 1e-5)
		sameMap(t, "induction "+tag, scores[2].Values, ind, 1e-5)
		sameMap(t, "duplicate second half "+tag, scores[1].Details["second_half"], dh, 1e-5)
		sameMap(t, "induction second half "+tag, scores[2].Details["second_half"], ih, 1e-5)
	}
}

func checkFusedSink(t *testing.T, m *probe.Model, seqs [][]int, o SinkOptions) {
	scores, err := SinkScores(context.Background(), m, seqs, o)
	if err != nil {
		t.Fatal(err)
	}
	sink, recent, stream := sinkFromPatterns(t, m, seqs, o)
	sameMap(t, "sink", scores[0].Values, sink, 1e-5)
	sameMap(t, "streaming", scores[1].Values, stream, 1e-5)
	sameMap(t, "recent", scores[1].Details["recent"], recent, 1e-5)
}

func TestFusedScoresPlanted(t *testing.T) {
	m := inductionPlant(t, 48)
	checkFusedDetector(t, m, RepeatOptions{Len: 30, Batch: 3, Seed: 1, VocabLo: 1}, 4)
	seqs, _, err := RepeatedTokens(m.Config, RepeatOptions{Len: 50, Batch: 2, Seed: 3, VocabLo: 1, Prefix: []int{}})
	if err != nil {
		t.Fatal(err)
	}
	checkFusedSink(t, m, seqs, SinkOptions{Sink: 4, Window: 8})

	cases := plantedNIAH([]int{40, 120}, []float64{0, 1}, 1)
	fused, _, err := Retrieval(context.Background(), m, cases, RetrievalOptions{MaxTokens: 8})
	if err != nil {
		t.Fatal(err)
	}
	unfused, _, err := Retrieval(context.Background(), m, cases, RetrievalOptions{MaxTokens: 8, materialise: true})
	if err != nil {
		t.Fatal(err)
	}
	sameMap(t, "retrieval", fused.Values, unfused.Values, 0)

	prompts := seqs
	lf, err := Lookback(context.Background(), m, prompts, LookbackOptions{MaxTokens: 8})
	if err != nil {
		t.Fatal(err)
	}
	lu, err := Lookback(context.Background(), m, prompts, LookbackOptions{MaxTokens: 8, materialise: true})
	if err != nil {
		t.Fatal(err)
	}
	sameMap(t, "lookback", lf.Values, lu.Values, 1e-5)
}

// TestSmolLM2FusedScores: SmolLM2's detector, sink, streaming, retrieval
// and lookback scores are the same through the fused attention as from full
// patterns.
func TestSmolLM2FusedScores(t *testing.T) {
	m := smolLM2(t)
	checkFusedDetector(t, m.Model, RepeatOptions{Len: 40, Batch: 2, Seed: 1}, 2)
	text, err := m.Tokenizer.Encode(GenerateHaystack(5, 220), false)
	if err != nil {
		t.Fatal(err)
	}
	checkFusedSink(t, m.Model, [][]int{append([]int{m.Config.BOS}, text...)}, SinkOptions{Sink: 4, Window: 64})

	cases, err := NIAHCases(m.Tokenizer, NIAHOptions{Lengths: []int{300}, Depths: []float64{0.5}, Prefix: []int{m.Config.BOS}})
	if err != nil {
		t.Fatal(err)
	}
	cases = cases[:1]
	ro := RetrievalOptions{Stop: []int{198, m.Config.EOS}, MinRecall: -1}
	fused, _, err := Retrieval(context.Background(), m.Model, cases, ro)
	if err != nil {
		t.Fatal(err)
	}
	ro.materialise = true
	unfused, _, err := Retrieval(context.Background(), m.Model, cases, ro)
	if err != nil {
		t.Fatal(err)
	}
	sameMap(t, "retrieval", fused.Values, unfused.Values, 0)
	lf, err := Lookback(context.Background(), m.Model, [][]int{cases[0].Prompt}, LookbackOptions{MaxTokens: 4})
	if err != nil {
		t.Fatal(err)
	}
	lu, err := Lookback(context.Background(), m.Model, [][]int{cases[0].Prompt}, LookbackOptions{MaxTokens: 4, materialise: true})
	if err != nil {
		t.Fatal(err)
	}
	sameMap(t, "lookback", lf.Values, lu.Values, 1e-5)
}
