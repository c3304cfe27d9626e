package circuits

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/loupe-dev/loupe/probe"
	"github.com/loupe-dev/loupe/probe/compute"
)

// RunCut runs the clean prompts with the given edges cut: each receiver
// reads, in place of a cut sender's actual output in this run, the
// sender's output on the corrupted prompt. It returns the mean metric.
func (p *Patcher) RunCut(ctx context.Context, cut []Edge) (float64, error) {
	c := p.m.Config
	into := map[Node][]Node{}
	for _, e := range cut {
		if err := CheckEdge(c, e); err != nil {
			return 0, err
		}
		into[e.To] = append(into[e.To], e.From)
	}
	return p.runEdits(ctx, Noising, func(ch *chunk) []probe.Edit { return p.cutEdits(ch, into) })
}

// cutEdits builds one chunk's edits: recorders of every sender's output in
// this run, then the receivers' inputs moved by (corrupted − actual) of
// their cut senders.
func (p *Patcher) cutEdits(ch *chunk, into map[Node][]Node) []probe.Edit {
	c := p.m.Config
	D, H := c.DModel, c.Heads
	cur := map[string][]float32{} // this run's outputs by hook name
	senders := map[string]bool{}
	for _, us := range into {
		for _, u := range us {
			senders[outName(u)] = true
		}
	}
	var edits []probe.Edit
	for name := range senders {
		edits = append(edits, probe.Edit{Hook: name, Fn: func(b compute.Backend, _ string, t compute.Tensor, _ []int) (compute.Tensor, error) {
			cur[name] = b.ToHost(t)
			return t, nil
		}})
	}
	// delta adds Σ (corrupted − actual) of senders to rows [N, width] of x
	// at column offset off.
	delta := func(x []float32, width, off int, us []Node) error {
		for _, u := range us {
			name := outName(u)
			now, corr := cur[name], ch.corruptRun.Cache[name]
			if now == nil || corr == nil {
				return fmt.Errorf("cut %s: output of %s not seen", name, u)
			}
			stride, lo := D, 0
			if u.Kind == NodeHead {
				stride, lo = H*D, u.Head*D
			}
			n := len(x) / width
			for r := 0; r < n; r++ {
				dst := x[r*width+off : r*width+off+D]
				a, b := now[r*stride+lo:r*stride+lo+D], corr.Data[r*stride+lo:r*stride+lo+D]
				for d := range dst {
					dst[d] += b[d] - a[d]
				}
			}
		}
		return nil
	}
	heads := map[int][]Node{}
	for v := range into {
		if v.Kind == NodeHead {
			heads[v.Layer] = append(heads[v.Layer], v)
		}
	}
	for l, vs := range heads {
		edits = append(edits, probe.Edit{Hook: fmt.Sprintf("blocks.%d.hook_attn_in", l), Fn: func(b compute.Backend, _ string, t compute.Tensor, _ []int) (compute.Tensor, error) {
			x := b.ToHost(t)
			for _, v := range vs {
				if err := delta(x, H*D, v.Head*D, into[v]); err != nil {
					return nil, err
				}
			}
			return b.FromHost(x, t.Shape()...), nil
		}})
	}
	for v, us := range into {
		var hook string
		switch v.Kind {
		case NodeMLP:
			hook = fmt.Sprintf("blocks.%d.hook_mlp_in", v.Layer)
		case NodeLogits:
			hook = fmt.Sprintf("blocks.%d.hook_resid_post", c.Layers-1)
		default:
			continue
		}
		edits = append(edits, probe.Edit{Hook: hook, Fn: func(b compute.Backend, _ string, t compute.Tensor, _ []int) (compute.Tensor, error) {
			x := b.ToHost(t)
			if err := delta(x, D, 0, us); err != nil {
				return nil, err
			}
			return b.FromHost(x, t.Shape()...), nil
		}})
	}
	return edits
}

// outName is the hook whose value is node u's write to the residual.
func outName(u Node) string {
	switch u.Kind {
	case NodeHead:
		return fmt.Sprintf("blocks.%d.attn.hook_result", u.Layer)
	case NodeMLP:
		return fmt.Sprintf("blocks.%d.hook_mlp_out", u.Layer)
	}
	return "blocks.0.hook_resid_pre"
}

