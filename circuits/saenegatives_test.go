package circuits

import (
	"context"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/loupe-dev/loupe/probe"
)

// paperIOINegatives builds the SAE method's negatives for the toy IOI
// prompts the way the paper's code builds them for GPT-2
// (charlieoneill11/sae-circuits data/ioi.py, gen_prompt_counterfact): the
// template is filled with a third name C for the indirect object and the
// subject S for B, and then the first S becomes the indirect object. On a
// clean prompt that is: IO's place takes C, the first S takes IO, the
// second S stays ("when Kate and Ivy went ..., Ivy gave" becomes "when C
// and Kate went ..., Ivy gave"). Three distinct names and no repeated one,
// so nothing marks an answer; unlike the ABC corruption (three fresh
// names) the clean prompt's IO and S2 are kept. names are the toy
// vocabulary's name ids.
func paperIOINegatives(prompts []Prompt, names []int, seed uint64) []Prompt {
	rng := rand.New(rand.NewPCG(seed, 0x10))
	out := make([]Prompt, len(prompts))
	for i, q := range prompts {
		io, s := q.Answers[0], q.Wrong[0]
		c := io
		for c == io || c == s {
			c = names[rng.IntN(len(names))]
		}
		neg := slices.Clone(q.Clean)
		at := slices.Index(neg, io)
		first := slices.Index(neg, s)
		neg[at], neg[first] = c, io
		q.Corrupt = neg
		out[i] = q
	}
	return out
}

// toyNames are the toy IOI vocabulary's name ids (vocab.json: 1..20).
func toyNames() []int {
	var ns []int
	for id := 1; id <= 20; id++ {
		ns = append(ns, id)
	}
	return ns
}

// lastProbs is each prompt's next-token distribution.
func lastProbs(t *testing.T, m *probe.Model, prompts [][]int) [][]float64 {
	t.Helper()
	r, err := m.Forward(context.Background(), prompts, probe.Options{Logits: probe.LogitsLast})
	if err != nil {
		t.Fatal(err)
	}
	out := make([][]float64, len(prompts))
	for b, lp := range logProbs(r) {
		out[b] = make([]float64, len(lp))
		for v, l := range lp {
			out[b][v] = math.Exp(l)
		}
	}
	return out
}

// The paper's negatives, built for the toy IOI model, are prompts it
// cannot complete: three distinct names, the clean IO kept, and the model,
// which names the IO on every clean prompt, no longer does so reliably
// (RESULTS.md has the figures).
func TestPaperIOINegatives(t *testing.T) {
	m, prompts := toyIOI(t, 200)
	negs := paperIOINegatives(prompts, toyNames(), 1)
	var cleans, corrupts [][]int
	for _, q := range negs {
		names := map[int]int{}
		for _, id := range q.Corrupt {
			if id >= 1 && id <= 20 {
				names[id]++
			}
		}
		if len(names) != 3 || names[q.Answers[0]] != 1 || names[q.Wrong[0]] != 1 {
			t.Fatalf("negative %v of clean %v: want three distinct names, IO and S once each", q.Corrupt, q.Clean)
		}
		cleans, corrupts = append(cleans, q.Clean), append(corrupts, q.Corrupt)
	}
	pc, pn := lastProbs(t, m, cleans), lastProbs(t, m, corrupts)
	argmax := func(p []float64) int {
		best := 0
		for v := range p {
			if p[v] > p[best] {
				best = v
			}
		}
		return best
	}
	var cleanRight, negIO, negC, negS, negOther int
	var pIO, pC, pS float64
	for i, q := range negs {
		io, s := q.Answers[0], q.Wrong[0]
		c := q.Corrupt[slices.Index(q.Clean, io)]
		if argmax(pc[i]) == io {
			cleanRight++
		}
		switch argmax(pn[i]) {
		case io:
			negIO++
		case c:
			negC++
		case s:
			negS++
		default:
			negOther++
		}
		pIO, pC, pS = pIO+pn[i][io], pC+pn[i][c], pS+pn[i][s]
	}
	n := float64(len(negs))
	t.Logf("clean: IO the top token on %d of %d; negatives: top token IO %d, C %d, S %d, other %d; mean p(IO) %.3f, p(C) %.3f, p(S) %.3f",
		cleanRight, len(negs), negIO, negC, negS, negOther, pIO/n, pC/n, pS/n)
	if cleanRight != len(negs) {
		t.Errorf("the model names the IO on %d of %d clean prompts, want all", cleanRight, len(negs))
	}
	if negIO > len(negs)*3/4 {
		t.Errorf("the model names the clean IO on %d of %d negatives: they are prompts it can complete", negIO, len(negs))
	}
}

