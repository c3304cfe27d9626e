package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/loupe-dev/loupe/organism/tokfsm"
	"github.com/loupe-dev/loupe/probe"
	"github.com/loupe-dev/loupe/probe/tokenizer"
	"github.com/loupe-dev/loupe/sae/activations"
	"github.com/loupe-dev/loupe/sae/codebook"
	"github.com/loupe-dev/loupe/store"
)

// cmdCodebook dispatches `loupe codebook train|eval|codes|steer`.
func cmdCodebook(ctx context.Context, env *cliEnv, args []string) error {
	usage := "want `loupe codebook train`, `eval DIR`, `codes DIR --out FILE.arrow`, `steer DIR --code HOOK:ID --prompt P` or `topic DIR --corpus FILE`"
	if len(args) == 0 {
		return fmt.Errorf("%w: %s", errUsage, usage)
	}
	switch args[0] {
	case "train":
		return cmdCodebookTrain(ctx, env, args[1:])
	case "eval":
		return cmdCodebookEval(ctx, env, args[1:])
	case "codes":
		return cmdCodebookCodes(ctx, env, args[1:])
	case "steer":
		return cmdCodebookSteer(ctx, env, args[1:])
	case "topic":
		return cmdCodebookTopic(ctx, env, args[1:])
	case "-h", "--help", "help":
		fmt.Fprintln(env.stdout, `loupe codebook train --hook H --codes N --k K --tokens T --out DIR [--model M] [--corpus FILE] [--per-head] [--resume]
loupe codebook eval DIR [--model M] [--corpus FILE]      (a TokFSM model folder: state AP and steering)
loupe codebook codes DIR --out FILE.arrow [--model M] [--corpus FILE]
loupe codebook steer DIR --code HOOK:ID[@POS] [--code ...] --prompt P [--model M]
loupe codebook topic DIR --corpus FILE.jsonl [--pattern P ...]   (a story model folder: topic codes and steering)`)
		return nil
	}
	return fmt.Errorf("%w: unknown codebook command %q; %s", errUsage, args[0], usage)
}

// codebookSubject is what a codebook command runs: either a model folder
// that carries its codebooks (a TokFSM model), or codebooks trained on a
// frozen model (the organism unless --model).
type codebookSubject struct {
	model *probe.Model
	set   *codebook.Set
	fsm   *tokfsm.FSM // a TokFSM model's machine; nil otherwise
	tok   *tokenizer.Tokenizer
	docs  []string
	// withModel: a model folder fine-tuned with its codebooks, which run at
	// every position (BOS included); frozen-model codebooks skip BOS.
	withModel bool
	closer    func()
}

func (s *codebookSubject) close() {
	if s.closer != nil {
		s.closer()
	}
}

