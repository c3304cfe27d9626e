package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/loupe-dev/loupe/probe"
)

// promptFlags are --model and a prompt: the flags of every command that
// runs one prompt.
type promptFlags struct {
	modelFlag
	prompt string
	raw    bool
}

func (f *promptFlags) register(fs *flag.FlagSet) {
	f.modelFlag.register(fs)
	fs.StringVar(&f.prompt, "prompt", "", "the prompt text")
	fs.BoolVar(&f.raw, "no-special", false, "do not add the tokenizer's special tokens (BOS)")
}

// load opens the model and tokenizes the prompt, checking both flags.
func (f *promptFlags) load() (*probe.Loaded, []int, error) {
	if f.prompt == "" {
		return nil, nil, fmt.Errorf("%w: --prompt is empty", errUsage)
	}
	m, err := f.modelFlag.load()
	if err != nil {
		return nil, nil, err
	}
	ids, err := m.Tokenizer.Encode(f.prompt, !f.raw)
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("--prompt: %w", err)
	}
	if len(ids) == 0 {
		m.Close()
		return nil, nil, fmt.Errorf("%w: --prompt gives no tokens", errUsage)
	}
	if max := m.Config.MaxPos; max > 0 && len(ids) > max {
		m.Close()
		return nil, nil, fmt.Errorf("%w: --prompt has %d tokens, more than the model's context of %d", errUsage, len(ids), max)
	}
	return m, ids, nil
}

func cmdRun(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, usage{name: "run",
		example: `loupe run --prompt "The day after Monday is" --top 5`,
		writes:  "the next-token table (rank, id, token, logit, probability) on stdout, or with --json one JSON object; nothing on disk"})
	var mf promptFlags
	mf.register(fs)
	top := fs.Int("top", 10, "how many next tokens to list")
	asJSON := fs.Bool("json", false, "print one JSON object (model, prompt tokens, next tokens) instead of the table")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *top <= 0 {
		return fmt.Errorf("%w: --top must be positive, got %d", errUsage, *top)
	}
	m, ids, err := mf.load()
	if err != nil {
		return err
	}
	defer m.Close()
	res, err := m.Forward(ctx, [][]int{ids}, probe.Options{Logits: probe.LogitsLast})
	if err != nil {
		return err
	}
	logits := res.LogitsAt(0, -1)
	probs := softmax(logits)
	order := make([]int, len(logits))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return logits[order[a]] > logits[order[b]] })
	order = order[:min(*top, len(order))]
	if *asJSON {
		out := runJSON{Model: mf.name(), Prompt: mf.prompt, PromptIDs: ids, Next: make([]nextTokenJSON, len(order))}
		for r, id := range order {
			out.Next[r] = nextTokenJSON{Rank: r + 1, ID: id, Token: m.Tokenizer.TokenText(id), Logit: logits[id], Prob: probs[id]}
		}
		return writeJSON(env.stdout, out)
	}
	fmt.Fprintf(env.stdout, "%s: %d prompt tokens; next token:\n", mf.name(), len(ids))
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "rank\tid\ttoken\tlogit\tprob")
	for r, id := range order {
		fmt.Fprintf(tw, "%d\t%d\t%q\t%.4f\t%.4f\n", r+1, id, m.Tokenizer.TokenText(id), logits[id], probs[id])
	}
	return tw.Flush()
}

// runJSON is what `loupe run --json` prints.
type runJSON struct {
	Model     string          `json:"model"`
	Prompt    string          `json:"prompt"`
	PromptIDs []int           `json:"prompt_ids"`
	Next      []nextTokenJSON `json:"next"`
}

type nextTokenJSON struct {
	Rank  int     `json:"rank"`
	ID    int     `json:"id"`
	Token string  `json:"token"`
	Logit float32 `json:"logit"`
	Prob  float64 `json:"prob"`
}

// generateJSON is what `loupe generate --json` prints.
type generateJSON struct {
	Model     string `json:"model"`
	Prompt    string `json:"prompt"`
	PromptIDs []int  `json:"prompt_ids"`
	IDs       []int  `json:"ids"`  // the generated tokens
	Text      string `json:"text"` // the generated tokens, decoded
	Stop      string `json:"stop"` // why it stopped: "eos" or "max_tokens"
}

