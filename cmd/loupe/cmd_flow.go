package main

import (
	"context"
	"fmt"
	"sort"
	"text/tabwriter"

	"github.com/loupe-dev/loupe/circuits"
	"github.com/loupe-dev/loupe/circuits/flowstore"
	"github.com/loupe-dev/loupe/circuits/probeattn"
	"github.com/loupe-dev/loupe/probe"
	"github.com/loupe-dev/loupe/store"
)

func cmdFlow(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, usage{name: "flow",
		example: `loupe flow --prompt "The day after Monday is" --method flow --out flow.arrow`,
		writes:  "--out (tokens) with its flow table beside it, and the input tokens sending the most into the last position on stdout"})
	var mf promptFlags
	mf.register(fs)
	method := fs.String("method", "flow", "rollout or flow (Abnar and Zuidema, 2020)")
	toLayer := fs.Int("to-layer", 0, "follow attention up to the residual stream after this many blocks (0: all)")
	fromLayer := fs.Int("from-layer", 0, "start from the residual stream after this many blocks (0: the input embeddings)")
	head := fs.Int("head", -1, "one head's pattern (with its residual share) instead of the average over heads")
	outputs := fs.String("outputs", "last", "output positions: last or all")
	top := fs.Int("top", 8, "input tokens to list")
	out := fs.String("out", "flow.arrow", "the Arrow file to write (tokens and the flow table)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	opt := circuits.Options{FromLayer: *fromLayer, ToLayer: *toLayer}
	switch *outputs {
	case "last":
		opt.Outputs = circuits.LastPosition
	case "all":
		opt.Outputs = circuits.AllPositions
	default:
		return fmt.Errorf("%w: --outputs %q: want last or all", errUsage, *outputs)
	}
	if *method != "rollout" && *method != "flow" {
		return fmt.Errorf("%w: --method %q: want rollout or flow", errUsage, *method)
	}
	if *top <= 0 {
		return fmt.Errorf("%w: --top must be positive, got %d", errUsage, *top)
	}
	m, ids, err := mf.load()
	if err != nil {
		return err
	}
	defer m.Close()
	L, H := m.Config.Layers, m.Config.Heads
	switch {
	case *head < -1 || *head >= H:
		return fmt.Errorf("%w: --head %d: the model has heads 0..%d (-1 averages them)", errUsage, *head, H-1)
	case *toLayer < 0 || *toLayer > L:
		return fmt.Errorf("%w: --to-layer %d: the model has %d layers", errUsage, *toLayer, L)
	}
	to := *toLayer
	if to == 0 {
		to = L
	}
	if *fromLayer < 0 || *fromLayer >= to {
		return fmt.Errorf("%w: --from-layer %d must be in 0..%d, below --to-layer", errUsage, *fromLayer, to-1)
	}
	if *head >= 0 {
		opt.Head = circuits.OneHead(*head)
	}
	res, err := m.Forward(ctx, [][]int{ids}, probe.Options{Hooks: probeattn.Hooks(), Logits: probe.LogitsNone})
	if err != nil {
		return err
	}
	att, T, err := probeattn.Patterns(res, L, 0)
	if err != nil {
		return err
	}
	var r *circuits.Result
	if *method == "rollout" {
		r, err = circuits.Rollout(ctx, att, T, opt)
	} else {
		r, err = circuits.Flow(ctx, att, T, opt)
	}
	if err != nil {
		return err
	}
	texts := make([]string, T)
	for i, id := range ids {
		texts[i] = m.Tokenizer.TokenText(id)
	}
	matrix, err := flowstore.Matrix(r, 0, L)
	if err != nil {
		return err
	}
	if err := makeOutDir("out", *out); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	w, err := store.Create(*out, runInfo(mf.name(), m), store.Options{MainTable: string(store.KindFlow)})
	if err != nil {
		return err
	}
	env.noteCleaned(w)
	defer w.Abort()
	if err := w.WriteTokens(store.Tokens{PromptID: 0, IDs: ids, Texts: texts}); err != nil {
		return err
	}
	if err := w.WriteFlow(matrix); err != nil {
		return err
	}
	if err := w.Commit(ctx); err != nil {
		return err
	}
	printFlowTop(env, r, texts, *top)
	heads := "averaged"
	if matrix.Head >= 0 {
		heads = fmt.Sprint(matrix.Head)
	}
	fmt.Fprintf(env.stdout, "wrote %s (flow table: %s, head %s, layers %d..%d, %d output positions); open it with `loupe tui %s`\n",
		*out, matrix.Method, heads, matrix.FromLayer, matrix.ToLayer, matrix.Rows, *out)
	return nil
}

// printFlowTop lists the input tokens sending the most into the last output
// position, normalised to shares as the paper plots them.
func printFlowTop(env *cliEnv, r *circuits.Result, texts []string, top int) {
	last := r.Outputs[len(r.Outputs)-1]
	row := r.Row(last)
	var sum float64
	for _, v := range row {
		sum += v
	}
	order := make([]int, len(row))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return row[order[a]] > row[order[b]] })
	fmt.Fprintf(env.stdout, "%s into position %d (%q), layers %d..%d:\n", r.Method, last, texts[last], r.FromLayer, r.ToLayer)
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "pos\ttoken\tvalue\tshare")
	for _, i := range order[:min(top, len(order))] {
		share := 0.0
		if sum > 0 {
			share = row[i] / sum
		}
		fmt.Fprintf(tw, "%d\t%q\t%.4g\t%.3f\n", i, texts[i], row[i], share)
	}
	tw.Flush()
}
