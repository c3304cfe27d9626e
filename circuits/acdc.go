package circuits

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/loupe-dev/loupe/probe"
	"github.com/loupe-dev/loupe/probe/compute"
)

// RunCut runs the clean prompts with the given edges cut: each receiver
// reads, in place of a cut sender's actual output in this run, the
// sender's output on the corrupted prompt. It returns the mean metric.
func (p *Patcher) RunCut(ctx context.Context, cut []Edge) (float64, error) {
	ms, err := p.RunCuts(ctx, [][]Edge{cut})
	if err != nil {
		return 0, err
	}
	return ms[0], nil
}

// RunCuts runs several cut sets in one forward pass per chunk: the chunk's
// clean prompts are stacked once per cut set, each copy with its own cuts,
// and the mean metric of each set comes back. Every copy computes what
// RunCut of its set alone computes (the rows of a batch do not mix); one
// pass of k copies costs the arithmetic of k passes but not their
// per-pass overheads, and it fills a GPU that one small batch leaves idle.
func (p *Patcher) RunCuts(ctx context.Context, cuts [][]Edge) ([]float64, error) {
	return p.runCuts(ctx, cuts, nil)
}

// runCuts is RunCuts, resumed at pre's block when pre is not nil: every cut
// set must then leave the blocks before it as pre found them (no edge into
// them that pre's pass did not cut).
func (p *Patcher) runCuts(ctx context.Context, cuts [][]Edge, pre *prefix) ([]float64, error) {
	c := p.m.Config
	intos := make([]map[Node][]Node, len(cuts))
	for k, cut := range cuts {
		intos[k] = map[Node][]Node{}
		for _, e := range cut {
			if err := CheckEdge(c, e); err != nil {
				return nil, err
			}
			intos[k][e.To] = append(intos[k][e.To], e.From)
		}
	}
	sums := make([]float64, len(cuts))
	n := 0
	for ci, ch := range p.chunks {
		in := make([][]int, 0, len(cuts)*len(ch.clean))
		for range cuts {
			in = append(in, ch.clean...)
		}
		opt := probe.Options{Logits: probe.LogitsLast}
		var known map[string][]float32
		var kd *senderDiffs
		if pre != nil {
			known, kd = pre.chunks[ci], pre.diffs[ci]
			opt.From = &probe.Resume{Layer: pre.layer, Resid: tile(known[pre.start()], len(cuts))}
		}
		opt.Hooks = &probe.Hooks{Edit: p.cutEdits(ch, intos, known, kd)}
		r, err := p.m.Forward(ctx, in, opt)
		if err != nil {
			return nil, err
		}
		p.Runs += len(cuts)
		p.Forwards++
		p.BlockRuns += len(cuts) * c.Layers
		if pre != nil {
			p.BlockRuns -= len(cuts) * pre.layer
		}
		for i, v := range p.scores(ch, r) {
			sums[i/len(ch.clean)] += v
		}
		n += len(ch.clean)
	}
	for k := range sums {
		sums[k] /= float64(n)
	}
	return sums, nil
}

// tile repeats v k times (v itself when k is 1).
func tile(v []float32, k int) []float32 {
	if k == 1 {
		return v
	}
	out := make([]float32, 0, k*len(v))
	for range k {
		out = append(out, v...)
	}
	return out
}

// prefix is what a set of cuts leaves of a pass before block layer: per
// chunk, the residual stream entering the block and every node's output
// before it, from one pass with those cuts. A pass whose cuts all reach
// block layer or later can resume there (probe.Options.From) and run only
// the blocks the cuts change.
type prefix struct {
	layer  int
	chunks []map[string][]float32
	// diffs caches, per chunk, the (corrupted − actual) rows of the
	// senders before block layer: they are the same in every pass and
	// every copy that resumes from this prefix.
	diffs []*senderDiffs
}

// senderDiffs is a [senders, rows·D] matrix of (corrupted − actual), one
// row per sender in forward order, filled as senders are first needed
// (the rows not filled are zero).
type senderDiffs struct {
	m      []float32
	filled []bool
}

func (pre *prefix) start() string { return fmt.Sprintf("blocks.%d.hook_resid_pre", pre.layer) }

