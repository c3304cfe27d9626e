package circuits

import (
	"context"
	"math"
	"path/filepath"
	"testing"

	"github.com/loupe-dev/loupe/probe"
)

// toyIOI loads the trained toy IOI model (testdata/ioimodel, made by
// train.py) and the first n pairs of its task.
func toyIOI(t testing.TB, n int) (*probe.Model, []Prompt) {
	t.Helper()
	return ioiModel(t, filepath.Join("testdata", "ioimodel"), n)
}

// ioiModel loads a model folder with its task.jsonl and the first n pairs.
func ioiModel(t testing.TB, dir string, n int) (*probe.Model, []Prompt) {
	t.Helper()
	m, _, err := probe.LoadModel(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	task, err := ReadTask(filepath.Join(dir, "task.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	prompts, err := Tokenize(task, nil, m.Config.Vocab)
	if err != nil {
		t.Fatal(err)
	}
	return m, prompts[:n]
}

// toyIOIHeads is the toy IOI model's circuit over the heads, as the
// results table scores it: the heads on its 14 path-patched edges, 0.1,
// 0.2, 0.3 and 2.0, 2.3 (circuits/RESULTS.md, "Ground truth").
var toyIOIHeads = []Node{HeadNode(0, 1), HeadNode(0, 2), HeadNode(0, 3), HeadNode(2, 0), HeadNode(2, 3)}

// toyIOITruth is the toy IOI model's true edges on prompts: exhaustive path
// patching (logit difference), the edges carrying at least 5% of the
// largest effect, as the results table defines them.
func toyIOITruth(ctx context.Context, t testing.TB, m *probe.Model, prompts []Prompt) []Edge {
	t.Helper()
	p, err := NewPatcher(ctx, m, prompts, PatchOptions{Metric: LogitDiff})
	if err != nil {
		t.Fatal(err)
	}
	eff, err := p.EdgeEffects(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return TruthEdges(eff, 0.05)
}

func TestPatchEverythingGivesTheOtherRun(t *testing.T) {
	m, prompts := toyIOI(t, 16)
	ctx := context.Background()
	for _, metric := range []Metric{LogitDiff, Prob, KL} {
		for _, site := range []string{"z", "result"} {
			p, err := NewPatcher(ctx, m, prompts, PatchOptions{Metric: metric, HeadSite: site, Batch: 5})
			if err != nil {
				t.Fatal(err)
			}
			nodes := Nodes(m.Config)
			nodes = nodes[:len(nodes)-1] // the logits are no patch site
			for _, dir := range []Direction{Noising, Denoising} {
				got, eff, err := p.Patch(ctx, dir, nodes...)
				if err != nil {
					t.Fatal(err)
				}
				want := p.Corrupt
				if dir == Denoising {
					want = p.Clean
				}
				// Through hook_z the patched run recomputes the other
				// run's every product: bit-identical. Through hook_result
				// the block output becomes a sum over heads, which rounds
				// differently from the one product of a plain run.
				tol := 0.0
				if site == "result" {
					tol = 1e-6 * math.Max(1, math.Abs(want))
				}
				if math.Abs(got-want) > tol || math.Abs(eff-1) > 1e-6 {
					t.Errorf("%s %s site %s: patching every node gives %v (effect %v), the other run %v", metric, dir, site, got, eff, want)
				}
			}
		}
	}
}

// Path patching (freezing the nodes in between, Wang et al.) and cutting
// one edge through the split inputs (ACDC) are two ways to the same number.
func TestPathPatchingEqualsEdgeCut(t *testing.T) {
	m, prompts := toyIOI(t, 24)
	ctx := context.Background()
	p, err := NewPatcher(ctx, m, prompts, PatchOptions{Metric: LogitDiff})
	if err != nil {
		t.Fatal(err)
	}
	worst, nonzero := 0.0, 0
	for i, e := range Edges(m.Config) {
		if i%5 != 0 { // a fifth of the edges keeps the test short
			continue
		}
		want, _, err := p.PathPatch(ctx, e.From, e.To)
		if err != nil {
			t.Fatal(err)
		}
		got, err := p.RunCut(ctx, []Edge{e})
		if err != nil {
			t.Fatal(err)
		}
		worst = math.Max(worst, math.Abs(got-want))
		if math.Abs(p.Clean-want) > 0.1 {
			nonzero++
		}
	}
	t.Logf("clean %.3f corrupt %.3f; %d edges move the logit difference by > 0.1; path patching vs edge cut max diff %.2g", p.Clean, p.Corrupt, nonzero, worst)
	if worst > 1e-3 {
		t.Errorf("path patching and edge cutting differ by up to %g", worst)
	}
	if nonzero == 0 {
		t.Errorf("no edge matters: the test would pass on anything")
	}
}

// Patching a node resumes the pass at the node's block on the cached
// stream; every node's effect equals that of a pass from the embeddings.
func TestPatchResumedEqualsFull(t *testing.T) {
	m, prompts := toyIOI(t, 12)
	ctx := context.Background()
	p, err := NewPatcher(ctx, m, prompts, PatchOptions{Metric: LogitDiff, Batch: 5})
	if err != nil {
		t.Fatal(err)
	}
	nodes := append(Components(m.Config), ResidNode(2, -1), ResidNode(1, 3))
	for _, dir := range []Direction{Noising, Denoising} {
		p.noResume = false
		b0 := p.BlockRuns
		resumed, err := p.PatchEach(ctx, dir, nodes)
		if err != nil {
			t.Fatal(err)
		}
		b1 := p.BlockRuns
		p.noResume = true
		full, err := p.PatchEach(ctx, dir, nodes)
		if err != nil {
			t.Fatal(err)
		}
		for i, n := range nodes {
			if math.Abs(resumed[i]-full[i]) > 1e-6 {
				t.Errorf("%v %s: resumed %.8f, from the embeddings %.8f", dir, n, resumed[i], full[i])
			}
		}
		t.Logf("%v: %d blocks resumed, %d from the embeddings", dir, b1-b0, p.BlockRuns-b1)
	}
}
