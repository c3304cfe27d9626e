package gputest

import (
	"context"
	"errors"
	"github.com/loupe-dev/loupe/sae"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/loupe-dev/loupe/probe/compute/cuda"
	"github.com/loupe-dev/loupe/sae/activations"
	"github.com/loupe-dev/loupe/sae/internal/planted"
	"github.com/loupe-dev/loupe/sae/train"
)

// The TestGPU* tests need an NVIDIA GPU and skip, saying why, without one
// (CI has none). scripts/gpu/sae-gpu.sh builds this package's test binary
// here and runs them on a GPU machine.

var testGPU struct {
	once sync.Once
	b    *cuda.Backend
	err  error
}

func gpuForTest(t testing.TB) *cuda.Backend {
	t.Helper()
	testGPU.once.Do(func() { testGPU.b, testGPU.err = cuda.New(cuda.Options{}) })
	if testGPU.err != nil {
		t.Skipf("no usable GPU: %v", testGPU.err)
	}
	return testGPU.b
}

func cloneSAE(s *sae.SAE) *sae.SAE {
	c := *s
	c.Enc, c.BEnc, c.Dec, c.BDec = slices.Clone(s.Enc), slices.Clone(s.BEnc), slices.Clone(s.Dec), slices.Clone(s.BDec)
	c.Threshold, c.Groups = slices.Clone(s.Threshold), slices.Clone(s.Groups)
	return &c
}

// relErr is ‖a − b‖ / ‖b‖ (‖a − b‖ when b is zero).
func relErr(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	var d, n float64
	for i := range a {
		e := float64(a[i]) - float64(b[i])
		d += e * e
		n += float64(b[i]) * float64(b[i])
	}
	if math.IsNaN(d) {
		return math.Inf(1)
	}
	if n == 0 {
		return math.Sqrt(d)
	}
	return math.Sqrt(d / n)
}

// randBatch is n rows of N(0, 1) inputs (and targets for a transcoder).
func randBatch(rng *rand.Rand, n, d, dOut int, transcoder bool) *activations.Batch {
	b := &activations.Batch{Rows: n, Width: d, X: make([]float32, n*d)}
	for i := range b.X {
		b.X[i] = float32(rng.NormFloat64())
	}
	if transcoder {
		b.TWidth = dOut
		b.Y = make([]float32, n*dOut)
		for i := range b.Y {
			b.Y[i] = float32(rng.NormFloat64())
		}
	}
	return b
}

// roundBF16 rounds v to the nearest bf16 value (ties to even), as the
// GPU's conversion does.
func roundBF16(v float32) float32 {
	b := math.Float32bits(v)
	b += 0x7fff + (b>>16)&1
	return math.Float32frombits(b & 0xffff0000)
}

func relDiff(a, b float64) float64 {
	if a == b {
		return 0
	}
	return math.Abs(a-b) / math.Max(math.Abs(b), 1e-12)
}

// TestGPUStepMatchesCPU runs steps of every architecture (as an SAE and
// as a transcoder) on the GPU and on the CPU from the same weights and
// batches: the statistics and the first step's gradients, and the
// parameters, Adam moments and dead-latent counters after the updates,
// must agree to a relative 1e-4 (‖gpu − cpu‖/‖cpu‖; the GPU sums in
// another order). Every latent that does not fire counts as dead at once
// (DeadWindow 1), so AuxK runs from the first step. The bf16 mode is
// checked on one step whose encoder inputs and weights are exactly
// representable in bf16 (inputs and weights rounded, b_dec 0, no input
// scale): its products are then exact, so it must match the float32 CPU
// step to the same 1e-4. (On arbitrary inputs bf16 moves pre-activations by
// about 0.4%, which swaps latents at the selection boundary: gradients then
// differ by 2-18% in the first GPU run, so no tolerance there would be a
// test of the arithmetic.)
func TestGPUStepMatchesCPU(t *testing.T) {
	b := gpuForTest(t)
	for _, arch := range sae.Arches {
		for _, transcoder := range []bool{false, true} {
			for _, bf16 := range []bool{false, true} {
				name := string(arch)
				if transcoder {
					name += "/transcoder"
				}
				if bf16 {
					name += "/bf16"
				}
				t.Run(name, func(t *testing.T) { gpuStepCase(t, b, arch, transcoder, bf16) })
			}
		}
	}
}

