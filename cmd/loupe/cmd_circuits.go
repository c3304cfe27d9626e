package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/loupe-dev/loupe/circuits"
	"github.com/loupe-dev/loupe/internal/atomicfile"
	"github.com/loupe-dev/loupe/organism"
	"github.com/loupe-dev/loupe/probe"
	"github.com/loupe-dev/loupe/probe/compute"
	"github.com/loupe-dev/loupe/store"
)

// cmdCircuits dispatches `loupe circuits find|task`.
func cmdCircuits(ctx context.Context, env *cliEnv, args []string) error {
	usage := "want `loupe circuits find` (discover a task's circuit), `loupe circuits task` (write a task file) or `loupe circuits compare` (two circuits' agreement)"
	if len(args) == 0 {
		return fmt.Errorf("%w: %s", errUsage, usage)
	}
	switch args[0] {
	case "find":
		return cmdCircuitsFind(ctx, env, args[1:])
	case "task":
		return cmdCircuitsTask(ctx, env, args[1:])
	case "compare":
		return cmdCircuitsCompare(ctx, env, args[1:])
	case "-h", "--help", "help":
		fmt.Fprintln(env.stdout, "loupe circuits find --method patching|acdc|sae --task FILE [--model M] [--truth L.H,...] [--out circuit.arrow] [--dot F] [--svg F]\n"+
			"loupe circuits task ioi|greater-than|docstring|induction [--model M] [--n N] [--seed S] --out FILE.jsonl\n"+
			"loupe circuits compare A.arrow B.arrow [--top K]\n\n"+
			"Run `loupe circuits find -h` or `loupe circuits task -h` for their flags.")
		return nil
	}
	return fmt.Errorf("%w: unknown circuits command %q; %s", errUsage, args[0], usage)
}

// loadCircuitModel opens --model, or the embedded organism when it is
// empty. A model directory without a tokenizer opens too: its task files
// must then carry token ids.
func loadCircuitModel(path string, b compute.Backend) (*probe.Loaded, string, error) {
	if path == "" || path == "organism" {
		m, err := organism.Load(b)
		return m, organism.Name, err
	}
	m, err := probe.Load(path, b)
	if err == nil {
		return m, path, nil
	}
	if !strings.Contains(err.Error(), "tokenizer") {
		return nil, "", err
	}
	mm, wm, err2 := probe.LoadModel(path, b)
	if err2 != nil {
		return nil, "", err
	}
	return &probe.Loaded{Model: mm, Weights: wm}, path, nil
}

