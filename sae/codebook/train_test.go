package codebook

import (
	"context"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/loupe-dev/loupe/sae/activations"
	"github.com/loupe-dev/loupe/sae/train"
)

// planted draws n rows of x = planted code c_i + noise, i uniform, with C
// planted unit-scale codes of width d.
func planted(n, C, d int, noise float64, seed uint64) (x, codes []float32) {
	rng := rand.New(rand.NewPCG(seed, 9))
	codes = make([]float32, C*d)
	for i := range codes {
		codes[i] = float32(rng.NormFloat64())
	}
	x = make([]float32, n*d)
	for r := range n {
		c := rng.IntN(C)
		for j := range d {
			x[r*d+j] = codes[c*d+j] + float32(noise*rng.NormFloat64())
		}
	}
	return x, codes
}

// nearestDist is, for every planted code, the distance to the closest
// learned code, as a fraction of the planted code's norm.
func nearestDist(learned, plantedCodes []float32, d int) float64 {
	worst := 0.0
	for p := 0; p < len(plantedCodes)/d; p++ {
		best, norm := math.Inf(1), 0.0
		for _, v := range plantedCodes[p*d : (p+1)*d] {
			norm += float64(v) * float64(v)
		}
		for c := 0; c < len(learned)/d; c++ {
			s := 0.0
			for j := range d {
				e := float64(learned[c*d+j] - plantedCodes[p*d+j])
				s += e * e
			}
			best = min(best, s)
		}
		worst = max(worst, math.Sqrt(best/norm))
	}
	return worst
}

// Minibatch k-means finds planted clusters.
func TestKMeansFindsPlantedCodes(t *testing.T) {
	const C, d = 8, 16
	x, codes := planted(4000, C, d, 0.05, 1)
	l := &Layer{Hook: "blocks.0.hook_resid_post", Groups: 1, Dim: d, NumCodes: 32, K: 1, Reduce: Mean, Codes: make([]float32, 32*d)}
	if err := KMeans(l, x, 4000, 40, 512, 3); err != nil {
		t.Fatal(err)
	}
	if w := nearestDist(l.Codes, codes, d); w > 0.05 {
		t.Fatalf("a planted code is %.3f of its norm from every learned code", w)
	}
}

func newPipe(t *testing.T, x []float32, d int, seed uint64) *activations.Pipeline {
	t.Helper()
	src, err := activations.NewSliceSource(x, d, nil, 0, 128, true)
	if err != nil {
		t.Fatal(err)
	}
	p, err := activations.NewPipeline(src, activations.Config{BatchRows: 256, BufferRows: 1024, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func trainer(t *testing.T, x []float32, d, steps int, ckpt string) (*train.Trainer, *Trainable) {
	t.Helper()
	l := &Layer{Hook: "blocks.0.hook_resid_post", Groups: 2, Dim: d / 2, NumCodes: 24, K: 2, Reduce: Mean, Codes: make([]float32, 24*d)}
	rng := rand.New(rand.NewPCG(5, 5))
	for i := range l.Codes {
		l.Codes[i] = float32(rng.NormFloat64())
	}
	tr, err := NewTrainable(l, 1, 10, 7)
	if err != nil {
		t.Fatal(err)
	}
	return train.New(train.Config{Schedule: train.Schedule{LR: 3e-2, Total: steps}, Checkpoint: ckpt, Meta: "test"}, tr, newPipe(t, x, d, 2)), tr
}

// Training from random codes lowers the reconstruction error of planted
// data, replaces dead codes, and a run stopped and resumed from its
// checkpoint gives bit-identical codes.
func TestTrainResumesBitIdentically(t *testing.T) {
	const d = 16
	x, _ := planted(6000, 10, d, 0.05, 2)
	ctx := context.Background()
	full, ftr := trainer(t, x, d, 60, "")
	if err := full.Run(ctx); err != nil {
		t.Fatal(err)
	}
	fvu, _ := full.Last().Get("fvu")
	first, _ := trainer(t, x, d, 1, "")
	if err := first.Run(ctx); err != nil {
		t.Fatal(err)
	}
	fvu0, _ := first.Last().Get("fvu")
	if !(fvu < 0.5*fvu0) {
		t.Fatalf("FVU went from %.3f (first step) to %.3f (step 60): training does not learn", fvu0, fvu)
	}
	if ftr.replaced == 0 {
		t.Fatalf("no dead code was replaced in 60 steps of a 24-code codebook on 10 clusters")
	}
	ckpt := filepath.Join(t.TempDir(), "ck.safetensors")
	cctx, cancel := context.WithCancel(ctx)
	steps, stopAt := 0, 27
	halfCfg := train.Config{Schedule: train.Schedule{LR: 3e-2, Total: 60}, Checkpoint: ckpt, Meta: "test",
		OnStep: func(step int, _ train.Stats) {
			steps = step
			if step == stopAt {
				cancel()
			}
		}}
	_, htr1 := trainer(t, x, d, 60, ckpt)
	half := train.New(halfCfg, htr1, newPipe(t, x, d, 2))
	if err := half.Run(cctx); err == nil || steps != stopAt {
		t.Fatalf("the interrupted run did not stop at step %d (stopped at %d, err %v)", stopAt, steps, err)
	}
	resumed, rtr := trainer(t, x, d, 60, ckpt)
	if err := resumed.Resume(ctx, ckpt); err != nil {
		t.Fatal(err)
	}
	if err := resumed.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rtr.L.Codes, ftr.L.Codes) {
		t.Fatalf("resumed codes differ from an uninterrupted run's (max diff %g)", maxAbs(rtr.L.Codes, ftr.L.Codes))
	}
	if _, err := os.Stat(ckpt); err != nil {
		t.Fatal(err)
	}
}