// writeJSON prints v as one line of JSON.
func writeJSON(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}

func softmax(x []float32) []float64 {
	m := math.Inf(-1)
	for _, v := range x {
		m = math.Max(m, float64(v))
	}
	out := make([]float64, len(x))
	var s float64
	for i, v := range x {
		out[i] = math.Exp(float64(v) - m)
		s += out[i]
	}
	for i := range out {
		out[i] /= s
	}
	return out
}

func cmdGenerate(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, usage{name: "generate",
		example: `loupe generate --prompt "Monday, Tuesday," --max-tokens 16`,
		writes:  "the prompt and its continuation on stdout, token by token, or with --json one JSON object at the end; nothing on disk"})
	var mf promptFlags
	mf.register(fs)
	maxTokens := fs.Int("max-tokens", 32, "how many tokens to generate")
	temp := fs.Float64("temperature", 0, "sampling temperature; 0 is greedy")
	topK := fs.Int("top-k", 0, "sample from the K most likely tokens (0: all)")
	topP := fs.Float64("top-p", 0, "sample from the smallest set of tokens with this mass (0: all)")
	seed := fs.Uint64("seed", 1, "sampling seed")
	stopEOS := fs.Bool("stop-eos", true, "stop at the end-of-sequence token")
	asJSON := fs.Bool("json", false, "print one JSON object (prompt and generated ids, text, why it stopped) when done, instead of streaming text")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case *maxTokens <= 0:
		return fmt.Errorf("%w: --max-tokens must be positive, got %d", errUsage, *maxTokens)
	case !(*temp >= 0) || math.IsInf(*temp, 1): // NaN fails every comparison
		return fmt.Errorf("%w: --temperature must be a finite number, not negative, got %g", errUsage, *temp)
	case !(*topP >= 0 && *topP <= 1):
		return fmt.Errorf("%w: --top-p must be in [0, 1], got %g", errUsage, *topP)
	case *topK < 0:
		return fmt.Errorf("%w: --top-k must not be negative", errUsage)
	}
	m, ids, err := mf.load()
	if err != nil {
		return err
	}
	defer m.Close()
	if max := m.Config.MaxPos; max > 0 && len(ids)+*maxTokens > max {
		return fmt.Errorf("%w: --max-tokens %d: the prompt's %d tokens plus %d new ones exceed the model's context of %d (at most %d new tokens fit)",
			errUsage, *maxTokens, len(ids), *maxTokens, max, max-len(ids))
	}
	var stop []int
	if eos := m.Tokenizer.EOS(); *stopEOS && eos >= 0 {
		stop = append(stop, eos)
	}
	if !*asJSON {
		fmt.Fprint(env.stdout, mf.prompt)
	}
	var out []int
	printed := ""
	_, err = m.Generate(ctx, ids, probe.GenerateOptions{
		MaxTokens: *maxTokens,
		Sampling:  probe.Sampling{Temperature: *temp, TopK: *topK, TopP: *topP, Seed: *seed},
		Stop:      stop,
		OnToken: func(id int) {
			out = append(out, id)
			if *asJSON {
				return
			}
			// Decode the whole continuation so multi-token characters print
			// whole; print what is new.
			text := m.Tokenizer.Decode(out, true)
			if strings.HasPrefix(text, printed) {
				fmt.Fprint(env.stdout, text[len(printed):])
				printed = text
			}
		},
	})
	if *asJSON {
		if err != nil {
			return err
		}
		why := "max_tokens"
		if len(out) > 0 && slices.Contains(stop, out[len(out)-1]) {
			why = "eos"
		}
		return writeJSON(env.stdout, generateJSON{Model: mf.name(), Prompt: mf.prompt, PromptIDs: ids, IDs: out,
			Text: m.Tokenizer.Decode(out, true), Stop: why})
	}
	fmt.Fprintln(env.stdout)
	return err
}
