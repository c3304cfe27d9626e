package train_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/loupe-dev/loupe/sae/activations"
	"github.com/loupe-dev/loupe/sae/train"
)

// linear is a tiny module for the trainer's own tests: least squares of
// y = w·x with one weight vector.
type linear struct {
	w, g  []float32
	calls int
}

func (l *linear) Params() []*train.Param {
	return []*train.Param{{Name: "w", Shape: []int{len(l.w)}, Value: l.w, Grad: l.g}}
}

func (l *linear) Backward(b *activations.Batch, step int) (train.Stats, error) {
	clear(l.g)
	var loss float64
	for r := 0; r < b.Rows; r++ {
		x := b.X[r*b.Width : (r+1)*b.Width]
		var p float32
		for i, v := range x {
			p += l.w[i] * v
		}
		e := p - b.Y[r]
		loss += float64(e * e)
		for i, v := range x {
			l.g[i] += 2 * e * v / float32(b.Rows)
		}
	}
	l.calls++
	return train.Stats{{Name: "loss", Value: loss / float64(b.Rows)}}, nil
}

func (l *linear) AfterUpdate()           {}
func (l *linear) State() ([]byte, error) { return binary.AppendUvarint(nil, uint64(l.calls)), nil }
func (l *linear) SetState(b []byte) error {
	c, n := binary.Uvarint(b)
	if n <= 0 {
		return errors.New("bad state")
	}
	l.calls = int(c)
	return nil
}

func data(rows, d int) ([]float32, []float32) {
	rng := rand.New(rand.NewPCG(5, 6))
	x := make([]float32, rows*d)
	y := make([]float32, rows)
	for r := 0; r < rows; r++ {
		for i := 0; i < d; i++ {
			x[r*d+i] = float32(rng.NormFloat64())
			y[r] += float32(i+1) * x[r*d+i]
		}
	}
	return x, y
}

func setup(t *testing.T, ckpt string, cancelAt int, cancel func()) (*train.Trainer, *linear) {
	x, y := data(1000, 4)
	src, err := activations.NewSliceSource(x, 4, y, 1, 64, true)
	if err != nil {
		t.Fatal(err)
	}
	pipe, err := activations.NewPipeline(src, activations.Config{BatchRows: 32, BufferRows: 300, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	mod := &linear{w: make([]float32, 4), g: make([]float32, 4)}
	cfg := train.Config{Schedule: train.Schedule{LR: 0.2, Warmup: 5, Decay: 10, Total: 60},
		Checkpoint: ckpt, CheckpointEvery: 7, Meta: "linear-test"}
	if cancel != nil {
		cfg.OnStep = func(step int, _ train.Stats) {
			if step == cancelAt {
				cancel()
			}
		}
	}
	return train.New(cfg, mod, pipe), mod
}

func bits(v []float32) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

// TestResumeIsBitIdentical stops a run with Ctrl-C (context cancellation)
// in the middle of a buffer generation, resumes it from the checkpoint the
// cancellation left and compares every bit with an uninterrupted run.
func TestResumeIsBitIdentical(t *testing.T) {
	dir := t.TempDir()
	straight, mod := setup(t, filepath.Join(dir, "a.ckpt"), 0, nil)
	if err := straight.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := bits(mod.w)
	if mod.w[3] < 3.5 {
		t.Fatalf("the model did not learn: w = %v", mod.w)
	}
	for _, stopAt := range []int{3, 7, 13, 40} {
		ckpt := filepath.Join(dir, "b.ckpt")
		ctx, cancel := context.WithCancel(context.Background())
		first, _ := setup(t, ckpt, stopAt, cancel)
		err := first.Run(ctx)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("stop at %d: Run gave %v, want context.Canceled", stopAt, err)
		}
		second, mod2 := setup(t, ckpt, 0, nil)
		if err := second.Resume(context.Background(), ckpt); err != nil {
			t.Fatal(err)
		}
		if second.Step() != stopAt {
			t.Fatalf("resumed at step %d, stopped at %d", second.Step(), stopAt)
		}
		if err := second.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(bits(mod2.w), want) {
			t.Errorf("stop at %d: resumed weights %v differ from the straight run's", stopAt, mod2.w)
		}
		if mod2.calls != 60 {
			t.Errorf("stop at %d: module state says %d steps, want 60", stopAt, mod2.calls)
		}
	}
}

func TestResumeRefusesAnotherRun(t *testing.T) {
	dir := t.TempDir()
	ckpt := filepath.Join(dir, "a.ckpt")
	tr, _ := setup(t, ckpt, 0, nil)
	if err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	x, y := data(100, 4)
	src, _ := activations.NewSliceSource(x, 4, y, 1, 64, true)
	pipe, _ := activations.NewPipeline(src, activations.Config{BatchRows: 32, Seed: 9})
	other := train.New(train.Config{Meta: "something else", Schedule: train.Schedule{Total: 5}}, &linear{w: make([]float32, 4), g: make([]float32, 4)}, pipe)
	if err := other.Resume(context.Background(), ckpt); err == nil {
		t.Fatal("resumed a checkpoint of another run")
	}
	if err := other.Resume(context.Background(), filepath.Join(dir, "missing")); err == nil {
		t.Fatal("resumed a missing checkpoint")
	}
}

func TestScheduleShape(t *testing.T) {
	s := train.Schedule{LR: 1, Warmup: 4, Decay: 5, Total: 20}
	want := map[int]float64{0: 0.25, 3: 1, 10: 1, 15: 1, 16: 0.8, 19: 0.2}
	for step, lr := range want {
		if got := s.At(step); math.Abs(got-lr) > 1e-12 {
			t.Errorf("step %d: lr %g, want %g", step, got, lr)
		}
	}
}

// TestAdamMatchesFormula checks two Adam steps against the update written
// out by hand from Kingma & Ba, Algorithm 1.
func TestAdamMatchesFormula(t *testing.T) {
	p := &train.Param{Name: "p", Value: []float32{1, -2}, Grad: []float32{0.5, -1}}
	a := train.NewAdam([]*train.Param{p}, 0.9, 0.999, 1e-8)
	a.Step([]*train.Param{p}, 0.1)
	p.Grad[0], p.Grad[1] = 0.25, 2
	a.Step([]*train.Param{p}, 0.1)
	ref := func(x0 float64, g []float64) float64 {
		m, v, x := 0.0, 0.0, x0
		for t, gt := range g {
			m = 0.9*m + 0.1*gt
			v = 0.999*v + 0.001*gt*gt
			mh := m / (1 - math.Pow(0.9, float64(t+1)))
			vh := v / (1 - math.Pow(0.999, float64(t+1)))
			x -= 0.1 * mh / (math.Sqrt(vh) + 1e-8)
		}
		return x
	}
	for i, want := range []float64{ref(1, []float64{0.5, 0.25}), ref(-2, []float64{-1, 2})} {
		if math.Abs(float64(p.Value[i])-want) > 1e-5 {
			t.Errorf("param %d: %g, want %g", i, p.Value[i], want)
		}
	}
}
