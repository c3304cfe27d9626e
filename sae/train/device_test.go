package train_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/loupe-dev/loupe/sae/activations"
	"github.com/loupe-dev/loupe/sae/train"
)

// deviceLinear is linear as a DeviceModule: its working weights and Adam
// moments live in slices of their own (the "device"); the host copies,
// Params' Value and the trainer's Adam moments, are written only by
// SyncHost, so a trainer that forgot to sync would checkpoint zeros.
type deviceLinear struct {
	host    *linear
	dev     *linear
	adam    *train.Adam // the device's moments
	updates int
}

func newDeviceLinear(d int) *deviceLinear {
	dv := &linear{w: make([]float32, d), g: make([]float32, d)}
	return &deviceLinear{host: &linear{w: make([]float32, d), g: make([]float32, d)}, dev: dv,
		adam: train.NewAdam(dv.Params(), 0, 0, 0)}
}

func (m *deviceLinear) Params() []*train.Param { return m.host.Params() }
func (m *deviceLinear) Backward(b *activations.Batch, step int) (train.Stats, error) {
	return m.dev.Backward(b, step)
}
func (m *deviceLinear) AfterUpdate()            { panic("AfterUpdate called on a DeviceModule") }
func (m *deviceLinear) State() ([]byte, error)  { return m.host.State() }
func (m *deviceLinear) SetState(b []byte) error { return m.host.SetState(b) }

func (m *deviceLinear) Update(a *train.Adam, lr float64) error {
	m.adam.T = a.T - 1 // a.T counts this update already
	m.adam.Step(m.dev.Params(), lr)
	m.updates++
	return nil
}

func (m *deviceLinear) SyncHost(a *train.Adam) error {
	copy(m.host.w, m.dev.w)
	copy(a.M[0], m.adam.M[0])
	copy(a.V[0], m.adam.V[0])
	m.host.calls = m.dev.calls
	return nil
}

func (m *deviceLinear) SyncDevice(a *train.Adam) error {
	copy(m.dev.w, m.host.w)
	copy(m.adam.M[0], a.M[0])
	copy(m.adam.V[0], a.V[0])
	m.dev.calls = m.host.calls
	return nil
}

// TestDeviceModule runs the linear model as a DeviceModule: the trainer
// must use its Update instead of the host Adam, sync the host copies into
// every checkpoint and at the end, and sync them back on resume, which
// gives the host module's run bit for bit, straight or resumed.
func TestDeviceModule(t *testing.T) {
	dir := t.TempDir()
	hostRun, hostMod := setup(t, filepath.Join(dir, "host.ckpt"), 0, nil)
	if err := hostRun.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := bits(hostMod.w)
	mk := func(ckpt string, stopAt int, cancel func()) (*train.Trainer, *deviceLinear) {
		x, y := data(1000, 4)
		src, err := activations.NewSliceSource(x, 4, y, 1, 64, true)
		if err != nil {
			t.Fatal(err)
		}
		pipe, err := activations.NewPipeline(src, activations.Config{BatchRows: 32, BufferRows: 300, Seed: 9})
		if err != nil {
			t.Fatal(err)
		}
		mod := newDeviceLinear(4)
		cfg := train.Config{Schedule: train.Schedule{LR: 0.2, Warmup: 5, Decay: 10, Total: 60},
			Checkpoint: ckpt, CheckpointEvery: 7, Meta: "linear-test"}
		if cancel != nil {
			cfg.OnStep = func(step int, _ train.Stats) {
				if step == stopAt {
					cancel()
				}
			}
		}
		return train.New(cfg, mod, pipe), mod
	}
	straight, mod := mk(filepath.Join(dir, "a.ckpt"), 0, nil)
	if err := straight.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if mod.updates != 60 || !bytes.Equal(bits(mod.host.w), want) {
		t.Fatalf("device run: %d updates, host weights %v, want 60 and the host module's %v", mod.updates, mod.host.w, hostMod.w)
	}
	ckpt := filepath.Join(dir, "b.ckpt")
	ctx, cancel := context.WithCancel(context.Background())
	first, _ := mk(ckpt, 20, cancel)
	if err := first.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run gave %v, want context.Canceled", err)
	}
	second, mod2 := mk(ckpt, 0, nil)
	if err := second.Resume(context.Background(), ckpt); err != nil {
		t.Fatal(err)
	}
	if err := second.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bits(mod2.host.w), want) {
		t.Errorf("resumed device run: weights %v differ from the host module's %v", mod2.host.w, hostMod.w)
	}
}
