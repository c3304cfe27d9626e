package activations

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/loupe-dev/loupe/probe"
	"github.com/loupe-dev/loupe/probe/compute"
)

// HookPoint names one activation: a TransformerLens hook name and, for the
// per-head hooks (attn.hook_z, attn.hook_result, attn.hook_q/k/v), one head
// or -1 for all heads side by side.
type HookPoint struct {
	Name string
	Head int
}

func (h HookPoint) String() string {
	if h.Head >= 0 {
		return fmt.Sprintf("%s[head %d]", h.Name, h.Head)
	}
	return h.Name
}

// HookWidth gives the number of features of one position at hook h of a
// model, checking that the hook exists and can feed an SAE.
func HookWidth(m *probe.Model, h HookPoint) (int, error) {
	if !slices.Contains(m.HookNames(), h.Name) {
		return 0, fmt.Errorf("hook %q: no such hook point in this model (see `loupe inspect`)", h.Name)
	}
	c := m.Config
	suffix := h.Name[strings.LastIndex(h.Name, ".")+1:]
	perHead, heads := 0, 0
	width := c.DModel
	switch suffix {
	case "hook_attn_scores", "hook_pattern", "logits":
		return 0, fmt.Errorf("hook %q: attention patterns and logits are not per-position feature vectors", h.Name)
	case "hook_pre", "hook_post", "hook_pre_linear":
		if strings.Contains(h.Name, "mlp.") {
			width = c.DMLP
		}
	case "hook_q", "hook_rot_q", "hook_z":
		perHead, heads = c.HeadDim, c.Heads
	case "hook_k", "hook_v", "hook_rot_k":
		perHead, heads = c.HeadDim, c.KVHeads
	case "hook_result":
		perHead, heads = c.DModel, c.Heads
	}
	if perHead > 0 {
		if h.Head < 0 {
			return perHead * heads, nil
		}
		if h.Head >= heads {
			return 0, fmt.Errorf("hook %q: head %d out of range [0, %d)", h.Name, h.Head, heads)
		}
		return perHead, nil
	}
	if h.Head >= 0 {
		return 0, fmt.Errorf("hook %q has no heads; --head applies to attn.hook_z, hook_result, hook_q, hook_k, hook_v", h.Name)
	}
	return width, nil
}

// ModelConfig configures a ModelSource.
type ModelConfig struct {
	Hook   HookPoint  // what the SAE reads
	Target *HookPoint // what a transcoder predicts; nil for an SAE
	// Contexts are the token sequences, all of one length (see Contexts).
	Contexts [][]int32
	// SeqsPerForward is how many contexts one forward pass (one chunk) runs.
	SeqsPerForward int
	// SkipFirst drops each context's first position (the BOS token, whose
	// residual stream is an outlier that SAEs usually leave out).
	SkipFirst bool
	// Skip, when larger, drops each context's first Skip positions: the
	// BOS and the first tokens after it, where some models put massive
	// activations (attention sinks) whose norms dwarf every other token's.
	Skip int
}

// skipped is how many leading positions of each context give no row.
func (c *ModelConfig) skipped() int {
	if c.SkipFirst {
		return max(c.Skip, 1)
	}
	return max(c.Skip, 0)
}

// ModelSource streams activations from a model's forward pass over token
// contexts. Chunk c is contexts [c·S, (c+1)·S) (S = SeqsPerForward), cycling
// over the contexts; the forward stops after the last hook it needs.
type ModelSource struct {
	m       *probe.Model
	cfg     ModelConfig
	w, tw   int
	cursor  int64
	nChunks int64
	stopAt  string // the later of the two hooks: the pass stops after it
}

// errStop ends a forward pass once every activation it was run for is read.
var errStop = errors.New("activations: enough")

