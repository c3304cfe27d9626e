package circuits

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"
)

func TestRankAUCByHand(t *testing.T) {
	// true scores 3, 1; false 2, 1, 0: wins 3>2,3>1,3>0, 1>0, tie 1=1 -> 4.5/6.
	got := RankAUC([]float64{3, 1, 2, 1, 0}, []bool{true, true, false, false, false})
	if math.Abs(got-4.5/6) > 1e-12 {
		t.Errorf("RankAUC = %v, want %v", got, 4.5/6)
	}
	// One point (0.5, 1): area 0.5·0.5 + 0.5·1 = 0.75.
	if got := CurveAUC([]ROCPoint{{0.5, 1}}); math.Abs(got-0.75) > 1e-12 {
		t.Errorf("CurveAUC = %v, want 0.75", got)
	}
}

// The toy IOI model's circuit, established by path-patching every edge,
// must be recovered by activation patching and by ACDC.
func TestToyIOICircuit(t *testing.T) {
	m, prompts := toyIOI(t, 48)
	ctx := context.Background()
	p, err := NewPatcher(ctx, m, prompts, PatchOptions{Metric: LogitDiff, Batch: 48})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	effects, err := p.EdgeEffects(ctx)
	if err != nil {
		t.Fatal(err)
	}
	truth := TruthEdges(effects, 0.05)
	truthNodes := NodesOf(truth)
	t.Logf("exhaustive path patching: %d edges in %v; truth %d edges, nodes %v", len(effects), time.Since(start).Round(time.Millisecond), len(truth), truthNodes)
	if len(truthNodes) == 0 || len(truthNodes) == len(Components(m.Config)) {
		t.Fatalf("degenerate truth: %v", truthNodes)
	}
	comps, edges := Components(m.Config), Edges(m.Config)
	start = time.Now()
	scores, err := p.NodeScores(ctx)
	if err != nil {
		t.Fatal(err)
	}
	patchAUC := NodeAUC(comps, scores, truthNodes)
	t.Logf("patching: node AUC %.3f in %v", patchAUC, time.Since(start).Round(time.Millisecond))
	kl, err := NewPatcher(ctx, m, prompts, PatchOptions{Metric: KL, Batch: 48})
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	// A short sweep keeps the default test run quick; RESULTS.md has the
	// full one (TestResultsTable).
	sweep, err := kl.ACDCSweep(ctx, []float64{0.01, 0.1, 0.3, 1})
	if err != nil {
		t.Fatal(err)
	}
	nodeAUC, edgeAUC := SweepAUC(comps, edges, sweep, truthNodes, truth)
	var sizes []string
	for _, r := range sweep {
		sizes = append(sizes, fmt.Sprintf("τ=%g:%d", r.Threshold, len(r.Kept)))
	}
	t.Logf("acdc (kl): node AUC %.3f, edge AUC %.3f in %v; edges kept %v", nodeAUC, edgeAUC, time.Since(start).Round(time.Millisecond), sizes)
	// Floors well above chance (0.5), below what the methods reach
	// (RESULTS.md), so that a broken method fails.
	if patchAUC < 0.9 || nodeAUC < 0.7 || edgeAUC < 0.8 {
		t.Errorf("node AUC patching %.3f, acdc %.3f; edge AUC acdc %.3f: want >= 0.9, 0.7, 0.8", patchAUC, nodeAUC, edgeAUC)
	}
}

func TestAgreeByHand(t *testing.T) {
	a := map[Node]float64{HeadNode(0, 0): 3, HeadNode(0, 1): 2, HeadNode(1, 0): 1, HeadNode(1, 1): 0}
	b := map[Node]float64{HeadNode(0, 0): 0, HeadNode(0, 1): 2, HeadNode(1, 0): 3, HeadNode(1, 1): 1}
	ag := Agree(a, b, 2)
	// top-2: a {0.0, 0.1}, b {1.0, 0.1}: overlap 1, Jaccard 1/3. Ranks a
	// (4,3,2,1), b (1,3,4,2): Spearman = 1 - 6·Σd²/(n(n²-1)) = 1 - 6·14/60 = -0.4.
	if ag.Overlap != 1 || math.Abs(ag.Jaccard-1.0/3) > 1e-12 || math.Abs(ag.Spearman+0.4) > 1e-12 {
		t.Errorf("agreement %+v", ag)
	}
}
