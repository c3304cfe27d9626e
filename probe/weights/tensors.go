package weights

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
)

// tensor is one stored tensor: where its bytes are and how to expand them.
type tensor struct {
	name    string // Hugging Face name
	srcName string // the name in the file, when it differs (GGUF)
	file    *mappedFile
	offset  int64 // absolute byte offset in file
	nbytes  int64
	shape   []int // Hugging Face shape
	numel   int64
	dtype   dtype
	// unpermuteHeads > 0 undoes llama.cpp's rotary row interleaving of a
	// q_proj/k_proj weight (or bias) with that many heads; see unpermute.
	unpermuteHeads int
	// minusOne subtracts 1 from every value: llama.cpp's Gemma converter
	// stores each RMSNorm weight w as 1 + w (ggml's norm multiplies by the
	// stored weight); transformers subtracts the 1 again on loading.
	minusOne bool
}

// tensorSet implements Tensors over memory-mapped files. It is safe for
// concurrent use; Close waits for Float32 calls in flight, so an unmap never
// pulls memory from under a decoder.
type tensorSet struct {
	mu     sync.RWMutex
	closed bool
	byName map[string]*tensor
	names  []string
	files  []*mappedFile
}

var errClosed = errors.New("model is closed")

func newTensorSet(files []*mappedFile, ts []*tensor) (*tensorSet, error) {
	s := &tensorSet{byName: make(map[string]*tensor, len(ts)), files: files}
	for _, t := range ts {
		if prev, dup := s.byName[t.name]; dup {
			return nil, fmt.Errorf("tensor %q appears twice (%s and %s)", t.name, prev.describe(), t.describe())
		}
		s.byName[t.name] = t
		s.names = append(s.names, t.name)
	}
	sort.Strings(s.names)
	return s, nil
}

func (t *tensor) describe() string {
	if t.srcName != "" && t.srcName != t.name {
		return fmt.Sprintf("%s as %q", t.file.path, t.srcName)
	}
	return t.file.path
}

func (s *tensorSet) Names() []string { return append([]string(nil), s.names...) }

func (s *tensorSet) Shape(name string) ([]int, bool) {
	t, ok := s.byName[name]
	if !ok {
		return nil, false
	}
	return append([]int(nil), t.shape...), true
}

func (s *tensorSet) Float32(name string) ([]float32, error) {
	t, ok := s.byName[name]
	if !ok {
		return nil, fmt.Errorf("no tensor %q", name)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, fmt.Errorf("read %s: tensor %q: %w", t.file.path, name, errClosed)
	}
	out, err := t.float32()
	if err != nil {
		return nil, fmt.Errorf("read %s: tensor %s: %w", t.file.path, t.label(), err)
	}
	return out, nil
}

// label names the tensor for errors, quoted: the HF name, and the file's
// own name when that differs, so a user can find it with a GGUF dump tool.
func (t *tensor) label() string {
	if t.srcName != "" && t.srcName != t.name {
		return fmt.Sprintf("%q (%q in the file)", t.name, t.srcName)
	}
	return fmt.Sprintf("%q", t.name)
}

func (t *tensor) float32() ([]float32, error) {
	ti, ok := types[t.dtype]
	if !ok || ti.decode == nil {
		return nil, fmt.Errorf("type %s cannot be converted to float32 (supported: F32, F16, BF16, F64, I8, I16, I32, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K)", t.dtype)
	}
	// Open checked that offset+nbytes lies inside the file and that nbytes
	// matches numel; check again so no later change can make this slice panic.
	if t.file.data == nil || t.offset < 0 || t.nbytes < 0 || t.offset+t.nbytes > int64(len(t.file.data)) {
		if t.nbytes == 0 && t.numel == 0 {
			return []float32{}, nil
		}
		return nil, fmt.Errorf("data range out of the file")
	}
	if t.numel > math.MaxInt/4 {
		return nil, fmt.Errorf("%d elements do not fit in memory on this platform", t.numel)
	}
	out := make([]float32, t.numel)
	if err := decodeAll(ti, out, t.file.data[t.offset:t.offset+t.nbytes]); err != nil {
		return nil, err
	}
	if t.unpermuteHeads > 0 {
		if err := unpermute(out, t.shape, t.unpermuteHeads); err != nil {
			return nil, err
		}
	}
	if t.minusOne {
		for i := range out {
			out[i] -= 1
		}
	}
	return out, nil
}

func (s *tensorSet) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	for _, f := range s.files {
		if err := f.unmap(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// numel multiplies out a shape, refusing negative dimensions and products
// that overflow (a corrupt header can claim anything).
func numel(shape []int64) (int64, bool) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 || d > math.MaxInt {
			return 0, false
		}
		if d != 0 && n > (1<<62)/d {
			return 0, false
		}
		n *= d
	}
	return n, true
}