func cmdCircuitsFind(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, usage{name: "circuits find",
		summary: "find a task's circuit: activation/path patching, ACDC (Conmy et al.) or SAE codes (O'Neill and Bui)",
		example: "loupe circuits find --method acdc --task induction.jsonl --truth 1.0,1.1,2.3 --svg circuit.svg",
		writes:  "the circuit table (Arrow, --out), and DOT / SVG pictures when asked"})
	model := fs.String("model", "", "a model directory or .gguf file (default: the embedded organism)")
	method := fs.String("method", "", "patching (one forward pass per node), acdc (one per edge per threshold) or sae (one per 32 prompts, then a small SAE)")
	taskPath := fs.String("task", "", "the task file (JSON lines of clean/corrupt pairs; see `loupe circuits task`)")
	pairs := fs.Int("pairs", 0, "use the first N pairs (0: all)")
	metricName := fs.String("metric", "", "logit_diff, prob or kl (default: kl for acdc, logit_diff otherwise)")
	site := fs.String("head-site", "z", "patch heads through hook_z or hook_result")
	thresholds := fs.String("thresholds", "", "acdc: the threshold sweep, comma-separated (default "+joinFloats(circuits.DefaultThresholds)+")")
	threshold := fs.Float64("threshold", 0, "acdc: the threshold whose circuit is reported (default: the sweep's median)")
	cut := fs.Float64("cut", 0.05, "patching: the |effect| that puts a node (or edge) in the circuit")
	edges := fs.Bool("edges", false, "patching: also path-patch every edge (two forward passes per edge)")
	truth := fs.String("truth", "", "the true circuit, comma-separated: heads L.H and edges FROM->TO (L.H, mlpL, embed, logits): prints node ROC AUC, precision and recall, and edge ROC AUC when edges are given")
	acdcBatch := fs.Int("acdc-batch", 1, "acdc: edge tests per forward pass (copies of the prompts, each with its own cuts; same result, fewer passes: good on a GPU)")
	acdcNodes := fs.Bool("acdc-nodes", false, "acdc: decide whole nodes first, then the edges among the nodes left (one pass per node plus one per remaining edge)")
	acdcStop := fs.Duration("acdc-stop-after", 0, "acdc: stop this long after the first edge test and write the circuit as it stands, every undecided edge kept, marked partial (0: run to the end)")
	logPath := fs.String("log", "", "also append progress lines (each stage's start and every 5% of it, with the time) to this file: for runs with no terminal")
	var dev deviceFlags
	dev.register(fs)
	out := fs.String("out", "circuit.arrow", "the Arrow file to write (the circuit table)")
	dot := fs.String("dot", "", "also write the circuit as Graphviz DOT to this file")
	svg := fs.String("svg", "", "also draw the circuit as SVG to this file")
	batch := fs.Int("batch", 32, "pairs per forward pass")
	quiet := registerQuiet(fs)
	seed := fs.Uint64("seed", 1, "sae: seed of the training-example draw and of the SAE's initialisation")
	saeExamples := fs.Int("sae-examples", circuits.SAEDefaults().Examples, "sae: examples (positives and negatives together) the SAE is trained on")
	saeEpochs := fs.Int("sae-epochs", circuits.SAEDefaults().Epochs, "sae: full-batch Adam steps")
	saeLatents := fs.Int("sae-latents", circuits.SAEDefaults().Latents, "sae: latents")
	saeL1 := fs.Float64("sae-l1", circuits.SAEDefaults().L1, "sae: L1 coefficient (the paper's scale: MSE averaged over elements)")
	saeArch := fs.String("sae-arch", "paper", "sae: the autoencoder: paper (the paper's code: tied bias, unit-norm rows) or standard (package sae's standard SAE)")
	saeNull := fs.Bool("sae-null", false, "sae: also run the null control, the same SAE with negatives that are other clean prompts of the task (the --pairs after the first; with --pairs 0 the task's second half), and print how far its head ranking agrees with the real one: a ranking that agrees with its null control does not come from the task")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *saeNull && *method != "sae" {
		return fmt.Errorf("%w: --sae-null is for --method sae", errUsage)
	}
	if *taskPath == "" {
		return fmt.Errorf("%w: --task is required", errUsage)
	}
	if *method == "" {
		return fmt.Errorf("%w: --method is required: patching, acdc or sae", errUsage)
	}
	metric := circuits.LogitDiff
	if *method == "acdc" {
		metric = circuits.KL
	}
	if *metricName != "" {
		var err error
		if metric, err = circuits.ParseMetric(*metricName); err != nil {
			return fmt.Errorf("%w: --metric: %v", errUsage, err)
		}
	}
	opt := circuits.FindOptions{Method: *method, NodeCut: *cut, EdgeScan: *edges, Threshold: *threshold,
		Patch: circuits.PatchOptions{Metric: metric, HeadSite: *site, Batch: *batch, ACDCBatch: *acdcBatch, ACDCNodes: *acdcNodes, ACDCStopAfter: *acdcStop}}
	if *acdcBatch < 1 {
		return fmt.Errorf("%w: --acdc-batch must be at least 1", errUsage)
	}
	if *acdcStop < 0 {
		return fmt.Errorf("%w: --acdc-stop-after must not be negative", errUsage)
	}
	switch *method {
	case "patching", "acdc":
	case "sae":
		cfg := circuits.SAEDefaults()
		cfg.Seed, cfg.Examples, cfg.Epochs, cfg.Latents, cfg.L1 = *seed, *saeExamples, *saeEpochs, *saeLatents, *saeL1
		opt.SAE = cfg
		switch *saeArch {
		case "paper":
			opt.TrainSAE = circuits.TrainPaperSAE
		case "standard":
			opt.TrainSAE = circuits.TrainSAE
		default:
			return fmt.Errorf("%w: --sae-arch %q: want paper or standard", errUsage, *saeArch)
		}
	default:
		return fmt.Errorf("%w: --method %q: want patching, acdc or sae", errUsage, *method)
	}
	if *thresholds != "" {
		for _, s := range strings.Split(*thresholds, ",") {
			v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
			if err != nil || v <= 0 {
				return fmt.Errorf("%w: --thresholds: %q is not a positive number", errUsage, s)
			}
			opt.Thresholds = append(opt.Thresholds, v)
		}
	}
	task, err := circuits.ReadTask(*taskPath)
	if err != nil {
		return err
	}
	backend, err := dev.backend()
	if err != nil {
		return err
	}
	m, name, err := loadCircuitModel(*model, backend)
	if err != nil {
		return err
	}
	defer m.Close()
	truthHeads, truthEdges, err := parseTruth(*truth, m.Config)
	if err != nil {
		return err
	}
	prompts, err := circuits.Tokenize(task, m.Tokenizer, m.Config.Vocab)
	if err != nil {
		return err
	}
	var others []circuits.Prompt // the null control's negatives
	if *saeNull {
		n := *pairs
		if n <= 0 {
			n = len(prompts) / 2
		}
		if n < 1 || 2*n > len(prompts) {
			return fmt.Errorf("%w: --sae-null needs twice the pairs it uses: %s has %d, %d used", errUsage, *taskPath, len(prompts), n)
		}
		prompts, others = prompts[:n], prompts[n:2*n]
	}
	if *pairs > 0 && *pairs < len(prompts) {
		prompts = prompts[:*pairs]
	}
	p, err := circuits.NewPatcher(ctx, m.Model, prompts, opt.Patch)
	if err != nil {
		return err
	}
	bar := env.progress(*quiet)
	p.Progress = bar.update
	if *logPath != "" {
		lf, err := os.OpenFile(*logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("--log: %w", err)
		}
		defer lf.Close()
		p.Progress = progressLog(lf, bar.update)
	}
	found, err := circuits.Find(ctx, p, prompts, opt)
	bar.done()
	if err != nil {
		return err
	}
	rows := circuitRows(found, task.Name, m.Config)
	fig := func(name string, v float64) {
		if !math.IsNaN(v) {
			rows = append(rows, store.CircuitRow{Method: found.Method, Task: task.Name, Kind: store.CircuitFigure, Node: name, Layer: -1, Head: -1, Score: v})
		}
	}
	fig("wall_s", found.Wall.Seconds())
	fig("forward_passes", float64(found.Runs))
	fig("block_runs", float64(found.BlockRuns))
	fig("clean_metric", found.Clean)
	fig("corrupt_metric", found.Corrupt)
	if found.Partial {
		fig("partial", 1)
	}
	var score *circuits.Score
	if truthHeads == nil { // edges alone: their heads are the true heads
		for _, n := range circuits.NodesOf(truthEdges) {
			if n.Kind == circuits.NodeHead {
				truthHeads = append(truthHeads, n)
			}
		}
	}
	var null *nullControl
	if others != nil {
		nulls, err := circuits.NullNegatives(prompts, others)
		if err != nil {
			return fmt.Errorf("sae null control: %w", err)
		}
		res, err := circuits.SAECircuit(ctx, m.Model, nulls, opt.SAE, opt.TrainSAE)
		if err != nil {
			return fmt.Errorf("sae null control: %w", err)
		}
		null = &nullControl{n: len(others), agree: circuits.Agree(found.NodeScores, res.NodeScores, 10), auc: math.NaN()}
		if truthHeads != nil {
			null.auc = circuits.NodeAUC(circuits.Heads(m.Config), res.NodeScores, truthHeads)
		}
		fig("null_spearman", null.agree.Spearman)
		fig("null_top10_overlap", float64(null.agree.Overlap))
		fig("null_node_auc", null.auc)
	}
	if truthHeads != nil || truthEdges != nil {
		s := found.ScoreAgainst(circuits.Components(m.Config), circuits.Edges(m.Config), truthHeads, truthEdges)
		score = &s
		fig("node_auc", s.NodeAUC)
		fig("edge_auc", s.EdgeAUC)
		fig("precision", s.Precision)
		fig("recall", s.Recall)
	}
	if err := makeOutDir("out", *out); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	w, err := store.Create(*out, runInfo(name, m), store.Options{MainTable: string(store.KindCircuit)})
	if err != nil {
		return err
	}
	defer w.Abort()
	if err := w.WriteCircuit(rows); err != nil {
		return err
	}
	if err := w.Commit(ctx); err != nil {
		return err
	}
	pic := &circuits.Picture{Title: fmt.Sprintf("%s circuit of %s (%s)", found.Method, task.Name, name), Config: m.Config,
		Nodes: found.Nodes, Edges: found.Edges, Scores: found.NodeScores, EdgeScores: found.EdgeScores}
	if *dot != "" {
		if err := atomicfile.WriteFile(*dot, []byte(pic.DOT())); err != nil {
			return err
		}
	}
	if *svg != "" {
		if err := atomicfile.WriteFile(*svg, []byte(pic.SVG())); err != nil {
			return err
		}
	}
	printCircuit(env, found, m.Config, score, metric, truthEdges != nil)
	if null != nil {
		fmt.Fprintf(env.stdout, "null control (negatives: %d other clean prompts): head ranking Spearman %.3f with the real negatives' ranking, top-%d overlap %d",
			null.n, null.agree.Spearman, null.agree.K, null.agree.Overlap)
		if !math.IsNaN(null.auc) {
			fmt.Fprintf(env.stdout, "; node ROC AUC %.3f against the given heads", null.auc)
		}
		fmt.Fprintln(env.stdout)
	}
	fmt.Fprintf(env.stdout, "wrote %s (circuit table)\n", *out)
	return nil
}

