package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/loupe-dev/loupe/circuits"
	"github.com/loupe-dev/loupe/circuits/probeattn"
	"github.com/loupe-dev/loupe/heads"
	"github.com/loupe-dev/loupe/organism"
	"github.com/loupe-dev/loupe/organism/corpus"
	"github.com/loupe-dev/loupe/probe"
	"github.com/loupe-dev/loupe/store"
)

// demoSeed fixes every generated task of the demo, so two runs print the
// same head map.
const demoSeed = 1

// cmdDemo runs the embedded model organism end to end: it solves held-out
// prompts of each task, traces one prompt per task into an Arrow trace
// (tokens, attention patterns, head scores, rollout and flow), scores every
// head and prints the head map. It needs no model flag and no download.
func cmdDemo(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, usage{name: "demo",
		example: "loupe demo --out loupe-demo",
		writes:  "trace.arrow (tokens; siblings attention, head_scores, flow, index) and heads.jsonl under --out; what the organism does and its head map on stdout"})
	out := fs.String("out", "loupe-demo", "directory to write the trace files to")
	quiet := registerQuiet(fs)
	perTask := fs.Int("prompts", 16, "held-out prompts to solve per task")
	var dev deviceFlags
	dev.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *perTask < 1 {
		return fmt.Errorf("%w: --prompts must be at least 1", errUsage)
	}
	start := time.Now()
	w := env.stdout

	b, err := dev.backend()
	if err != nil {
		return err
	}
	m, err := organism.Load(b)
	if err != nil {
		return err
	}
	defer m.Close()
	dir, _ := organism.Dir() // Load succeeded, so Dir did
	c := m.Config
	fmt.Fprintf(w, "Loupe model organism (embedded, no download): Llama, %d layers x %d heads (%d KV), d_model %d, %.2fM parameters, vocabulary %d\n",
		c.Layers, c.Heads, c.KVHeads, c.DModel, float64(m.NumParams())/1e6, c.Vocab)
	fmt.Fprintf(w, "  model files and card: %s\n\n", dir)

	// 1. Held-out prompts.
	examples, err := demoSolve(ctx, w, m, *perTask)
	if err != nil {
		return err
	}

	// 2. The next-token table of the temporal example.
	if err := demoNextTokens(ctx, w, m, examples[corpus.Temporal]); err != nil {
		return err
	}

	// 3. Score every head.
	suite, err := organism.HeadSuite(m, demoSeed, 8)
	if err != nil {
		return err
	}
	bar := env.progress(*quiet)
	scores, err := heads.Classify(ctx, m.Model, suite, organism.SuiteScores, bar.update)
	bar.done()
	if err != nil {
		return err
	}
	recs := heads.Records(organism.Name, scores)

	// 4. The trace: tokens and attention of one prompt per task, the head
	// scores, rollout and flow of the retrieval prompt.
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	tracePath := filepath.Join(*out, "trace.arrow")
	flows, err := demoTrace(ctx, env, tracePath, dir, m, examples, recs)
	if err != nil {
		return err
	}
	jsonlPath := filepath.Join(*out, "heads.jsonl")
	if err := writeJSONLFile(jsonlPath, recs); err != nil {
		return err
	}

	// 5. What it found.
	printFlow(w, m, flows)
	printHeadMap(w, c.Layers, c.Heads, scores, recs)
	printOpen(w, *out, tracePath, jsonlPath)
	fmt.Fprintf(w, "\ndone in %s\n", time.Since(start).Round(100*time.Millisecond))
	return nil
}

// demoExample is the held-out prompt a task is traced with.
type demoExample struct {
	ex  corpus.Example
	ids []int
}

// demoSolve runs n held-out prompts of each task, prints two of them and the
// accuracy, and returns the first prompt of each task for the trace.
func demoSolve(ctx context.Context, w io.Writer, m *probe.Loaded, n int) (map[string]demoExample, error) {
	fmt.Fprintf(w, "Held-out prompts (greedy; the model card states the accuracy on 64 of each):\n")
	out := map[string]demoExample{}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, task := range organism.Tasks {
		exs, err := organism.HeldOut(task)
		if err != nil {
			return nil, err
		}
		exs = exs[:min(n, len(exs))]
		right := 0
		for i, ex := range exs {
			v, err := organism.Solve(ctx, m, ex)
			if err != nil {
				return nil, err
			}
			if v.OK {
				right++
			}
			if i < 2 {
				mark := "ok"
				if !v.OK {
					mark = "WRONG"
				}
				fmt.Fprintf(tw, "  %s\t%s\t-> %q\t(expected %q)\t%s\n", task, elide(ex.Prompt, 56), strings.TrimRight(v.Got, "\n"), ex.Answer, mark)
			}
		}
		fmt.Fprintf(tw, "  %s\taccuracy %d/%d\t\t\t\n", task, right, len(exs))
		ids, err := m.Tokenizer.Encode(exs[0].Prompt, true)
		if err != nil {
			return nil, err
		}
		out[task] = demoExample{ex: exs[0], ids: ids}
	}
	tw.Flush()
	fmt.Fprintln(w)
	return out, nil
}

