package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/loupe-dev/loupe/organism/corpus"
	"github.com/loupe-dev/loupe/probe"
	"github.com/loupe-dev/loupe/probe/compute/cuda"
	"github.com/loupe-dev/loupe/sae"
	"github.com/loupe-dev/loupe/sae/activations"
	"github.com/loupe-dev/loupe/store"
)

// cmdSAE dispatches `loupe sae train|eval`.
func cmdSAE(ctx context.Context, env *cliEnv, args []string) error {
	usage := "want `loupe sae train` (train, evaluate and export an SAE), `loupe sae eval DIR` or `loupe sae features DIR`"
	if len(args) == 0 {
		return fmt.Errorf("%w: %s", errUsage, usage)
	}
	switch args[0] {
	case "train":
		return cmdSAETrain(ctx, env, args[1:])
	case "eval":
		return cmdSAEEval(ctx, env, args[1:])
	case "features":
		return cmdSAEFeatures(ctx, env, args[1:])
	case "-h", "--help", "help":
		fmt.Fprintln(env.stdout, "loupe sae train --hook H --arch standard|topk|batchtopk|jumprelu|matryoshka --expansion E --k K --tokens N --out DIR [--model M] [--corpus FILE] [--resume]\nloupe sae eval DIR [--model M] [--corpus FILE]\nloupe sae features DIR --out FILE.arrow [--tokens N] [--prompt P ...]")
		return nil
	}
	return fmt.Errorf("%w: unknown sae command %q; %s", errUsage, args[0], usage)
}

// saeDataFlags choose the model, corpus and context shape.
type saeDataFlags struct {
	mf            modelFlag
	hook          string // eval, features: the hook, when the folder names none
	corpus        string
	ctxSize, seqs int
	organismDocs  int
	excludeFirst  int
}

func (f *saeDataFlags) register(fs *flag.FlagSet) {
	f.mf.register(fs)
	fs.StringVar(&f.corpus, "corpus", "", "a text corpus: plain text (documents split by blank lines) or JSON lines with a \"text\" field (default for the organism: its own synthetic corpus; scripts/fetch-fortunes.sh fetches a real one)")
	fs.IntVar(&f.ctxSize, "ctx", 128, "tokens per context, BOS included (the BOS position is not trained on)")
	fs.IntVar(&f.seqs, "seqs", 8, "contexts per forward pass")
	f.excludeFirst = -1
	fs.IntVar(&f.excludeFirst, "exclude-first", -1, "also leave out the first N tokens after BOS of every context, in training and evaluation, where some models put massive attention-sink activations (sae train: default 0, only BOS is left out; sae eval/features: default what the SAE was trained with)")
	fs.IntVar(&f.organismDocs, "organism-docs", 20000, "documents of the organism's synthetic corpus, when no --corpus is given")
}

// load opens the model and reads the corpus: the model, its name, the
// documents and the dataset's description.
func (f *saeDataFlags) load() (*probe.Loaded, string, []string, string, error) {
	if f.excludeFirst < -1 {
		return nil, "", nil, "", fmt.Errorf("%w: --exclude-first %d: want 0 or more tokens", errUsage, f.excludeFirst)
	}
	var docs []string
	dataset := f.corpus
	switch {
	case f.corpus != "":
		var err error
		if docs, err = activations.ReadCorpus(f.corpus); err != nil {
			return nil, "", nil, "", err
		}
	case !f.mf.isOrganism():
		return nil, "", nil, "", fmt.Errorf("%w: --corpus is required with --model (the synthetic corpus is the organism's)", errUsage)
	default:
		// The organism's own training distribution, seeded so runs agree.
		g := corpus.New(7)
		docs = make([]string, f.organismDocs)
		for i := range docs {
			docs[i] = g.Document()
		}
		dataset = fmt.Sprintf("loupe-organism-corpus(seed=7,docs=%d)", f.organismDocs)
	}
	m, err := f.mf.load()
	if err != nil {
		return nil, "", nil, "", err
	}
	name := f.mf.name()
	if !f.mf.isOrganism() {
		name = filepath.Base(strings.TrimSuffix(f.mf.path, "/"))
	}
	return m, name, docs, dataset, nil
}

func parseHook(name string, head int) (activations.HookPoint, error) {
	if name == "" {
		return activations.HookPoint{}, fmt.Errorf("%w: --hook is required (e.g. blocks.2.hook_resid_post)", errUsage)
	}
	return activations.HookPoint{Name: name, Head: head}, nil
}

