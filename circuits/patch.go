package circuits

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/loupe-dev/loupe/probe"
	"github.com/loupe-dev/loupe/probe/compute"
)

// # Patching
//
// Activation patching runs one prompt of a pair with one activation taken
// from the other prompt's run. Noising runs the clean prompt with a node's
// corrupted activation (does the task need this node?); denoising runs the
// corrupted prompt with the node's clean activation (is this node enough to
// bring the task back?). A head is patched through its hook_z slice (or its
// hook_result, which is z·W_O and gives the same run), an MLP through
// hook_mlp_out, a residual position through hook_resid_pre.
//
// Metrics are read from the last position's logits of each prompt and
// averaged over the pairs:
//
//	logit_diff  mean logit of the answers − mean logit of the wrongs; a
//	            task with no wrongs (induction) gets the answers' mean
//	            log-probability instead, so it is negative there
//	prob        Σ p(answers) − Σ p(wrongs)
//	kl          KL(P_clean ‖ P_run), the distance from the clean run
//
// The effect of a patch is normalised so that 1 is the whole gap between
// the two runs and 0 is none of it:
//
//	noising     (M_clean − M_patched) / (M_clean − M_corrupt)
//	denoising   (M_patched − M_corrupt) / (M_clean − M_corrupt)
//
// and for kl, KL_patched/KL_corrupt (noising) or 1 − KL_patched/KL_corrupt
// (denoising).

// NodeKind says what a node of the model's graph is.
type NodeKind int

const (
	// NodeEmbed is the embeddings (token plus position), the input node.
	NodeEmbed NodeKind = iota
	// NodeHead is one attention head's write to the residual stream.
	NodeHead
	// NodeMLP is one block's MLP.
	NodeMLP
	// NodeResid is the residual stream entering a block (hook_resid_pre)
	// at one position; it is a patching site, not a graph node.
	NodeResid
	// NodeLogits is the output node: what the unembedding reads.
	NodeLogits
)

// Node is a node of the graph (or a residual-stream patching site).
type Node struct {
	Kind  NodeKind
	Layer int
	Head  int
	Pos   int // NodeResid: the position from each prompt's first token; negative counts from its end
}

// Head, MLP, Resid, Embed and Logits name nodes.
func HeadNode(layer, head int) Node { return Node{Kind: NodeHead, Layer: layer, Head: head} }
func MLPNode(layer int) Node        { return Node{Kind: NodeMLP, Layer: layer} }
func ResidNode(layer, pos int) Node { return Node{Kind: NodeResid, Layer: layer, Pos: pos} }
func EmbedNode() Node               { return Node{Kind: NodeEmbed} }
func LogitsNode() Node              { return Node{Kind: NodeLogits} }

// String writes heads as the project does (LAYER.HEAD) and the rest as
// mlpL, resid_preL@P, embed, logits.
func (n Node) String() string {
	switch n.Kind {
	case NodeEmbed:
		return "embed"
	case NodeHead:
		return strconv.Itoa(n.Layer) + "." + strconv.Itoa(n.Head)
	case NodeMLP:
		return "mlp" + strconv.Itoa(n.Layer)
	case NodeResid:
		return "resid_pre" + strconv.Itoa(n.Layer) + "@" + strconv.Itoa(n.Pos)
	case NodeLogits:
		return "logits"
	}
	return "node?"
}

// ParseNode reads what String writes (resid sites excepted).
func ParseNode(s string) (Node, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "embed":
		return EmbedNode(), nil
	case s == "logits":
		return LogitsNode(), nil
	case strings.HasPrefix(s, "mlp"):
		l, err := strconv.Atoi(s[3:])
		if err != nil {
			return Node{}, fmt.Errorf("node %q: want LAYER.HEAD, mlpLAYER, embed or logits", s)
		}
		return MLPNode(l), nil
	}
	a, b, ok := strings.Cut(s, ".")
	l, err1 := strconv.Atoi(a)
	h, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil {
		return Node{}, fmt.Errorf("node %q: want LAYER.HEAD, mlpLAYER, embed or logits", s)
	}
	return HeadNode(l, h), nil
}

