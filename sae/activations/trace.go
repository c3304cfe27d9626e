package activations

import (
	"context"
	"fmt"
	"io"
	"slices"

	"github.com/loupe-dev/loupe/store"
)

// TraceSource serves one hook's activations from Arrow traces written by
// `loupe trace --hooks ...` (one trace or several shards; the store
// memory-maps every file and reads one prompt's record batches at a time).
// Chunk c is the c-th (trace, prompt) pair, in file and prompt order; Tokens
// are not known and left nil.
type TraceSource struct {
	traces    []*store.Trace
	items     []traceItem
	hook      HookPoint
	width     int
	perHead   int // per-head rows: the width of one head; 0 otherwise
	skipFirst bool
	cursor    int64
}

type traceItem struct{ trace, prompt int }

// OpenTraces opens trace files for hook h. skipFirst drops position 0 of
// every prompt (its BOS token, as ModelSource does). Close releases them.
func OpenTraces(paths []string, h HookPoint, skipFirst bool) (*TraceSource, error) {
	if len(paths) == 0 {
		return nil, fmt.Errorf("activations: no trace files")
	}
	s := &TraceSource{hook: h, skipFirst: skipFirst}
	for ti, p := range paths {
		tr, err := store.Open(p)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("activations: %w", err)
		}
		s.traces = append(s.traces, tr)
		if !slices.Contains(tr.Hooks(), h.Name) {
			s.Close()
			return nil, fmt.Errorf("activations: trace %s has no activations of hook %q (it has %v)", p, h.Name, tr.Hooks())
		}
		var shape []int
		for _, info := range tr.Tables() {
			if info.Kind != store.KindActivations {
				continue
			}
			for _, e := range tr.Index() {
				if e.Table == info.Name && e.Hook == h.Name {
					shape = info.Shape
				}
			}
		}
		w := 1
		for _, d := range shape {
			w *= d
		}
		if h.Head >= 0 {
			if len(shape) != 2 || h.Head >= shape[0] {
				s.Close()
				return nil, fmt.Errorf("activations: trace %s: hook %q has rows of shape %v, no head %d", p, h.Name, shape, h.Head)
			}
			s.perHead, w = shape[1], shape[1]
		}
		if s.width != 0 && w != s.width {
			s.Close()
			return nil, fmt.Errorf("activations: trace %s: hook %q has %d features, an earlier trace %d", p, h.Name, w, s.width)
		}
		s.width = w
		for _, pr := range tr.Prompts() {
			s.items = append(s.items, traceItem{ti, pr})
		}
	}
	if len(s.items) == 0 {
		s.Close()
		return nil, fmt.Errorf("activations: the traces hold no prompts")
	}
	return s, nil
}

// Close releases the traces' memory maps.
func (s *TraceSource) Close() error {
	for _, tr := range s.traces {
		tr.Close()
	}
	return nil
}

func (s *TraceSource) Width() int       { return s.width }
func (s *TraceSource) TargetWidth() int { return 0 }
func (s *TraceSource) Cursor() int64    { return s.cursor }

// Chunks is the number of (trace, prompt) pairs.
func (s *TraceSource) Chunks() int64 { return int64(len(s.items)) }

func (s *TraceSource) Seek(_ context.Context, c int64) error {
	if c < 0 {
		return fmt.Errorf("activations: seek to chunk %d", c)
	}
	s.cursor = c
	return nil
}

// Next reads the next prompt's rows; at the end it starts over (the
// training loop stops on its token count).
func (s *TraceSource) Next(ctx context.Context) (*Chunk, error) {
	if len(s.items) == 0 {
		return nil, io.EOF
	}
	it := s.items[s.cursor%int64(len(s.items))]
	tr := s.traces[it.trace]
	acts, err := tr.ReadActivations(ctx, store.Selector{Prompts: []int{it.prompt}, Hooks: []string{s.hook.Name}})
	if err != nil {
		return nil, fmt.Errorf("activations: %w", err)
	}
	ch := &Chunk{}
	for _, a := range acts {
		row := len(a.Values) / len(a.Positions)
		for i, pos := range a.Positions {
			if s.skipFirst && pos == 0 {
				continue
			}
			v := a.Values[i*row : (i+1)*row]
			if s.perHead > 0 {
				v = v[s.hook.Head*s.perHead : (s.hook.Head+1)*s.perHead]
			}
			ch.X = append(ch.X, v...)
			ch.Rows++
		}
	}
	s.cursor++
	return ch, nil
}