func openCodebookSubject(dir string, df *saeDataFlags, needDocs bool) (*codebookSubject, error) {
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err == nil {
		b, err := df.mf.backend() // --device: the codebooks run where the model does
		if err != nil {
			return nil, err
		}
		cm, err := codebook.LoadModel(dir, b)
		if err != nil {
			return nil, err
		}
		s := &codebookSubject{model: cm.Model, set: cm.Set, tok: cm.Tokenizer, withModel: true, closer: func() { cm.Close() }}
		if _, err := os.Stat(filepath.Join(dir, "fsm.json")); err == nil {
			if s.fsm, err = tokfsm.Load(filepath.Join(dir, "fsm.json")); err != nil {
				s.close()
				return nil, err
			}
		}
		return s, nil
	}
	set, err := codebook.Load(dir)
	if err != nil {
		return nil, err
	}
	m, _, docs, _, err := df.load()
	if err != nil {
		return nil, err
	}
	if err := set.CheckModel(m.Config); err != nil {
		m.Close()
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	set.Upload(m.Model.Backend())
	return &codebookSubject{model: m.Model, set: set, tok: m.Tokenizer, docs: docs, closer: func() { m.Close() }}, nil
}

func cmdCodebookTrain(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, usage{name: "codebook train", summary: "train a codebook on a frozen model's activations",
		example: "loupe codebook train --hook blocks.2.hook_resid_post --codes 1024 --k 8 --tokens 200000 --out cb",
		writes:  "DIR/codebooks.json, codebooks.safetensors, checkpoint.safetensors, eval.json"})
	var df saeDataFlags
	df.register(fs)
	hook := fs.String("hook", "", "the site: blocks.L.attn.hook_z, hook_attn_out, hook_mlp_out or hook_resid_post")
	perHead := fs.Bool("per-head", false, "at attn.hook_z: one codebook per head (the reference's attn_preproj)")
	codes := fs.Int("codes", 1024, "codes per codebook")
	k := fs.Int("k", 8, "codes chosen per token")
	reduce := fs.String("reduce", "mean", "how the k codes combine: mean (the reference) or sum")
	tokens := fs.Int64("tokens", 200_000, "training tokens")
	batch := fs.Int("batch", 1024, "tokens per training step")
	unique := fs.Int64("unique-tokens", 0, "distinct training tokens, their activations kept in memory and cycled (0: every token is new)")
	lr := fs.Float64("lr", 1e-3, "Adam learning rate (warm-up 5%, decay over the last 20%)")
	seed := fs.Uint64("seed", 1, "seed of the k-means, the shuffle and the dead-code replacement")
	replace := fs.Int("replace-every", 50, "steps after which codes chosen by no token are replaced (0: never)")
	every := fs.Int64("checkpoint-every", 100_000, "tokens between checkpoints")
	resume := fs.Bool("resume", false, "continue from DIR/checkpoint.safetensors")
	evalContexts := fs.Int("eval-contexts", 8, "held-out contexts for CE loss, KL and code usage (0: skip)")
	out := fs.String("out", "", "output folder")
	quiet := fs.Bool("quiet", false, "no progress line")
	hostStep := fs.Bool("host-step", false, "choose each step's codes on the host even with --device cuda (by default where the model runs)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" || *hook == "" {
		return fmt.Errorf("%w: --hook and --out are required", errUsage)
	}
	if *reduce != "mean" && *reduce != "sum" {
		return fmt.Errorf("%w: --reduce %q: mean or sum", errUsage, *reduce)
	}
	switch {
	case *codes < 1:
		return fmt.Errorf("%w: --codes %d: want at least 1", errUsage, *codes)
	case *k < 1 || *k > *codes:
		return fmt.Errorf("%w: --k %d: want 1 to --codes (%d)", errUsage, *k, *codes)
	case *tokens < int64(*batch) || *batch < 1:
		return fmt.Errorf("%w: --tokens %d, --batch %d: want a positive --batch and at least one batch of tokens", errUsage, *tokens, *batch)
	case *every < 0 || *replace < 0 || *unique < 0 || *evalContexts < 0:
		return fmt.Errorf("%w: --checkpoint-every, --replace-every, --unique-tokens and --eval-contexts must not be negative", errUsage)
	}
	m, name, docs, dataset, err := df.load()
	if err != nil {
		return err
	}
	defer m.Close()
	if _, err := codebook.SiteWidth(m.Config, *hook); err != nil {
		return fmt.Errorf("%w: --hook: %v", errUsage, err)
	}
	var progress io.Writer
	if !*quiet && env.stderrTerminal {
		progress = env.stderr
	}
	rc := codebook.RunConfig{Model: m.Model, ModelName: name, DatasetPath: dataset, Docs: docs, ContextSize: df.ctxSize, SeqsPerForward: df.seqs,
		Tokens: func(docs []string, size, n int) ([][]int32, error) {
			c, _, err := activations.Contexts(m.Tokenizer, docs, size, n, true)
			return c, err
		},
		Site: *hook, PerHead: *perHead, NumCodes: *codes, K: *k, Reduce: codebook.Reduce(*reduce),
		TrainTokens: *tokens, UniqueTokens: *unique, BatchRows: *batch, LR: *lr, Seed: *seed, ReplaceEvery: *replace,
		Out: *out, CheckpointEvery: *every, Resume: *resume, Progress: progress, EvalContexts: *evalContexts,
		HostStep: *hostStep}
	_, rep, err := codebook.TrainRun(ctx, rc)
	if err != nil {
		return err
	}
	printCodebookReport(env.stdout, rep)
	fmt.Fprintf(env.stdout, "wrote %s (codebooks.json, codebooks.safetensors, checkpoint, eval.json)\n", *out)
	return nil
}

func printCodebookReport(w io.Writer, r *codebook.Report) {
	fmt.Fprintf(w, "codebook at %s: %d group(s) x %d codes, k %d\n", r.Site, r.Groups, r.NumCodes, r.K)
	if r.TrainTokens > 0 {
		fmt.Fprintf(w, "  trained on %d tokens (%.0f tok/s, %.1f s, codes chosen on %s): train MSE %.4g  FVU %.4f  replaced codes %d\n",
			r.TrainTokens, r.TokensPerSec, r.TrainSeconds, r.StepDevice, r.FinalMSE, r.FinalFVU, r.ReplacedCodes)
	}
	if e := r.Eval; e != nil {
		fmt.Fprintf(w, "  held-out (%d predictions): CE clean %.4f  with codes %.4f  zero-ablated %.4f  CE loss recovered %.4f  KL %.4f  dead %.1f%%\n",
			e.Tokens, e.CEClean, e.CECodes, e.CEZero, e.CERecovered, e.KL, 100*e.DeadFraction)
		fmt.Fprintf(w, "  code usage, log10 frequency %v in %d bins: %v\n", e.HistogramRange, len(e.Histogram), e.Histogram)
	}
}

func cmdCodebookEval(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, usage{name: "codebook eval", args: "DIR",
		summary: "evaluate codebooks: spliced into the forward pass (CE, KL, dead codes), or on a TokFSM model its state AP and steering",
		example: "loupe codebook eval cb-l2 --json",
		writes:  "the report on stdout"})
	var df saeDataFlags
	df.register(fs)
	contexts := fs.Int("eval-contexts", 8, "held-out contexts (frozen-model codebooks)")
	seqs := fs.Int("fsm-seqs", 200, "TokFSM: sequences for the state average precision")
	trials := fs.Int("trials", 200, "TokFSM: steering trials per site group")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	refPrefix := fs.String("ref-steer-prefix", "0", "TokFSM: the reference tutorial's steering measure with these random-walk prefixes (comma-separated states; the tutorial runs 0, the paper 62; \"\" skips it)")
	refTargets := fs.Int("ref-steer-targets", 0, "TokFSM: target states of the tutorial's measure, every (states/N)-th (0: all, as the tutorial)")
	refOnly := fs.Bool("ref-steer-only", false, "TokFSM: run only the tutorial's steering measure")
	dir, rest, err := leadingArg(fs, args, "loupe codebook eval DIR [flags]")
	if err != nil {
		return err
	}
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	s, err := openCodebookSubject(dir, &df, true)
	if err != nil {
		return err
	}
	defer s.close()
	if s.fsm != nil {
		cm := &codebook.Model{Model: s.model, Set: s.set}
		var prefixes []int
		for _, p := range strings.Split(*refPrefix, ",") {
			if p = strings.TrimSpace(p); p == "" {
				continue
			}
			n, err := strconv.Atoi(p)
			if err != nil || n < 0 || n > 63 {
				return fmt.Errorf("%w: --ref-steer-prefix %q: want states from 0 to 63", errUsage, p)
			}
			prefixes = append(prefixes, n)
		}
		var targets []int
		if *refTargets < 0 || *refTargets > s.fsm.States {
			return fmt.Errorf("%w: --ref-steer-targets %d: want 0 to %d", errUsage, *refTargets, s.fsm.States)
		}
		if *refTargets > 0 {
			for b := 0; b < s.fsm.States && len(targets) < *refTargets; b += s.fsm.States / *refTargets {
				targets = append(targets, b)
			}
		}
		var refs []*codebook.RefSteerReport
		for _, p := range prefixes {
			r, err := codebook.SteerReference(ctx, cm, s.fsm, codebook.TutorialPatchings(s.set), p, 1, targets)
			if err != nil {
				return err
			}
			refs = append(refs, r)
		}
		var rep *codebook.TokFSMReport
		if !*refOnly {
			if rep, err = codebook.EvaluateTokFSM(ctx, cm, s.fsm, *seqs, *trials); err != nil {
				return err
			}
		}
		if *asJSON {
			return printJSON(env, struct {
				*codebook.TokFSMReport
				ReferenceSteering []*codebook.RefSteerReport `json:"reference_steering"`
			}{rep, refs})
		}
		if rep != nil {
			rep.Print(env.stdout)
		}
		for _, r := range refs {
			r.Print(env.stdout)
		}
		return nil
	}
	_, evalDocs := splitDocs(s.docs)
	ctxs, _, err := activations.Contexts(s.tok, evalDocs, df.ctxSize, *contexts, true)
	if err != nil {
		return err
	}
	ev, err := codebook.Evaluate(ctx, s.model, s.set, ctxs, df.seqs)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env, ev)
	}
	for _, l := range s.set.Layers {
		printCodebookReport(env.stdout, &codebook.Report{Site: l.Hook, Groups: l.Groups, NumCodes: l.NumCodes, K: l.K, Eval: ev})
	}
	return nil
}