func demoNextTokens(ctx context.Context, w io.Writer, m *probe.Loaded, d demoExample) error {
	res, err := m.Forward(ctx, [][]int{d.ids}, probe.Options{Logits: probe.LogitsLast})
	if err != nil {
		return err
	}
	probs := softmax(res.LogitsAt(0, -1))
	order := make([]int, len(probs))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return probs[order[a]] > probs[order[b]] })
	fmt.Fprintf(w, "Next token after %q:\n", d.ex.Prompt)
	for _, id := range order[:5] {
		fmt.Fprintf(w, "  %-14q %.3f\n", m.Tokenizer.TokenText(id), probs[id])
	}
	fmt.Fprintln(w)
	return nil
}

// demoFlow is rollout and flow into the last position of one prompt.
type demoFlow struct {
	task          string
	ids           []int
	rollout, flow *circuits.Result
}

// demoTrace writes the trace and returns the retrieval prompt's rollout and
// flow.
func demoTrace(ctx context.Context, env *cliEnv, path, modelDir string, m *probe.Loaded, examples map[string]demoExample, recs []heads.Record) (*demoFlow, error) {
	tw, err := store.Create(path, runInfo(organism.Name+" ("+modelDir+")", m), store.Options{})
	if err != nil {
		return nil, err
	}
	env.noteCleaned(tw)
	fail := func(err error) (*demoFlow, error) {
		tw.Abort()
		return nil, err
	}
	var flows *demoFlow
	for pid, task := range organism.Tasks {
		d := examples[task]
		texts := make([]string, len(d.ids))
		for i, id := range d.ids {
			texts[i] = m.Tokenizer.TokenText(id)
		}
		if err := tw.WriteTokens(store.Tokens{PromptID: pid, IDs: d.ids, Texts: texts}); err != nil {
			return fail(err)
		}
		res, err := m.Forward(ctx, [][]int{d.ids}, probe.Options{Hooks: probeattn.Hooks(), Logits: probe.LogitsNone})
		if err != nil {
			return fail(err)
		}
		pats, T, err := probeattn.Patterns(res, m.Config.Layers, 0)
		if err != nil {
			return fail(err)
		}
		for l := range pats {
			for h, a := range pats[l] {
				if err := tw.WriteAttention(store.Attention{PromptID: pid, Layer: l, Head: h, Queries: T, Keys: T, Causal: true, Weights: a}); err != nil {
					return fail(err)
				}
			}
		}
		if task != corpus.Retrieval {
			continue
		}
		// Flow and rollout into the last position: where the answer to
		// "What is the secret code of blue?" comes from.
		ro, err := circuits.Rollout(ctx, pats, T, circuits.Options{})
		if err != nil {
			return fail(err)
		}
		fl, err := circuits.Flow(ctx, pats, T, circuits.Options{})
		if err != nil {
			return fail(err)
		}
		for _, r := range []*circuits.Result{ro, fl} {
			vals := make([]float32, len(r.Values))
			for i, v := range r.Values {
				vals[i] = float32(v)
			}
			if err := tw.WriteFlow(store.FlowMatrix{PromptID: pid, Method: string(r.Method), Layer: -1, Head: store.HeadsAveraged,
				FromLayer: r.FromLayer, ToLayer: r.ToLayer, Outputs: r.Outputs, Rows: len(r.Outputs), Cols: r.T, Values: vals}); err != nil {
				return fail(err)
			}
		}
		flows = &demoFlow{task: task, ids: d.ids, rollout: ro, flow: fl}
	}
	rows, err := heads.StoreRows(recs)
	if err != nil {
		return fail(err)
	}
	if err := tw.WriteHeadScores(rows); err != nil {
		return fail(err)
	}
	if err := tw.Commit(ctx); err != nil {
		return nil, err
	}
	return flows, nil
}

func writeJSONLFile(path string, recs []heads.Record) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := heads.WriteJSONL(f, recs); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}

// printFlow lists the tokens that send the most flow (and rollout) into the
// retrieval prompt's last position.
func printFlow(w io.Writer, m *probe.Loaded, d *demoFlow) {
	if d == nil {
		return
	}
	T := len(d.ids)
	top := func(r *circuits.Result) string {
		row := r.Values[:T]
		idx := make([]int, 0, T)
		for i := 1; i < T; i++ { // position 0 is BOS, the attention sink
			idx = append(idx, i)
		}
		sort.SliceStable(idx, func(a, b int) bool { return row[idx[a]] > row[idx[b]] })
		var parts []string
		for _, i := range idx[:min(5, len(idx))] {
			parts = append(parts, fmt.Sprintf("%q@%d %.3f", m.Tokenizer.TokenText(d.ids[i]), i, row[i]))
		}
		return strings.Join(parts, "  ")
	}
	fmt.Fprintf(w, "Attention into the last token of the %s prompt (%d tokens), top sources after BOS:\n", d.task, T)
	fmt.Fprintf(w, "  flow     %s\n", top(d.flow))
	fmt.Fprintf(w, "  rollout  %s\n\n", top(d.rollout))
}