// nullControl is the SAE method's null control (--sae-null): its head
// ranking with negatives that are other clean prompts, against the real
// one.
type nullControl struct {
	n     int // null negatives
	agree circuits.Agreement
	auc   float64 // against --truth's heads; NaN without it
}

// progressLog passes progress on to next and writes a line to w when a
// stage starts and at every 5% of it, with the seconds since the start.
func progressLog(w io.Writer, next func(stage string, done, total int)) func(stage string, done, total int) {
	start, last, lastStep := time.Now(), "", -1
	return func(stage string, done, total int) {
		next(stage, done, total)
		step := 0
		if total > 0 {
			step = 20 * done / total
		}
		if stage != last || step != lastStep {
			fmt.Fprintf(w, "%7.1fs %s %d/%d\n", time.Since(start).Seconds(), stage, done, total)
			last, lastStep = stage, step
		}
	}
}

// circuitRows turns what a method found into the store's rows.
func circuitRows(f *circuits.Found, task string, cfg probe.Config) []store.CircuitRow {
	inN := map[circuits.Node]bool{}
	for _, n := range f.Nodes {
		inN[n] = true
	}
	inE := map[circuits.Edge]bool{}
	for _, e := range f.Edges {
		inE[e] = true
	}
	var rows []store.CircuitRow
	for _, n := range circuits.Components(cfg) {
		s, ok := f.NodeScores[n]
		if !ok {
			continue
		}
		head := -1
		if n.Kind == circuits.NodeHead {
			head = n.Head
		}
		rows = append(rows, store.CircuitRow{Method: f.Method, Task: task, Kind: store.CircuitNode, Node: n.String(),
			Layer: n.Layer, Head: head, Score: s, InCircuit: inN[n]})
	}
	for _, e := range circuits.Edges(cfg) {
		s, ok := f.EdgeScores[e]
		if !ok && !inE[e] {
			continue
		}
		rows = append(rows, store.CircuitRow{Method: f.Method, Task: task, Kind: store.CircuitEdge, Node: e.From.String(), To: e.To.String(),
			Layer: -1, Head: -1, Score: s, InCircuit: inE[e]})
	}
	for _, r := range f.Sweep {
		info := map[string]any{"threshold": r.Threshold, "edges": len(r.Kept), "metric": r.Metric, "forward_passes": r.Runs, "wall_s": r.Wall.Seconds(),
			"tests": r.Tests, "decided": r.Decided, "graph_edges": len(circuits.Edges(cfg))}
		if r.Partial {
			info["partial"] = true
		}
		if r.Pruned != nil {
			var names []string
			for _, n := range r.Pruned {
				names = append(names, n.String())
			}
			info["pruned_nodes"] = names // the node pass's cuts (--acdc-nodes)
		}
		d, _ := json.Marshal(info)
		rows = append(rows, store.CircuitRow{Method: f.Method, Task: task, Kind: store.CircuitFigure, Node: "sweep_edges",
			Layer: -1, Head: -1, Score: float64(len(r.Kept)), Details: d})
	}
	return rows
}