func cmdSAETrain(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, usage{name: "sae train",
		summary: "train a sparse autoencoder on one hook point's activations, streamed from the model over a corpus",
		example: "loupe sae train --hook blocks.2.hook_resid_post --arch topk --k 32 --expansion 8 --tokens 200000 --out sae-l2",
		writes:  "a SAELens v6 folder (cfg.json, sae_weights.safetensors, sparsity.safetensors), checkpoint.safetensors and eval.json under --out"})
	var df saeDataFlags
	df.register(fs)
	hook := fs.String("hook", "", "the hook point to read (TransformerLens name)")
	head := fs.Int("head", -1, "one head of a per-head hook (attn.hook_z, attn.hook_result); -1 for all")
	target := fs.String("target-hook", "", "train a transcoder predicting this hook from --hook")
	archName := fs.String("arch", "topk", "standard, topk, batchtopk, jumprelu or matryoshka")
	expansion := fs.Int("expansion", 8, "latents per input feature")
	k := fs.Int("k", 32, "active latents per token (topk, batchtopk, matryoshka)")
	tokens := fs.Int64("tokens", 500_000, "training tokens")
	batch := fs.Int("batch", 1024, "tokens per training step")
	buffer := fs.Int("buffer", 0, "tokens shuffled together (default 16 batches)")
	lr := fs.Float64("lr", 1e-3, "Adam learning rate (linear warm-up over 5% of the steps, decay over the last 20%)")
	l1 := fs.Float64("l1", 5, "standard: L1 coefficient (inputs normalised to E|x| = sqrt(d_in))")
	l0 := fs.Float64("l0", 1, "jumprelu: L0 coefficient")
	bandwidth := fs.Float64("bandwidth", 0.05, "jumprelu: rectangle-kernel bandwidth")
	deadWindow := fs.Int64("dead-window", 0, "tokens without firing after which a latent is dead (default tokens/10, at most 10M)")
	seed := fs.Uint64("seed", 1, "seed of the initialisation and the shuffle")
	every := fs.Int64("checkpoint-every", 100_000, "tokens between checkpoints")
	resume := fs.Bool("resume", false, "continue from DIR/checkpoint.safetensors (bit-identical to an uninterrupted run)")
	evalTokens := fs.Int64("eval-tokens", 16384, "held-out tokens for the reconstruction metrics")
	downstream := fs.Int("eval-contexts", 8, "held-out contexts for the downstream losses (0: skip)")
	traces := fs.String("activations", "", "train on activations already in Arrow traces (loupe trace --hooks H), comma-separated shards, instead of running the model over the corpus")
	unique := fs.Int64("unique-tokens", 0, "distinct training tokens, their activations kept in memory and cycled (0: every token is new)")
	out := fs.String("out", "", "output folder (SAELens v6 files, checkpoint, eval.json)")
	quiet := fs.Bool("quiet", false, "no progress line")
	trainDType := fs.String("train-dtype", "f32", "on a GPU: f32, or bf16 for the encoder GEMM's inputs (fp32 accumulation and master weights)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return fmt.Errorf("%w: --out is required", errUsage)
	}
	if *trainDType != "f32" && *trainDType != "bf16" {
		return fmt.Errorf("%w: --train-dtype %q: want f32 or bf16", errUsage, *trainDType)
	}
	arch, err := sae.ParseArch(*archName)
	if err != nil {
		return fmt.Errorf("%w: --arch: %v", errUsage, err)
	}
	h, err := parseHook(*hook, *head)
	if err != nil {
		return err
	}
	if *expansion <= 0 || *tokens <= 0 || *batch <= 0 {
		return fmt.Errorf("%w: --expansion, --tokens and --batch must be positive", errUsage)
	}
	m, name, docs, dataset, err := df.load()
	if err != nil {
		return err
	}
	defer m.Close()
	var tgt *activations.HookPoint
	if *target != "" {
		tgt = &activations.HookPoint{Name: *target, Head: -1}
	}
	dIn, err := activations.HookWidth(m.Model, h)
	if err != nil {
		return fmt.Errorf("%w: --hook: %v", errUsage, err)
	}
	if tgt != nil {
		if _, err := activations.HookWidth(m.Model, *tgt); err != nil {
			return fmt.Errorf("%w: --target-hook: %v", errUsage, err)
		}
	}
	if err := arch.CheckK(*k, *expansion*dIn); err != nil {
		return fmt.Errorf("%w: --k %d (d_sae = --expansion x d_in): %v", errUsage, *k, err)
	}
	dw := *deadWindow
	if dw == 0 {
		dw = min(max(*tokens/10, int64(*batch)), 10_000_000)
	}
	var progress io.Writer
	if !*quiet && env.stderrTerminal {
		progress = env.stderr
	}
	rc := sae.RunConfig{
		Data: sae.Data{Model: m, ModelName: name, DatasetPath: dataset, Docs: docs, ContextSize: df.ctxSize, ExcludeFirst: max(df.excludeFirst, 0),
			Hook: h, Target: tgt, SeqsPerForward: df.seqs},
		Spec: sae.TrainSpec{Arch: arch, DSAE: *expansion * dIn, K: *k, Tokens: *tokens, BatchRows: *batch, LR: *lr,
			Seed: *seed, Normalize: true, CheckpointEvery: *every, Resume: *resume, Progress: progress,
			Loss: sae.TrainConfig{L1: *l1, L0: *l0, Bandwidth: *bandwidth, DeadWindow: dw}},
		Out: *out, EvalTokens: *evalTokens, DownstreamContexts: *downstream, BufferRows: *buffer, UniqueTokens: *unique,
	}
	// The SAE trains where the model runs: on its GPU, fed from the forward
	// pass there, when --device put it on one.
	if gb, ok := m.Model.Backend().(*cuda.Backend); ok {
		rc.Spec.GPU = gb
		rc.Spec.BF16 = *trainDType == "bf16"
	} else if *trainDType == "bf16" {
		return fmt.Errorf("%w: --train-dtype bf16 needs the model on a GPU (--device cuda)", errUsage)
	}
	if *traces != "" {
		if tgt != nil {
			return fmt.Errorf("%w: --activations reads one hook; a transcoder needs the model (leave --activations out)", errUsage)
		}
		ts, err := activations.OpenTraces(strings.Split(*traces, ","), h, true)
		if err != nil {
			return err
		}
		defer ts.Close()
		if ts.Width() != dIn {
			return fmt.Errorf("--activations: hook %s has %d features in the traces, %d in the model", h, ts.Width(), dIn)
		}
		rc.TrainSource = ts
		rc.Data.DatasetPath = *traces
	}
	_, rep, err := sae.TrainRun(ctx, rc)
	if err != nil {
		return err
	}
	printReport(env.stdout, rep)
	fmt.Fprintf(env.stdout, "wrote %s (SAELens v6 folder, eval.json, checkpoint)\n", *out)
	return nil
}

