package circuits

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/loupe-dev/loupe/organism"
)

// organismInduction is the induction task on the embedded organism:
// random spans of ordinary word tokens, repeated.
func organismInduction(t testing.TB, n int) (*organismModel, []Prompt) {
	t.Helper()
	lm, err := organism.Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	pool := WordTokens(lm.Tokenizer, 3)
	pairs, err := Induction(n, 10, pool, []int{lm.Tokenizer.BOS()}, lm.Tokenizer, 1)
	if err != nil {
		t.Fatal(err)
	}
	prompts, err := Tokenize(&Task{Name: "induction", Pairs: pairs}, lm.Tokenizer, lm.Config.Vocab)
	if err != nil {
		t.Fatal(err)
	}
	return &organismModel{lm.Model}, prompts
}

func TestOrganismInductionExplore(t *testing.T) {
	om, prompts := organismInduction(t, 32)
	m := om.Model
	ctx := context.Background()
	p, err := NewPatcher(ctx, m, prompts, PatchOptions{Metric: LogitDiff})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("clean %.3f corrupt %.3f", p.Clean, p.Corrupt)
	start := time.Now()
	sc, err := p.NodeScores(ctx)
	if err != nil {
		t.Fatal(err)
	}
	type kv struct {
		n Node
		v float64
	}
	var all []kv
	for n, v := range sc {
		all = append(all, kv{n, v})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v > all[j].v })
	var b strings.Builder
	for _, x := range all[:15] {
		fmt.Fprintf(&b, "%s %.3f  ", x.n, x.v)
	}
	t.Logf("%v: %s", time.Since(start), b.String())
}