// Metric is how a run is scored.
type Metric int

const (
	LogitDiff Metric = iota
	Prob
	KL
)

func (m Metric) String() string {
	return [...]string{"logit_diff", "prob", "kl"}[m]
}

// ParseMetric reads a metric name.
func ParseMetric(s string) (Metric, error) {
	switch s {
	case "logit_diff", "logit-diff", "logitdiff":
		return LogitDiff, nil
	case "prob", "probability":
		return Prob, nil
	case "kl":
		return KL, nil
	}
	return 0, fmt.Errorf("unknown metric %q (want logit_diff, prob or kl)", s)
}

// Direction says which prompt runs and which one gives the patched values.
type Direction int

const (
	Noising   Direction = iota // run clean, patch in corrupted values
	Denoising                  // run corrupted, patch in clean values
)

func (d Direction) String() string { return [...]string{"noising", "denoising"}[d] }

// PatchOptions configures a Patcher.
type PatchOptions struct {
	Metric Metric
	// Batch is the number of pairs per forward pass (default 32).
	Batch int
	// HeadSite is the hook a head is patched through: "z" (hook_z, the
	// default) or "result" (hook_result).
	HeadSite string
	// ACDCBatch is how many of ACDC's edge tests one forward pass makes
	// (default 1): the batch is that many copies of the clean prompts.
	ACDCBatch int
	// ACDCNodes makes ACDC decide whole nodes first, then the edges among
	// the nodes left (see Patcher.ACDC).
	ACDCNodes bool
	// ACDCStopAfter, when positive, stops ACDC that long after its first
	// edge test (a pass in flight finishes): the circuit is then the graph
	// as it stands, every edge not yet decided kept, and the result says
	// it is partial (ACDCResult.Partial). ACDC is an anytime search (it
	// only ever cuts), so this is a circuit, if a larger one; what it is
	// for is a bounded run that still yields a throughput and a circuit.
	ACDCStopAfter time.Duration
}

// chunk is a batch of pairs with both runs cached.
type chunk struct {
	prompts        []Prompt
	clean, corrupt [][]int
	cleanRun       *probe.Result
	corruptRun     *probe.Result
	cleanLogits    [][]float64 // per prompt, last position, log-probabilities
	corruptLogits  [][]float64
	cleanProbs     [][]float64 // exp(cleanLogits), for the KL metric
}

// Patcher patches a model between the prompts of a task.
type Patcher struct {
	m      *probe.Model
	opt    PatchOptions
	chunks []*chunk
	// Clean and Corrupt are the metric on the two runs (for kl: 0 and
	// KL(clean ‖ corrupt)).
	Clean, Corrupt float64
	// Runs counts the patched runs made, for wall-time figures (a pass
	// that stacks k of ACDC's edge tests counts k); Forwards counts the
	// forward passes that made them.
	Runs, Forwards int
	// BlockRuns counts the blocks those passes ran, each copy of the
	// prompts counted (a resumed pass runs fewer): their arithmetic.
	BlockRuns int
	// Progress, when set, hears how far the long loops are (node scores,
	// edge scans, ACDC's edges).
	Progress func(stage string, done, total int)
	// sumOK says that the residual stream is the sum of the nodes' writes
	// (embed, hook_result, hook_mlp_out), checked on the runs.
	sumOK bool
	// noResume makes ACDC and Patch run every pass from the embeddings
	// (tests).
	noResume bool
	// stopAt is when ACDC stops (ACDCStopAfter from its first test; zero:
	// never), shared by every threshold of a sweep.
	stopAt time.Time
	// stopAfterTests stops ACDC after that many tests in place of the
	// clock (tests: a partial run that does not depend on wall time).
	stopAfterTests int
}