// prefixHooks are the hooks a prefix at block layer keeps.
func prefixHooks(layer int) []string {
	hooks := []string{fmt.Sprintf("blocks.%d.hook_resid_pre", layer), "blocks.0.hook_resid_pre"}
	for l := 0; l < layer; l++ {
		hooks = append(hooks, fmt.Sprintf("blocks.%d.attn.hook_result", l), fmt.Sprintf("blocks.%d.hook_mlp_out", l))
	}
	return hooks
}

// makePrefix runs the clean prompts with cut and keeps their prefix at
// block layer.
func (p *Patcher) makePrefix(ctx context.Context, cut []Edge, layer int) (*prefix, error) {
	into := map[Node][]Node{}
	for _, e := range cut {
		into[e.To] = append(into[e.To], e.From)
	}
	pre := &prefix{layer: layer}
	hooks := prefixHooks(layer)
	for _, ch := range p.chunks {
		r, err := p.m.Forward(ctx, ch.clean, probe.Options{Logits: probe.LogitsNone,
			Hooks: &probe.Hooks{Cache: hooks, Edit: p.cutEdits(ch, []map[Node][]Node{into}, nil, nil)}})
		if err != nil {
			return nil, err
		}
		p.Runs++
		p.Forwards++
		p.BlockRuns += p.m.Config.Layers
		kept := map[string][]float32{}
		for _, h := range hooks {
			a := r.Cache[h]
			if a == nil {
				return nil, fmt.Errorf("acdc: prefix at block %d: %s not cached", layer, h)
			}
			kept[h] = a.Data
		}
		pre.chunks = append(pre.chunks, kept)
		pre.diffs = append(pre.diffs, &senderDiffs{})
	}
	return pre, nil
}

// recvLayer is the block in which an edge into v is cut: v's own, and for
// the logits the last block (its hook_resid_post).
func recvLayer(c probe.Config, v Node) int {
	if v.Kind == NodeLogits {
		return c.Layers - 1
	}
	return v.Layer
}

