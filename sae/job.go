package sae

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/loupe-dev/loupe/probe/compute/cuda"
	"github.com/loupe-dev/loupe/sae/activations"
	"github.com/loupe-dev/loupe/sae/train"
)

// TrainSpec is a whole SAE training run.
type TrainSpec struct {
	Arch      Arch
	DSAE      int // latents
	K         int // TopK family
	Tokens    int64
	BatchRows int
	LR        float64
	Warmup    int // steps; -1 for none, 0 for the default (5% of the steps, at most 1000)
	Decay     int // steps of linear decay at the end; -1 for none, 0 for the default (the last 20%)
	Seed      uint64
	Loss      TrainConfig
	// Normalize scales inputs (and targets) so that E‖x‖ = sqrt(width),
	// estimated on the init sample, and folds the scale into the exported
	// weights.
	Normalize bool
	// InitRows is the sample used for the scales and b_dec's geometric
	// median (default 4096).
	InitRows        int
	Checkpoint      string
	CheckpointEvery int64 // tokens
	Resume          bool
	Progress        io.Writer
	OnStep          func(step int, s train.Stats)
	Meta            Metadata
	// Groups overrides Matryoshka's prefix sizes (DefaultGroups otherwise).
	Groups []int
	// GPU, when set, trains on that GPU (GPUTrainable); BF16 then runs the
	// encoder GEMM in bf16 (fp32 accumulation and master weights).
	GPU  *cuda.Backend
	BF16 bool
}

// Steps is the number of training steps the spec asks for.
func (sp TrainSpec) Steps() int {
	return int((sp.Tokens + int64(sp.BatchRows) - 1) / int64(sp.BatchRows))
}

// Train trains an SAE on the pipeline's batches. The init sample is read
// from the pipeline's source first (which is then rewound), so the same
// spec and source give the same SAE bit for bit, resumed or not.
func Train(ctx context.Context, pipe *activations.Pipeline, sp TrainSpec) (*SAE, *Trainable, train.Stats, error) {
	src := pipe.Source()
	dIn, dOut := src.Width(), src.TargetWidth()
	if dOut == 0 {
		dOut = dIn
	}
	if sp.BatchRows <= 0 || sp.Tokens < int64(sp.BatchRows) {
		return nil, nil, nil, fmt.Errorf("sae: %d tokens is less than one batch of %d", sp.Tokens, sp.BatchRows)
	}
	s, err := New(sp.Arch, dIn, sp.DSAE, dOut, sp.K, sp.Seed)
	if err != nil {
		return nil, nil, nil, err
	}
	s.Meta = sp.Meta
	if sp.Groups != nil {
		if sp.Arch != Matryoshka {
			return nil, nil, nil, fmt.Errorf("sae: prefix groups apply to matryoshka, not %s", sp.Arch)
		}
		if err := checkGroups(sp.Groups, sp.DSAE); err != nil {
			return nil, nil, nil, err
		}
		s.Groups = sp.Groups
	}
	if sp.InitRows <= 0 {
		sp.InitRows = 4096
	}
	x, y, n, err := sample(ctx, src, sp.InitRows)
	if err != nil {
		return nil, nil, nil, err
	}
	if sp.Normalize {
		s.InScale = scaleFor(x, n, dIn)
		if y != nil {
			s.OutScale = scaleFor(y, n, dOut)
		} else {
			s.OutScale = s.InScale
		}
	}
	target := x
	if y != nil {
		target = y
	}
	tn := make([]float32, len(target))
	for i, v := range target {
		tn[i] = v * s.OutScale
	}
	copy(s.BDec, GeometricMedian(tn, n, dOut, 100))
	steps := sp.Steps()
	if (sp.Arch == BatchTopK || sp.Arch == Matryoshka) && sp.Loss.ThresholdAverageFrom == 0 {
		// the inference threshold: the mean batch minimum over the last
		// fifth of the steps (TrainConfig.ThresholdAverageFrom says why)
		sp.Loss.ThresholdAverageFrom = max(1, steps-max(1, steps/5))
	}
	tr := NewTrainable(s, sp.Loss)
	sched := train.Schedule{LR: sp.LR, Total: steps, Warmup: sp.Warmup, Decay: sp.Decay}
	if sched.LR == 0 {
		sched.LR = 1e-3
	}
	if sp.Warmup == 0 {
		sched.Warmup = min(1000, steps/20)
	}
	if sp.Decay == 0 {
		sched.Decay = steps / 5
	}
	sched.Warmup, sched.Decay = max(sched.Warmup, 0), max(sched.Decay, 0)
	every := 0
	if sp.CheckpointEvery > 0 {
		every = int(max(1, sp.CheckpointEvery/int64(sp.BatchRows)))
	}
	meta := fmt.Sprintf("sae arch=%s groups=%v d_in=%d d_sae=%d d_out=%d k=%d tokens=%d batch=%d lr=%g seed=%d normalize=%v loss=%+v hook=%s target=%s model=%s data=%s ctx=%d exclude_first=%d",
		sp.Arch, s.Groups, dIn, sp.DSAE, dOut, sp.K, sp.Tokens, sp.BatchRows, sched.LR, sp.Seed, sp.Normalize, tr.Cfg,
		sp.Meta.HookName, sp.Meta.TargetHookName, sp.Meta.ModelName, sp.Meta.DatasetPath, sp.Meta.ContextSize, sp.Meta.ExcludeFirst)
	tc := train.Config{Schedule: sched, Checkpoint: sp.Checkpoint, CheckpointEvery: every, Meta: meta, Progress: sp.Progress, OnStep: sp.OnStep}
	var mod train.Module = tr
	if sp.GPU != nil {
		g, err := NewGPUTrainable(sp.GPU, tr, sp.BatchRows, sp.BF16)
		if err != nil {
			return nil, nil, nil, err
		}
		defer g.Close()
		mod = g
	} else if sp.BF16 {
		return nil, nil, nil, fmt.Errorf("sae: bf16 training needs a GPU (the CPU trains in float32)")
	}
	t := train.New(tc, mod, pipe)
	if sp.Resume {
		if err := t.Resume(ctx, sp.Checkpoint); err != nil {
			return nil, nil, nil, err
		}
	}
	err = t.Run(ctx)
	s.Meta.TokensSeen = t.Tokens()
	return s, tr, t.Last(), err
}