func printCircuit(env *cliEnv, f *circuits.Found, cfg probe.Config, s *circuits.Score, metric circuits.Metric, edgesGiven bool) {
	fmt.Fprintf(env.stdout, "%s: clean %s %.4g, corrupted %.4g; %d forward passes (%d blocks run, of %d blocks each) in %.2fs\n",
		f.Method, metric, f.Clean, f.Corrupt, f.Runs, f.BlockRuns, cfg.Layers, f.Wall.Seconds())
	var names []string
	for _, n := range f.Nodes {
		names = append(names, n.String())
	}
	fmt.Fprintf(env.stdout, "circuit: %d nodes (%s), %d edges\n", len(f.Nodes), strings.Join(names, " "), len(f.Edges))
	if len(f.Sweep) > 0 {
		tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "threshold\tedges\tnodes\tdistance\tnodes pruned first\tpasses\ttests\ttests/s\twall")
		for _, r := range f.Sweep {
			pruned := "-"
			if r.Pruned != nil {
				pruned = strconv.Itoa(len(r.Pruned))
			}
			fmt.Fprintf(tw, "%g\t%d\t%d\t%.4g\t%s\t%d\t%d\t%.2f\t%.1fs\n", r.Threshold, len(r.Kept), len(circuits.NodesOf(r.Kept)), r.Metric, pruned, r.Runs,
				r.Tests, float64(r.Tests)/r.Wall.Seconds(), r.Wall.Seconds())
		}
		tw.Flush()
		if last := f.Sweep[len(f.Sweep)-1]; f.Partial {
			total := len(circuits.Edges(cfg))
			fmt.Fprintf(env.stdout, "partial: stopped at the time limit at threshold %g with %d of %d edges decided (%.1f%%); the circuit keeps every undecided edge\n",
				last.Threshold, last.Decided, total, 100*float64(last.Decided)/float64(total))
		}
	}
	if s != nil {
		fmt.Fprintf(env.stdout, "against the given heads: node ROC AUC %.3f, precision %.3f, recall %.3f\n", s.NodeAUC, s.Precision, s.Recall)
		switch {
		case !math.IsNaN(s.EdgeAUC):
			fmt.Fprintf(env.stdout, "against the given edges: edge ROC AUC %.3f\n", s.EdgeAUC)
		case edgesGiven:
			fmt.Fprintf(env.stdout, "against the given edges: no edge ROC AUC (%s scores no edges)\n", f.Method)
		}
	}
}