// cutEdits builds one chunk's edits for a pass that stacks len(intos)
// copies of its clean prompts: recorders of the senders' outputs in this
// run, then in copy k the receivers' inputs moved by (corrupted − actual)
// of the senders intos[k] cuts from them.
//
// A receiver reads the residual stream, the sum of every earlier node's
// write, so the sum over its cut senders is also the whole stream's
// (corrupted − actual) less the sum over its senders still connected.
// Late in ACDC nearly every edge is cut, and that form costs the few kept
// edges instead of the thousands cut; it is used when it is the shorter
// and the model's stream is such a sum (sumOK: no norm after a block's
// output, see NewPatcher).
//
// known and kd, for a pass resumed from a prefix, are the prefix's values
// for this chunk and its cache of the known senders' differences.
func (p *Patcher) cutEdits(ch *chunk, intos []map[Node][]Node, known map[string][]float32, kd *senderDiffs) []probe.Edit {
	c := p.m.Config
	D, H := c.DModel, c.Heads
	// This run's outputs by hook name, every copy's rows; known holds, for
	// one copy (the same in all), those of the blocks a resumed pass does
	// not run.
	cur := map[string][]float32{}
	// term is one ± (corrupted − actual) of a hook's slice.
	type term struct {
		hook   string
		stride int // floats per row of the hook's value
		lo     int // the slice's first column
		sign   float32
		sender int // the sender's place in forward order; -1 for the whole stream
	}
	type recv struct {
		hook    string // where v reads its input
		width   int    // floats per row there
		off     int    // v's columns
		k       int    // the copy
		senders int    // how many nodes come before v
		terms   []term
	}
	out := func(u Node) term {
		if u.Kind == NodeHead {
			return term{outName(u), H * D, u.Head * D, 1, senderIndex(c, u)}
		}
		return term{outName(u), D, 0, 1, senderIndex(c, u)}
	}
	var rs []recv
	for k, into := range intos {
		for v, us := range into {
			r := recv{k: k, width: D}
			var stream string // the residual stream v reads, whole
			switch v.Kind {
			case NodeHead:
				r.hook, r.width, r.off = fmt.Sprintf("blocks.%d.hook_attn_in", v.Layer), H*D, v.Head*D
				stream = fmt.Sprintf("blocks.%d.hook_resid_pre", v.Layer)
			case NodeMLP:
				r.hook, stream = fmt.Sprintf("blocks.%d.hook_mlp_in", v.Layer), fmt.Sprintf("blocks.%d.hook_resid_mid", v.Layer)
			case NodeLogits:
				r.hook = fmt.Sprintf("blocks.%d.hook_resid_post", c.Layers-1)
				stream = r.hook
			default:
				continue
			}
			all := sendersOf(c, v)
			r.senders = len(all)
			if p.sumOK && 2*len(us) > len(all) {
				r.terms = append(r.terms, term{stream, D, 0, 1, -1})
				isCut := map[Node]bool{}
				for _, u := range us {
					isCut[u] = true
				}
				for _, u := range all {
					if !isCut[u] {
						t := out(u)
						t.sign = -1
						r.terms = append(r.terms, t)
					}
				}
			} else {
				for _, u := range us {
					r.terms = append(r.terms, out(u))
				}
			}
			rs = append(rs, r)
		}
	}
	var edits []probe.Edit
	recorded := map[string]bool{}
	for _, r := range rs {
		for _, t := range r.terms {
			if recorded[t.hook] {
				continue
			}
			recorded[t.hook] = true
			if known[t.hook] != nil {
				continue // a block the pass does not run
			}
			name := t.hook
			edits = append(edits, probe.Edit{Hook: name, Fn: func(b compute.Backend, _ string, t compute.Tensor, _ []int) (compute.Tensor, error) {
				cur[name] = b.ToHost(t)
				return t, nil
			}})
		}
	}
	byHook := map[string][]recv{}
	var hooks []string
	for _, r := range rs {
		if byHook[r.hook] == nil {
			hooks = append(hooks, r.hook)
		}
		byHook[r.hook] = append(byHook[r.hook], r)
	}
	// Each receiver's input moves by Σ sign·(corrupted − actual) over its
	// terms. A block's receivers take theirs in matrix products
	// (coefficients [receivers, senders] × differences [senders, rows·D]):
	// a receiver can have hundreds of terms, and summing them one by one
	// cost more than the forward pass. The differences of senders before
	// a resumed pass's first block are the same in every copy and every
	// pass from that prefix, so they come from the prefix's cache (kd),
	// computed once; those of the senders this pass runs are computed once
	// per pass and copy (run), for the few senders used.
	copies := len(intos)
	nodes := 1 + c.Layers*(H+1)
	run := make([]map[int][]float32, copies)
	// rowDiff gives (corrupted − actual) of term tm in copy k, rows × D.
	rowDiff := func(tm term, k, rows int, into []float32) error {
		now, corr := cur[tm.hook], ch.corruptRun.Cache[tm.hook]
		perCopy := false // now's rows are one copy's
		if v := known[tm.hook]; v != nil {
			now, perCopy = v, true
		}
		if now == nil || corr == nil {
			return fmt.Errorf("cut: %s not seen", tm.hook)
		}
		for i := 0; i < rows; i++ {
			ai := k*rows + i
			if perCopy {
				ai = i
			}
			a, b := now[ai*tm.stride+tm.lo:][:D], corr.Data[i*tm.stride+tm.lo:][:D]
			dst := into[i*D:][:D]
			for d := range dst {
				dst[d] = b[d] - a[d]
			}
		}
		return nil
	}
	for _, hook := range hooks {
		rs := byHook[hook]
		edits = append(edits, probe.Edit{Hook: hook, Fn: func(b compute.Backend, _ string, t compute.Tensor, _ []int) (compute.Tensor, error) {
			x := b.ToHost(t)
			width := rs[0].width            // one hook, one width
			rows := len(x) / width / copies // rows of one copy
			n := rows * D
			byCopy := map[int][]recv{}
			for _, r := range rs {
				byCopy[r.k] = append(byCopy[r.k], r)
			}
			U := 0 // senders of the latest receiver here
			for _, r := range rs {
				U = max(U, r.senders)
			}
			// One row of coefficients per (copy, receiver), copies in
			// order: the known senders' part of every copy is one matrix
			// product over the prefix's cache (a GEMM, not a GEMV per
			// copy), the run senders' part one per copy.
			ks := slices.Sorted(maps.Keys(byCopy))
			base := map[int]int{}
			total := 0
			for _, k := range ks {
				base[k] = total
				total += len(byCopy[k])
			}
			var coefKnown []float32 // [total, U] over kd's rows
			delta := make([]float32, total*n)
			stream := make([]float32, n)
			any := false
			for _, k := range ks {
				group := byCopy[k]
				var runSenders []int    // the senders this pass runs, in first use
				runCol := map[int]int{} // sender → its column in the run product
				type use struct {
					gi, sender int
					sign       float32
				}
				var runUses []use
				for gi, r := range group {
					for _, tm := range r.terms {
						if tm.sender < 0 {
							// The whole stream: added here, one per receiver.
							if err := rowDiff(tm, k, rows, stream); err != nil {
								return nil, fmt.Errorf("cut into %s: %w", hook, err)
							}
							for i := 0; i < rows; i++ {
								dst := x[(k*rows+i)*width+r.off:][:D]
								for d, v := range stream[i*D : (i+1)*D] {
									dst[d] += tm.sign * v
								}
							}
							continue
						}
						any = true
						if known[tm.hook] != nil && kd != nil {
							if kd.m == nil {
								kd.m, kd.filled = make([]float32, nodes*n), make([]bool, nodes)
							}
							if !kd.filled[tm.sender] {
								if err := rowDiff(tm, 0, rows, kd.m[tm.sender*n:(tm.sender+1)*n]); err != nil {
									return nil, fmt.Errorf("cut into %s: %w", hook, err)
								}
								kd.filled[tm.sender] = true
							}
							if coefKnown == nil {
								coefKnown = make([]float32, total*U)
							}
							coefKnown[(base[k]+gi)*U+tm.sender] += tm.sign
							continue
						}
						if run[k] == nil {
							run[k] = map[int][]float32{}
						}
						if run[k][tm.sender] == nil {
							d := make([]float32, n)
							if err := rowDiff(tm, k, rows, d); err != nil {
								return nil, fmt.Errorf("cut into %s: %w", hook, err)
							}
							run[k][tm.sender] = d
						}
						if _, ok := runCol[tm.sender]; !ok {
							runCol[tm.sender] = len(runSenders)
							runSenders = append(runSenders, tm.sender)
						}
						runUses = append(runUses, use{gi, tm.sender, tm.sign})
					}
				}
				if runUses != nil {
					R := len(runSenders)
					coef, mat := make([]float32, len(group)*R), make([]float32, 0, R*n)
					for _, u := range runUses {
						coef[u.gi*R+runCol[u.sender]] += u.sign
					}
					for _, sd := range runSenders {
						mat = append(mat, run[k][sd]...)
					}
					compute.HostMulNN(len(group), n, R, 1, coef, R, mat, n, 0, delta[base[k]*n:], n)
				}
			}
			if !any {
				return b.FromHost(x, t.Shape()...), nil // the whole-stream terms only
			}
			if coefKnown != nil {
				compute.HostMulNN(total, n, U, 1, coefKnown, U, kd.m, n, 1, delta, n)
			}
			for _, k := range ks {
				for gi, r := range byCopy[k] {
					d := delta[(base[k]+gi)*n:][:n]
					for i := 0; i < rows; i++ {
						dst := x[(k*rows+i)*width+r.off:][:D]
						for j, v := range d[i*D : (i+1)*D] {
							dst[j] += v
						}
					}
				}
			}
			return b.FromHost(x, t.Shape()...), nil
		}})
	}
	return edits
}