// NewModelSource checks the hooks against the model and makes a source.
func NewModelSource(m *probe.Model, cfg ModelConfig) (*ModelSource, error) {
	if len(cfg.Contexts) == 0 {
		return nil, fmt.Errorf("activations: no contexts to run (empty corpus?)")
	}
	w, err := HookWidth(m, cfg.Hook)
	if err != nil {
		return nil, err
	}
	s := &ModelSource{m: m, cfg: cfg, w: w, stopAt: cfg.Hook.Name}
	if cfg.Target != nil {
		if s.tw, err = HookWidth(m, *cfg.Target); err != nil {
			return nil, err
		}
		names := m.HookNames()
		if slices.Index(names, cfg.Target.Name) > slices.Index(names, s.stopAt) {
			s.stopAt = cfg.Target.Name
		}
	}
	n := len(cfg.Contexts[0])
	for i, c := range cfg.Contexts {
		if len(c) != n {
			return nil, fmt.Errorf("activations: context %d has %d tokens, context 0 has %d", i, len(c), n)
		}
	}
	if cfg.Skip < 0 {
		return nil, fmt.Errorf("activations: cannot skip %d positions", cfg.Skip)
	}
	if k := cfg.skipped(); n <= k {
		return nil, fmt.Errorf("activations: contexts of %d tokens leave nothing after skipping the first %d", n, k)
	}
	if s.cfg.SeqsPerForward <= 0 {
		s.cfg.SeqsPerForward = 8
	}
	S := int64(s.cfg.SeqsPerForward)
	s.nChunks = (int64(len(cfg.Contexts)) + S - 1) / S
	return s, nil
}

func (s *ModelSource) Width() int       { return s.w }
func (s *ModelSource) TargetWidth() int { return s.tw }
func (s *ModelSource) Cursor() int64    { return s.cursor }

// Chunks is the number of distinct chunks before the source cycles.
func (s *ModelSource) Chunks() int64 { return s.nChunks }

// RowsPerContext is how many rows each context gives.
func (s *ModelSource) RowsPerContext() int { return len(s.cfg.Contexts[0]) - s.cfg.skipped() }

// FirstPosition is the context position of each context's first row.
func (s *ModelSource) FirstPosition() int { return s.cfg.skipped() }

func (s *ModelSource) Seek(_ context.Context, c int64) error {
	if c < 0 {
		return fmt.Errorf("activations: seek to chunk %d", c)
	}
	s.cursor = c
	return nil
}

func (s *ModelSource) Next(ctx context.Context) (*Chunk, error) {
	batch := s.chunkTokens()
	x, y, err := s.run(ctx, batch)
	if err != nil {
		return nil, err
	}
	T := len(batch[0])
	first := s.cfg.skipped()
	rows := len(batch) * (T - first)
	ch := &Chunk{Rows: rows, X: make([]float32, 0, rows*s.w), Tokens: make([]int32, 0, rows)}
	if s.tw > 0 {
		ch.Y = make([]float32, 0, rows*s.tw)
	}
	for b := range batch {
		for t := first; t < T; t++ {
			r := b*T + t
			ch.X = append(ch.X, x[r*s.w:(r+1)*s.w]...)
			if s.tw > 0 {
				ch.Y = append(ch.Y, y[r*s.tw:(r+1)*s.tw]...)
			}
			ch.Tokens = append(ch.Tokens, int32(batch[b][t]))
		}
	}
	s.cursor++
	return ch, nil
}

// run does one forward pass and returns the activations at the source's
// hooks, [B*T, width] each, stopping the pass after the last of them.
func (s *ModelSource) run(ctx context.Context, batch [][]int) (x, y []float32, err error) {
	var edits []probe.Edit
	capture := func(h HookPoint, dst *[]float32) {
		edits = append(edits, probe.Edit{Hook: h.Name, Fn: func(b compute.Backend, name string, t compute.Tensor, shape []int) (compute.Tensor, error) {
			*dst = headColumns(b, t, shape, h.Head)
			if name == s.stopAt {
				return t, errStop
			}
			return t, nil
		}})
	}
	capture(s.cfg.Hook, &x)
	if s.cfg.Target != nil {
		if s.cfg.Target.Name == s.cfg.Hook.Name {
			return nil, nil, fmt.Errorf("activations: the transcoder's input and target are both %s", s.cfg.Hook.Name)
		}
		capture(*s.cfg.Target, &y)
	}
	_, err = s.m.Forward(ctx, batch, probe.Options{Hooks: &probe.Hooks{Edit: edits}, Logits: probe.LogitsNone})
	if err != nil && !errors.Is(err, errStop) {
		return nil, nil, fmt.Errorf("activations: forward: %w", err)
	}
	if x == nil || (s.cfg.Target != nil && y == nil) {
		return nil, nil, fmt.Errorf("activations: the forward pass did not reach hook %s", s.stopAt)
	}
	return x, y, nil
}

