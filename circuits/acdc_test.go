package circuits

import (
	"context"
	"math"
	"slices"
	"testing"
)

// Batched ACDC (several edge tests per forward pass, speculating that each
// edge is cut) finds what the one-edge-at-a-time loop finds: the same
// circuit, the same final distance, the same number of edge tests, at a
// threshold that keeps some edges and cuts others.
func TestACDCBatchedEqualsSequential(t *testing.T) {
	m, prompts := toyIOI(t, 8)
	ctx := context.Background()
	var ref *ACDCResult
	for _, k := range []int{1, 3, 16} {
		p, err := NewPatcher(ctx, m, prompts, PatchOptions{Metric: KL, ACDCBatch: k})
		if err != nil {
			t.Fatal(err)
		}
		r, err := p.ACDC(ctx, 0.05)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("batch %d: %d edges kept, distance %.6f, %d edge tests in %d forward passes, %v", k, len(r.Kept), r.Metric, r.Runs, p.Forwards, r.Wall)
		if ref == nil {
			ref = r
			if len(r.Kept) == 0 || len(r.Kept) > len(Edges(m.Config))/2 {
				t.Fatalf("threshold keeps %d of %d edges: pick one that keeps some", len(r.Kept), len(Edges(m.Config)))
			}
			continue
		}
		if !slices.Equal(r.Kept, ref.Kept) {
			t.Errorf("batch %d keeps %v, one at a time %v", k, r.Kept, ref.Kept)
		}
		if math.Abs(r.Metric-ref.Metric) > 1e-6 {
			t.Errorf("batch %d: distance %.8f, one at a time %.8f", k, r.Metric, ref.Metric)
		}
	}
}

