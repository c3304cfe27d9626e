package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/loupe-dev/loupe/probe"
	"github.com/loupe-dev/loupe/store"
)

// tracePrompt is one line of a --prompts file.
type tracePrompt struct {
	ID   int    `json:"id"`
	Text string `json:"text"`
}

// readPrompts reads one prompt a line, or JSON lines {"id": N, "text": "..."}
// when the first non-empty line starts with '{'. Plain lines are numbered
// from 0; blank lines are skipped.
func readPrompts(path string) ([]tracePrompt, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--prompts: %w", err)
	}
	defer f.Close()
	var out []tracePrompt
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	jsonl, line, seen := false, 0, map[int]bool{}
	for sc.Scan() {
		line++
		text := sc.Text()
		if strings.TrimSpace(text) == "" {
			continue
		}
		if len(out) == 0 {
			jsonl = strings.HasPrefix(strings.TrimSpace(text), "{")
		}
		p := tracePrompt{ID: len(out), Text: text}
		if jsonl {
			p = tracePrompt{ID: -1}
			if err := json.Unmarshal([]byte(text), &p); err != nil {
				return nil, fmt.Errorf("--prompts %s line %d: %w", path, line, err)
			}
			if p.ID < 0 {
				p.ID = len(out)
			}
		}
		if p.Text == "" {
			return nil, fmt.Errorf("--prompts %s line %d: empty prompt text", path, line)
		}
		if seen[p.ID] {
			return nil, fmt.Errorf("--prompts %s line %d: prompt id %d repeats", path, line, p.ID)
		}
		seen[p.ID] = true
		out = append(out, p)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--prompts %s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--prompts %s: no prompts", path)
	}
	return out, nil
}

const patternHooks = "blocks.*.attn.hook_pattern"