func gpuStepCase(t *testing.T, b *cuda.Backend, arch sae.Arch, transcoder, bf16 bool) {
	rng := rand.New(rand.NewPCG(1, 2))
	dIn, dSAE, dOut, n, k := 48, 384, 48, 192, 8
	if transcoder {
		dOut = 40
	}
	s, err := sae.New(arch, dIn, dSAE, dOut, k, 7)
	if err != nil {
		t.Fatal(err)
	}
	s.InScale, s.OutScale = 1.3, 0.8
	for i := range s.BDec {
		s.BDec[i] = float32(rng.NormFloat64() * 0.1)
	}
	for i := range s.BEnc {
		s.BEnc[i] = float32(rng.NormFloat64() * 0.1)
	}
	for i := range s.Enc {
		s.Enc[i] += float32(rng.NormFloat64() * 0.3)
	}
	if arch == sae.JumpReLU {
		for j := range s.Threshold {
			s.Threshold[j] = 0.2
		}
	}
	if arch == sae.Matryoshka {
		s.Groups = []int{48, 96, 192, 384}
	}
	steps := 3
	if bf16 {
		steps = 1
		s.InScale = 1
		clear(s.BDec)
		for _, w := range [][]float32{s.Enc, s.Dec} {
			for i := range w {
				w[i] = roundBF16(w[i])
			}
		}
	}
	cfg := sae.TrainConfig{L1: 0.7, L0: 0.3, DeadWindow: 1, AuxK: 24, AuxKAlpha: 0.5}
	cpu := sae.NewTrainable(cloneSAE(s), cfg)
	gt, err := sae.NewGPUTrainable(b, sae.NewTrainable(cloneSAE(s), cfg), n, bf16)
	if err != nil {
		t.Fatal(err)
	}
	defer gt.Close()
	const tol = 1e-4
	ac, ag := train.NewAdam(cpu.Params(), 0, 0, 0), train.NewAdam(gt.Params(), 0, 0, 0)
	for step := 0; step < steps; step++ {
		batch := randBatch(rng, n, dIn, dOut, transcoder)
		if bf16 {
			for i := range batch.X {
				batch.X[i] = roundBF16(batch.X[i])
			}
		}
		sc, err := cpu.Backward(batch, step)
		if err != nil {
			t.Fatal(err)
		}
		sg, err := gt.Backward(batch, step)
		if err != nil {
			t.Fatal(err)
		}
		if len(sc) != len(sg) {
			t.Fatalf("step %d: CPU stats %v, GPU %v", step, sc, sg)
		}
		for i := range sc {
			if d := relDiff(sg[i].Value, sc[i].Value); d > tol && math.Abs(sg[i].Value-sc[i].Value) > 1e-6 {
				t.Errorf("step %d: %s GPU %.7g, CPU %.7g (rel %.2g > %.0e)", step, sc[i].Name, sg[i].Value, sc[i].Value, d, tol)
			}
		}
		if step == 0 {
			gg, err := gt.Gradients()
			if err != nil {
				t.Fatal(err)
			}
			for i, p := range cpu.Params() {
				if p.NoUpdate {
					continue
				}
				if e := relErr(gg[i], p.Grad); e > tol {
					t.Errorf("step 0: gradient of %s: rel error %.3g > %.0e", p.Name, e, tol)
				} else {
					t.Logf("step 0: gradient of %s: rel error %.2g", p.Name, e)
				}
			}
		}
		ac.Step(cpu.Params(), 1e-3)
		cpu.AfterUpdate()
		ag.T++
		if err := gt.Update(ag, 1e-3); err != nil {
			t.Fatal(err)
		}
	}
	if err := gt.SyncHost(ag); err != nil {
		t.Fatal(err)
	}
	for i, p := range cpu.Params() {
		if e := relErr(gt.Params()[i].Value, p.Value); e > tol {
			t.Errorf("after the updates: %s: rel error %.3g > %.0e", p.Name, e, tol)
		}
		if !p.NoUpdate {
			if e := relErr(ag.M[i], ac.M[i]); e > tol {
				t.Errorf("after the updates: Adam m of %s: rel error %.3g > %.0e", p.Name, e, tol)
			}
		}
	}
	if s.Threshold != nil && arch != sae.JumpReLU {
		if e := relErr(gt.S.Threshold, cpu.S.Threshold); e > tol {
			t.Errorf("thresholds: rel error %.3g", e)
		}
	}
	if !slices.Equal(gt.SinceFired(), cpu.SinceFired()) {
		t.Errorf("dead-latent counters differ")
	}
}

