package activations

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"

	"github.com/loupe-dev/loupe/probe/compute"
)

// Batch is a training step's rows: X is Rows×Width, Y (targets) Rows×
// TargetWidth or nil. The slices belong to the Pipeline and stay valid
// until the next call to Next.
type Batch struct {
	Rows          int
	Width, TWidth int
	X, Y          []float32
	// DX and DY, when set, hold the rows on a compute backend's device
	// instead (X and Y are then nil): a pipeline fed by a GPU forward pass
	// keeps them there for a GPU trainer (see Config.Device).
	DX, DY compute.Tensor
}

// Config sizes a Pipeline.
type Config struct {
	BatchRows  int    // rows per batch
	BufferRows int    // rows shuffled together (at least BatchRows)
	Seed       uint64 // seeds the shuffle
	// OnDevice keeps the shuffling buffer and the batches on the source's
	// backend when the source is a DeviceSource (a model on a GPU): batches
	// then come as Batch.DX/DY, the same rows in the same order as without
	// it, and nothing passes through host memory. Ignored for other
	// sources.
	OnDevice bool
}

// State is where a Pipeline is, small enough to keep in every checkpoint.
type State struct {
	GenCursor int64  `json:"gen_cursor"` // source chunk at which the current generation starts
	GenRNG    []byte `json:"gen_rng"`    // the shuffle generator's state before that generation
	Served    int    `json:"served"`     // batches served from it
	Filled    bool   `json:"filled"`     // whether a generation is in the buffer
}

// Pipeline turns a Source into shuffled batches (see the package comment).
type Pipeline struct {
	src  Source
	cfg  Config
	pcg  *rand.PCG
	rng  *rand.Rand
	st   State
	bufX []float32
	bufY []float32
	perm []int
	rows int // rows in the current generation (a multiple of BatchRows)
	out  Batch

	dev          DeviceSource // set in device mode
	bufDX, bufDY compute.Tensor
}

// NewPipeline makes a pipeline over src.
func NewPipeline(src Source, cfg Config) (*Pipeline, error) {
	if cfg.BatchRows <= 0 {
		return nil, fmt.Errorf("activations: batch of %d rows", cfg.BatchRows)
	}
	if cfg.BufferRows < cfg.BatchRows {
		cfg.BufferRows = cfg.BatchRows
	}
	pcg := rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)
	p := &Pipeline{src: src, cfg: cfg, pcg: pcg, rng: rand.New(pcg)}
	p.out = Batch{Width: src.Width(), TWidth: src.TargetWidth()}
	if ds, ok := src.(DeviceSource); ok && cfg.OnDevice {
		p.dev = ds
	}
	return p, nil
}

// Close frees the device buffers of a pipeline in device mode (the garbage
// collector would, later).
func (p *Pipeline) Close() {
	if p.dev == nil {
		return
	}
	b := p.dev.Backend()
	for _, t := range []compute.Tensor{p.out.DX, p.out.DY, p.bufDX, p.bufDY} {
		if t != nil {
			compute.Free(b, t)
		}
	}
	p.out.DX, p.out.DY, p.bufDX, p.bufDY = nil, nil, nil, nil
}

// OnDevice says whether batches come as device tensors.
func (p *Pipeline) OnDevice() bool { return p.dev != nil }

// Source is the pipeline's source.
func (p *Pipeline) Source() Source { return p.src }

// Next returns the next batch; io.EOF once a finite source is exhausted
// (a last partial generation smaller than one batch is dropped).
func (p *Pipeline) Next(ctx context.Context) (*Batch, error) {
	if !p.st.Filled || p.st.Served*p.cfg.BatchRows >= p.rows {
		if err := p.fill(ctx); err != nil {
			return nil, err
		}
	}
	w, tw, n := p.out.Width, p.out.TWidth, p.cfg.BatchRows
	if p.dev != nil {
		return p.nextOnDevice()
	}
	if cap(p.out.X) < n*w {
		p.out.X = make([]float32, n*w)
		if tw > 0 {
			p.out.Y = make([]float32, n*tw)
		}
	}
	p.out.X = p.out.X[:n*w]
	idx := p.perm[p.st.Served*n : (p.st.Served+1)*n]
	for i, r := range idx {
		copy(p.out.X[i*w:(i+1)*w], p.bufX[r*w:(r+1)*w])
		if tw > 0 {
			copy(p.out.Y[i*tw:(i+1)*tw], p.bufY[r*tw:(r+1)*tw])
		}
	}
	p.out.Rows = n
	p.st.Served++
	return &p.out, nil
}

