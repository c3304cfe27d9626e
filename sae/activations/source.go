package activations

import (
	"context"
	"fmt"
	"io"
)

// Chunk is a block of consecutive rows from a Source. X holds Rows rows of
// Width values; Y, for sources with a target (a transcoder reads one hook
// and predicts another), Rows rows of TargetWidth values. Tokens, when the
// source knows them, gives the token id at each row.
type Chunk struct {
	Rows   int
	X, Y   []float32
	Tokens []int32
}

// Source yields rows in a fixed order. Next returns the chunk at the
// current cursor and advances it; io.EOF when there are no more. Cursor
// counts the chunks served so far, and Seek(c) makes the next call to Next
// return chunk c again, with identical values.
type Source interface {
	Width() int
	TargetWidth() int // 0 without a target
	Next(ctx context.Context) (*Chunk, error)
	Cursor() int64
	Seek(ctx context.Context, cursor int64) error
}

// SliceSource serves rows held in memory, ChunkRows at a time, cycling
// forever when Cycle is set. Tests, planted dictionaries and activations
// read from Arrow traces use it.
type SliceSource struct {
	X, Y       []float32
	W, TW      int // widths of X and Y rows
	ChunkRows  int
	Cycle      bool
	cursor     int64
	rows, nChk int
}

// NewSliceSource serves x (rows of width w) and optionally y (rows of
// width tw; nil and 0 without a target).
func NewSliceSource(x []float32, w int, y []float32, tw int, chunkRows int, cycle bool) (*SliceSource, error) {
	if w <= 0 || len(x) == 0 || len(x)%w != 0 {
		return nil, fmt.Errorf("activations: %d values are not rows of width %d", len(x), w)
	}
	rows := len(x) / w
	if y != nil && (tw <= 0 || len(y) != rows*tw) {
		return nil, fmt.Errorf("activations: target has %d values, want %d rows of width %d", len(y), rows, tw)
	}
	if chunkRows <= 0 {
		chunkRows = 256
	}
	return &SliceSource{X: x, Y: y, W: w, TW: tw, ChunkRows: chunkRows, Cycle: cycle,
		rows: rows, nChk: (rows + chunkRows - 1) / chunkRows}, nil
}

func (s *SliceSource) Width() int       { return s.W }
func (s *SliceSource) TargetWidth() int { return s.TW }
func (s *SliceSource) Cursor() int64    { return s.cursor }

func (s *SliceSource) Seek(_ context.Context, c int64) error {
	if c < 0 || (!s.Cycle && c > int64(s.nChk)) {
		return fmt.Errorf("activations: seek to chunk %d of %d", c, s.nChk)
	}
	s.cursor = c
	return nil
}

func (s *SliceSource) Next(ctx context.Context) (*Chunk, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c := s.cursor
	if c >= int64(s.nChk) {
		if !s.Cycle {
			return nil, io.EOF
		}
		c %= int64(s.nChk)
	}
	lo := int(c) * s.ChunkRows
	hi := min(lo+s.ChunkRows, s.rows)
	ch := &Chunk{Rows: hi - lo, X: s.X[lo*s.W : hi*s.W]}
	if s.Y != nil {
		ch.Y = s.Y[lo*s.TW : hi*s.TW]
	}
	s.cursor++
	return ch, nil
}

// CachedSource keeps every chunk of a cycling source in memory the first
// time it is read, so later passes over the same activations (training
// epochs over a fixed set of tokens) cost no forward pass. Chunk c and
// chunk c + Period are the same chunk.
type CachedSource struct {
	src    Source
	period int64
	chunks map[int64]*Chunk
	cursor int64
}

// NewCachedSource caches src, whose chunks repeat every period chunks.
func NewCachedSource(src Source, period int64) (*CachedSource, error) {
	if period <= 0 {
		return nil, fmt.Errorf("activations: cache period %d", period)
	}
	return &CachedSource{src: src, period: period, chunks: map[int64]*Chunk{}}, nil
}

func (c *CachedSource) Width() int       { return c.src.Width() }
func (c *CachedSource) TargetWidth() int { return c.src.TargetWidth() }
func (c *CachedSource) Cursor() int64    { return c.cursor }

// Chunks is the period: the number of distinct chunks.
func (c *CachedSource) Chunks() int64 { return c.period }

func (c *CachedSource) Seek(_ context.Context, cur int64) error {
	if cur < 0 {
		return fmt.Errorf("activations: seek to chunk %d", cur)
	}
	c.cursor = cur
	return nil
}

func (c *CachedSource) Next(ctx context.Context) (*Chunk, error) {
	key := c.cursor % c.period
	ch, ok := c.chunks[key]
	if !ok {
		if err := c.src.Seek(ctx, key); err != nil {
			return nil, err
		}
		var err error
		if ch, err = c.src.Next(ctx); err != nil {
			return nil, err
		}
		c.chunks[key] = ch
	}
	c.cursor++
	return ch, nil
}
