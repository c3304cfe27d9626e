package codebook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/loupe-dev/loupe/internal/atomicfile"
	"github.com/loupe-dev/loupe/probe"
	"github.com/loupe-dev/loupe/probe/compute"
	"github.com/loupe-dev/loupe/sae/activations"
	"github.com/loupe-dev/loupe/sae/internal/nexttoken"
	"github.com/loupe-dev/loupe/sae/internal/st"
	"github.com/loupe-dev/loupe/sae/train"
)

// Save writes s to dir: codebooks.safetensors then codebooks.json, each
// atomically (temporary file, fsync, rename).
func (s *Set) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("codebooks: %w", err)
	}
	sj := setJSON{Format: Format, Version: Version, Meta: s.Meta}
	var ts []st.Tensor
	for _, l := range s.Layers {
		if err := l.Check(); err != nil {
			return err
		}
		sj.Codebooks = append(sj.Codebooks, layerJSON{Hook: l.Hook, Groups: l.Groups, Dim: l.Dim, NumCodes: l.NumCodes,
			K: l.K, Reduce: l.Reduce, Similarity: "cosine", LayerNorm: l.LayerNorm, LNEps: l.LNEps})
		ts = append(ts, st.Tensor{Name: l.Hook + ".codes", Shape: []int{l.Groups, l.NumCodes, l.Dim}, Data: l.Codes})
		if l.LayerNorm {
			ts = append(ts, st.Tensor{Name: l.Hook + ".ln.weight", Shape: []int{l.Groups, l.Dim}, Data: l.LNWeight},
				st.Tensor{Name: l.Hook + ".ln.bias", Shape: []int{l.Groups, l.Dim}, Data: l.LNBias})
		}
	}
	if err := st.Write(filepath.Join(dir, "codebooks.safetensors"), ts, map[string]string{"format": Format}); err != nil {
		return err
	}
	js, err := json.MarshalIndent(sj, "", " ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, "codebooks.json"), func(w io.Writer) error {
		_, err := w.Write(append(js, '\n'))
		return err
	})
}

// RunConfig is a whole `loupe codebook train` on a frozen model.
type RunConfig struct {
	Model          *probe.Model
	Tokens         func(docs []string, size, n int) ([][]int32, error) // tokenizes contexts
	ModelName      string
	DatasetPath    string
	Docs           []string // the last 5% are held out for evaluation
	ContextSize    int
	SeqsPerForward int

	Site     string // blocks.L.{attn.hook_z, hook_attn_out, hook_mlp_out, hook_resid_post}
	PerHead  bool   // at attn.hook_z: one codebook per head
	NumCodes int
	K        int
	Reduce   Reduce

	TrainTokens int64
	// UniqueTokens, when set below TrainTokens, limits the distinct
	// training tokens: their activations are computed once, kept in memory
	// and cycled (the forward pass costs more than a codebook step).
	UniqueTokens int64
	BatchRows    int
	LR           float64
	Seed         uint64
	ReplaceEvery int // steps
	KMeansRows   int // rows sampled for the k-means initialisation (0: 8 per code, at least 4096)
	KMeansIters  int

	Out             string
	CheckpointEvery int64 // tokens
	Resume          bool
	Progress        io.Writer

	EvalContexts int

	// HostStep chooses the codes of each training step on the host even
	// when the model runs on a GPU (by default they are chosen where the
	// model runs); for comparing the two.
	HostStep bool
}

// CheckpointFile is the checkpoint's name in the output folder.
const CheckpointFile = "checkpoint.safetensors"

// Report is what TrainRun and Evaluate measured (eval.json).
type Report struct {
	Site          string  `json:"site"`
	Groups        int     `json:"groups"`
	NumCodes      int     `json:"num_codes"`
	K             int     `json:"k"`
	TrainTokens   int64   `json:"train_tokens,omitempty"`
	TrainSeconds  float64 `json:"train_seconds,omitempty"`
	TokensPerSec  float64 `json:"train_tokens_per_second,omitempty"`
	StepDevice    string  `json:"step_device,omitempty"` // where each step chose its codes
	FinalMSE      float64 `json:"final_train_mse,omitempty"`
	FinalFVU      float64 `json:"final_train_fvu,omitempty"`
	ReplacedCodes int64   `json:"replaced_codes,omitempty"`
	Eval          *Eval   `json:"eval,omitempty"`
}

