package sae

import (
	"fmt"
	"math"

	"github.com/loupe-dev/loupe/probe/compute/cuda"
	"github.com/loupe-dev/loupe/sae/activations"
	"github.com/loupe-dev/loupe/sae/train"
)

// GPUTrainable is a Trainable whose step runs on a GPU: parameters, Adam
// moments and the dead-latent counters live in device memory and the host
// copies (the embedded Trainable's SAE and counters) are refreshed at
// checkpoints and at the end of a run (train.DeviceModule). The arithmetic
// is the CPU step's (module.go), checked against it in gpu_test.go; the
// TopK architecture runs sparse (cuda/sae.go says how), the others dense.
// The GPU step is not bit-reproducible from run to run (latent gradients
// are gathered with atomic counters, so sums run in a varying order); the
// CPU's is.
type GPUTrainable struct {
	*Trainable
	dev *cuda.SAETrainer
	st  cuda.SAEState
}

// NewGPUTrainable moves tr to GPU b for batches of up to maxRows rows;
// bf16 runs the encoder GEMM (and TopK's decoder reads) in bf16 with fp32
// accumulation and fp32 master weights.
func NewGPUTrainable(b *cuda.Backend, tr *Trainable, maxRows int, bf16 bool) (*GPUTrainable, error) {
	s := tr.S
	cfg := cuda.SAEConfig{Arch: string(s.Arch), DIn: s.DIn, DSAE: s.DSAE, DOut: s.DOut, K: s.K, Groups: s.Groups,
		ApplyBDecToInput: s.ApplyBDecToInput, InScale: s.InScale, OutScale: s.OutScale, BF16: bf16,
		L1: tr.Cfg.L1, L0: tr.Cfg.L0, Bandwidth: tr.Cfg.Bandwidth, AuxKAlpha: tr.Cfg.AuxKAlpha, AuxK: tr.Cfg.AuxK,
		DeadWindow: tr.Cfg.DeadWindow, ThresholdMomentum: tr.Cfg.ThresholdMomentum, MaxRows: maxRows}
	dev, err := b.NewSAETrainer(cfg)
	if err != nil {
		return nil, fmt.Errorf("sae: GPU training: %w", err)
	}
	g := &GPUTrainable{Trainable: tr, dev: dev}
	for _, p := range tr.params {
		g.st.Params = append(g.st.Params, p.Value)
	}
	g.st.SinceFired = tr.sinceFired
	// Fresh moments until SyncDevice gives the trainer's.
	zero := train.NewAdam(tr.params, 0, 0, 0)
	if err := g.SyncDevice(zero); err != nil {
		dev.Close()
		return nil, err
	}
	return g, nil
}

// Close gives the device memory back.
func (g *GPUTrainable) Close() { g.dev.Close() }

func (g *GPUTrainable) state(a *train.Adam) *cuda.SAEState {
	g.st.M, g.st.V = a.M, a.V
	g.st.ThrInit = g.thrInit
	return &g.st
}

// SyncDevice copies the host's parameters, moments and counters to the GPU.
func (g *GPUTrainable) SyncDevice(a *train.Adam) error {
	// The GPU holds JumpReLU's log θ; the host's θ follows from it.
	return g.dev.Load(g.state(a))
}

// SyncHost copies the GPU's state into the host Trainable and a.
func (g *GPUTrainable) SyncHost(a *train.Adam) error {
	st := g.state(a)
	if err := g.dev.Save(st); err != nil {
		return err
	}
	g.thrInit = st.ThrInit
	g.refreshThreshold()
	return nil
}

// Update is Adam on the GPU, with the decoder-norm and threshold handling
// of AfterUpdate.
func (g *GPUTrainable) Update(a *train.Adam, lr float64) error {
	return g.dev.Update(lr, a.T, a.Beta1, a.Beta2, a.Eps)
}

// AfterUpdate does nothing: Update did it on the GPU.
func (g *GPUTrainable) AfterUpdate() {}

// Backward runs the step on the GPU and gives the CPU step's statistics.
func (g *GPUTrainable) Backward(b *activations.Batch, step int) (train.Stats, error) {
	s := g.S
	if b.Width != s.DIn {
		return nil, fmt.Errorf("sae: batch rows have %d features, the SAE reads %d", b.Width, s.DIn)
	}
	if tw := b.TWidth; (tw != 0 && tw != s.DOut) || (tw == 0 && s.DOut != s.DIn) {
		return nil, fmt.Errorf("sae: targets have %d features, the SAE writes %d", tw, s.DOut)
	}
	g.dev.SetThresholdMomentum(g.Cfg.thresholdMomentum(step))
	st, err := g.dev.Step(b.X, b.Y, b.DX, b.DY, b.Rows)
	if err != nil {
		return nil, fmt.Errorf("sae: GPU step: %w", err)
	}
	return g.stats(st), nil
}

// stats turns the GPU's sums into the statistics the CPU step reports.
func (g *GPUTrainable) stats(st cuda.SAEStats) train.Stats {
	s, cfg := g.S, g.Cfg
	n := float64(st.Rows)
	sst := st.YY - st.Mean2
	fvu := math.NaN()
	if sst > 0 {
		fvu = st.SSE / sst
	}
	dead := 100 * float64(st.Dead) / float64(s.DSAE)
	loss := st.PrefixSSE / n
	switch s.Arch {
	case Standard:
		loss += cfg.L1 * st.Sparsity / n
	case JumpReLU:
		loss += cfg.L0 * st.L0 / n
	}
	out := train.Stats{
		{Name: "loss", Value: loss},
		{Name: "mse", Value: st.SSE / n},
		{Name: "l0", Value: st.L0 / n},
		{Name: "fvu", Value: fvu},
		{Name: "dead%", Value: dead},
	}
	if s.Arch != Standard && s.Arch != JumpReLU {
		var aux float64
		if st.Dead > 0 {
			alpha := cfg.AuxKAlpha * math.Min(1, float64(st.Dead)/float64(cfg.AuxK))
			aux = alpha * st.AuxSSE / n
		}
		out[0].Value += aux
		out = append(out, train.Stat{Name: "auxk", Value: aux})
	}
	return out
}

var _ train.DeviceModule = (*GPUTrainable)(nil)

// Gradients gives the last step's gradients from the GPU, in Params order
// (nil for a parameter the optimizer does not update). For tests.
func (g *GPUTrainable) Gradients() ([][]float32, error) { return g.dev.Gradients() }