func (p *Patcher) progress(stage string, done, total int) {
	if p.Progress != nil {
		p.Progress(stage, done, total)
	}
}

// cachePatterns are the activations patching and ACDC read from the
// clean and corrupted runs.
var cachePatterns = []string{"blocks.*.attn.hook_z", "blocks.*.attn.hook_result", "blocks.*.hook_mlp_out",
	"blocks.*.hook_resid_pre", "blocks.*.hook_resid_mid", "blocks.*.hook_resid_post"}

// NewPatcher runs the clean and the corrupted prompts once, caching what
// patching reads.
func NewPatcher(ctx context.Context, m *probe.Model, prompts []Prompt, opt PatchOptions) (*Patcher, error) {
	if len(prompts) == 0 {
		return nil, fmt.Errorf("patching: no prompts")
	}
	if opt.Batch <= 0 {
		opt.Batch = 32
	}
	switch opt.HeadSite {
	case "":
		opt.HeadSite = "z"
	case "z", "result":
	default:
		return nil, fmt.Errorf("patching: head site %q (want z or result)", opt.HeadSite)
	}
	p := &Patcher{m: m, opt: opt}
	for start := 0; start < len(prompts); start += opt.Batch {
		c := &chunk{prompts: prompts[start:min(start+opt.Batch, len(prompts))]}
		for _, q := range c.prompts {
			c.clean = append(c.clean, q.Clean)
			c.corrupt = append(c.corrupt, q.Corrupt)
		}
		var err error
		hooks := &probe.Hooks{Cache: cachePatterns}
		if c.cleanRun, err = m.Forward(ctx, c.clean, probe.Options{Hooks: hooks, Logits: probe.LogitsLast}); err != nil {
			return nil, fmt.Errorf("patching: clean run: %w", err)
		}
		if c.corruptRun, err = m.Forward(ctx, c.corrupt, probe.Options{Hooks: hooks, Logits: probe.LogitsLast}); err != nil {
			return nil, fmt.Errorf("patching: corrupted run: %w", err)
		}
		c.cleanLogits = logProbs(c.cleanRun)
		c.corruptLogits = logProbs(c.corruptRun)
		for _, l := range c.cleanLogits {
			pr := make([]float64, len(l))
			for v, x := range l {
				pr[v] = math.Exp(x)
			}
			c.cleanProbs = append(c.cleanProbs, pr)
		}
		p.chunks = append(p.chunks, c)
	}
	clean, corrupt := 0.0, 0.0
	n := 0
	for _, c := range p.chunks {
		for i := range c.prompts {
			clean += p.score(c, i, c.cleanLogits[i])
			corrupt += p.score(c, i, c.corruptLogits[i])
			n++
		}
	}
	p.Clean, p.Corrupt = clean/float64(n), corrupt/float64(n)
	p.sumOK = streamIsSum(m.Config, p.chunks[0])
	if p.Clean == p.Corrupt {
		return nil, fmt.Errorf("patching: the clean and corrupted runs score the same %s (%g): nothing to explain", opt.Metric, p.Clean)
	}
	return p, nil
}

