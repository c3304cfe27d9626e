package sae

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/loupe-dev/loupe/internal/atomicfile"
	"github.com/loupe-dev/loupe/probe"
	"github.com/loupe-dev/loupe/probe/compute/cuda"
	"github.com/loupe-dev/loupe/sae/activations"
)

// Data is what an SAE reads: a model, a corpus split into training and
// held-out documents, and the hooks.
type Data struct {
	Model       *probe.Loaded
	ModelName   string
	DatasetPath string
	// Docs are the documents; the last HeldOut fraction (default 5%, at least
	// one document when there are two or more) is kept for evaluation.
	Docs        []string
	HeldOut     float64
	ContextSize int
	// ExcludeFirst leaves out the first ExcludeFirst tokens after BOS of
	// every context, in training, evaluation and the spliced-in losses, as
	// the BOS itself always is (0: only BOS). Some models give the first
	// tokens of a sequence massive activations (attention sinks; Sun et al.
	// 2024, "Massive activations in large language models"): on SmolLM2
	// they reach squared norms 10^4 times the median and dominate FVU's
	// denominator.
	ExcludeFirst   int
	Hook           activations.HookPoint
	Target         *activations.HookPoint
	SeqsPerForward int
}

func (d *Data) split() (train, eval []string) {
	f := d.HeldOut
	if f == 0 {
		f = 0.05
	}
	if len(d.Docs) < 2 {
		return d.Docs, d.Docs
	}
	n := max(1, int(float64(len(d.Docs))*f))
	return d.Docs[:len(d.Docs)-n], d.Docs[len(d.Docs)-n:]
}

// source builds the model source over enough contexts for tokens rows.
func (d *Data) source(docs []string, tokens int64) (*activations.ModelSource, [][]int32, int, error) {
	return d.sourceUnique(docs, tokens, 0)
}

// sourceUnique is source with at most unique distinct rows (0: no limit),
// cycled; the caller caches them.
func (d *Data) sourceUnique(docs []string, tokens, unique int64) (*activations.ModelSource, [][]int32, int, error) {
	if unique > 0 && unique < tokens {
		tokens = unique
	}
	if d.ExcludeFirst < 0 {
		return nil, nil, 0, fmt.Errorf("sae: cannot exclude %d tokens after BOS", d.ExcludeFirst)
	}
	if d.ContextSize < 2+d.ExcludeFirst {
		return nil, nil, 0, fmt.Errorf("sae: context size %d is too short to leave out BOS and %d more tokens", d.ContextSize, d.ExcludeFirst)
	}
	per := int64(d.ContextSize - 1 - d.ExcludeFirst) // BOS and the excluded positions give no rows
	n := int((tokens + per - 1) / per)
	ctxs, epochs, err := activations.Contexts(d.Model.Tokenizer, docs, d.ContextSize, n, true)
	if err != nil {
		return nil, nil, 0, err
	}
	src, err := activations.NewModelSource(d.Model.Model, activations.ModelConfig{Hook: d.Hook, Target: d.Target,
		Contexts: ctxs, SeqsPerForward: d.SeqsPerForward, SkipFirst: true, Skip: 1 + d.ExcludeFirst})
	if err != nil {
		return nil, nil, 0, err
	}
	return src, ctxs, epochs, nil
}

func (d *Data) metadata() Metadata {
	m := Metadata{ModelName: d.ModelName, HookName: d.Hook.Name, ContextSize: d.ContextSize, PrependBOS: true, DatasetPath: d.DatasetPath,
		ExcludeFirst: d.ExcludeFirst}
	if d.Hook.Head >= 0 {
		h := d.Hook.Head
		m.HookHeadIndex = &h
	}
	if d.Target != nil {
		m.TargetHookName = d.Target.Name
	}
	return m
}

// Report is what a training or evaluation run measured (eval.json).
type Report struct {
	Arch           Arch        `json:"architecture"`
	DIn            int         `json:"d_in"`
	DSAE           int         `json:"d_sae"`
	K              int         `json:"k,omitempty"`
	Hook           string      `json:"hook"`
	TrainTokens    int64       `json:"train_tokens"`
	UniqueTokens   int64       `json:"unique_train_tokens,omitempty"`
	TrainSeconds   float64     `json:"train_seconds,omitempty"`
	TokensPerSec   float64     `json:"train_tokens_per_second,omitempty"`
	CorpusEpochs   int         `json:"corpus_epochs,omitempty"`
	EvalTokens     int64       `json:"eval_tokens"`
	ExcludeFirst   int         `json:"excluded_tokens_after_bos"`
	L0             float64     `json:"l0"`
	FVU            float64     `json:"fvu"`
	MSE            float64     `json:"mse"`
	Cosine         float64     `json:"cosine"`
	RelativeBias   float64     `json:"relative_reconstruction_bias"`
	DeadFraction   float64     `json:"dead_fraction"`
	Histogram      []int       `json:"log10_density_histogram"`
	HistogramDead  int         `json:"dead_latents"`
	HistogramRange [2]float64  `json:"log10_density_histogram_range"`
	Downstream     *Downstream `json:"downstream,omitempty"`
}

// RunConfig is a whole `loupe sae train`: train, evaluate on held-out
// documents, export the SAELens folder.
type RunConfig struct {
	Data
	Spec TrainSpec
	// Out is the output folder: the SAELens files, checkpoint.safetensors,
	// eval.json.
	Out string
	// EvalTokens are evaluated for the reconstruction metrics, and
	// DownstreamContexts contexts for the spliced-in losses (0: none).
	EvalTokens         int64
	DownstreamContexts int
	BufferRows         int
	// TrainSource, when set, gives the training activations (Arrow traces:
	// activations.OpenTraces) instead of the model's forward pass over Docs;
	// the evaluation still runs the model on the held-out documents.
	TrainSource activations.Source
	// UniqueTokens, when set below Spec.Tokens, limits the distinct training
	// tokens: their activations are computed once, kept in memory and
	// trained on for several epochs (a CPU economy: the forward pass costs
	// more than the SAE step).
	UniqueTokens int64
}