func cmdSAEEval(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, usage{name: "sae eval", args: "DIR", summary: "evaluate an SAE folder (SAELens or sparsify) on held-out text: L0, FVU, MSE, cosine, bias, dead latents, downstream CE",
		example: "loupe sae eval sae-l2 --json", writes: "the report on stdout"})
	var df saeDataFlags
	df.register(fs)
	fs.StringVar(&df.hook, "hook", "", "the hook the SAE reads, when its folder names none (sparsify) or to override it")
	evalTokens := fs.Int64("eval-tokens", 16384, "held-out tokens for the reconstruction metrics")
	downstream := fs.Int("eval-contexts", 8, "held-out contexts for the downstream losses (0: skip)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	dir, rest, err := leadingArg(fs, args, "loupe sae eval DIR [flags]")
	if err != nil {
		return err
	}
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	s, d, err := loadForSAE(dir, &df)
	if err != nil {
		return err
	}
	defer d.Model.Close()
	rep, err := sae.EvalRun(ctx, s, d, *evalTokens, *downstream)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env, rep.Report)
	}
	printReport(env.stdout, &rep.Report)
	return nil
}

func printReport(w io.Writer, r *sae.Report) {
	fmt.Fprintf(w, "%s SAE on %s: d_in %d, d_sae %d", r.Arch, r.Hook, r.DIn, r.DSAE)
	if r.K > 0 {
		fmt.Fprintf(w, ", k %d", r.K)
	}
	fmt.Fprintf(w, "\n  trained on %d tokens", r.TrainTokens)
	if r.TokensPerSec > 0 {
		fmt.Fprintf(w, " (%.0f tok/s, %.1f s)", r.TokensPerSec, r.TrainSeconds)
	}
	fmt.Fprintf(w, "\n  held-out %d tokens: L0 %.2f  FVU %.4f  MSE %.4g  cosine %.4f  rel. bias %.4f  dead %.1f%%\n",
		r.EvalTokens, r.L0, r.FVU, r.MSE, r.Cosine, r.RelativeBias, 100*r.DeadFraction)
	if d := r.Downstream; d != nil {
		fmt.Fprintf(w, "  downstream (%d predictions): CE clean %.4f  with SAE %.4f  zero-ablated %.4f  CE loss recovered %.4f  ΔLM loss %.4f  KL %.4f\n",
			d.Tokens, d.CEClean, d.CESAE, d.CEZero, d.CERecovered, d.DeltaLoss, d.KL)
	}
}

// stringsFlag collects a repeated flag.
type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, ", ") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

func (stringsFlag) repeatable() {}