// headColumns copies an activation [rows, cols] to the host, keeping only
// head's columns when head >= 0 (shape is [B, T, H, d]).
func headColumns(b compute.Backend, t compute.Tensor, shape []int, head int) []float32 {
	if head < 0 {
		return b.ToHost(t)
	}
	d := shape[len(shape)-1]
	return b.ToHost(b.Columns(t, head*d, (head+1)*d))
}

// DeviceSource is a Source that can write its rows straight into tensors
// on its backend (a model's forward pass on a GPU), so that a trainer on
// the same device is fed without a copy through host memory. The rows are
// those Next would give, in the same order.
type DeviceSource interface {
	Source
	// Backend is where the rows are written.
	Backend() compute.Backend
	// MaxChunkRows bounds the rows of one chunk.
	MaxChunkRows() int
	// NextInto writes the chunk at the cursor into rows [off, off+n) of x
	// (and of y, for a source with a target), returns n and advances the
	// cursor.
	NextInto(ctx context.Context, x, y compute.Tensor, off int) (int, error)
}

// Backend is the model's backend.
func (s *ModelSource) Backend() compute.Backend { return s.m.Backend() }

// MaxChunkRows is the rows of a full chunk.
func (s *ModelSource) MaxChunkRows() int { return s.cfg.SeqsPerForward * s.RowsPerContext() }

// NextInto runs the chunk's forward pass and copies the hook's activations
// into x (and the target's into y) on the model's backend, from inside the
// pass: nothing goes to the host.
func (s *ModelSource) NextInto(ctx context.Context, x, y compute.Tensor, off int) (int, error) {
	batch := s.chunkTokens()
	T := len(batch[0])
	first := s.cfg.skipped()
	var keep []int // the rows kept: every position but the skipped ones of each context
	if first > 0 {
		for b := range batch {
			for t := first; t < T; t++ {
				keep = append(keep, b*T+t)
			}
		}
	}
	rows := len(batch) * (T - first)
	put := func(h HookPoint, dst compute.Tensor, done *bool) probe.Edit {
		return probe.Edit{Hook: h.Name, Fn: func(b compute.Backend, name string, t compute.Tensor, shape []int) (compute.Tensor, error) {
			src := t
			if h.Head >= 0 {
				d := shape[len(shape)-1]
				src = b.Columns(t, h.Head*d, (h.Head+1)*d)
			}
			if keep != nil {
				src = b.GatherRows(src, keep)
			}
			b.CopyRowsInPlace(dst, src, off)
			*done = true
			if name == s.stopAt {
				return t, errStop
			}
			return t, nil
		}}
	}
	var gotX, gotY bool
	edits := []probe.Edit{put(s.cfg.Hook, x, &gotX)}
	if s.cfg.Target != nil {
		if s.cfg.Target.Name == s.cfg.Hook.Name {
			return 0, fmt.Errorf("activations: the transcoder's input and target are both %s", s.cfg.Hook.Name)
		}
		if y == nil {
			return 0, fmt.Errorf("activations: a transcoder source needs a target tensor")
		}
		edits = append(edits, put(*s.cfg.Target, y, &gotY))
	}
	_, err := s.m.Forward(ctx, batch, probe.Options{Hooks: &probe.Hooks{Edit: edits}, Logits: probe.LogitsNone})
	if err != nil && !errors.Is(err, errStop) {
		return 0, fmt.Errorf("activations: forward: %w", err)
	}
	if !gotX || (s.cfg.Target != nil && !gotY) {
		return 0, fmt.Errorf("activations: the forward pass did not reach hook %s", s.stopAt)
	}
	s.cursor++
	return rows, nil
}

// chunkTokens gives the contexts of the chunk at the cursor.
func (s *ModelSource) chunkTokens() [][]int {
	c := s.cursor % s.nChunks
	S := s.cfg.SeqsPerForward
	lo := int(c) * S
	hi := min(lo+S, len(s.cfg.Contexts))
	batch := make([][]int, hi-lo)
	for i := range batch {
		ctxt := s.cfg.Contexts[lo+i]
		batch[i] = make([]int, len(ctxt))
		for j, id := range ctxt {
			batch[i][j] = int(id)
		}
	}
	return batch
}

var _ DeviceSource = (*ModelSource)(nil)