// headAbbrev are the head map's short labels.
var headAbbrev = map[string]string{
	heads.ScorePreviousToken: "prev",
	heads.ScoreDuplicate:     "dup",
	heads.ScoreInduction:     "induct",
	heads.ScoreSink:          "sink",
	heads.ScoreStreaming:     "stream",
	heads.ScoreRetrieval:     "retr",
	heads.ScoreSuccessor:     "succ",
	heads.ScoreTemporal:      "temp",
}

// topLabels picks each head's label for the map: among the scores whose
// threshold the head passes, the one in which it ranks highest (ties: the
// larger value over threshold). Ranking first matters more than a large
// value: a copy head passes the retrieval threshold easily, but the head
// that ranks first on induction is the induction head.
func topLabels(layers, nheads int, recs []heads.Record) [][]string {
	out := make([][]string, layers)
	best := make([][]heads.Record, layers)
	for l := range out {
		out[l] = make([]string, nheads)
		best[l] = make([]heads.Record, nheads)
	}
	for _, r := range recs {
		if r.Label == "" || r.Value == nil || r.Threshold == nil || *r.Threshold <= 0 {
			continue
		}
		b := &best[r.Layer][r.Head]
		ratio := func(x heads.Record) float64 { return *x.Value / *x.Threshold }
		if b.Label == "" || r.Rank < b.Rank || (r.Rank == b.Rank && ratio(r) > ratio(*b)) {
			*b = r
			out[r.Layer][r.Head] = headAbbrev[r.Score]
		}
	}
	return out
}

func printHeadMap(w io.Writer, layers, nheads int, scores []*heads.Score, recs []heads.Record) {
	labels := topLabels(layers, nheads, recs)
	fmt.Fprintln(w, "Head map (each head's top label; '.' = no label):")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprint(tw, "  \t")
	for h := range nheads {
		fmt.Fprintf(tw, "h%d\t", h)
	}
	fmt.Fprintln(tw)
	for l := range layers {
		fmt.Fprintf(tw, "  L%d\t", l)
		for h := range nheads {
			s := labels[l][h]
			if s == "" {
				s = "."
			}
			fmt.Fprintf(tw, "%s\t", s)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nScores (labelled heads, best first; top head and value):")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, sc := range scores {
		lab := sc.Labeled()
		var names []string
		for _, h := range lab[:min(6, len(lab))] {
			names = append(names, h.String())
		}
		if len(lab) > 6 {
			names = append(names, fmt.Sprintf("+%d", len(lab)-6))
		}
		if len(names) == 0 {
			names = []string{"none"}
		}
		topH := sc.Values.Top(1)[0]
		v := sc.Values.At(topH.Layer, topH.Head)
		thr := "-"
		if !math.IsNaN(sc.Threshold) {
			thr = fmt.Sprintf(">= %.3g", sc.Threshold)
		}
		fmt.Fprintf(tw, "  %s (%s)\t%s\t%s\t%s %.3f\n", sc.Name, headAbbrev[sc.Name], thr, strings.Join(names, " "), topH, v)
	}
	tw.Flush()
}

func printOpen(w io.Writer, out, trace, jsonl string) {
	fmt.Fprintf(w, "\nWrote %s (tokens; siblings: attention, head_scores, flow, index) and %s.\n", trace, jsonl)
	fmt.Fprintln(w, "Open them:")
	fmt.Fprintf(w, "  loupe ls %s                      what the trace holds\n", trace)
	hasTUI := false
	for _, c := range commands() {
		hasTUI = hasTUI || c.name == "tui"
	}
	if hasTUI {
		fmt.Fprintf(w, "  loupe tui %s                     browse the head map and attention\n", trace)
	} else {
		fmt.Fprintln(w, "  (the terminal browser, `loupe tui`, is not in this build yet)")
	}
	fmt.Fprintf(w, "  loupe export %s --to parquet      Parquet for any data tool\n", trace)
	fmt.Fprintf(w, "  python: pyarrow.ipc.open_file(%q).read_all().to_pandas()\n", store.SiblingPath(trace, string(store.KindHeadScores)))
	fmt.Fprintf(w, "  notebooks: LOUPE_TRACE=%s jupyter lab notebooks/  (head_map.ipynb, traced_prompt.ipynb; see notebooks/README.md)\n", trace)
}

// elide keeps the end of a long prompt, where the question is.
func elide(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return "..." + string(r[len(r)-n+3:])
}