// streamIsSum checks that the change of the final residual stream between
// the two runs is the sum of the changes of every node's write (biases are
// the same in both runs and drop out). It is not where a norm follows a
// block's output (Gemma's post-norms): there hook_result is not what the
// stream adds.
func streamIsSum(c probe.Config, ch *chunk) bool {
	delta := func(name string) []float32 {
		a, b := ch.cleanRun.Cache[name], ch.corruptRun.Cache[name]
		if a == nil || b == nil || len(a.Data) != len(b.Data) {
			return nil
		}
		d := make([]float32, len(a.Data))
		for i := range d {
			d[i] = b.Data[i] - a.Data[i]
		}
		return d
	}
	want := delta(fmt.Sprintf("blocks.%d.hook_resid_post", c.Layers-1))
	sum := delta("blocks.0.hook_resid_pre")
	if want == nil || sum == nil {
		return false
	}
	D := c.DModel
	for l := 0; l < c.Layers; l++ {
		r, m := delta(fmt.Sprintf("blocks.%d.attn.hook_result", l)), delta(fmt.Sprintf("blocks.%d.hook_mlp_out", l))
		if r == nil || m == nil || len(r) != len(sum)*c.Heads || len(m) != len(sum) {
			return false
		}
		for row := 0; row < len(sum)/D; row++ {
			for h := 0; h < c.Heads; h++ {
				for d := 0; d < D; d++ {
					sum[row*D+d] += r[(row*c.Heads+h)*D+d]
				}
			}
			for d := 0; d < D; d++ {
				sum[row*D+d] += m[row*D+d]
			}
		}
	}
	var worst, scale float64
	for i := range want {
		worst = max(worst, math.Abs(float64(want[i]-sum[i])))
		scale = max(scale, math.Abs(float64(want[i])))
	}
	return worst <= 1e-3*scale+1e-5
}

// Model is the patched model.
func (p *Patcher) Model() *probe.Model { return p.m }

// logSumExp is log Σ exp(lg[i]) in float64, shifted by the maximum.
func logSumExp(lg []float32) float64 {
	mx := math.Inf(-1)
	for _, v := range lg {
		if f := float64(v); f > mx {
			mx = f
		}
	}
	s := 0.0
	for _, v := range lg {
		s += math.Exp(float64(v) - mx)
	}
	return mx + math.Log(s)
}

// logProbs gives each sequence's last-position log-softmax in float64.
func logProbs(r *probe.Result) [][]float64 {
	out := make([][]float64, r.Batch)
	for b := range out {
		lg := r.LogitsAt(b, -1)
		lse := logSumExp(lg)
		row := make([]float64, len(lg))
		for i, v := range lg {
			row[i] = float64(v) - lse
		}
		out[b] = row
	}
	return out
}

// scores is the metric of every row of r, row b being prompt b mod
// len(c.prompts) of chunk c (r may stack copies of the chunk), computed
// from the last position's logits without materialising their
// log-probabilities, rows in parallel: with a large vocabulary this is
// much of an ACDC pass once the forward runs on a GPU. It equals score on
// logProbs(r) to rounding.
func (p *Patcher) scores(c *chunk, r *probe.Result) []float64 {
	out := make([]float64, r.Batch)
	one := func(b int) {
		i := b % len(c.prompts)
		lg := r.LogitsAt(b, -1)
		lse := logSumExp(lg)
		q := c.prompts[i]
		lp := func(a int) float64 { return float64(lg[a]) - lse }
		switch p.opt.Metric {
		case LogitDiff:
			s := 0.0
			for _, a := range q.Answers {
				s += lp(a)
			}
			s /= float64(len(q.Answers))
			if len(q.Wrong) > 0 {
				w := 0.0
				for _, a := range q.Wrong {
					w += lp(a)
				}
				s -= w / float64(len(q.Wrong))
			}
			out[b] = s
		case Prob:
			s := 0.0
			for _, a := range q.Answers {
				s += math.Exp(lp(a))
			}
			for _, a := range q.Wrong {
				s -= math.Exp(lp(a))
			}
			out[b] = s
		case KL:
			// As score computes it, term by term, so that the clean run's
			// own logits give exactly 0.
			ref, pr := c.cleanLogits[i], c.cleanProbs[i]
			s := 0.0
			for v, pv := range pr {
				if pv > 0 {
					s += pv * (ref[v] - (float64(lg[v]) - lse))
				}
			}
			out[b] = s
		default:
			out[b] = math.NaN()
		}
	}
	workers := min(runtime.GOMAXPROCS(0), r.Batch)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := w; b < r.Batch; b += workers {
				one(b)
			}
		}()
	}
	wg.Wait()
	return out
}