// splitDocs holds out the last 5% as codebook.TrainRun does.
func splitDocs(docs []string) (train, eval []string) {
	if len(docs) < 2 {
		return docs, docs
	}
	n := max(1, len(docs)/20)
	return docs[:len(docs)-n], docs[len(docs)-n:]
}

func cmdCodebookCodes(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, usage{name: "codebook codes", args: "DIR", summary: "read every code: frequency, top tokens, contexts (and on TokFSM its state)",
		example: "loupe codebook codes cb-l2 --out codes.arrow",
		writes:  "FILE.arrow: the codes table (docs/schema.md)"})
	var df saeDataFlags
	df.register(fs)
	out := fs.String("out", "", "the Arrow file to write")
	prompts := fs.Int("prompts", 64, "prompts (held-out contexts, or TokFSM sequences) to read the codes on")
	dir, rest, err := leadingArg(fs, args, "loupe codebook codes DIR --out FILE.arrow [flags]")
	if err != nil {
		return err
	}
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	if *out == "" {
		return fmt.Errorf("%w: --out is required", errUsage)
	}
	if !strings.HasSuffix(*out, ".arrow") {
		return fmt.Errorf("%w: --out %q: the file name must end in .arrow", errUsage, *out)
	}
	if err := makeOutDir("out", *out); err != nil {
		return err
	}
	s, err := openCodebookSubject(dir, &df, true)
	if err != nil {
		return err
	}
	defer s.close()
	var batch [][]int
	opt := codebook.AnalyzeOptions{}
	if s.fsm != nil {
		ev := codebook.NewStateEval(s.fsm, *prompts, s.model.Config.MaxPos, 11)
		batch, opt.Labels = ev.Seqs, ev.States
		opt.Text = func(id int) string {
			if id == s.fsm.BOS() {
				return "<bos>"
			}
			return strconv.Itoa(id)
		}
	} else {
		_, evalDocs := splitDocs(s.docs)
		ctxs, _, err := activations.Contexts(s.tok, evalDocs, df.ctxSize, *prompts, true)
		if err != nil {
			return err
		}
		for _, c := range ctxs {
			ids := make([]int, len(c))
			for i, v := range c {
				ids[i] = int(v)
			}
			batch = append(batch, ids)
		}
		opt.Text = func(id int) string { return s.tok.Decode([]int{id}, false) }
		opt.KeepFrom = 1 // trained without the BOS position
	}
	feats, err := codebook.Analyze(ctx, s.model, s.set, batch, opt)
	if err != nil {
		return err
	}
	w, err := store.Create(*out, store.RunInfo{ModelPath: dir, Architecture: string(s.model.Config.Family), CommandLine: os.Args}, store.Options{Compression: store.Zstd, MainTable: string(store.KindCodes)})
	if err != nil {
		return err
	}
	defer w.Close()
	if err := w.WriteCodes(feats); err != nil {
		return err
	}
	if err := w.Commit(ctx); err != nil {
		return err
	}
	live := 0
	for _, f := range feats {
		if f.Count > 0 {
			live++
		}
	}
	fmt.Fprintf(env.stdout, "wrote %s: %d codes (%d fired on %d prompts)\n", *out, len(feats), live, len(batch))
	return nil
}