func (r *Report) write(path string) error {
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, func(w io.Writer) error {
		_, err := w.Write(append(js, '\n'))
		return err
	})
}

func (rc *RunConfig) split() (trainDocs, evalDocs []string) {
	if len(rc.Docs) < 2 {
		return rc.Docs, rc.Docs
	}
	n := max(1, len(rc.Docs)/20)
	return rc.Docs[:len(rc.Docs)-n], rc.Docs[len(rc.Docs)-n:]
}

// TrainRun trains a codebook on the frozen model's activations at Site
// (k-means initialisation, Adam on the reconstruction error, dead-code
// replacement, checkpoints every CheckpointEvery tokens and resume),
// evaluates it spliced into the model on held-out contexts, and writes Out:
// codebooks.json + codebooks.safetensors, checkpoint.safetensors, eval.json.
func TrainRun(ctx context.Context, rc RunConfig) (*Set, *Report, error) {
	c := rc.Model.Config
	width, err := SiteWidth(c, rc.Site)
	if err != nil {
		return nil, nil, err
	}
	groups := 1
	if rc.PerHead {
		if !isHeadSite(rc.Site) {
			return nil, nil, fmt.Errorf("codebook: one codebook per head needs an attn.hook_z site, not %s", rc.Site)
		}
		groups = c.Heads
	}
	if rc.NumCodes < 1 || rc.K < 1 || rc.K > rc.NumCodes || rc.BatchRows < 1 || rc.TrainTokens < int64(rc.BatchRows) {
		return nil, nil, fmt.Errorf("codebook: need 1 <= k <= codes and at least one batch of tokens; got codes %d, k %d, batch %d, tokens %d", rc.NumCodes, rc.K, rc.BatchRows, rc.TrainTokens)
	}
	if rc.Reduce == "" {
		rc.Reduce = Mean
	}
	if err := os.MkdirAll(rc.Out, 0o755); err != nil {
		return nil, nil, fmt.Errorf("codebook: %w", err)
	}
	trainDocs, evalDocs := rc.split()
	per := int64(rc.ContextSize - 1)
	distinct := rc.TrainTokens
	cached := rc.UniqueTokens > 0 && rc.UniqueTokens < rc.TrainTokens
	if cached {
		distinct = rc.UniqueTokens
	}
	ctxs, err := rc.Tokens(trainDocs, rc.ContextSize, int((distinct+per-1)/per))
	if err != nil {
		return nil, nil, err
	}
	msrc, err := activations.NewModelSource(rc.Model, activations.ModelConfig{Hook: activations.HookPoint{Name: rc.Site, Head: -1},
		Contexts: ctxs, SeqsPerForward: rc.SeqsPerForward, SkipFirst: true})
	if err != nil {
		return nil, nil, err
	}
	var src activations.Source = msrc
	if cached {
		if src, err = activations.NewCachedSource(msrc, msrc.Chunks()); err != nil {
			return nil, nil, err
		}
	}
	if src.Width() != width {
		return nil, nil, fmt.Errorf("codebook: %s has %d features, expected %d", rc.Site, src.Width(), width)
	}
	pipe, err := activations.NewPipeline(src, activations.Config{BatchRows: rc.BatchRows, BufferRows: 16 * rc.BatchRows, Seed: rc.Seed})
	if err != nil {
		return nil, nil, err
	}
	l := &Layer{Hook: rc.Site, Groups: groups, Dim: width / groups, NumCodes: rc.NumCodes, K: rc.K, Reduce: rc.Reduce,
		Codes: make([]float32, width*rc.NumCodes)}
	// The init sample: scale and k-means (read first, then the source rewinds).
	rows := rc.KMeansRows
	if rows <= 0 {
		rows = max(4096, 8*rc.NumCodes)
	}
	x, n, err := sampleRows(ctx, src, rows)
	if err != nil {
		return nil, nil, err
	}
	scale := scaleFor(x, n, width)
	for i := range x {
		x[i] *= scale
	}
	iters := rc.KMeansIters
	if iters <= 0 {
		iters = 50
	}
	if err := KMeans(l, x, n, iters, min(n, 1024), rc.Seed); err != nil {
		return nil, nil, err
	}
	tr, err := NewTrainable(l, scale, rc.ReplaceEvery, rc.Seed)
	if err != nil {
		return nil, nil, err
	}
	if !rc.HostStep {
		tr.SetBackend(rc.Model.Backend())
	}
	steps := int((rc.TrainTokens + int64(rc.BatchRows) - 1) / int64(rc.BatchRows))
	lr := rc.LR
	if lr == 0 {
		lr = 1e-3
	}
	every := 0
	if rc.CheckpointEvery > 0 {
		every = int(max(1, rc.CheckpointEvery/int64(rc.BatchRows)))
	}
	meta := fmt.Sprintf("codebook site=%s groups=%d codes=%d k=%d reduce=%s tokens=%d unique=%d batch=%d lr=%g seed=%d replace=%d kmeans=%dx%d model=%s data=%s ctx=%d",
		rc.Site, groups, rc.NumCodes, rc.K, rc.Reduce, rc.TrainTokens, rc.UniqueTokens, rc.BatchRows, lr, rc.Seed, rc.ReplaceEvery, rows, iters, rc.ModelName, rc.DatasetPath, rc.ContextSize)
	ckpt := filepath.Join(rc.Out, CheckpointFile)
	t := train.New(train.Config{Schedule: train.Schedule{LR: lr, Total: steps, Warmup: min(1000, steps/20), Decay: steps / 5},
		Checkpoint: ckpt, CheckpointEvery: every, Meta: meta, Progress: rc.Progress}, tr, pipe)
	if rc.Resume {
		if _, err := os.Stat(ckpt); err != nil {
			return nil, nil, fmt.Errorf("codebook: --resume: no checkpoint in %s: %w", rc.Out, err)
		}
		if err := t.Resume(ctx, ckpt); err != nil {
			return nil, nil, err
		}
	}
	start := time.Now()
	if err := t.Run(ctx); err != nil {
		return nil, nil, err
	}
	secs := time.Since(start).Seconds()
	set := &Set{Layers: []*Layer{tr.Export()}, Meta: map[string]any{"model": rc.ModelName, "dataset": rc.DatasetPath,
		"context_size": rc.ContextSize, "train_tokens": t.Tokens(), "seed": rc.Seed, "trained_by": "loupe codebook train"}}
	rep := &Report{Site: rc.Site, Groups: groups, NumCodes: rc.NumCodes, K: rc.K, TrainTokens: t.Tokens(), TrainSeconds: secs,
		TokensPerSec: float64(t.Tokens()) / secs, ReplacedCodes: tr.replaced, StepDevice: tr.Backend().Name()}
	rep.FinalMSE, _ = t.Last().Get("mse")
	rep.FinalFVU, _ = t.Last().Get("fvu")
	if rc.EvalContexts > 0 {
		ectx, err := rc.Tokens(evalDocs, rc.ContextSize, rc.EvalContexts)
		if err != nil {
			return nil, nil, err
		}
		if rep.Eval, err = Evaluate(ctx, rc.Model, set, ectx, rc.SeqsPerForward); err != nil {
			return nil, nil, err
		}
	}
	if err := set.Save(rc.Out); err != nil {
		return nil, nil, err
	}
	if err := rep.write(filepath.Join(rc.Out, "eval.json")); err != nil {
		return nil, nil, err
	}
	return set, rep, nil
}