// senderIndex is u's place among the nodes in forward order (the
// embeddings first, then each block's heads and its MLP).
func senderIndex(c probe.Config, u Node) int {
	switch u.Kind {
	case NodeHead:
		return 1 + u.Layer*(c.Heads+1) + u.Head
	case NodeMLP:
		return 1 + u.Layer*(c.Heads+1) + c.Heads
	}
	return 0
}

// sendersOf lists the nodes computed before v, in forward order.
func sendersOf(c probe.Config, v Node) []Node {
	var out []Node
	for _, u := range Nodes(c) {
		if u.Kind != NodeLogits && order(u, c.Layers) < order(v, c.Layers) {
			out = append(out, u)
		}
	}
	return out
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
	Pruned    []Node  // with ACDCNodes: the nodes the node pass cut
	Runs      int
	// Tests counts the edge (and node) tests a forward pass decided;
	// Decided counts the edges decided: those cut (by a test, by the node
	// pass, or as the inputs of a receiver left with no outgoing edge) and
	// those an edge test kept.
	Tests, Decided int
	// Partial says ACDC stopped at PatchOptions.ACDCStopAfter: Kept is
	// then every edge it had not cut, the undecided ones included.
	Partial bool
	Wall    time.Duration
}

// errStopped is how the greedy loop says that ACDCStopAfter has passed.
var errStopped = errors.New("acdc: time limit reached")

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
// edges are cut without a forward pass. PatchOptions.ACDCBatch edge tests
// share one forward pass (speculatively; the result is the same).
//
// With PatchOptions.ACDCNodes the same rule first runs over whole nodes,
// latest first (a node's test cuts all its outgoing edges), and the edge
// pass then visits only the edges among the nodes left: one pass per node
// plus one per remaining edge, in place of one per edge of the whole graph
// (a coarse-to-fine search; the edges it skips are cut, as it decided).
func (p *Patcher) ACDC(ctx context.Context, threshold float64) (*ACDCResult, error) {
	start, runs0 := time.Now(), p.Runs
	c := p.m.Config
	nodes := Nodes(c)
	m, err := p.RunCut(ctx, nil)
	if err != nil {
		return nil, err
	}
	if p.opt.ACDCStopAfter > 0 && p.stopAt.IsZero() {
		p.stopAt = time.Now().Add(p.opt.ACDCStopAfter)
	}
	g := &greedy{p: p, threshold: threshold, cur: p.distance(m), isCut: map[Edge]bool{},
		stage: fmt.Sprintf("acdc %g", threshold), total: len(Edges(c))}
	res := &ACDCResult{Threshold: threshold}
	if p.opt.ACDCNodes {
		var units [][]Edge
		var comps []Node
		for i := len(nodes) - 2; i >= 1; i-- { // latest first; not the logits or the embeddings
			u := nodes[i]
			var outs []Edge
			for _, w := range nodes[i+1:] {
				if order(w, c.Layers) > order(u, c.Layers) {
					outs = append(outs, Edge{u, w})
				}
			}
			units, comps = append(units, outs), append(comps, u)
		}
		g.stage, g.total = fmt.Sprintf("acdc nodes %g", threshold), len(units)
		cutNodes, err := g.run(ctx, units)
		if errors.Is(err, errStopped) {
			return g.result(res, start, runs0, true), nil
		}
		if err != nil {
			return nil, err
		}
		for i, u := range comps {
			if cutNodes[i] {
				res.Pruned = append(res.Pruned, u)
			}
		}
		g.stage, g.total, g.seen = fmt.Sprintf("acdc %g, %d of %d nodes left", threshold, len(comps)-len(res.Pruned), len(comps)), len(Edges(c)), 0
	}
	g.edgePass = true
	for i := len(nodes) - 1; i >= 1; i-- {
		v := nodes[i]
		live := v.Kind == NodeLogits
		for _, w := range nodes[i+1:] {
			if order(w, c.Layers) > order(v, c.Layers) && !g.isCut[Edge{v, w}] {
				live = true
				break
			}
		}
		var units [][]Edge // v's senders' edges not yet cut, latest sender first
		for j := i - 1; j >= 0; j-- {
			if u := nodes[j]; order(u, c.Layers) < order(v, c.Layers) {
				if e := (Edge{u, v}); !g.isCut[e] {
					units = append(units, []Edge{e})
				}
			}
		}
		if !live {
			for _, u := range units {
				g.cutFor(u)
			}
			g.seen += len(units)
			p.progress(g.stage, g.seen, g.total)
			continue
		}
		_, err := g.run(ctx, units)
		if errors.Is(err, errStopped) {
			return g.result(res, start, runs0, true), nil
		}
		if err != nil {
			return nil, err
		}
	}
	return g.result(res, start, runs0, false), nil
}