// score is the metric of prompt i of chunk c on log-probabilities lp.
// Logit differences are shift-invariant, so log-probabilities serve.
func (p *Patcher) score(c *chunk, i int, lp []float64) float64 {
	q := c.prompts[i]
	switch p.opt.Metric {
	case LogitDiff:
		s := 0.0
		for _, a := range q.Answers {
			s += lp[a]
		}
		s /= float64(len(q.Answers))
		if len(q.Wrong) > 0 {
			w := 0.0
			for _, a := range q.Wrong {
				w += lp[a]
			}
			s -= w / float64(len(q.Wrong))
		}
		return s
	case Prob:
		s := 0.0
		for _, a := range q.Answers {
			s += math.Exp(lp[a])
		}
		for _, a := range q.Wrong {
			s -= math.Exp(lp[a])
		}
		return s
	case KL:
		ref := c.cleanLogits[i]
		s := 0.0
		for v, l := range ref {
			if pv := math.Exp(l); pv > 0 {
				s += pv * (l - lp[v])
			}
		}
		return s
	}
	return math.NaN()
}

// Effect normalises a run's metric m (see the package documentation).
func (p *Patcher) Effect(m float64, dir Direction) float64 {
	if p.opt.Metric == KL {
		if dir == Noising {
			return m / p.Corrupt
		}
		return 1 - m/p.Corrupt
	}
	if dir == Noising {
		return (p.Clean - m) / (p.Clean - p.Corrupt)
	}
	return (m - p.Corrupt) / (p.Clean - p.Corrupt)
}

// runEdits runs every chunk's clean (noising) or corrupted (denoising)
// prompts with the edits edits(c) returns and gives the mean metric. When
// from > 0 the edits change nothing before block from, so each pass
// resumes there on that run's cached stream (probe.Options.From).
func (p *Patcher) runEdits(ctx context.Context, base Direction, from int, edits func(c *chunk) []probe.Edit) (float64, error) {
	sum, n := 0.0, 0
	for _, c := range p.chunks {
		in, run := c.clean, c.cleanRun
		if base == Denoising {
			in, run = c.corrupt, c.corruptRun
		}
		opt := probe.Options{Hooks: &probe.Hooks{Edit: edits(c)}, Logits: probe.LogitsLast}
		if from > 0 {
			opt.From = &probe.Resume{Layer: from, Resid: run.Cache[fmt.Sprintf("blocks.%d.hook_resid_pre", from)].Data}
		}
		r, err := p.m.Forward(ctx, in, opt)
		if err != nil {
			return 0, err
		}
		p.Runs++
		p.Forwards++
		p.BlockRuns += p.m.Config.Layers - from
		for _, v := range p.scores(c, r) {
			sum += v
			n++
		}
	}
	return sum / float64(n), nil
}

// Patch runs with the nodes given patched from the other prompt (all at
// once) and returns the metric and its normalised effect.
func (p *Patcher) Patch(ctx context.Context, dir Direction, nodes ...Node) (metric, effect float64, err error) {
	for _, n := range nodes {
		if err := checkNode(p.m.Config, n); err != nil {
			return 0, 0, err
		}
	}
	// A patched pass runs as the unpatched one up to the earliest block a
	// node is in: resume there.
	from := p.m.Config.Layers - 1
	for _, n := range nodes {
		switch n.Kind {
		case NodeHead, NodeMLP, NodeResid:
			from = min(from, n.Layer)
		default:
			from = 0
		}
	}
	if p.noResume {
		from = 0
	}
	m, err := p.runEdits(ctx, dir, max(from, 0), func(c *chunk) []probe.Edit {
		src := c.corruptRun
		if dir == Denoising {
			src = c.cleanRun
		}
		var edits []probe.Edit
		for _, n := range nodes {
			edits = append(edits, p.nodeEdit(n, src))
		}
		return edits
	})
	if err != nil {
		return 0, 0, fmt.Errorf("patch %v: %w", nodes, err)
	}
	return m, p.Effect(m, dir), nil
}

