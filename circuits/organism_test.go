package circuits

import (
	"context"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/loupe-dev/loupe/organism"
	"github.com/loupe-dev/loupe/probe"
)

// organismInductionHeads is the organism's induction circuit as the heads
// package finds it (session note of issues 2-7): previous-token heads
// 1.1 and 1.0 feeding the induction heads 2.3, 2.6, 2.7, 2.2 and 2.1.
var organismInductionHeads = []Node{HeadNode(1, 0), HeadNode(1, 1),
	HeadNode(2, 1), HeadNode(2, 2), HeadNode(2, 3), HeadNode(2, 6), HeadNode(2, 7)}

// organismInduction is the induction task on the embedded organism:
// random spans of ordinary word tokens, repeated.
func organismInduction(t testing.TB, n int) (*probe.Model, []Prompt) {
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
	return lm.Model, prompts
}

// The organism's induction circuit, confirmed by ablation (the truth heads
// carry the task; as many random heads do not), then found by patching
// (and by ACDC with LOUPE_LONG=1: about a minute per threshold here).
func TestOrganismInductionCircuit(t *testing.T) {
	m, prompts := organismInduction(t, 24)
	ctx := context.Background()
	p, err := NewPatcher(ctx, m, prompts, PatchOptions{Metric: LogitDiff})
	if err != nil {
		t.Fatal(err)
	}
	_, truthEffect, err := p.Patch(ctx, Noising, organismInductionHeads...)
	if err != nil {
		t.Fatal(err)
	}
	var random []float64
	hs := heads(Components(m.Config))
	for seed := uint64(0); seed < 8; seed++ {
		pool := slices.DeleteFunc(slices.Clone(hs), func(n Node) bool { return slices.Contains(organismInductionHeads, n) })
		rng := newRand(seed)
		rng.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
		_, e, err := p.Patch(ctx, Noising, pool[:len(organismInductionHeads)]...)
		if err != nil {
			t.Fatal(err)
		}
		random = append(random, e)
	}
	t.Logf("clean log p(answer) %.3f, corrupted %.3f; resample-ablating the 7 circuit heads: effect %.3f; 7 random other heads: %.3f ± %.3f (max %.3f)",
		p.Clean, p.Corrupt, truthEffect, mean(random), std(random), slices.Max(random))
	if truthEffect < 0.5 || truthEffect < slices.Max(random)+0.2 {
		t.Errorf("the circuit heads do not carry the task: effect %.3f, random heads up to %.3f", truthEffect, slices.Max(random))
	}
	start := time.Now()
	f, err := Find(ctx, p, prompts, FindOptions{Method: "patching"})
	if err != nil {
		t.Fatal(err)
	}
	s := f.ScoreAgainst(Components(m.Config), Edges(m.Config), organismInductionHeads, nil)
	t.Logf("patching: head AUC %.3f, precision %.3f, recall %.3f, %d passes in %v", s.NodeAUC, s.Precision, s.Recall, f.Runs, time.Since(start).Round(time.Millisecond))
	if s.NodeAUC < 0.9 {
		t.Errorf("patching ranks the induction circuit's heads with AUC %.3f, want >= 0.9", s.NodeAUC)
	}
	if os.Getenv("LOUPE_LONG") == "" {
		return
	}
	kl, err := NewPatcher(ctx, m, prompts, PatchOptions{Metric: KL})
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	f, err = Find(ctx, kl, prompts, FindOptions{Method: "acdc", Thresholds: []float64{0.01, 0.03, 0.1, 0.3, 1}})
	if err != nil {
		t.Fatal(err)
	}
	s = f.ScoreAgainst(Components(m.Config), Edges(m.Config), organismInductionHeads, nil)
	t.Logf("acdc: head AUC %.3f, precision %.3f, recall %.3f, %d passes in %v", s.NodeAUC, s.Precision, s.Recall, f.Runs, time.Since(start).Round(time.Millisecond))
}

func mean(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

func std(v []float64) float64 {
	m, s := mean(v), 0.0
	for _, x := range v {
		s += (x - m) * (x - m)
	}
	return math.Sqrt(s / float64(len(v)))
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0xab1a7e)) }
