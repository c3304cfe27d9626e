package circuits

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/loupe-dev/loupe/probe"
)

// mixIOI loads the mixture IOI model (testdata/mixmodel, made by its
// train.py: a 4-layer GPT-2 trained as a language model on IOI prompts,
// repeated spans and bigram text) and the first n pairs of its IOI task.
func mixIOI(t testing.TB, n int) (*probe.Model, []Prompt) {
	t.Helper()
	return ioiModel(t, filepath.Join("testdata", "mixmodel"), n)
}

// mixResults scores every method on one model's IOI task against the
// circuit exhaustive path patching establishes (48 pairs, the edges
// carrying at least 5% of the gap, as the toy model's): patching, ACDC's
// sweep and the SAE method over ten seeds with the paper's defaults, with
// the ABC corruption and with the paper's own negatives as the SAE method's
// negatives.
//
// others are further clean prompts for the null control (NullNegatives);
// withSearch false runs the SAE method alone.
func mixResults(t *testing.T, name string, m *probe.Model, prompts, others []Prompt, withSearch bool) {
	ctx := context.Background()
	start := time.Now()
	truth := toyIOITruth(ctx, t, m, prompts)
	truthHeads := heads(NodesOf(truth))
	t.Logf("%s truth (exhaustive path patching of %d edges, %v): %d edges %v, heads %v", name, len(Edges(m.Config)), time.Since(start).Round(time.Millisecond), len(truth), truth, truthHeads)
	comps, edges := Components(m.Config), Edges(m.Config)
	for _, method := range []string{"patching", "acdc"} {
		if !withSearch {
			break
		}
		p := methodPatcher(t, ctx, m, prompts, method)
		f, err := Find(ctx, p, prompts, FindOptions{Method: method, EdgeScan: method == "patching", Thresholds: DefaultThresholds})
		if err != nil {
			t.Fatal(err)
		}
		s := f.ScoreAgainst(comps, edges, truthHeads, truth)
		t.Logf("%s, %s: node AUC %.3f, edge AUC %.3f, precision %.3f, recall %.3f, %d passes, %.1f s",
			name, method, s.NodeAUC, s.EdgeAUC, s.Precision, s.Recall, f.Runs, f.Wall.Seconds())
	}
	for _, neg := range []struct {
		name    string
		prompts []Prompt
	}{
		{"ABC negatives", prompts},
		{"the paper's negatives", paperIOINegatives(prompts, toyNames(), 1)},
		{"null negatives (other clean prompts)", nullNegatives(t, prompts, others)},
	} {
		for _, tr := range []struct {
			name  string
			train func(context.Context, []float32, int, int, SAEConfig) (func([]float32, int) []float32, error)
		}{{"paper's SAE", TrainPaperSAE}, {"sae.Standard", TrainSAE}} {
			var aucs, edgeNode, edgeAUC, prec, rec, divAUC, contrastAUC []float64
			start := time.Now()
			for seed := uint64(1); seed <= 10; seed++ {
				cfg := SAEDefaults()
				cfg.Seed = seed
				res, err := SAECircuit(ctx, m, neg.prompts, cfg, tr.train)
				if err != nil {
					t.Fatal(err)
				}
				hs := heads(comps)
				aucs = append(aucs, NodeAUC(hs, res.NodeScores, truthHeads))
				edgeNode = append(edgeNode, NodeAUC(hs, res.EdgeNodeScores, truthHeads))
				_, p, r := Rates(res.Nodes, truthHeads, len(hs))
				prec, rec = append(prec, p), append(rec, r)
				edgeAUC = append(edgeAUC, EdgeAUC(edges, res.EdgeScores, truth))
				divAUC = append(divAUC, NodeAUC(hs, CodeDiversity(res.Codes, hs), truthHeads))
				contrastAUC = append(contrastAUC, NodeAUC(hs, permutationContrast(res.Codes, hs, len(neg.prompts), 200, seed), truthHeads))
			}
			t.Logf("%s, %s, %s: SAE node AUC %.3f ± %.3f (edge-based node ranking %.3f ± %.3f), edge AUC %.3f ± %.3f, precision %.3f ± %.3f, recall %.3f ± %.3f over 10 seeds, %.2f s per seed; %.3f; ranking by distinct codes alone: node AUC %.3f ± %.3f; contrast (score less its permutation mean, not the paper's): node AUC %.3f ± %.3f",
				name, neg.name, tr.name, mean(aucs), std(aucs), mean(edgeNode), std(edgeNode), mean(edgeAUC), std(edgeAUC), mean(prec), std(prec), mean(rec), std(rec),
				time.Since(start).Seconds()/10, aucs, mean(divAUC), std(divAUC), mean(contrastAUC), std(contrastAUC))
		}
	}
}

// permutationContrast is a variant of the SAE method's node score, not the
// paper's: each head's count of positive-only codes less its mean over
// perms random relabellings of the examples (as many positives as there
// are, n, the rest negatives). What is left is the part of the score that
// depends on which side each code fell, so a head scores above 0 only
// when its codes track the positive/negative split better than chance;
// codes is [2n examples, heads], positives first.
func permutationContrast(codes []int, hs []Node, n, perms int, seed uint64) map[Node]float64 {
	H, E := len(hs), len(codes)/len(hs)
	positive := make([]bool, E)
	for e := 0; e < n; e++ {
		positive[e] = true
	}
	real := SAENodeScores(codes, H, positive)
	rng := newRand(seed)
	null := make([]float64, H)
	for range perms {
		rng.Shuffle(E, func(i, j int) { positive[i], positive[j] = positive[j], positive[i] })
		for h, v := range SAENodeScores(codes, H, positive) {
			null[h] += v / float64(perms)
		}
	}
	out := map[Node]float64{}
	for h, nd := range hs {
		out[nd] = real[h] - null[h]
	}
	return out
}

// TestMixResults gives the three methods' figures on the mixture IOI model
// (LOUPE_LONG=1; RESULTS.md, "The mixture model").
func TestMixResults(t *testing.T) {
	if os.Getenv("LOUPE_LONG") == "" {
		t.Skip("LOUPE_LONG=1 scores every method on the mixture IOI model")
	}
	m, prompts := mixIOI(t, 96)
	mixResults(t, "mixture IOI (4x4)", m, prompts[:48], prompts[48:], os.Getenv("LOUPE_SAE_ONLY") == "")
	dm, dprompts := ioiModel(t, filepath.Join("testdata", "dupmodel"), 96)
	mixResults(t, "mixture IOI with 'them' (4x4)", dm, dprompts[:48], dprompts[48:], os.Getenv("LOUPE_SAE_ONLY") == "")
	am, aprompts := ioiModel(t, filepath.Join("testdata", "attnmodel"), 96)
	mixResults(t, "attention-only mixture IOI with 'them' (4x4)", am, aprompts[:48], aprompts[48:], os.Getenv("LOUPE_SAE_ONLY") == "")
	tm, tprompts := toyIOI(t, 96)
	mixResults(t, "toy IOI (3x4)", tm, tprompts[:48], tprompts[48:], false)
}
