package sae

import (
	"context"
	"math"
	"testing"

	"github.com/loupe-dev/loupe/sae/activations"
)

// TestBatchTopKInferenceL0: BatchTopK and Matryoshka keep K latents a token
// on average during training; at inference their learned threshold must
// keep about as many on held-out rows of the same data. A short run (100
// steps) is the hard case: the EMA of the batch minimum over the whole run
// that Loupe used to keep (momentum 0.99, started at the first batch) is
// still dominated by the untrained SAE's larger minima. Here it kept 1.88
// (BatchTopK) and 2.41 (Matryoshka) latents a token at K 4; on the organism
// (`loupe sae train --arch batchtopk --k 16`, 64 steps) 7.85, with three
// quarters of the latents dead at evaluation. The running mean over the
// last fifth of the steps keeps 3.98 and 3.92.
func TestBatchTopKInferenceL0(t *testing.T) {
	const d, atoms, rows, K = 32, 64, 16384, 4
	all, _ := planted(1, rows+4096, d, atoms, 4.0/atoms)
	x, held := all[:rows*d], all[rows*d:] // one dictionary: held-out rows of the same data
	for _, arch := range []Arch{BatchTopK, Matryoshka} {
		t.Run(string(arch), func(t *testing.T) {
			src, err := activations.NewSliceSource(x, d, nil, 0, 1024, true)
			if err != nil {
				t.Fatal(err)
			}
			pipe, err := activations.NewPipeline(src, activations.Config{BatchRows: 256, BufferRows: 4096, Seed: 3})
			if err != nil {
				t.Fatal(err)
			}
			defer pipe.Close()
			sp := TrainSpec{Arch: arch, DSAE: 2 * atoms, K: K, Tokens: 256 * 100, BatchRows: 256, LR: 3e-3, Seed: 5, Normalize: true,
				Loss: TrainConfig{DeadWindow: 20000}}
			s, _, _, err := Train(context.Background(), pipe, sp)
			if err != nil {
				t.Fatal(err)
			}
			acc := NewAccumulator(s)
			acc.Add(held, held, len(held)/d)
			m := acc.Metrics()
			t.Logf("%s: threshold %.4f, L0 at inference %.3f (K %d), FVU %.4f", arch, s.Threshold[0], m.L0, K, m.FVU)
			if math.Abs(m.L0-K) > 0.15*K {
				t.Errorf("%s keeps %.3f latents a token at inference, trained with K %d", arch, m.L0, K)
			}
		})
	}
}

// TestThresholdMomentum: the EMA's momentum before ThresholdAverageFrom,
// then the weights of a running mean (the first averaged step restarts it).
func TestThresholdMomentum(t *testing.T) {
	c := TrainConfig{ThresholdMomentum: 0.99, ThresholdAverageFrom: 10}
	for _, tc := range []struct {
		step int
		want float64
	}{{0, 0.99}, {9, 0.99}, {10, 0}, {11, 0.5}, {13, 0.75}} {
		if got := c.thresholdMomentum(tc.step); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("step %d: momentum %g, want %g", tc.step, got, tc.want)
		}
	}
	// the running mean of 4 minima is their mean
	th, vals := float32(0), []float32{3, 1, 4, 2}
	for i, v := range vals {
		m := float32(c.thresholdMomentum(10 + i))
		th = m*th + (1-m)*v
	}
	if math.Abs(float64(th)-2.5) > 1e-6 {
		t.Errorf("running mean of %v: %g, want 2.5", vals, th)
	}
	if got := (&TrainConfig{ThresholdMomentum: 0.99}).thresholdMomentum(500); got != 0.99 {
		t.Errorf("without ThresholdAverageFrom: momentum %g, want 0.99", got)
	}
}