// PatchEach patches every node of the list alone and returns the effects.
func (p *Patcher) PatchEach(ctx context.Context, dir Direction, nodes []Node) ([]float64, error) {
	out := make([]float64, len(nodes))
	for i, n := range nodes {
		_, e, err := p.Patch(ctx, dir, n)
		if err != nil {
			return nil, err
		}
		out[i] = e
	}
	return out, nil
}

func checkNode(c probe.Config, n Node) error {
	switch n.Kind {
	case NodeHead:
		if n.Layer < 0 || n.Layer >= c.Layers || n.Head < 0 || n.Head >= c.Heads {
			return fmt.Errorf("head %s: the model has %d layers of %d heads", n, c.Layers, c.Heads)
		}
	case NodeMLP, NodeResid:
		if n.Layer < 0 || n.Layer >= c.Layers {
			return fmt.Errorf("%s: the model has %d layers", n, c.Layers)
		}
	}
	return nil
}

// nodeEdit replaces node n's activation with src's.
func (p *Patcher) nodeEdit(n Node, src *probe.Result) probe.Edit {
	c := p.m.Config
	switch n.Kind {
	case NodeHead:
		if p.opt.HeadSite == "result" {
			name := fmt.Sprintf("blocks.%d.attn.hook_result", n.Layer)
			return replaceColumns(name, src.Cache[name], n.Head*c.DModel, (n.Head+1)*c.DModel, nil)
		}
		name := fmt.Sprintf("blocks.%d.attn.hook_z", n.Layer)
		return replaceColumns(name, src.Cache[name], n.Head*c.HeadDim, (n.Head+1)*c.HeadDim, nil)
	case NodeMLP:
		name := fmt.Sprintf("blocks.%d.hook_mlp_out", n.Layer)
		return replaceColumns(name, src.Cache[name], 0, c.DModel, nil)
	case NodeEmbed:
		// The embeddings are all block 0 reads.
		return replaceColumns("blocks.0.hook_resid_pre", src.Cache["blocks.0.hook_resid_pre"], 0, c.DModel, nil)
	case NodeResid:
		name := fmt.Sprintf("blocks.%d.hook_resid_pre", n.Layer)
		rows := make([]int, src.Batch)
		for b := range rows {
			pos := n.Pos
			if pos < 0 {
				pos += src.Len - src.Pad[b]
			}
			rows[b] = b*src.Len + src.Pad[b] + pos
		}
		return replaceColumns(name, src.Cache[name], 0, c.DModel, rows)
	}
	return probe.Edit{Hook: "none", Fn: func(_ compute.Backend, _ string, t compute.Tensor, _ []int) (compute.Tensor, error) { return t, nil }}
}

// replaceColumns is an edit that copies columns [lo, hi) of the given rows
// (every row when nil) of the 2-D activation from src.
func replaceColumns(name string, src *probe.Activation, lo, hi int, rows []int) probe.Edit {
	return probe.Edit{Hook: name, Fn: func(b compute.Backend, _ string, t compute.Tensor, shape []int) (compute.Tensor, error) {
		if src == nil {
			return nil, fmt.Errorf("patch %s: no cached activation to patch from", name)
		}
		host := b.ToHost(t)
		if len(host) != len(src.Data) {
			return nil, fmt.Errorf("patch %s: activation has %d values, the source %d", name, len(host), len(src.Data))
		}
		w := compute.Numel(shape[2:]) // a row is one position: [H, d] or [d]
		n := len(host) / w
		set := func(r int) {
			copy(host[r*w+lo:r*w+hi], src.Data[r*w+lo:r*w+hi])
		}
		if rows == nil {
			for r := 0; r < n; r++ {
				set(r)
			}
		} else {
			for _, r := range rows {
				if r < 0 || r >= n {
					return nil, fmt.Errorf("patch %s: position outside the prompt", name)
				}
				set(r)
			}
		}
		return b.FromHost(host, t.Shape()...), nil
	}}
}
