package circuits

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"
)

// Methods are the circuit discovery methods Find runs.
var Methods = []string{"patching", "acdc", "sae"}

// FindOptions configures Find.
type FindOptions struct {
	Method string
	Patch  PatchOptions
	// Thresholds are ACDC's sweep (default DefaultThresholds); the
	// circuit reported is the one at Threshold (default the sweep's
	// median).
	Thresholds []float64
	Threshold  float64
	// NodeCut keeps a node in the patching method's circuit when its
	// |noising effect| reaches it (default 0.05) and an edge when its path
	// patching effect does; EdgeScan says whether the patching method
	// path-patches every edge (slow on big models: two forward passes per
	// edge per batch).
	NodeCut  float64
	EdgeScan bool
	// SAE holds the SAE method's settings; its zero fields take SAEDefaults.
	SAE SAEConfig
	// TrainSAE trains the SAE method's autoencoder on features [n, d] and
	// returns its encoder (latent activations [n, latents]); nil is
	// TrainPaperSAE, the paper's own autoencoder (TrainSAE is package
	// sae's standard SAE in its place).
	TrainSAE func(ctx context.Context, feats []float32, n, d int, cfg SAEConfig) (func(x []float32, n int) []float32, error)
}

// DefaultThresholds is ACDC's default sweep (on KL, in nats).
var DefaultThresholds = []float64{0.001, 0.003, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2}

// Found is what a method found.
type Found struct {
	Method     string
	NodeScores map[Node]float64 // every head and MLP the method scores
	EdgeScores map[Edge]float64 // nil when the method scores no edges
	Nodes      []Node           // the circuit's nodes
	Edges      []Edge           // the circuit's edges (nil for node-only methods)
	Sweep      []*ACDCResult    // ACDC's threshold sweep
	Wall       time.Duration
	Runs       int // forward passes
	BlockRuns  int // blocks those passes ran (resumed passes run fewer)
	Clean      float64
	Corrupt    float64
	// Partial says ACDC stopped at its time limit (PatchOptions.
	// ACDCStopAfter): the last threshold of Sweep is partial (its Kept
	// holds every edge not yet decided) and the thresholds after it were
	// not run.
	Partial bool
}

// Find runs one method on a task's prompts.
func Find(ctx context.Context, p *Patcher, prompts []Prompt, opt FindOptions) (*Found, error) {
	start, runs0, blocks0 := time.Now(), p.Runs, p.BlockRuns
	c := p.m.Config
	f := &Found{Method: opt.Method, Clean: p.Clean, Corrupt: p.Corrupt}
	cut := opt.NodeCut
	if cut == 0 {
		cut = 0.05
	}
	switch opt.Method {
	case "patching":
		var err error
		if f.NodeScores, err = p.NodeScores(ctx); err != nil {
			return nil, err
		}
		for _, n := range Components(c) {
			if f.NodeScores[n] >= cut {
				f.Nodes = append(f.Nodes, n)
			}
		}
		if opt.EdgeScan {
			eff, err := p.EdgeEffects(ctx)
			if err != nil {
				return nil, err
			}
			f.EdgeScores = map[Edge]float64{}
			for e, v := range eff {
				f.EdgeScores[e] = math.Abs(v)
			}
			f.Edges = TruthEdges(eff, cut)
		}
	case "acdc":
		ths := opt.Thresholds
		if len(ths) == 0 {
			ths = DefaultThresholds
		}
		ths = slices.Sorted(slices.Values(ths))
		sweep, err := p.ACDCSweep(ctx, ths)
		if err != nil {
			return nil, err
		}
		f.Sweep = sweep
		f.NodeScores, f.EdgeScores = map[Node]float64{}, map[Edge]float64{}
		for _, n := range Components(c) {
			f.NodeScores[n] = 0
		}
		for _, e := range Edges(c) {
			f.EdgeScores[e] = 0
		}
		// A node or edge scores the largest threshold that keeps it.
		for _, r := range sweep {
			for _, e := range r.Kept {
				f.EdgeScores[e] = r.Threshold
			}
			for _, n := range NodesOf(r.Kept) {
				f.NodeScores[n] = r.Threshold
			}
		}
		pick := sweep[len(sweep)/2]
		if last := sweep[len(sweep)-1]; last.Partial {
			// Stopped: the circuit is the partial one, the thresholds
			// not reached are not run.
			f.Partial, pick = true, last
		} else if opt.Threshold > 0 {
			pick = nil
			for _, r := range sweep {
				if r.Threshold == opt.Threshold {
					pick = r
				}
			}
			if pick == nil {
				r, err := p.ACDC(ctx, opt.Threshold)
				if err != nil {
					return nil, err
				}
				pick = r
			}
		}
		f.Edges, f.Nodes = pick.Kept, NodesOf(pick.Kept)
	case "sae":
		trainSAE := opt.TrainSAE
		if trainSAE == nil {
			trainSAE = TrainPaperSAE
		}
		cfg, err := opt.SAE.withDefaults()
		if err != nil {
			return nil, err
		}
		res, err := SAECircuit(ctx, p.m, prompts, cfg, trainSAE)
		if err != nil {
			return nil, err
		}
		f.NodeScores, f.EdgeScores, f.Nodes, f.Edges = res.NodeScores, res.EdgeScores, res.Nodes, nil
		p.Runs += res.Passes
		p.BlockRuns += res.Passes * c.Layers
	default:
		return nil, fmt.Errorf("unknown method %q (want one of %v)", opt.Method, Methods)
	}
	f.Wall, f.Runs, f.BlockRuns = time.Since(start), p.Runs-runs0, p.BlockRuns-blocks0
	return f, nil
}

// Score is a found circuit against a known one.
type Score struct {
	NodeAUC, EdgeAUC  float64 // NaN when not defined
	Precision, Recall float64 // of the circuit's heads
}

// HeadNodes lists the model's heads.
func heads(ns []Node) []Node {
	var out []Node
	for _, n := range ns {
		if n.Kind == NodeHead {
			out = append(out, n)
		}
	}
	return out
}

// ScoreAgainst scores f's heads against the true heads and, when
// truthEdges is not nil, its edges against them. Node AUCs are over the
// heads only, as the papers score them; ACDC's come from its sweep's ROC
// curve, the others' from their rankings.
func (f *Found) ScoreAgainst(comps []Node, edges []Edge, truthHeads []Node, truthEdges []Edge) Score {
	hs := heads(comps)
	s := Score{NodeAUC: math.NaN(), EdgeAUC: math.NaN()}
	if f.Sweep != nil {
		var np, ep []ROCPoint
		for _, r := range f.Sweep {
			pt, _, _ := Rates(heads(NodesOf(r.Kept)), truthHeads, len(hs))
			np = append(np, pt)
			if truthEdges != nil {
				pt, _, _ = Rates(r.Kept, truthEdges, len(edges))
				ep = append(ep, pt)
			}
		}
		s.NodeAUC = CurveAUC(np)
		if truthEdges != nil {
			s.EdgeAUC = CurveAUC(ep)
		}
	} else {
		s.NodeAUC = NodeAUC(hs, f.NodeScores, truthHeads)
		if truthEdges != nil && f.EdgeScores != nil {
			s.EdgeAUC = EdgeAUC(edges, f.EdgeScores, truthEdges)
		}
	}
	_, s.Precision, s.Recall = Rates(heads(f.Nodes), truthHeads, len(hs))
	return s
}