// Export gives the trained layer in the activation's own units (the codes
// divided by the training scale).
func (t *Trainable) Export() *Layer {
	out := *t.L
	out.Codes = make([]float32, len(t.L.Codes))
	for i, v := range t.L.Codes {
		out.Codes[i] = v / t.Scale
	}
	return &out
}

func isHeadSite(site string) bool {
	return len(site) > len("attn.hook_z") && site[len(site)-len("attn.hook_z"):] == "attn.hook_z"
}

// sampleRows reads up to rows rows from the start of src and rewinds it.
func sampleRows(ctx context.Context, src activations.Source, rows int) ([]float32, int, error) {
	if err := src.Seek(ctx, 0); err != nil {
		return nil, 0, err
	}
	var x []float32
	n := 0
	for n < rows {
		ch, err := src.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, 0, err
		}
		x = append(x, ch.X[:ch.Rows*src.Width()]...)
		n += ch.Rows
	}
	if err := src.Seek(ctx, 0); err != nil {
		return nil, 0, err
	}
	n = min(n, rows)
	return x[:n*src.Width()], n, nil
}

// scaleFor is sqrt(width) / E|x| over n rows.
func scaleFor(x []float32, n, w int) float32 {
	var sum float64
	for r := 0; r < n; r++ {
		var ss float64
		for _, v := range x[r*w : (r+1)*w] {
			ss += float64(v) * float64(v)
		}
		sum += math.Sqrt(ss)
	}
	if sum == 0 {
		return 1
	}
	return float32(math.Sqrt(float64(w)) / (sum / float64(n)))
}