// TestGPUPlantedDictionary is TestPlantedDictionary with the training on
// the GPU: every architecture recovers at least 90% of the atoms.
func TestGPUPlantedDictionary(t *testing.T) {
	b := gpuForTest(t)
	const d, atoms, rows = 32, 64, 16384
	x, dict := planted.Data(1, rows, d, atoms, 4.0/atoms)
	for _, tc := range []struct {
		arch sae.Arch
		loss sae.TrainConfig
	}{
		{sae.Standard, sae.TrainConfig{L1: 2}}, {sae.TopK, sae.TrainConfig{}}, {sae.BatchTopK, sae.TrainConfig{}},
		{sae.JumpReLU, sae.TrainConfig{L0: 1}}, {sae.Matryoshka, sae.TrainConfig{}},
	} {
		for _, bf16 := range []bool{false, true} {
			name := string(tc.arch)
			if bf16 {
				name += "/bf16"
			}
			t.Run(name, func(t *testing.T) {
				src, err := activations.NewSliceSource(x, d, nil, 0, 1024, true)
				if err != nil {
					t.Fatal(err)
				}
				pipe, err := activations.NewPipeline(src, activations.Config{BatchRows: 256, BufferRows: 4096, Seed: 3})
				if err != nil {
					t.Fatal(err)
				}
				tc.loss.DeadWindow = 20000
				steps := 2000
				sp := sae.TrainSpec{Arch: tc.arch, DSAE: 2 * atoms, K: 4, Tokens: 256 * int64(steps), BatchRows: 256, LR: 3e-3,
					Seed: 5, Loss: tc.loss, Normalize: true, GPU: b, BF16: bf16}
				if tc.arch == sae.Matryoshka {
					sp.Tokens *= 2
					sp.Groups = []int{3 * atoms / 2, 2 * atoms}
				}
				s, _, st, err := sae.Train(context.Background(), pipe, sp)
				if err != nil {
					t.Fatal(err)
				}
				got := planted.Recovered(s.Dec, s.DSAE, s.DOut, dict, atoms)
				t.Logf("%s: %d/%d atoms recovered; last step %s", name, got, atoms, st)
				if got < atoms*9/10 {
					t.Errorf("%s recovered %d of %d atoms at cosine >= 0.9, want >= %d", name, got, atoms, atoms*9/10)
				}
			})
		}
	}
}

// TestGPUResume stops a GPU run midway (its checkpoint copies the device
// state to the host), resumes it and compares with an uninterrupted run.
// The GPU step is not bit-reproducible (atomic gathers), so the check is a
// tolerance: relative 1e-3 on the decoder after 60 steps.
func TestGPUResume(t *testing.T) {
	b := gpuForTest(t)
	const d, atoms, rows = 32, 64, 8192
	x, _ := planted.Data(4, rows, d, atoms, 4.0/atoms)
	run := func(dir string, stopAt int, resume bool) (*sae.SAE, error) {
		src, err := activations.NewSliceSource(x, d, nil, 0, 1024, true)
		if err != nil {
			t.Fatal(err)
		}
		pipe, err := activations.NewPipeline(src, activations.Config{BatchRows: 128, BufferRows: 2048, Seed: 3})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		sp := sae.TrainSpec{Arch: sae.TopK, DSAE: 128, K: 4, Tokens: 128 * 60, BatchRows: 128, LR: 3e-3, Seed: 5,
			Loss: sae.TrainConfig{DeadWindow: 2000}, Normalize: true, GPU: b, Resume: resume,
			Checkpoint: filepath.Join(dir, sae.CheckpointFile), CheckpointEvery: 128 * 10}
		if stopAt > 0 {
			sp.OnStep = func(step int, _ train.Stats) {
				if step == stopAt {
					cancel()
				}
			}
		}
		s, _, _, err := sae.Train(ctx, pipe, sp)
		return s, err
	}
	full, err := run(t.TempDir(), 0, false)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := run(dir, 25, false); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %v", err)
	}
	resumed, err := run(dir, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	if resumed.Meta.TokensSeen != full.Meta.TokensSeen {
		t.Errorf("tokens seen %d resumed, %d uninterrupted", resumed.Meta.TokensSeen, full.Meta.TokensSeen)
	}
	for _, c := range []struct {
		name string
		a, b []float32
	}{{"W_dec", resumed.Dec, full.Dec}, {"W_enc", resumed.Enc, full.Enc}, {"b_dec", resumed.BDec, full.BDec}} {
		if e := relErr(c.a, c.b); e > 1e-3 {
			t.Errorf("%s resumed vs uninterrupted: rel error %.3g > 1e-3", c.name, e)
		} else {
			t.Logf("%s resumed vs uninterrupted: rel error %.2g", c.name, e)
		}
	}
}

// TestGPUBadInput: a batch of the wrong width or a larger batch than the
// trainer was sized for is an error naming it, not a crash.
func TestGPUBadInput(t *testing.T) {
	b := gpuForTest(t)
	s, err := sae.New(sae.TopK, 16, 64, 16, 4, 1)
	if err != nil {
		t.Fatal(err)
	}
	g, err := sae.NewGPUTrainable(b, sae.NewTrainable(s, sae.TrainConfig{}), 32, false)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	rng := rand.New(rand.NewPCG(1, 1))
	if _, err := g.Backward(randBatch(rng, 64, 16, 16, false), 0); err == nil {
		t.Error("a 64-row batch on a trainer sized for 32 rows: no error")
	} else {
		t.Log(err)
	}
	if _, err := g.Backward(randBatch(rng, 8, 12, 12, false), 0); err == nil {
		t.Error("a batch of width 12 for d_in 16: no error")
	} else {
		t.Log(err)
	}
	if _, err := sae.NewGPUTrainable(b, sae.NewTrainable(s, sae.TrainConfig{}), 0, false); err == nil {
		t.Error("a trainer for 0 rows: no error")
	}
}