// RunCuts of several cut sets equals RunCut of each.
func TestRunCutsEqualsRunCut(t *testing.T) {
	m, prompts := toyIOI(t, 6)
	ctx := context.Background()
	p, err := NewPatcher(ctx, m, prompts, PatchOptions{Metric: LogitDiff, Batch: 4})
	if err != nil {
		t.Fatal(err)
	}
	es := Edges(m.Config)
	sets := [][]Edge{nil, es[:1], es[3:9], es[len(es)/2:], es}
	got, err := p.RunCuts(ctx, sets)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range sets {
		want, err := p.RunCut(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(got[i]-want) > 1e-5 {
			t.Errorf("cut set %d (%d edges): stacked %.7f, alone %.7f", i, len(s), got[i], want)
		}
	}
	if math.Abs(got[0]-p.Clean) > 1e-5 || math.Abs(got[4]-p.Corrupt) > 1e-4 {
		t.Errorf("no cut %.6f (clean %.6f); every edge cut %.6f (corrupted %.6f)", got[0], p.Clean, got[4], p.Corrupt)
	}
}

// The toy model's residual stream is the sum of its nodes' writes, so cuts
// may be written through the whole stream; the two forms give one metric.
func TestCutThroughStreamEqualsSum(t *testing.T) {
	m, prompts := toyIOI(t, 6)
	ctx := context.Background()
	p, err := NewPatcher(ctx, m, prompts, PatchOptions{Metric: LogitDiff})
	if err != nil {
		t.Fatal(err)
	}
	if !p.sumOK {
		t.Fatal("the toy GPT-2's stream is not seen as the sum of its nodes' writes")
	}
	es := Edges(m.Config)
	var most []Edge // every edge but a few into each receiver: the stream form
	for i, e := range es {
		if i%7 != 0 {
			most = append(most, e)
		}
	}
	sets := [][]Edge{most, es}
	viaStream, err := p.RunCuts(ctx, sets)
	if err != nil {
		t.Fatal(err)
	}
	p.sumOK = false
	viaSum, err := p.RunCuts(ctx, sets)
	if err != nil {
		t.Fatal(err)
	}
	for i := range sets {
		if math.Abs(viaStream[i]-viaSum[i]) > 1e-4 {
			t.Errorf("cut set %d: through the stream %.7f, summed over senders %.7f", i, viaStream[i], viaSum[i])
		}
	}
	t.Logf("through the stream %v, summed %v", viaStream, viaSum)
}

// Coarse to fine: with ACDCNodes the node pass cuts whole nodes, and the
// circuit then has no edge touching a pruned node. (Its saving shows on big
// graphs: one run per node in place of one per edge of the pruned nodes;
// the toy graph is too small for that to tell.)
func TestACDCNodesFirst(t *testing.T) {
	m, prompts := toyIOI(t, 8)
	ctx := context.Background()
	for _, nodes := range []bool{false, true} {
		p, err := NewPatcher(ctx, m, prompts, PatchOptions{Metric: KL, ACDCNodes: nodes, ACDCBatch: 4})
		if err != nil {
			t.Fatal(err)
		}
		r, err := p.ACDC(ctx, 0.05)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("nodes first %v: pruned %v; %d edges kept, nodes %v; %d runs", nodes, r.Pruned, len(r.Kept), NodesOf(r.Kept), r.Runs)
		for _, e := range r.Kept {
			if slices.Contains(r.Pruned, e.From) || slices.Contains(r.Pruned, e.To) {
				t.Errorf("kept edge %s touches a pruned node", e)
			}
		}
		if nodes && len(r.Pruned) == 0 {
			t.Error("the node pass pruned nothing")
		}
	}
}

// ACDC resuming each pass at the earliest block its new cuts reach (the
// blocks before it kept from one pass) finds what passes from the
// embeddings find, edges only and nodes first.
func TestACDCResumedEqualsFull(t *testing.T) {
	m, prompts := toyIOI(t, 8)
	ctx := context.Background()
	for _, nodes := range []bool{false, true} {
		var res [2]*ACDCResult
		var passes, blocks [2]int
		for i, resume := range []bool{false, true} {
			p, err := NewPatcher(ctx, m, prompts, PatchOptions{Metric: KL, ACDCNodes: nodes, ACDCBatch: 3, Batch: 5})
			if err != nil {
				t.Fatal(err)
			}
			p.noResume = !resume
			if res[i], err = p.ACDC(ctx, 0.05); err != nil {
				t.Fatal(err)
			}
			passes[i], blocks[i] = p.Forwards, p.BlockRuns
		}
		t.Logf("nodes first %v: %d edges kept; from the embeddings %d passes running %d blocks, resumed %d passes running %d blocks",
			nodes, len(res[0].Kept), passes[0], blocks[0], passes[1], blocks[1])
		if blocks[1] >= blocks[0] {
			t.Errorf("resuming ran %d blocks, from the embeddings %d", blocks[1], blocks[0])
		}
		if !slices.Equal(res[0].Kept, res[1].Kept) || !slices.Equal(res[0].Pruned, res[1].Pruned) {
			t.Errorf("nodes first %v: resumed keeps %v (pruned %v), full %v (pruned %v)", nodes, res[1].Kept, res[1].Pruned, res[0].Kept, res[0].Pruned)
		}
		if math.Abs(res[0].Metric-res[1].Metric) > 1e-6 {
			t.Errorf("nodes first %v: distance resumed %.8f, full %.8f", nodes, res[1].Metric, res[0].Metric)
		}
	}
}

// ACDC stopped early is the full search's first decisions: every edge the
// full search keeps is still kept, every edge the stopped one cut is cut
// by the full one too, its counts add up, and a sweep ends at the stop.
// (The clock is replaced by a test budget, so nothing depends on wall
// time.)
func TestACDCStoppedIsAPrefix(t *testing.T) {
	m, prompts := toyIOI(t, 8)
	ctx := context.Background()
	full, err := NewPatcher(ctx, m, prompts, PatchOptions{Metric: KL})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := full.ACDC(ctx, 0.05)
	if err != nil {
		t.Fatal(err)
	}
	if ref.Partial || ref.Decided != len(Edges(m.Config)) {
		t.Fatalf("the full search: partial %v, %d of %d edges decided", ref.Partial, ref.Decided, len(Edges(m.Config)))
	}
	for _, batch := range []int{1, 4} {
		p, err := NewPatcher(ctx, m, prompts, PatchOptions{Metric: KL, ACDCBatch: batch})
		if err != nil {
			t.Fatal(err)
		}
		p.stopAfterTests = ref.Tests / 3
		sweep, err := p.ACDCSweep(ctx, []float64{0.05, 0.1})
		if err != nil {
			t.Fatal(err)
		}
		if len(sweep) != 1 || !sweep[0].Partial {
			t.Fatalf("batch %d: the sweep ran %d thresholds, first partial %v: want it to stop at the first", batch, len(sweep), sweep[0].Partial)
		}
		r := sweep[0]
		// Tests are checked between passes, so a pass of k may overrun.
		if r.Tests < p.stopAfterTests || r.Tests >= p.stopAfterTests+batch {
			t.Errorf("batch %d: %d tests, budget %d", batch, r.Tests, p.stopAfterTests)
		}
		if r.Decided <= r.Tests || r.Decided >= ref.Decided {
			t.Errorf("batch %d: %d edges decided by %d tests (the full search %d)", batch, r.Decided, r.Tests, ref.Decided)
		}
		kept := map[Edge]bool{}
		for _, e := range r.Kept {
			kept[e] = true
		}
		for _, e := range ref.Kept {
			if !kept[e] {
				t.Errorf("batch %d: the full search keeps %v, the stopped one cut it", batch, e)
			}
		}
		if len(r.Kept) <= len(ref.Kept) {
			t.Errorf("batch %d: stopped after %d of %d tests yet keeps %d edges, the full search %d", batch, r.Tests, ref.Tests, len(r.Kept), len(ref.Kept))
		}
		f, err := Find(ctx, p, prompts, FindOptions{Method: "acdc", Thresholds: []float64{0.05}, Threshold: 0.1})
		if err != nil {
			t.Fatal(err)
		}
		if !f.Partial || len(f.Sweep) != 1 || len(f.Edges) != len(r.Kept) {
			t.Errorf("batch %d: Find: partial %v, %d thresholds, %d edges: want the partial circuit of %d", batch, f.Partial, len(f.Sweep), len(f.Edges), len(r.Kept))
		}
	}
}
