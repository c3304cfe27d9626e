package heads

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSmolLM2RetrievalLong scores SmolLM2's retrieval heads on needles in
// haystacks of LOUPE_NIAH_LEN tokens (default 8000, near its 8192-token
// context) and checks them causally: the top 5 retrieval heads ablated
// against LOUPE_SEEDS (default 2) sets of 5 random heads. One needle (the
// lighthouse password), depths LOUPE_NIAH_DEPTHS (default 0.25, 0.75),
// haystack generated, or real text with LOUPE_NIAH_REAL=1 (fortunes).
// Minutes of CPU per case:
//
//	LOUPE_LONG=1 go test -run SmolLM2RetrievalLong -v -timeout 0 ./heads
func TestSmolLM2RetrievalLong(t *testing.T) {
	long(t)
	m := smolLM2(t)
	L, _ := strconv.Atoi(envList("LOUPE_NIAH_LEN", "8000")[0])
	var depths []float64
	for _, s := range envList("LOUPE_NIAH_DEPTHS", "0.25,0.75") {
		d, _ := strconv.ParseFloat(s, 64)
		depths = append(depths, d)
	}
	no := NIAHOptions{Lengths: []int{L}, Depths: depths, Needles: DefaultNeedles[2:3], Prefix: []int{m.Config.BOS}}
	if envList("LOUPE_NIAH_REAL", "0")[0] == "1" {
		hay, err := ReadHaystack(fortunesPath(t))
		if err != nil {
			t.Fatal(err)
		}
		no.Haystack = hay
	}
	cases, err := NIAHCases(m.Tokenizer, no)
	if err != nil {
		t.Fatal(err)
	}
	ro := RetrievalOptions{Stop: []int{198, m.Config.EOS}, Decode: func(ids []int) string { return m.Tokenizer.Decode(ids, true) }}
	ctx := context.Background()
	start := time.Now()
	sc, res, err := Retrieval(ctx, m.Model, cases, ro)
	if err != nil {
		t.Fatal(err)
	}
	var top []string
	for _, h := range sc.Values.Top(10) {
		top = append(top, fmt.Sprintf("%s=%.3f", h, sc.Values.At(h.Layer, h.Head)))
	}
	answered := 0
	for _, r := range res {
		if r.Counted {
			answered++
		}
	}
	t.Logf("retrieval at %d tokens: %d/%d answered; labelled %d of %d (%.1f%%) at %.2f; top %s [%s]", L, answered, len(cases),
		len(sc.Labeled()), len(sc.Values.Values), 100*sc.Fraction(), sc.Threshold, strings.Join(top, " "), time.Since(start).Round(time.Second))
	all := sc.Details["all_cases"]
	top = nil
	for _, h := range all.Top(10) {
		top = append(top, fmt.Sprintf("%s=%.3f", h, all.At(h.Layer, h.Head)))
	}
	for i, r := range res {
		t.Logf("case %d (depth %.2f): recall %.2f, answer %q", i, cases[i].Depth, r.Recall, m.Tokenizer.Decode(r.Generated, true))
	}
	t.Logf("copy scores over every case, answered or not: top %s", strings.Join(top, " "))
	if answered == 0 {
		t.Logf("no case answered at %d tokens: the ablation has nothing to lower; skipped", L)
		return
	}
	seeds, _ := strconv.Atoi(envList("LOUPE_SEEDS", "2")[0])
	set := &TaskSet{NIAH: cases, NIAHOpts: ro}
	start = time.Now()
	r, err := Ablate(ctx, m.Model, TaskNIAH, set, sc.Values.Top(5), seeds, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("niah at %d tokens: baseline %.3f, top-5 retrieval heads %v ablated %.3f, random 5 heads %.3f ± %.3f (%s) [%s]", L,
		r.Baseline, r.Heads, r.Ablated, r.RandomMean(), r.RandomStd(), floatList(r.Random), time.Since(start).Round(time.Second))
}
