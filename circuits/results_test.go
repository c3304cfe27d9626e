package circuits

import (
	"context"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/loupe-dev/loupe/probe"
)

// TestResultsTable makes the method x task x model table of RESULTS.md
// (LOUPE_LONG=1; several minutes on the 2-core box).
func TestResultsTable(t *testing.T) {
	if os.Getenv("LOUPE_LONG") == "" {
		t.Skip("LOUPE_LONG=1 makes RESULTS.md's table")
	}
	ctx := context.Background()
	var b strings.Builder
	fmt.Fprintln(&b, "| model | task | method | node AUC (heads) | edge AUC | precision | recall | forward passes | wall |")
	fmt.Fprintln(&b, "|---|---|---|---:|---:|---:|---:|---:|---:|")
	row := func(model, task, method string, s Score, f *Found) {
		num := func(v float64) string {
			if math.IsNaN(v) {
				return "—"
			}
			return fmt.Sprintf("%.3f", v)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %d | %.1f s |\n", model, task, method, num(s.NodeAUC), num(s.EdgeAUC), num(s.Precision), num(s.Recall), f.Runs, f.Wall.Seconds())
		t.Log(strings.TrimSpace(b.String()))
	}
	run := func(model, task string, m *probe.Model, prompts []Prompt, truthHeads []Node, truthEdges []Edge, thresholds []float64) {
		comps, edges := Components(m.Config), Edges(m.Config)
		for _, method := range []string{"patching", "acdc", "sae"} {
			p := methodPatcher(t, ctx, m, prompts, method)
			opt := FindOptions{Method: method, EdgeScan: truthEdges != nil && method == "patching", Thresholds: thresholds}
			if method == "sae" {
				opt.SAE = SAEDefaults()
			}
			f, err := Find(ctx, p, prompts, opt)
			if err != nil {
				t.Fatal(err)
			}
			row(model, task, method, f.ScoreAgainst(comps, edges, truthHeads, truthEdges), f)
		}
	}
	m, prompts := toyIOI(t, 48)
	p, err := NewPatcher(ctx, m, prompts, PatchOptions{Metric: LogitDiff})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	eff, err := p.EdgeEffects(ctx)
	if err != nil {
		t.Fatal(err)
	}
	truth := TruthEdges(eff, 0.05)
	t.Logf("toy IOI truth (exhaustive path patching, %v): %d edges %v, heads %v", time.Since(start).Round(time.Millisecond), len(truth), truth, heads(NodesOf(truth)))
	run("toy IOI (3x4, trained)", "ioi", m, prompts, heads(NodesOf(truth)), truth, DefaultThresholds)
	om, oprompts := organismInduction(t, 24)
	// Five thresholds: each costs about six minutes of ACDC on the
	// organism on the shared box.
	run("organism (4x8)", "induction", om, oprompts, organismInductionHeads, nil, []float64{0.01, 0.03, 0.1, 0.3, 1})
	fmt.Println(b.String())
}

// TestSAESeeds gives the SAE method's node AUC over ten seeds, as the paper
// reports it (mean ± std over 10 trials), with the paper's autoencoder and
// with package sae's standard SAE in its place (LOUPE_LONG=1).
func TestSAESeeds(t *testing.T) {
	if os.Getenv("LOUPE_LONG") == "" {
		t.Skip("LOUPE_LONG=1 runs the ten-seed SAE figures")
	}
	ctx := context.Background()
	m, prompts := toyIOI(t, 48)
	toyEdges := toyIOITruth(ctx, t, m, prompts) // exhaustive path patching, as the table's
	om, oprompts := organismInduction(t, 24)
	for _, c := range []struct {
		name    string
		m       *probe.Model
		prompts []Prompt
		truth   []Node
		edges   []Edge // nil: no edge truth
	}{
		{"toy IOI", m, prompts, toyIOIHeads, toyEdges},
		{"organism induction", om, oprompts, organismInductionHeads, nil},
	} {
		for _, tr := range []struct {
			name  string
			train func(context.Context, []float32, int, int, SAEConfig) (func([]float32, int) []float32, error)
		}{{"paper's SAE", TrainPaperSAE}, {"sae.Standard", TrainSAE}} {
			var aucs, edgeNode, edgeAUC, prec, rec []float64
			start := time.Now()
			for seed := uint64(1); seed <= 10; seed++ {
				cfg := SAEDefaults()
				cfg.Seed = seed
				res, err := SAECircuit(ctx, c.m, c.prompts, cfg, tr.train)
				if err != nil {
					t.Fatal(err)
				}
				hs := heads(Components(c.m.Config))
				aucs = append(aucs, NodeAUC(hs, res.NodeScores, c.truth))
				edgeNode = append(edgeNode, NodeAUC(hs, res.EdgeNodeScores, c.truth))
				_, p, r := Rates(res.Nodes, c.truth, len(hs))
				prec, rec = append(prec, p), append(rec, r)
				if c.edges != nil {
					edgeAUC = append(edgeAUC, EdgeAUC(Edges(c.m.Config), res.EdgeScores, c.edges))
				}
			}
			t.Logf("%s, %s: SAE node AUC %.3f ± %.3f (edge-based node ranking %.3f ± %.3f), edge AUC %.3f ± %.3f, precision %.3f ± %.3f, recall %.3f ± %.3f over 10 seeds, %.1f s per run; %.3f",
				c.name, tr.name, mean(aucs), std(aucs), mean(edgeNode), std(edgeNode), mean(edgeAUC), std(edgeAUC), mean(prec), std(prec), mean(rec), std(rec),
				time.Since(start).Seconds()/10, aucs)
		}
	}
}

// TestACDCNodesFirstTable gives ACDC's figures with the node-first pass
// (PatchOptions.ACDCNodes) beside the edge-only ones of TestResultsTable,
// on the same tasks and sweeps (LOUPE_LONG=1).
func TestACDCNodesFirstTable(t *testing.T) {
	if os.Getenv("LOUPE_LONG") == "" {
		t.Skip("LOUPE_LONG=1 runs ACDC with the node-first pass")
	}
	ctx := context.Background()
	m, prompts := toyIOI(t, 48)
	truth := toyIOITruth(ctx, t, m, prompts) // exhaustive path patching, as the table's
	om, oprompts := organismInduction(t, 24)
	for _, c := range []struct {
		name       string
		m          *probe.Model
		prompts    []Prompt
		heads      []Node
		edges      []Edge
		thresholds []float64
	}{
		{"toy IOI", m, prompts, heads(NodesOf(truth)), truth, DefaultThresholds},
		{"organism induction", om, oprompts, organismInductionHeads, nil, []float64{0.01, 0.03, 0.1, 0.3, 1}},
	} {
		p, err := NewPatcher(ctx, c.m, c.prompts, PatchOptions{Metric: KL, ACDCNodes: true})
		if err != nil {
			t.Fatal(err)
		}
		f, err := Find(ctx, p, c.prompts, FindOptions{Method: "acdc", Thresholds: c.thresholds})
		if err != nil {
			t.Fatal(err)
		}
		s := f.ScoreAgainst(Components(c.m.Config), Edges(c.m.Config), c.heads, c.edges)
		t.Logf("%s, acdc nodes first: node AUC %.3f, edge AUC %.3f, precision %.3f, recall %.3f; %d runs in %.1f s",
			c.name, s.NodeAUC, s.EdgeAUC, s.Precision, s.Recall, f.Runs, f.Wall.Seconds())
	}
}
