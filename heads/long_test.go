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
// context) and checks them causally, as Wu et al.'s ablation does: the top
// LOUPE_ABLATE_K (default 5) retrieval heads ablated against LOUPE_SEEDS
// (default 2) sets of as many random heads (LOUPE_ABLATE_K=0: no
// ablation). Needles LOUPE_NIAH_NEEDLES
// (indices into DefaultNeedles, default 2: the lighthouse password),
// depths LOUPE_NIAH_DEPTHS (default 0.25, 0.75), haystack generated, or
// real text with LOUPE_NIAH_REAL=1 (fortunes); LOUPE_NIAH_CHAT=1 wraps
// each case in SmolLM2-Instruct's chat template. Minutes of CPU per case:
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
	var needles []Needle
	for _, s := range envList("LOUPE_NIAH_NEEDLES", "2") {
		i, err := strconv.Atoi(s)
		if err != nil || i < 0 || i >= len(DefaultNeedles) {
			t.Fatalf("LOUPE_NIAH_NEEDLES: %q is not an index of the %d default needles", s, len(DefaultNeedles))
		}
		needles = append(needles, DefaultNeedles[i])
	}
	no := NIAHOptions{Lengths: []int{L}, Depths: depths, Needles: needles, Prefix: []int{m.Config.BOS}}
	stop := []int{198, m.Config.EOS}
	if envList("LOUPE_NIAH_CHAT", "0")[0] == "1" {
		no.Prefix = nil // the template's first token is its own <|im_start|>
		no.Before, no.After = SmolLM2Chat()
		stop = append(stop, 2) // <|im_end|>
	}
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
	ro := RetrievalOptions{Stop: stop, Decode: func(ids []int) string { return m.Tokenizer.Decode(ids, true) },
		Progress: func(done, total int) { t.Logf("case %d of %d done", done, total) }}
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
		t.Logf("case %d (needle %d, depth %.2f, %d tokens): recall %.2f, answer %q", i, cases[i].Needle, cases[i].Depth, len(cases[i].Prompt), r.Recall, m.Tokenizer.Decode(r.Generated, true))
	}
	t.Logf("copy scores over every case, answered or not: top %s", strings.Join(top, " "))
	if answered == 0 {
		t.Logf("no case answered at %d tokens: the ablation has nothing to lower; skipped", L)
		return
	}
	seeds, _ := strconv.Atoi(envList("LOUPE_SEEDS", "2")[0])
	// The ablation reruns the answered cases only: an unanswered one
	// scores 0 with or without heads removed, at minutes of CPU each.
	var answeredCases []NIAHCase
	for i, r := range res {
		if r.Counted {
			answeredCases = append(answeredCases, cases[i])
		}
	}
	set := &TaskSet{NIAH: answeredCases, NIAHOpts: ro}
	// The baseline over these cases is 1 by construction (greedy decoding
	// is deterministic, and each was answered above), so unlike Ablate
	// this does not rerun it: each rerun is minutes.
	start = time.Now()
	k, _ := strconv.Atoi(envList("LOUPE_ABLATE_K", "5")[0])
	if k <= 0 {
		return // LOUPE_ABLATE_K=0: the scores alone
	}
	named := sc.Values.Top(k)
	ablated, err := TaskAccuracy(ctx, m.Model, TaskNIAH, set, named)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("niah at %d tokens, %d answered cases: top-%d retrieval heads %v ablated: %.3f [%s]", L, len(answeredCases), k, named, ablated, time.Since(start).Round(time.Second))
	var random []float64
	for s := 0; s < seeds; s++ {
		hs, err := RandomHeads(m.Config, k, named, uint64(1+s))
		if err != nil {
			t.Fatal(err)
		}
		acc, err := TaskAccuracy(ctx, m.Model, TaskNIAH, set, hs)
		if err != nil {
			t.Fatal(err)
		}
		random = append(random, acc)
		t.Logf("random %d heads %v ablated: %.3f [%s]", k, hs, acc, time.Since(start).Round(time.Second))
	}
	t.Logf("niah at %d tokens: baseline 1 (answered cases), top-%d ablated %.3f, random %d: %s", L, k, ablated, k, floatList(random))
}