// nextOnDevice gathers the batch's rows from the device buffer.
func (p *Pipeline) nextOnDevice() (*Batch, error) {
	b := p.dev.Backend()
	n := p.cfg.BatchRows
	for _, t := range []compute.Tensor{p.out.DX, p.out.DY} {
		if t != nil {
			compute.Free(b, t)
		}
	}
	idx := p.perm[p.st.Served*n : (p.st.Served+1)*n]
	p.out.X, p.out.Y = nil, nil
	p.out.DX = b.GatherRows(p.bufDX, idx)
	if p.bufDY != nil {
		p.out.DY = b.GatherRows(p.bufDY, idx)
	}
	p.out.Rows = n
	p.st.Served++
	return &p.out, compute.Err(b)
}

// fillOnDevice is fill's reading in device mode: the chunks go into the
// device buffer.
func (p *Pipeline) fillOnDevice(ctx context.Context) (int, error) {
	b := p.dev.Backend()
	w, tw := p.out.Width, p.out.TWidth
	if p.bufDX == nil {
		capRows := p.cfg.BufferRows + p.dev.MaxChunkRows()
		p.bufDX = b.Zeros(capRows, w)
		if tw > 0 {
			p.bufDY = b.Zeros(capRows, tw)
		}
		if err := compute.Err(b); err != nil {
			return 0, fmt.Errorf("activations: the shuffling buffer on the device (%d rows): %w", capRows, err)
		}
	}
	rows := 0
	for rows < p.cfg.BufferRows {
		n, err := p.dev.NextInto(ctx, p.bufDX, p.bufDY, rows)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, err
		}
		rows += n
	}
	return rows, compute.Err(b)
}

// fill reads the next generation: whole chunks until BufferRows rows, cut
// to a multiple of the batch size after shuffling.
func (p *Pipeline) fill(ctx context.Context) error {
	rngState, err := p.pcg.MarshalBinary()
	if err != nil {
		return err
	}
	start := p.src.Cursor()
	w, tw := p.out.Width, p.out.TWidth
	p.bufX, p.bufY = p.bufX[:0], p.bufY[:0]
	rows := 0
	if p.dev != nil {
		if rows, err = p.fillOnDevice(ctx); err != nil {
			return err
		}
	}
	for p.dev == nil && rows < p.cfg.BufferRows {
		ch, err := p.src.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if len(ch.X) != ch.Rows*w || (tw > 0 && len(ch.Y) != ch.Rows*tw) {
			return fmt.Errorf("activations: chunk %d has %d/%d values for %d rows of width %d/%d", p.src.Cursor()-1, len(ch.X), len(ch.Y), ch.Rows, w, tw)
		}
		p.bufX = append(p.bufX, ch.X...)
		if tw > 0 {
			p.bufY = append(p.bufY, ch.Y...)
		}
		rows += ch.Rows
	}
	if rows < p.cfg.BatchRows {
		if start == 0 && rows == 0 {
			return fmt.Errorf("activations: the source gave no rows")
		}
		return io.EOF
	}
	p.perm = p.rng.Perm(rows)
	p.rows = rows / p.cfg.BatchRows * p.cfg.BatchRows
	p.st = State{GenCursor: start, GenRNG: rngState, Served: 0, Filled: true}
	return nil
}

// State reports where the pipeline is.
func (p *Pipeline) State() State {
	s := p.st
	s.GenRNG = append([]byte(nil), s.GenRNG...)
	if !s.Filled {
		// Nothing read yet: the next generation starts at the source's cursor
		// with the generator as it is now.
		s.GenCursor = p.src.Cursor()
		s.GenRNG, _ = p.pcg.MarshalBinary()
	}
	return s
}

// Restore puts the pipeline back where State was taken: the next batch is
// the one that would have followed.
func (p *Pipeline) Restore(ctx context.Context, s State) error {
	if err := p.src.Seek(ctx, s.GenCursor); err != nil {
		return fmt.Errorf("activations: restore: %w", err)
	}
	if len(s.GenRNG) > 0 {
		if err := p.pcg.UnmarshalBinary(s.GenRNG); err != nil {
			return fmt.Errorf("activations: restore shuffle state: %w", err)
		}
	}
	p.st = State{}
	if !s.Filled {
		return nil
	}
	if err := p.fill(ctx); err != nil {
		return fmt.Errorf("activations: restore: %w", err)
	}
	if s.Served*p.cfg.BatchRows > p.rows {
		return fmt.Errorf("activations: restore: %d batches served of a generation of %d rows", s.Served, p.rows)
	}
	p.st.Served = s.Served
	return nil
}