// ACDCResult is one ACDC run.
type ACDCResult struct {
	Threshold float64
	Kept      []Edge  // the circuit's edges
	Metric    float64 // the circuit's distance from the clean run
	Runs      int
	Wall      time.Duration
}

// distance is what ACDC keeps small: KL(clean ‖ run), or for the other
// metrics how far the run falls below the clean score.
func (p *Patcher) distance(m float64) float64 {
	if p.opt.Metric == KL {
		return m
	}
	return p.Clean - m
}

// ACDC runs Conmy et al.'s automatic circuit discovery at one threshold:
// visiting receivers from the logits back to the embeddings, and each
// receiver's senders from the latest back, it cuts an edge for good when
// cutting it moves the distance from the clean run by less than threshold.
// A receiver left with no outgoing edge feeds nothing, so its incoming
// edges are cut without a forward pass.
func (p *Patcher) ACDC(ctx context.Context, threshold float64) (*ACDCResult, error) {
	start, runs0 := time.Now(), p.Runs
	c := p.m.Config
	nodes := Nodes(c)
	var cut []Edge
	isCut := map[Edge]bool{}
	m, err := p.RunCut(ctx, nil)
	if err != nil {
		return nil, err
	}
	cur := p.distance(m)
	stage := fmt.Sprintf("acdc %g", threshold)
	seen, total := 0, len(Edges(c))
	for i := len(nodes) - 1; i >= 1; i-- {
		v := nodes[i]
		live := v.Kind == NodeLogits
		for _, w := range nodes[i+1:] {
			if order(w, c.Layers) > order(v, c.Layers) && !isCut[Edge{v, w}] {
				live = true
				break
			}
		}
		for j := i - 1; j >= 0; j-- {
			u := nodes[j]
			if order(u, c.Layers) >= order(v, c.Layers) {
				continue
			}
			e := Edge{u, v}
			seen++
			p.progress(stage, seen, total)
			if !live {
				cut, isCut[e] = append(cut, e), true
				continue
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			m, err := p.RunCut(ctx, append(cut, e))
			if err != nil {
				return nil, err
			}
			if d := p.distance(m); d-cur < threshold {
				cut, isCut[e], cur = append(cut, e), true, d
			}
		}
	}
	res := &ACDCResult{Threshold: threshold, Metric: cur, Runs: p.Runs - runs0}
	for _, e := range Edges(c) {
		if !isCut[e] {
			res.Kept = append(res.Kept, e)
		}
	}
	res.Kept = connected(res.Kept)
	res.Wall = time.Since(start)
	return res, nil
}

// connected keeps the edges that lie on a path from the embeddings to the
// logits.
func connected(edges []Edge) []Edge {
	fwd, back := map[Node][]Node{}, map[Node][]Node{}
	for _, e := range edges {
		fwd[e.From] = append(fwd[e.From], e.To)
		back[e.To] = append(back[e.To], e.From)
	}
	reach := func(start Node, adj map[Node][]Node) map[Node]bool {
		seen := map[Node]bool{start: true}
		stack := []Node{start}
		for len(stack) > 0 {
			n := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			for _, m := range adj[n] {
				if !seen[m] {
					seen[m] = true
					stack = append(stack, m)
				}
			}
		}
		return seen
	}
	fromIn, toOut := reach(EmbedNode(), fwd), reach(LogitsNode(), back)
	var out []Edge
	for _, e := range edges {
		if fromIn[e.From] && toOut[e.To] {
			out = append(out, e)
		}
	}
	return out
}

// NodesOf lists the heads and MLPs an edge set touches.
func NodesOf(edges []Edge) []Node {
	seen := map[Node]bool{}
	var out []Node
	for _, e := range edges {
		for _, n := range []Node{e.From, e.To} {
			if (n.Kind == NodeHead || n.Kind == NodeMLP) && !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	slices.SortFunc(out, func(a, b Node) int { return order(a, 1<<20)*1000 + a.Head - order(b, 1<<20)*1000 - b.Head })
	return out
}

// ACDCSweep runs ACDC at each threshold (the ROC curve's points).
func (p *Patcher) ACDCSweep(ctx context.Context, thresholds []float64) ([]*ACDCResult, error) {
	var out []*ACDCResult
	for _, t := range thresholds {
		r, err := p.ACDC(ctx, t)
		if err != nil {
			return nil, fmt.Errorf("acdc at threshold %g: %w", t, err)
		}
		out = append(out, r)
	}
	return out, nil
}