// parseTruth reads --truth: heads L.H and edges FROM->TO, comma-separated.
// It returns nil lists for what was not given.
func parseTruth(spec string, cfg probe.Config) ([]circuits.Node, []circuits.Edge, error) {
	if strings.TrimSpace(spec) == "" {
		return nil, nil, nil
	}
	var heads []circuits.Node
	var edges []circuits.Edge
	for _, s := range strings.Split(spec, ",") {
		if from, to, ok := strings.Cut(s, "->"); ok {
			a, err1 := circuits.ParseNode(from)
			b, err2 := circuits.ParseNode(to)
			e := circuits.Edge{From: a, To: b}
			if err1 != nil || err2 != nil {
				return nil, nil, fmt.Errorf("%w: --truth: edge %q: want FROM->TO with L.H, mlpL, embed or logits", errUsage, s)
			}
			if err := circuits.CheckEdge(cfg, e); err != nil {
				return nil, nil, fmt.Errorf("%w: --truth: %v", errUsage, err)
			}
			edges = append(edges, e)
			continue
		}
		n, err := circuits.ParseNode(s)
		if err != nil || n.Kind != circuits.NodeHead || n.Layer >= cfg.Layers || n.Head >= cfg.Heads {
			return nil, nil, fmt.Errorf("%w: --truth: %q is not a head of this model (%d layers x %d heads) nor an edge FROM->TO", errUsage, s, cfg.Layers, cfg.Heads)
		}
		heads = append(heads, n)
	}
	return heads, edges, nil
}

func joinFloats(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.FormatFloat(x, 'g', -1, 64)
	}
	return strings.Join(s, ",")
}