// codeFlags collects --code HOOK:ID[@POS] values.
type codeFlags []string

func (c *codeFlags) String() string     { return strings.Join(*c, ",") }
func (c *codeFlags) Set(v string) error { *c = append(*c, v); return nil }

func (codeFlags) repeatable() {}

func parseCodeFlag(v string, set *codebook.Set) (codebook.Intervention, error) {
	spec, pos, hasPos := strings.Cut(v, "@")
	i := strings.LastIndexByte(spec, ':')
	if i < 0 {
		return codebook.Intervention{}, fmt.Errorf("%w: --code %q: want HOOK:ID, HOOK[HEAD]:ID or HOOK:ID@POS", errUsage, v)
	}
	hook, idStr := spec[:i], spec[i+1:]
	group := 0
	if j := strings.IndexByte(hook, '['); j >= 0 && strings.HasSuffix(hook, "]") {
		g, err := strconv.Atoi(hook[j+1 : len(hook)-1])
		if err != nil {
			return codebook.Intervention{}, fmt.Errorf("%w: --code %q: bad head", errUsage, v)
		}
		hook, group = hook[:j], g
	}
	id, err := strconv.Atoi(idStr)
	if err != nil {
		return codebook.Intervention{}, fmt.Errorf("%w: --code %q: bad code id %q", errUsage, v, idStr)
	}
	iv := codebook.Intervention{Hook: hook, Group: group, Force: []int32{int32(id)}}
	if hasPos {
		for _, p := range strings.Split(pos, ",") {
			n, err := strconv.Atoi(p)
			if err != nil {
				return codebook.Intervention{}, fmt.Errorf("%w: --code %q: bad position %q", errUsage, v, p)
			}
			iv.Positions = append(iv.Positions, n)
		}
	}
	if l := set.Layer(hook); l == nil {
		return iv, fmt.Errorf("%w: --code %q: no codebook at %s (codebooks at %s)", errUsage, v, hook, strings.Join(set.Sites(), ", "))
	}
	return iv, nil
}