// CheckpointFile is the checkpoint's name in the output folder.
const CheckpointFile = "checkpoint.safetensors"

// TrainRun trains, evaluates and exports; see RunConfig.
func TrainRun(ctx context.Context, rc RunConfig) (*SAE, *Report, error) {
	// Before the folder is made: a run refused now leaves nothing behind.
	if err := rc.Spec.Arch.CheckK(rc.Spec.K, rc.Spec.DSAE); err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(rc.Out, 0o755); err != nil {
		return nil, nil, fmt.Errorf("sae: %w", err)
	}
	var src activations.Source
	epochs := 0
	if rc.TrainSource != nil {
		src = rc.TrainSource
	} else {
		trainDocs, _ := rc.split()
		msrc, _, ep, err := rc.sourceUnique(trainDocs, rc.Spec.Tokens, rc.UniqueTokens)
		if err != nil {
			return nil, nil, err
		}
		src, epochs = msrc, ep
		if rc.UniqueTokens > 0 && rc.UniqueTokens < rc.Spec.Tokens {
			if src, err = activations.NewCachedSource(msrc, msrc.Chunks()); err != nil {
				return nil, nil, err
			}
		}
	}
	buf := rc.BufferRows
	if buf <= 0 {
		buf = 16 * rc.Spec.BatchRows
	}
	// A model source on the GPU the SAE trains on feeds it in place: the
	// shuffling buffer and the batches stay in device memory.
	onDevice := false
	if rc.Spec.GPU != nil && rc.TrainSource == nil {
		if mb, ok := rc.Model.Model.Backend().(*cuda.Backend); ok && mb == rc.Spec.GPU {
			_, onDevice = src.(activations.DeviceSource)
		}
	}
	pipe, err := activations.NewPipeline(src, activations.Config{BatchRows: rc.Spec.BatchRows, BufferRows: buf, Seed: rc.Spec.Seed, OnDevice: onDevice})
	if err != nil {
		return nil, nil, err
	}
	defer pipe.Close()
	sp := rc.Spec
	sp.Meta = rc.metadata()
	sp.Checkpoint = filepath.Join(rc.Out, CheckpointFile)
	if sp.Resume {
		if _, err := os.Stat(sp.Checkpoint); err != nil {
			return nil, nil, fmt.Errorf("sae: --resume: no checkpoint in %s: %w", rc.Out, err)
		}
	}
	start := time.Now()
	s, _, _, err := Train(ctx, pipe, sp)
	if err != nil {
		return nil, nil, err
	}
	secs := time.Since(start).Seconds()
	rep, err := EvalRun(ctx, s, &rc.Data, rc.EvalTokens, rc.DownstreamContexts)
	if err != nil {
		return nil, nil, err
	}
	rep.TrainTokens = s.Meta.TokensSeen
	rep.TrainSeconds = secs
	rep.TokensPerSec = float64(s.Meta.TokensSeen) / secs
	rep.CorpusEpochs = epochs
	if rc.UniqueTokens > 0 && rc.UniqueTokens < rc.Spec.Tokens {
		rep.UniqueTokens = rc.UniqueTokens
	}
	if err := s.Export(rc.Out, rep.density); err != nil {
		return nil, nil, err
	}
	if err := rep.write(filepath.Join(rc.Out, "eval.json")); err != nil {
		return nil, nil, err
	}
	return s, &rep.Report, nil
}

type evalReport struct {
	Report
	density []float64
}

func (r *evalReport) write(path string) error {
	js, err := json.MarshalIndent(r.Report, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, func(w io.Writer) error {
		_, err := w.Write(append(js, '\n'))
		return err
	})
}

// EvalRun evaluates s on the held-out documents of d: reconstruction
// metrics over evalTokens rows, and the downstream losses over
// downstreamContexts contexts (0 skips them).
func EvalRun(ctx context.Context, s *SAE, d *Data, evalTokens int64, downstreamContexts int) (*evalReport, error) {
	_, evalDocs := d.split()
	if evalTokens <= 0 {
		evalTokens = 8192
	}
	src, ctxs, _, err := d.source(evalDocs, evalTokens)
	if err != nil {
		return nil, err
	}
	if src.Width() != s.DIn {
		return nil, fmt.Errorf("sae: hook %s has %d features, the SAE reads %d", d.Hook, src.Width(), s.DIn)
	}
	m, err := Evaluate(ctx, s, src, evalTokens)
	if err != nil {
		return nil, err
	}
	rep := &evalReport{Report: Report{Arch: s.Arch, DIn: s.DIn, DSAE: s.DSAE, K: s.K, Hook: d.Hook.String(),
		TrainTokens: s.Meta.TokensSeen, EvalTokens: m.Tokens, ExcludeFirst: d.ExcludeFirst, L0: m.L0, FVU: m.FVU, MSE: m.MSE, Cosine: m.Cosine,
		RelativeBias: m.RelativeBias, DeadFraction: m.Dead, Histogram: m.Histogram, HistogramDead: m.DeadCount,
		HistogramRange: [2]float64{HistLo, 0}}, density: m.Density}
	if downstreamContexts > 0 {
		n := min(downstreamContexts, len(ctxs))
		ds, err := EvaluateDownstream(ctx, d.Model.Model, s, d.Hook, d.Target, ctxs[:n], 2, 1+d.ExcludeFirst)
		if err != nil {
			return nil, err
		}
		rep.Downstream = &ds
	}
	return rep, nil
}