func cmdCircuitsTask(ctx context.Context, env *cliEnv, args []string) error {
	kind := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		kind, args = args[0], args[1:]
	}
	fs := newFlags(env, usage{name: "circuits task", args: "ioi|greater-than|docstring|induction",
		summary: "write a task file of clean/corrupted prompt pairs (ioi, greater-than, docstring, induction)",
		example: "loupe circuits task induction --n 64 --out induction.jsonl",
		writes:  "a JSON-lines task file (--out)"})
	model := fs.String("model", "", "the model whose tokenizer checks the task (default: the embedded organism)")
	n := fs.Int("n", 64, "pairs to write")
	seed := fs.Uint64("seed", 1, "seed")
	span := fs.Int("span", 10, "induction: the repeated span's length in tokens")
	out := fs.String("out", "", "the task file to write (JSON lines)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if kind == "" {
		return fmt.Errorf("%w: want a task: ioi, greater-than, docstring or induction", errUsage)
	}
	if *out == "" {
		return fmt.Errorf("%w: --out is required", errUsage)
	}
	if *n <= 0 {
		return fmt.Errorf("%w: --n must be positive", errUsage)
	}
	if err := makeOutDir("out", *out); err != nil {
		return err
	}
	m, _, err := loadCircuitModel(*model, nil)
	if err != nil {
		return err
	}
	defer m.Close()
	if m.Tokenizer == nil {
		return fmt.Errorf("%s has no tokenizer: write its task file with token ids yourself", *model)
	}
	var pairs []circuits.Pair
	switch kind {
	case "ioi":
		names := circuits.SingleTokenWords(m.Tokenizer, circuits.IOINames, " ")
		if pairs, err = circuits.IOI(*n, names, *seed); err != nil {
			return err
		}
	case "greater-than":
		pairs = circuits.GreaterThan(*n, circuits.SplitsDigits(m.Tokenizer), *seed)
	case "docstring":
		pairs = circuits.Docstring(*n, *seed)
	case "induction":
		pool := circuits.WordTokens(m.Tokenizer, 3)
		var prefix []int
		if bos := m.Tokenizer.BOS(); bos >= 0 {
			prefix = []int{bos}
		}
		if pairs, err = circuits.Induction(*n, *span, pool, prefix, m.Tokenizer, *seed); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%w: unknown task %q: want ioi, greater-than, docstring or induction", errUsage, kind)
	}
	// Keep only the pairs this tokenizer can run, and say how many.
	kept := pairs[:0]
	for _, p := range pairs {
		if _, err := circuits.Tokenize(&circuits.Task{Name: kind, Pairs: []circuits.Pair{p}}, m.Tokenizer, m.Config.Vocab); err == nil {
			kept = append(kept, p)
		}
	}
	if len(kept) == 0 {
		_, err := circuits.Tokenize(&circuits.Task{Name: kind, Pairs: pairs[:1]}, m.Tokenizer, m.Config.Vocab)
		return fmt.Errorf("%s: no pair tokenizes evenly with this tokenizer: %v", kind, err)
	}
	if err := circuits.WriteTask(*out, kept); err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "wrote %d %s pairs to %s (%d dropped: clean and corrupted prompts of different lengths, or answers of several tokens)\n", len(kept), kind, *out, len(pairs)-len(kept))
	return nil
}

func cmdCircuitsCompare(ctx context.Context, env *cliEnv, args []string) error {
	var files []string
	for len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		files, args = append(files, args[0]), args[1:]
	}
	fs := newFlags(env, usage{name: "circuits compare", args: "A.arrow B.arrow",
		summary: "how far two found circuits agree: top-K head overlap and the rank correlation of their head scores",
		example: "loupe circuits compare patching.arrow sae.arrow --top 10",
		writes:  "nothing: it prints the comparison"})
	top := fs.Int("top", 10, "the top-K heads to compare")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if len(files) != 2 {
		return fmt.Errorf("%w: want two circuit files, got %d", errUsage, len(files))
	}
	if *top <= 0 {
		return fmt.Errorf("%w: --top must be positive", errUsage)
	}
	var scores [2]map[circuits.Node]float64
	var names [2]string
	for i, f := range files {
		tr, err := store.Open(f)
		if err != nil {
			return err
		}
		rows, err := tr.ReadCircuit(ctx)
		tr.Close()
		if err != nil {
			return err
		}
		scores[i] = map[circuits.Node]float64{}
		for _, r := range rows {
			if r.Kind == store.CircuitNode && r.Head >= 0 {
				scores[i][circuits.HeadNode(r.Layer, r.Head)] = r.Score
				names[i] = r.Method + " on " + r.Task
			}
		}
		if len(scores[i]) == 0 {
			return fmt.Errorf("%s: no head scores in its circuit table", f)
		}
	}
	ag := circuits.Agree(scores[0], scores[1], *top)
	list := func(ns []circuits.Node) string {
		s := make([]string, len(ns))
		for i, n := range ns {
			s[i] = n.String()
		}
		return strings.Join(s, " ")
	}
	fmt.Fprintf(env.stdout, "A (%s) top %d: %s\nB (%s) top %d: %s\noverlap %d of %d (Jaccard %.3f); Spearman rank correlation over all heads %.3f\n",
		names[0], ag.K, list(ag.TopA), names[1], ag.K, list(ag.TopB), ag.Overlap, ag.K, ag.Jaccard, ag.Spearman)
	return nil
}