func cmdTrace(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, usage{name: "trace",
		example: "loupe trace --prompts prompts.txt --hooks 'blocks.*.hook_resid_post' --logit-lens 5 --out out/t.arrow",
		writes:  "the trace --out (tokens) and its sibling Arrow files (activations, attention, logit lens, index) next to it; a summary line on stdout"})
	var mf modelFlag
	mf.register(fs)
	promptsPath := fs.String("prompts", "", "prompts: one a line, or JSON lines {\"id\": N, \"text\": \"...\"}")
	hooksFlag := fs.String("hooks", "blocks.*.hook_resid_post", "hook-name glob patterns to store, comma-separated")
	out := fs.String("out", "traces.arrow", "the trace file to write")
	attention := fs.String("attention", "auto", "attention to store: auto (full patterns up to --full-max tokens, else top-k), full, topk, none")
	topK := fs.Int("topk", 8, "attended positions kept per query in top-k attention")
	fullMax := fs.Int("full-max", 256, "longest prompt whose full attention patterns --attention auto stores")
	lensK := fs.Int("logit-lens", 0, "store the logit lens (top K tokens per layer and position); 0: off")
	dtype := fs.String("dtype", "float32", "activation storage: float32 or float16")
	compression := fs.String("compression", "zstd", "zstd, lz4 or none")
	quiet := registerQuiet(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case *promptsPath == "":
		return fmt.Errorf("%w: --prompts is required", errUsage)
	case !slices.Contains([]string{"auto", "full", "topk", "none"}, *attention):
		return fmt.Errorf("%w: --attention %q: want auto, full, topk or none", errUsage, *attention)
	case *topK <= 0:
		return fmt.Errorf("%w: --topk must be positive", errUsage)
	case *lensK < 0:
		return fmt.Errorf("%w: --logit-lens must not be negative", errUsage)
	case *fullMax < 0:
		return fmt.Errorf("%w: --full-max must not be negative, got %d", errUsage, *fullMax)
	}
	opts := store.Options{}
	switch *dtype {
	case "float32":
		opts.ActivationDType = store.Float32
	case "float16":
		opts.ActivationDType = store.Float16
	default:
		return fmt.Errorf("%w: --dtype %q: want float32 or float16", errUsage, *dtype)
	}
	switch *compression {
	case "zstd":
		opts.Compression = store.Zstd
	case "lz4":
		opts.Compression = store.LZ4
	case "none":
		opts.Compression = store.None
	default:
		return fmt.Errorf("%w: --compression %q: want zstd, lz4 or none", errUsage, *compression)
	}
	var patterns []string
	for _, p := range strings.Split(*hooksFlag, ",") {
		if p = strings.TrimSpace(p); p != "" {
			patterns = append(patterns, p)
		}
	}
	prompts, err := readPrompts(*promptsPath)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	for _, p := range patterns {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("%w: --hooks %q: %v", errUsage, p, err)
		}
	}
	m, err := mf.load()
	if err != nil {
		return err
	}
	defer m.Close()
	for _, p := range patterns { // a typo would store nothing, silently
		if !slices.ContainsFunc(m.HookNames(), func(name string) bool { return matchesAny([]string{p}, name) }) {
			return fmt.Errorf("%w: --hooks %q matches no hook point of %s (`loupe inspect --all-hooks` lists them)", errUsage, p, mf.name())
		}
	}
	// Tokenize everything first: a bad prompt fails before any work.
	ids := make([][]int, len(prompts))
	for i, p := range prompts {
		if ids[i], err = m.Tokenizer.Encode(p.Text, true); err != nil {
			return fmt.Errorf("prompt %d: %w", p.ID, err)
		}
		if len(ids[i]) == 0 {
			return fmt.Errorf("%w: prompt %d gives no tokens", errUsage, p.ID)
		}
		if n := m.Config.MaxPos; n > 0 && len(ids[i]) > n {
			return fmt.Errorf("%w: prompt %d has %d tokens, more than the model's context of %d", errUsage, p.ID, len(ids[i]), n)
		}
	}
	if err := makeOutDir("out", *out); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	w, err := store.Create(*out, runInfo(mf.name(), m), opts)
	if err != nil {
		return err
	}
	env.noteCleaned(w)
	defer w.Abort() // no-op after Commit; removes the temporary files otherwise
	tr := &tracer{m: m, w: w, patterns: patterns, attention: *attention, topK: *topK, fullMax: *fullMax, lensK: *lensK}
	bar := env.progress(*quiet)
	tokens := 0
	for i, p := range prompts {
		bar.update("trace", i, len(prompts))
		if err := tr.trace(ctx, p.ID, ids[i]); err != nil {
			return fmt.Errorf("prompt %d: %w", p.ID, err)
		}
		tokens += len(ids[i])
	}
	bar.update("commit", len(prompts), len(prompts))
	if err := w.Commit(ctx); err != nil {
		return err
	}
	bar.done()
	fmt.Fprintf(env.stdout, "traced %d prompts (%d tokens) into %s\n", len(prompts), tokens, *out)
	return nil
}

// tracer runs prompts through the model and writes what they show.
type tracer struct {
	m          *probe.Loaded
	w          *store.Writer
	patterns   []string
	attention  string
	topK       int
	fullMax    int
	lensK      int
	skipWarned bool
}

func (tr *tracer) trace(ctx context.Context, id int, ids []int) error {
	T := len(ids)
	hooks := &probe.Hooks{Cache: slices.Clone(tr.patterns)}
	mode := tr.attention
	if mode == "auto" {
		mode = "full"
		if T > tr.fullMax {
			mode = "topk"
		}
	}
	switch mode {
	case "full":
		hooks.Cache = append(hooks.Cache, patternHooks)
	case "topk":
		hooks.Reduce = append(hooks.Reduce, probe.Reduction{Hook: patternHooks, Op: probe.TopK, K: tr.topK})
	}
	if tr.lensK > 0 {
		hooks.Cache = append(hooks.Cache, "blocks.*.hook_resid_post")
	}
	res, err := tr.m.Forward(ctx, [][]int{ids}, probe.Options{Hooks: hooks, Logits: probe.LogitsNone})
	if err != nil {
		return err
	}
	texts := make([]string, T)
	for i, t := range ids {
		texts[i] = tr.m.Tokenizer.TokenText(t)
	}
	if err := tr.w.WriteTokens(store.Tokens{PromptID: id, IDs: ids, Texts: texts}); err != nil {
		return err
	}
	// Activations, in the model's hook order so files read in a stable order.
	for _, name := range tr.m.HookNames() {
		act := res.Cache[name]
		if act == nil || !matchesAny(tr.patterns, name) {
			continue
		}
		if err := tr.writeActivation(id, act); err != nil {
			return err
		}
	}
	if mode == "full" {
		for l := 0; l < tr.m.Config.Layers; l++ {
			act := res.Cache[fmt.Sprintf("blocks.%d.attn.hook_pattern", l)]
			H := act.Shape[1]
			for h := 0; h < H; h++ {
				err := tr.w.WriteAttention(store.Attention{PromptID: id, Layer: l, Head: h, Queries: T, Keys: T, Causal: true,
					Weights: act.Data[h*T*T : (h+1)*T*T]})
				if err != nil {
					return err
				}
			}
		}
	}
	for _, red := range res.Reduced {
		l := layerOf(red.Hook)
		H, K := red.Shape[1], red.Shape[3]
		for h := 0; h < H; h++ {
			at := store.AttentionTopK{PromptID: id, Layer: l, Head: h, K: K, QueryPos: make([]int, T),
				KeyPos: red.Index[h*T*K : (h+1)*T*K], Weight: red.Values[h*T*K : (h+1)*T*K]}
			for q := range at.QueryPos {
				at.QueryPos[q] = q
			}
			if err := tr.w.WriteAttentionTopK(at); err != nil {
				return err
			}
		}
	}
	if tr.lensK > 0 {
		return tr.logitLens(id, ids, res)
	}
	return nil
}