// result fills res from the search's state: the edges not cut (on an
// embed → logits path) are the circuit, and partial says the search
// stopped before deciding them all.
func (g *greedy) result(res *ACDCResult, start time.Time, runs0 int, partial bool) *ACDCResult {
	c := g.p.m.Config
	res.Metric, res.Runs, res.Tests, res.Decided, res.Partial = g.cur, g.p.Runs-runs0, g.tests, len(g.cut)+g.kept, partial
	res.Kept = nil
	for _, e := range Edges(c) {
		if !g.isCut[e] {
			res.Kept = append(res.Kept, e)
		}
	}
	res.Kept = connected(res.Kept)
	res.Wall = time.Since(start)
	return res
}

// greedy is ACDC's state: the edges cut so far and the distance with them
// cut.
type greedy struct {
	p         *Patcher
	pre       *prefix // the blocks before pre.layer as the cuts so far leave them
	threshold float64
	cut       []Edge
	isCut     map[Edge]bool
	cur       float64
	stage     string
	seen      int
	total     int
	tests     int  // tests a pass decided
	edgePass  bool // the units are single edges (not the node pass)
	kept      int  // edges the edge pass tested and kept
}

// stopped says whether ACDC's time is up (or, in tests, its test budget).
func (g *greedy) stopped() bool {
	if g.p.stopAfterTests > 0 {
		return g.tests >= g.p.stopAfterTests
	}
	return !g.p.stopAt.IsZero() && time.Now().After(g.p.stopAt)
}