// loadForSAE opens an SAE folder and the model and corpus it reads, and
// checks the SAE's width against its hook.
func loadForSAE(dir string, df *saeDataFlags) (*sae.SAE, *sae.Data, error) {
	s, err := sae.Load(dir)
	if err != nil {
		return nil, nil, err
	}
	if df.hook != "" {
		s.Meta.HookName = df.hook
	}
	if s.Meta.HookName == "" {
		return nil, nil, fmt.Errorf("%w: %s: cfg.json names no hook (metadata.hook_name); give --hook (sparsify folders name theirs by module path)", errUsage, dir)
	}
	m, name, docs, dataset, err := df.load()
	if err != nil {
		return nil, nil, err
	}
	h := activations.HookPoint{Name: s.Meta.HookName, Head: -1}
	if s.Meta.HookHeadIndex != nil {
		h.Head = *s.Meta.HookHeadIndex
	}
	var tgt *activations.HookPoint
	if s.Meta.TargetHookName != "" {
		tgt = &activations.HookPoint{Name: s.Meta.TargetHookName, Head: -1}
	}
	w, err := activations.HookWidth(m.Model, h)
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("%s: %w", dir, err)
	}
	if w != s.DIn {
		m.Close()
		return nil, nil, fmt.Errorf("%s: the SAE reads %d features, hook %s of %s has %d", dir, s.DIn, h, name, w)
	}
	excl := df.excludeFirst
	if excl < 0 {
		excl = s.Meta.ExcludeFirst
	}
	return s, &sae.Data{Model: m, ModelName: name, DatasetPath: dataset, Docs: docs, ContextSize: df.ctxSize, ExcludeFirst: excl,
		Hook: h, Target: tgt, SeqsPerForward: df.seqs}, nil
}

func cmdSAEFeatures(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, usage{name: "sae features", args: "DIR", summary: "scan held-out text with an SAE: per latent its density, histogram, top and quantile-sampled contexts and W_dec·W_U tokens",
		example: "loupe sae features sae-l2 --out features.arrow --prompt 'The day after Monday is Tuesday.'",
		writes:  "an Arrow file with the tables features (main), feature_examples and feature_acts (docs/schema.md)"})
	var df saeDataFlags
	df.register(fs)
	fs.StringVar(&df.hook, "hook", "", "the hook the SAE reads, when its folder names none (sparsify) or to override it")
	out := fs.String("out", "", "the Arrow file to write (tables features, feature_examples, feature_acts)")
	tokens := fs.Int64("tokens", 32768, "held-out tokens to scan")
	topK := fs.Int("top", 10, "top-activating examples per latent")
	window := fs.Int("window", 8, "tokens either side of an example")
	var prompts stringsFlag
	fs.Var(&prompts, "prompt", "a prompt whose active latents to record (repeatable)")
	dir, rest, err := leadingArg(fs, args, "loupe sae features DIR --out FILE.arrow [flags]")
	if err != nil {
		return err
	}
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	switch {
	case *out == "":
		return fmt.Errorf("%w: --out is required", errUsage)
	case *tokens <= 0:
		return fmt.Errorf("%w: --tokens must be positive, got %d", errUsage, *tokens)
	case *topK <= 0:
		return fmt.Errorf("%w: --top must be positive, got %d", errUsage, *topK)
	case *window <= 0: // sae.FeatureConfig reads 0 as its default
		return fmt.Errorf("%w: --window must be positive, got %d", errUsage, *window)
	}
	s, d, err := loadForSAE(dir, &df)
	if err != nil {
		return err
	}
	defer d.Model.Close()
	set, err := sae.Features(ctx, s, d, sae.FeatureConfig{Tokens: *tokens, TopK: *topK, Window: *window, Seed: 1})
	if err != nil {
		return err
	}
	acts, err := sae.PromptLatents(ctx, s, d.Model, d.Hook, prompts)
	if err != nil {
		return err
	}
	if err := makeOutDir("out", *out); err != nil {
		return err
	}
	w, err := store.Create(*out, runInfo(d.ModelName, d.Model), store.Options{MainTable: string(store.KindFeatures)})
	if err != nil {
		return err
	}
	defer w.Close()
	if err := w.WriteFeatures(set.Features); err != nil {
		return err
	}
	if err := w.WriteFeatureExamples(set.Examples); err != nil {
		return err
	}
	if len(acts) > 0 {
		if err := w.WriteFeatureActs(acts); err != nil {
			return err
		}
	}
	if err := w.Commit(ctx); err != nil {
		return err
	}
	alive := 0
	for _, f := range set.Features {
		if f.Density > 0 {
			alive++
		}
	}
	fmt.Fprintf(env.stdout, "scanned %d tokens: %d of %d latents fire; %d examples; %d prompt tokens\nwrote %s\n",
		set.Tokens, alive, len(set.Features), len(set.Examples), len(acts), *out)
	return nil
}