// writeActivation stores one cached hook: rows are positions, the trailing
// shape is what follows [batch, pos]. Attention scores ([batch, head,
// query, key]) have a prompt-dependent shape and are not activations.
func (tr *tracer) writeActivation(id int, act *probe.Activation) error {
	if strings.HasSuffix(act.Name, "hook_attn_scores") || strings.HasSuffix(act.Name, "hook_pattern") {
		return nil // patterns go to the attention tables; scores are not stored
	}
	return tr.w.WriteActivation(store.Activation{Hook: act.Name, Layer: layerOf(act.Name), Head: -1, PromptID: id,
		Shape: act.Shape[2:], Values: act.Data})
}

// logitLens unembeds every layer's residual stream and keeps the top tokens.
func (tr *tracer) logitLens(id int, ids []int, res *probe.Result) error {
	T, V, K := len(ids), tr.m.Config.Vocab, tr.lensK
	for l := 0; l < tr.m.Config.Layers; l++ {
		act := res.Cache[fmt.Sprintf("blocks.%d.hook_resid_post", l)]
		logits, err := tr.m.Unembed(act.Data, T)
		if err != nil {
			return err
		}
		ll := store.LogitLens{PromptID: id, Layer: l, K: K, Positions: make([]int, T), TargetProb: make([]float32, T)}
		for p := 0; p < T; p++ {
			row := logits[p*V : (p+1)*V]
			probs := softmax(row)
			ll.Positions[p] = p
			ll.TargetProb[p] = float32(math.NaN()) // no next token at the last position
			if p+1 < T {
				ll.TargetProb[p] = float32(probs[ids[p+1]])
			}
			for _, t := range topIndices(row, K) {
				ll.TopIDs = append(ll.TopIDs, int32(t))
				ll.TopProbs = append(ll.TopProbs, float32(probs[t]))
				ll.TopTexts = append(ll.TopTexts, tr.m.Tokenizer.TokenText(t))
			}
		}
		if err := tr.w.WriteLogitLens(ll); err != nil {
			return err
		}
	}
	return nil
}

// topIndices gives the indices of the k largest values, largest first.
func topIndices(row []float32, k int) []int {
	idx := make([]int, 0, k+1)
	for i, v := range row {
		if len(idx) == k && v <= row[idx[k-1]] {
			continue
		}
		j := len(idx)
		idx = append(idx, i)
		for j > 0 && row[idx[j-1]] < v {
			idx[j] = idx[j-1]
			j--
		}
		idx[j] = i
		if len(idx) > k {
			idx = idx[:k]
		}
	}
	return idx
}

func matchesAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

// layerOf parses L from "blocks.L...." (-1 for other hooks).
func layerOf(hook string) int {
	rest, ok := strings.CutPrefix(hook, "blocks.")
	if !ok {
		return -1
	}
	n, err := strconv.Atoi(rest[:max(strings.IndexByte(rest, '.'), 0)])
	if err != nil {
		return -1
	}
	return n
}
