package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/loupe-dev/loupe/sae/activations"
	"github.com/loupe-dev/loupe/sae/internal/st"
)

// Config is one training run.
type Config struct {
	Schedule          Schedule // Total is the number of steps
	Beta1, Beta2, Eps float64  // Adam; zero values take the defaults
	// Checkpoint is the checkpoint file ("" for none). It is written every
	// CheckpointEvery steps, at the end, and when the context is cancelled.
	Checkpoint      string
	CheckpointEvery int
	// Meta is stored in every checkpoint and must match on resume (the
	// caller's description of the module and data: architecture, sizes,
	// hook, seeds), so a checkpoint is never resumed into another run.
	Meta string
	// Progress receives a live progress line; nil for none. Pass a terminal
	// only (see IsTerminal).
	Progress io.Writer
	// OnStep, when set, is called after every step with its statistics.
	OnStep func(step int, s Stats)
}

// Trainer steps a Module on batches from a Pipeline.
type Trainer struct {
	cfg   Config
	mod   Module
	pipe  *activations.Pipeline
	adam  *Adam
	step  int
	rows  int64 // rows (tokens) trained on
	last  Stats
	start time.Time
}

// New makes a trainer at step 0.
func New(cfg Config, mod Module, pipe *activations.Pipeline) *Trainer {
	return &Trainer{cfg: cfg, mod: mod, pipe: pipe, adam: NewAdam(mod.Params(), cfg.Beta1, cfg.Beta2, cfg.Eps)}
}

// Step is the number of steps done; Tokens the rows trained on.
func (t *Trainer) Step() int     { return t.step }
func (t *Trainer) Tokens() int64 { return t.rows }

// Last is the most recent step's statistics.
func (t *Trainer) Last() Stats { return t.last }

// Run trains until Schedule.Total steps are done. On cancellation it
// writes a checkpoint of the last completed step (when configured) and
// returns the context's error.
func (t *Trainer) Run(ctx context.Context) error {
	t.start = time.Now()
	startRows := t.rows
	lastDraw := time.Time{}
	params := t.mod.Params()
	for t.step < t.cfg.Schedule.Total {
		if err := ctx.Err(); err != nil {
			return t.interrupted(err)
		}
		b, err := t.pipe.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return t.interrupted(ctx.Err())
			}
			return fmt.Errorf("train: step %d: %w", t.step, err)
		}
		stats, err := t.mod.Backward(b, t.step)
		if err != nil {
			return fmt.Errorf("train: step %d: %w", t.step, err)
		}
		if dm, ok := t.mod.(DeviceModule); ok {
			t.adam.T++
			if err := dm.Update(t.adam, t.cfg.Schedule.At(t.step)); err != nil {
				return fmt.Errorf("train: step %d: %w", t.step, err)
			}
		} else {
			t.adam.Step(params, t.cfg.Schedule.At(t.step))
			t.mod.AfterUpdate()
		}
		t.step++
		t.rows += int64(b.Rows)
		t.last = stats
		if t.cfg.OnStep != nil {
			t.cfg.OnStep(t.step, stats)
		}
		if t.cfg.Progress != nil && (time.Since(lastDraw) > 250*time.Millisecond || t.step == t.cfg.Schedule.Total) {
			lastDraw = time.Now()
			rate := float64(t.rows-startRows) / time.Since(t.start).Seconds()
			fmt.Fprintf(t.cfg.Progress, "\r\x1b[Kstep %d/%d  tokens %d  %s  %.0f tok/s", t.step, t.cfg.Schedule.Total, t.rows, stats, rate)
		}
		if t.cfg.Checkpoint != "" && t.cfg.CheckpointEvery > 0 && t.step%t.cfg.CheckpointEvery == 0 && t.step < t.cfg.Schedule.Total {
			if err := t.Save(t.cfg.Checkpoint); err != nil {
				return err
			}
		}
	}
	if t.cfg.Progress != nil {
		fmt.Fprintln(t.cfg.Progress)
	}
	if t.cfg.Checkpoint != "" {
		return t.Save(t.cfg.Checkpoint)
	}
	return t.syncHost()
}

// syncHost brings a device module's host copies up to date.
func (t *Trainer) syncHost() error {
	if dm, ok := t.mod.(DeviceModule); ok {
		if err := dm.SyncHost(t.adam); err != nil {
			return fmt.Errorf("train: copying the module from the device: %w", err)
		}
	}
	return nil
}