func cmdCodebookSteer(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, usage{name: "codebook steer", args: "DIR", summary: "generate with chosen codes forced (at every position, or @POS)",
		example: "loupe codebook steer cb-l2 --code blocks.2.hook_resid_post:17 --prompt \"Once upon a time\"",
		writes:  "the generated text on stdout"})
	var df saeDataFlags
	df.register(fs)
	var codes codeFlags
	fs.Var(&codes, "code", "HOOK:ID, HOOK[HEAD]:ID for a per-head codebook, optionally @POS[,POS...] (repeatable)")
	var disable codeFlags
	fs.Var(&disable, "disable", "HOOK:ID of a code never to choose (repeatable)")
	prompt := fs.String("prompt", "", "the prompt (TokFSM: digits)")
	maxTokens := fs.Int("max-tokens", 16, "tokens to generate")
	dir, rest, err := leadingArg(fs, args, "loupe codebook steer DIR --code HOOK:ID --prompt P [flags]")
	if err != nil {
		return err
	}
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	if *prompt == "" || len(codes)+len(disable) == 0 {
		return fmt.Errorf("%w: --prompt and at least one --code or --disable are required", errUsage)
	}
	s, err := openCodebookSubject(dir, &df, false)
	if err != nil {
		return err
	}
	defer s.close()
	var ivs []codebook.Intervention
	for _, c := range codes {
		iv, err := parseCodeFlag(c, s.set)
		if err != nil {
			return err
		}
		ivs = append(ivs, iv)
	}
	for _, c := range disable {
		iv, err := parseCodeFlag(c, s.set)
		if err != nil {
			return err
		}
		iv.Disable, iv.Force = iv.Force, nil
		ivs = append(ivs, iv)
	}
	var ids []int
	render := func(ts []int) string { return fmt.Sprint(ts) }
	if s.fsm != nil {
		ids = []int{s.fsm.BOS()}
		for _, r := range *prompt {
			if r < '0' || int(r-'0') >= s.fsm.Base {
				return fmt.Errorf("%w: --prompt %q: a TokFSM prompt is digits", errUsage, *prompt)
			}
			ids = append(ids, int(r-'0'))
		}
		render = func(ts []int) string {
			var b strings.Builder
			for _, t := range ts {
				b.WriteString(strconv.Itoa(t))
			}
			return b.String()
		}
	} else {
		if ids, err = s.tok.Encode(*prompt, true); err != nil {
			return err
		}
		render = func(ts []int) string { return s.tok.Decode(ts, false) }
	}
	// A position no forward step reaches would be forced silently never:
	// the steps run positions 0 .. prompt+max-tokens-2 (the last token is
	// chosen, not fed back), and frozen-model codebooks skip BOS.
	keepFrom, end := 0, len(ids)+*maxTokens-1
	if !s.withModel {
		keepFrom = 1
	}
	for _, iv := range ivs {
		for _, p := range iv.Positions {
			if p < keepFrom || p >= end {
				return fmt.Errorf("%w: --code %s@%d: the codes can be forced at positions %d to %d of this prompt and --max-tokens", errUsage, iv.Hook, p, keepFrom, end-1)
			}
		}
	}
	gen := func(ivs ...codebook.Intervention) ([]int, error) {
		sp, err := codebook.NewSplice(s.set, ivs...)
		if err != nil {
			return nil, err
		}
		sp.KeepFrom = keepFrom // frozen-model codebooks leave the BOS position alone
		return s.model.Generate(ctx, ids, probe.GenerateOptions{MaxTokens: *maxTokens, Hooks: &probe.Hooks{Edit: sp.Edits()}})
	}
	clean, err := gen()
	if err != nil {
		return err
	}
	steered, err := gen(ivs...)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "prompt:   %s\ncodebooks: %s\nsteered:  %s\n", *prompt, render(clean), render(steered))
	if s.fsm != nil {
		fmt.Fprintf(env.stdout, "clean transitions valid: %s\nsteered transitions valid: %s\n", fsmValidity(s.fsm, *prompt+render(clean)), fsmValidity(s.fsm, *prompt+render(steered)))
	}
	return nil
}

// fsmValidity says which consecutive states of a digit string are
// transitions of the machine.
func fsmValidity(f *tokfsm.FSM, digits string) string {
	var states []int
	for i := 0; i+f.Digits <= len(digits); i += f.Digits {
		n, _ := strconv.Atoi(digits[i : i+f.Digits])
		states = append(states, n)
	}
	ok := 0
	for i := 1; i < len(states); i++ {
		if states[i] < f.States && states[i-1] < f.States && f.Allowed(states[i-1], states[i]) {
			ok++
		}
	}
	return fmt.Sprintf("%d of %d", ok, max(len(states)-1, 0))
}
