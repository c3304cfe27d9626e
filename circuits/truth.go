package circuits

import (
	"context"
	"math"
)

// EdgeEffects path-patches every edge of the graph (Wang et al.'s
// freezing form, PathPatch) and returns each edge's normalised effect: the
// exhaustive search that establishes a small model's circuit.
func (p *Patcher) EdgeEffects(ctx context.Context) (map[Edge]float64, error) {
	out := map[Edge]float64{}
	edges := Edges(p.m.Config)
	for i, e := range edges {
		_, eff, err := p.PathPatch(ctx, e.From, e.To)
		if err != nil {
			return nil, err
		}
		out[e] = eff
		p.progress("path patching", i+1, len(edges))
	}
	return out, nil
}

// TruthEdges keeps the edges whose effect reaches frac of the clean-corrupt
// gap in absolute value and that lie on a path from the embeddings to the
// logits.
func TruthEdges(effects map[Edge]float64, frac float64) []Edge {
	var kept []Edge
	for e, v := range effects {
		if math.Abs(v) >= frac {
			kept = append(kept, e)
		}
	}
	return sortEdges(connected(kept))
}

func sortEdges(es []Edge) []Edge {
	key := func(n Node) int { return (order(n, 1<<20)+1)*1000 + n.Head }
	for i := 1; i < len(es); i++ {
		for j := i; j > 0; j-- {
			a, b := es[j-1], es[j]
			if key(a.To) > key(b.To) || key(a.To) == key(b.To) && key(a.From) > key(b.From) {
				es[j-1], es[j] = b, a
			}
		}
	}
	return es
}

// NodeScores gives every component's activation-patching effect (noising,
// absolute value): the patching method's node ranking.
func (p *Patcher) NodeScores(ctx context.Context) (map[Node]float64, error) {
	out := map[Node]float64{}
	comps := Components(p.m.Config)
	for i, n := range comps {
		_, e, err := p.Patch(ctx, Noising, n)
		if err != nil {
			return nil, err
		}
		out[n] = math.Abs(e)
		p.progress("patching", i+1, len(comps))
	}
	return out, nil
}

// NodeAUC is the ranking AUC of per-component scores against a true node
// set.
func NodeAUC(comps []Node, scores map[Node]float64, truth []Node) float64 {
	in := map[Node]bool{}
	for _, n := range truth {
		in[n] = true
	}
	s := make([]float64, len(comps))
	t := make([]bool, len(comps))
	for i, n := range comps {
		s[i], t[i] = scores[n], in[n]
	}
	return RankAUC(s, t)
}

// EdgeAUC is the ranking AUC of per-edge scores against a true edge set.
func EdgeAUC(edges []Edge, scores map[Edge]float64, truth []Edge) float64 {
	in := map[Edge]bool{}
	for _, e := range truth {
		in[e] = true
	}
	s := make([]float64, len(edges))
	t := make([]bool, len(edges))
	for i, e := range edges {
		s[i], t[i] = scores[e], in[e]
	}
	return RankAUC(s, t)
}

// SweepAUC turns an ACDC threshold sweep into node and edge ROC AUCs.
func SweepAUC(comps []Node, edges []Edge, sweep []*ACDCResult, truthNodes []Node, truthEdges []Edge) (nodeAUC, edgeAUC float64) {
	var np, ep []ROCPoint
	for _, r := range sweep {
		pt, _, _ := Rates(NodesOf(r.Kept), truthNodes, len(comps))
		np = append(np, pt)
		if truthEdges != nil {
			pt, _, _ = Rates(r.Kept, truthEdges, len(edges))
			ep = append(ep, pt)
		}
	}
	nodeAUC, edgeAUC = CurveAUC(np), math.NaN()
	if truthEdges != nil {
		edgeAUC = CurveAUC(ep)
	}
	return nodeAUC, edgeAUC
}