// TestSAEPaperNegatives runs the SAE method (the paper's autoencoder and
// settings) on the toy IOI model with the paper's negatives in place of
// the ABC corruption, over 10 seeds, at 48 pairs (as the table's row) and
// at 200 (the paper uses 250) (LOUPE_LONG=1).
func TestSAEPaperNegatives(t *testing.T) {
	if os.Getenv("LOUPE_LONG") == "" {
		t.Skip("LOUPE_LONG=1 runs the SAE method on the paper's negatives")
	}
	ctx := context.Background()
	m, all := toyIOI(t, 200)
	truth := toyIOIHeads
	hs := heads(Components(m.Config))
	truthEdges := toyIOITruth(ctx, t, m, all[:48]) // as the table's: exhaustive path patching, 48 pairs
	for _, n := range []int{48, 200} {
		var aucs, edgeNode, edgeAUC, prec, rec []float64
		start := time.Now()
		scores := make([]float64, len(hs))
		for seed := uint64(1); seed <= 10; seed++ {
			cfg := SAEDefaults()
			cfg.Seed = seed
			res, err := SAECircuit(ctx, m, paperIOINegatives(all[:n], toyNames(), seed), cfg, TrainPaperSAE)
			if err != nil {
				t.Fatal(err)
			}
			aucs = append(aucs, NodeAUC(hs, res.NodeScores, truth))
			edgeNode = append(edgeNode, NodeAUC(hs, res.EdgeNodeScores, truth))
			edgeAUC = append(edgeAUC, EdgeAUC(Edges(m.Config), res.EdgeScores, truthEdges))
			_, p, r := Rates(res.Nodes, truth, len(hs))
			prec, rec = append(prec, p), append(rec, r)
			for i, h := range hs {
				scores[i] += res.NodeScores[h] / 10
			}
		}
		t.Logf("toy IOI, the paper's negatives, %d pairs: SAE node AUC %.3f ± %.3f (edge-based node ranking %.3f ± %.3f), edge AUC %.3f ± %.3f, precision %.3f ± %.3f, recall %.3f ± %.3f over 10 seeds, %.1f s per run; %.3f; mean scores %v over %v",
			n, mean(aucs), std(aucs), mean(edgeNode), std(edgeNode), mean(edgeAUC), std(edgeAUC), mean(prec), std(prec), mean(rec), std(rec),
			time.Since(start).Seconds()/10, aucs, scores, hs)
	}
}

// TestSAEL1Ceiling asks whether the L1 coefficient, whose effect depends
// on the features' scale (the paper set it for GPT-2's), holds the SAE
// method back: node AUC over 10 seeds at each of a range of coefficients
// (LOUPE_LONG=1). Choosing the best of these by looking at the truth
// would be tuning to it; it is reported only as a ceiling.
func TestSAEL1Ceiling(t *testing.T) {
	if os.Getenv("LOUPE_LONG") == "" {
		t.Skip("LOUPE_LONG=1 runs the SAE method over a range of L1 coefficients")
	}
	ctx := context.Background()
	m, all := toyIOI(t, 48)
	om, oprompts := organismInduction(t, 24)
	for _, c := range []struct {
		name    string
		m       *probe.Model
		prompts []Prompt
		truth   []Node
	}{
		{"toy IOI, ABC negatives", m, all, toyIOIHeads},
		{"toy IOI, the paper's negatives", m, paperIOINegatives(all, toyNames(), 1), toyIOIHeads},
		{"organism induction", om, oprompts, organismInductionHeads},
	} {
		hs := heads(Components(c.m.Config))
		feats, err := HeadFeatures(ctx, c.m, append(cleanOf(c.prompts), corruptOf(c.prompts)...), 32, "mean")
		if err != nil {
			t.Fatal(err)
		}
		rms := 0.0
		for _, v := range feats {
			rms += float64(v) * float64(v)
		}
		rms = math.Sqrt(rms / float64(len(feats)))
		for _, l1 := range []float64{0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2} {
			var aucs, silent []float64
			for seed := uint64(1); seed <= 10; seed++ {
				cfg := SAEDefaults()
				cfg.Seed, cfg.L1 = seed, l1
				res, err := SAECircuit(ctx, c.m, c.prompts, cfg, TrainPaperSAE)
				if err != nil {
					t.Fatal(err)
				}
				aucs = append(aucs, NodeAUC(hs, res.NodeScores, c.truth))
				silent = append(silent, float64(res.Silent)/float64(len(res.Codes)))
			}
			t.Logf("%s (feature RMS %.3f): L1 %g: SAE node AUC %.3f ± %.3f over 10 seeds; rows with every latent off %.1f%%", c.name, rms, l1, mean(aucs), std(aucs), 100*mean(silent))
		}
	}
}

func cleanOf(ps []Prompt) [][]int {
	var out [][]int
	for _, q := range ps {
		out = append(out, q.Clean)
	}
	return out
}

func corruptOf(ps []Prompt) [][]int {
	var out [][]int
	for _, q := range ps {
		out = append(out, q.Corrupt)
	}
	return out
}