func (t *Trainer) interrupted(cause error) error {
	if t.cfg.Progress != nil {
		fmt.Fprintln(t.cfg.Progress)
	}
	if t.cfg.Checkpoint != "" {
		if err := t.Save(t.cfg.Checkpoint); err != nil {
			return errors.Join(cause, err)
		}
		return fmt.Errorf("train: stopped at step %d, checkpoint %s: %w", t.step, t.cfg.Checkpoint, cause)
	}
	if err := t.syncHost(); err != nil {
		return errors.Join(cause, err)
	}
	return fmt.Errorf("train: stopped at step %d: %w", t.step, cause)
}

// checkpointState is the JSON in a checkpoint's metadata.
type checkpointState struct {
	Version  int               `json:"version"`
	Meta     string            `json:"meta"`
	Step     int               `json:"step"`
	Rows     int64             `json:"rows"`
	AdamT    int               `json:"adam_t"`
	Pipeline activations.State `json:"pipeline"`
	Module   []byte            `json:"module"`
}

const checkpointVersion = 1

// Save writes a checkpoint atomically: parameters, Adam moments and the
// state of the step counter, pipeline and module, as one safetensors file.
func (t *Trainer) Save(path string) error {
	if err := t.syncHost(); err != nil {
		return err
	}
	ms, err := t.mod.State()
	if err != nil {
		return fmt.Errorf("train: checkpoint: module state: %w", err)
	}
	cs := checkpointState{Version: checkpointVersion, Meta: t.cfg.Meta, Step: t.step, Rows: t.rows,
		AdamT: t.adam.T, Pipeline: t.pipe.State(), Module: ms}
	js, err := json.Marshal(cs)
	if err != nil {
		return fmt.Errorf("train: checkpoint: %w", err)
	}
	var ts []st.Tensor
	for i, p := range t.mod.Params() {
		ts = append(ts,
			st.Tensor{Name: "param." + p.Name, Shape: p.Shape, Data: p.Value},
			st.Tensor{Name: "adam_m." + p.Name, Shape: p.Shape, Data: t.adam.M[i]},
			st.Tensor{Name: "adam_v." + p.Name, Shape: p.Shape, Data: t.adam.V[i]})
	}
	return st.Write(path, ts, map[string]string{"loupe.train": string(js)})
}

// Resume loads a checkpoint written by Save into the trainer (whose module
// and pipeline must be built as for the run that wrote it: Meta must
// match) and puts the pipeline back at the batch that comes next.
func (t *Trainer) Resume(ctx context.Context, path string) error {
	f, err := st.Read(path)
	if err != nil {
		return fmt.Errorf("train: resume: %w", err)
	}
	var cs checkpointState
	if err := json.Unmarshal([]byte(f.Metadata["loupe.train"]), &cs); err != nil {
		return fmt.Errorf("train: resume %s: no training state: %w", path, err)
	}
	if cs.Version != checkpointVersion {
		return fmt.Errorf("train: resume %s: checkpoint version %d, this Loupe writes %d", path, cs.Version, checkpointVersion)
	}
	if cs.Meta != t.cfg.Meta {
		return fmt.Errorf("train: resume %s: the checkpoint is of another run:\n  checkpoint: %s\n  this run:   %s", path, cs.Meta, t.cfg.Meta)
	}
	for i, p := range t.mod.Params() {
		for _, dst := range []struct {
			prefix string
			to     []float32
		}{{"param.", p.Value}, {"adam_m.", t.adam.M[i]}, {"adam_v.", t.adam.V[i]}} {
			v, err := f.Get(path, dst.prefix+p.Name, p.Shape...)
			if err != nil {
				return fmt.Errorf("train: resume: %w", err)
			}
			copy(dst.to, v)
		}
	}
	if err := t.mod.SetState(cs.Module); err != nil {
		return fmt.Errorf("train: resume %s: module state: %w", path, err)
	}
	t.adam.T = cs.AdamT
	if dm, ok := t.mod.(DeviceModule); ok {
		if err := dm.SyncDevice(t.adam); err != nil {
			return fmt.Errorf("train: resume %s: copying the module to the device: %w", path, err)
		}
	}
	if err := t.pipe.Restore(ctx, cs.Pipeline); err != nil {
		return fmt.Errorf("train: resume %s: %w", path, err)
	}
	t.step, t.rows, t.adam.T = cs.Step, cs.Rows, cs.AdamT
	return nil
}

// IsTerminal says whether w is a terminal (a character device), the only
// place a progress line should go.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