// Eval is how the model does with the codebooks spliced in, next-token
// loss averaged over every predicted position of the held-out contexts
// (the BOS position keeps its activation, as in training).
type Eval struct {
	Tokens  int64   `json:"tokens"`
	CEClean float64 `json:"ce_clean"`
	CECodes float64 `json:"ce_codebook"`
	CEZero  float64 `json:"ce_zero_ablated"`
	KL      float64 `json:"kl_clean_codebook"`
	// CERecovered = (CE_zero − CE_codes) / (CE_zero − CE_clean).
	CERecovered float64 `json:"ce_loss_recovered"`
	// DeadFraction is the fraction of codes never chosen; Histogram counts
	// codes by log10 of their frequency in bins of HistogramRange.
	DeadFraction   float64    `json:"dead_fraction"`
	Histogram      []int      `json:"log10_frequency_histogram"`
	HistogramRange [2]float64 `json:"histogram_range"`
}

// Evaluate runs contexts clean, with the codebooks of set spliced in, and
// with their sites zero-ablated.
func Evaluate(ctx context.Context, m *probe.Model, set *Set, contexts [][]int32, seqs int) (*Eval, error) {
	if len(contexts) == 0 {
		return nil, fmt.Errorf("codebook: no contexts to evaluate on")
	}
	if err := set.CheckModel(m.Config); err != nil {
		return nil, err
	}
	if seqs <= 0 {
		seqs = 4
	}
	ev := &Eval{}
	usage := map[string][]int64{}
	var losses nexttoken.Losses
	for lo := 0; lo < len(contexts); lo += seqs {
		var batch [][]int
		for _, cx := range contexts[lo:min(lo+seqs, len(contexts))] {
			ids := make([]int, len(cx))
			for i, v := range cx {
				ids[i] = int(v)
			}
			batch = append(batch, ids)
		}
		run := func(h *probe.Hooks) (*probe.Result, error) {
			return m.Forward(ctx, batch, probe.Options{Hooks: h})
		}
		clean, err := run(nil)
		if err != nil {
			return nil, err
		}
		sp, err := NewSplice(set)
		if err != nil {
			return nil, err
		}
		sp.KeepFrom, sp.Usage = 1, usage
		spliced, err := run(&probe.Hooks{Edit: sp.Edits()})
		if err != nil {
			return nil, err
		}
		var zero []probe.Edit
		for _, l := range set.Layers {
			zero = append(zero, probe.Edit{Hook: l.Hook, Fn: func(b compute.Backend, _ string, t compute.Tensor, shape []int) (compute.Tensor, error) {
				host := b.ToHost(t)
				w := len(host) / (shape[0] * shape[1])
				for r := 0; r < shape[0]*shape[1]; r++ {
					if r%shape[1] >= 1 {
						clear(host[r*w : (r+1)*w])
					}
				}
				return b.FromHost(host, t.Shape()...), nil
			}})
		}
		zeroed, err := run(&probe.Hooks{Edit: zero})
		if err != nil {
			return nil, err
		}
		losses.Add(batch, clean, spliced, zeroed)
	}
	ev.Tokens = losses.Tokens
	ev.CEClean, ev.CECodes, ev.CEZero, ev.KL, ev.CERecovered = losses.Means()
	// Usage: per code frequency over the spliced positions (BOS excluded).
	positions := int64(0)
	for _, cx := range contexts {
		positions += int64(len(cx) - 1)
	}
	ev.HistogramRange = [2]float64{-6, 0}
	ev.Histogram = make([]int, 12)
	dead, total := 0, 0
	for _, l := range set.Layers {
		u := usage[l.Hook]
		for c := range l.Groups * l.NumCodes {
			total++
			var cnt int64
			if u != nil {
				cnt = u[c]
			}
			if cnt == 0 {
				dead++
				continue
			}
			f := math.Log10(float64(cnt) / float64(positions*int64(l.K)))
			bin := int((f - ev.HistogramRange[0]) / (ev.HistogramRange[1] - ev.HistogramRange[0]) * float64(len(ev.Histogram)))
			ev.Histogram[min(max(bin, 0), len(ev.Histogram)-1)]++
		}
	}
	ev.DeadFraction = float64(dead) / float64(total)
	return ev, nil
}