func (g *greedy) cutFor(es []Edge) {
	for _, e := range es {
		if !g.isCut[e] {
			g.cut, g.isCut[e] = append(g.cut, e), true
			if g.pre != nil && recvLayer(g.p.m.Config, e.To) < g.pre.layer {
				g.pre = nil // the cut changes a block the prefix kept
			}
		}
	}
}

// prefixFor gives a prefix for a pass whose new cuts reach block layer
// and later, made once and kept while the cuts before that block stay as
// they are; nil at block 0 (nothing to skip) or when resuming is off.
func (g *greedy) prefixFor(ctx context.Context, layer int) (*prefix, error) {
	if layer <= 0 || g.p.noResume {
		return nil, nil
	}
	if g.pre == nil || g.pre.layer != layer {
		pre, err := g.p.makePrefix(ctx, g.cut, layer)
		if err != nil {
			return nil, err
		}
		g.pre = pre
	}
	return g.pre, nil
}

// run decides units (groups of edges) in order: a unit is cut for good
// when cutting it as well moves the distance by less than the threshold.
// Each pass resumes at the block of the earliest receiver it cuts into
// (ACDC visits receivers from the last back, so the blocks before it run
// as one pass already found them; see prefix).
// It speculates that the next k units are all cut (most are): copy j of a
// pass cuts the first j+1 of them. Reading the copies in order replays the
// one-at-a-time decisions exactly up to the first unit kept; the copies
// after it assumed that unit cut, so the next pass starts after it. It
// returns which units were cut.
func (g *greedy) run(ctx context.Context, units [][]Edge) ([]bool, error) {
	spec := max(g.p.opt.ACDCBatch, 1)
	cutUnit := make([]bool, len(units))
	for next := 0; next < len(units); {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if g.stopped() {
			return cutUnit, errStopped
		}
		k := min(spec, len(units)-next)
		sets := make([][]Edge, k)
		acc := slices.Clone(g.cut)
		for j := range sets {
			acc = append(acc, units[next+j]...)
			sets[j] = slices.Clip(slices.Clone(acc))
		}
		// Blocks before the earliest new cut's receiver run as the cuts so
		// far leave them: resume after them.
		start := g.p.m.Config.Layers
		for _, u := range units[next : next+k] {
			for _, e := range u {
				start = min(start, recvLayer(g.p.m.Config, e.To))
			}
		}
		pre, err := g.prefixFor(ctx, start)
		if err != nil {
			return nil, err
		}
		ms, err := g.p.runCuts(ctx, sets, pre)
		if err != nil {
			return nil, err
		}
		for _, m := range ms {
			i := next
			next++
			g.seen++
			g.tests++
			if d := g.p.distance(m); d-g.cur < g.threshold {
				g.cutFor(units[i])
				g.cur, cutUnit[i] = d, true
				continue
			}
			if g.edgePass {
				g.kept++
			}
			break // unit i is kept: the later copies cut it
		}
		g.p.progress(g.stage, g.seen, g.total)
	}
	return cutUnit, nil
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
		if r.Partial {
			break // the time limit is the whole sweep's
		}
	}
	return out, nil
}