// sample reads up to rows rows from the start of src and rewinds it.
func sample(ctx context.Context, src activations.Source, rows int) (x, y []float32, n int, err error) {
	if err := src.Seek(ctx, 0); err != nil {
		return nil, nil, 0, err
	}
	for n < rows {
		ch, err := src.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, 0, fmt.Errorf("sae: init sample: %w", err)
		}
		x = append(x, ch.X...)
		y = append(y, ch.Y...)
		n += ch.Rows
		// a cycling source returns to its first chunk: stop there
		if c, ok := src.(interface{ Chunks() int64 }); ok && src.Cursor() >= c.Chunks() {
			break
		}
	}
	if n == 0 {
		return nil, nil, 0, fmt.Errorf("sae: the activation source gave no rows")
	}
	if err := src.Seek(ctx, 0); err != nil {
		return nil, nil, 0, err
	}
	if len(y) == 0 {
		y = nil
	}
	return x, y, n, nil
}

// scaleFor gives s with E‖s·x‖ = sqrt(d) over the n rows of x.
func scaleFor(x []float32, n, d int) float32 {
	var sum float64
	for r := 0; r < n; r++ {
		var ss float64
		for _, v := range x[r*d : (r+1)*d] {
			ss += float64(v) * float64(v)
		}
		sum += math.Sqrt(ss)
	}
	mean := sum / float64(n)
	if mean == 0 {
		return 1
	}
	return float32(math.Sqrt(float64(d)) / mean)
}

// GeometricMedian is the point minimising the summed Euclidean distance to
// n rows of x, by Weiszfeld's algorithm from the mean (float64; stops after
// iters iterations or when a step moves less than 1e-7 of the scale).
func GeometricMedian(x []float32, n, d, iters int) []float32 {
	m := make([]float64, d)
	for r := 0; r < n; r++ {
		for i, v := range x[r*d : (r+1)*d] {
			m[i] += float64(v)
		}
	}
	for i := range m {
		m[i] /= float64(n)
	}
	next := make([]float64, d)
	for it := 0; it < iters; it++ {
		clear(next)
		var wsum float64
		for r := 0; r < n; r++ {
			row := x[r*d : (r+1)*d]
			var ss float64
			for i, v := range row {
				e := float64(v) - m[i]
				ss += e * e
			}
			dist := math.Sqrt(ss)
			if dist < 1e-12 {
				continue // a sample at the current point: skip it (Weiszfeld's usual guard)
			}
			w := 1 / dist
			wsum += w
			for i, v := range row {
				next[i] += w * float64(v)
			}
		}
		if wsum == 0 {
			break
		}
		var move, scale float64
		for i := range next {
			next[i] /= wsum
			move += (next[i] - m[i]) * (next[i] - m[i])
			scale += next[i] * next[i]
		}
		m, next = next, m
		if move <= 1e-14*(scale+1) {
			break
		}
	}
	out := make([]float32, d)
	for i, v := range m {
		out[i] = float32(v)
	}
	return out
}

func checkGroups(g []int, dSAE int) error {
	for i, m := range g {
		if m <= 0 || (i > 0 && m <= g[i-1]) {
			return fmt.Errorf("sae: matryoshka groups %v must be positive and ascending", g)
		}
	}
	if len(g) == 0 || g[len(g)-1] != dSAE {
		return fmt.Errorf("sae: matryoshka groups %v must end at d_sae %d", g, dSAE)
	}
	return nil
}
