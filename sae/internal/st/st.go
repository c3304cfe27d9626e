// Package st writes safetensors files (float32 tensors plus string
// metadata) atomically, and reads back the float32 files it wrote: the
// checkpoints of sae/train and the weights of an exported SAE. Files made
// elsewhere (float16, bfloat16, sharded) are read through probe/weights.
//
// The layout is the safetensors one: an 8-byte little-endian header length
// N, N bytes of JSON {name: {"dtype", "shape", "data_offsets": [begin, end]},
// "__metadata__": {string: string}}, then the tensor bytes, little-endian,
// offsets relative to the end of the header. The header is padded with
// spaces to a multiple of 8 bytes, as the reference writer does.
package st

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"

	"github.com/loupe-dev/loupe/internal/atomicfile"
)

// Tensor is one named float32 tensor.
type Tensor struct {
	Name  string
	Shape []int
	Data  []float32
}

type entry struct {
	Dtype       string  `json:"dtype"`
	Shape       []int   `json:"shape"`
	DataOffsets []int64 `json:"data_offsets"`
}

// maxHeader bounds the JSON header we accept (the reference reader's limit).
const maxHeader = 100 << 20

// Write stores tensors (in name order, as the reference writer does) and
// metadata at path: it writes a temporary file in the same directory,
// fsyncs it and renames it over path, so path is either the old file or the
// complete new one.
func Write(path string, tensors []Tensor, metadata map[string]string) error {
	ts := append([]Tensor(nil), tensors...)
	sort.Slice(ts, func(i, j int) bool { return ts[i].Name < ts[j].Name })
	header := map[string]any{}
	if len(metadata) > 0 {
		header["__metadata__"] = metadata
	}
	var off int64
	for _, t := range ts {
		n := 1
		for _, d := range t.Shape {
			n *= d
		}
		if n != len(t.Data) {
			return fmt.Errorf("write %s: tensor %q has %d values for shape %v", path, t.Name, len(t.Data), t.Shape)
		}
		if _, dup := header[t.Name]; dup {
			return fmt.Errorf("write %s: tensor %q appears twice", path, t.Name)
		}
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		header[t.Name] = entry{Dtype: "F32", Shape: shape, DataOffsets: []int64{off, off + 4*int64(n)}}
		off += 4 * int64(n)
	}
	hj, err := json.Marshal(header)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	for len(hj)%8 != 0 {
		hj = append(hj, ' ')
	}
	return atomicfile.Write(path, func(w io.Writer) error {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(hj)))
		if _, err := w.Write(n[:]); err != nil {
			return err
		}
		if _, err := w.Write(hj); err != nil {
			return err
		}
		buf := make([]byte, 0, 1<<16)
		for _, t := range ts {
			for _, v := range t.Data {
				buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
				if len(buf) == cap(buf) {
					if _, err := w.Write(buf); err != nil {
						return err
					}
					buf = buf[:0]
				}
			}
		}
		_, err := w.Write(buf)
		return err
	})
}

// File is a read safetensors file: its tensors by name and its metadata.
type File struct {
	Tensors  map[string]Tensor
	Metadata map[string]string
}

// Read reads a float32 safetensors file whole. Every inconsistency (a short
// file, a header past the end, overlapping or out-of-range offsets, another
// dtype) is an error naming the file and the tensor.
func Read(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) < 8 {
		return nil, fmt.Errorf("read %s: %d bytes, too short for a safetensors header", path, len(b))
	}
	hn := binary.LittleEndian.Uint64(b)
	if hn > maxHeader || hn > uint64(len(b)-8) {
		return nil, fmt.Errorf("read %s: header of %d bytes does not fit in the %d-byte file (truncated?)", path, hn, len(b))
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b[8:8+hn], &raw); err != nil {
		return nil, fmt.Errorf("read %s: header: %w", path, err)
	}
	data := b[8+hn:]
	out := &File{Tensors: map[string]Tensor{}, Metadata: map[string]string{}}
	type span struct {
		lo, hi int64
		name   string
	}
	var spans []span
	for name, r := range raw {
		if name == "__metadata__" {
			if err := json.Unmarshal(r, &out.Metadata); err != nil {
				return nil, fmt.Errorf("read %s: __metadata__: %w", path, err)
			}
			continue
		}
		var e entry
		if err := json.Unmarshal(r, &e); err != nil {
			return nil, fmt.Errorf("read %s: tensor %q: %w", path, name, err)
		}
		if e.Dtype != "F32" {
			return nil, fmt.Errorf("read %s: tensor %q is %s; only F32 is read here", path, name, e.Dtype)
		}
		n := int64(1)
		for _, d := range e.Shape {
			if d < 0 || d > 1<<40 {
				return nil, fmt.Errorf("read %s: tensor %q: bad shape %v", path, name, e.Shape)
			}
			n *= int64(d)
		}
		if len(e.DataOffsets) != 2 || e.DataOffsets[0] < 0 || e.DataOffsets[1] < e.DataOffsets[0] {
			return nil, fmt.Errorf("read %s: tensor %q: bad data_offsets %v", path, name, e.DataOffsets)
		}
		lo, hi := e.DataOffsets[0], e.DataOffsets[1]
		if hi-lo != 4*n {
			return nil, fmt.Errorf("read %s: tensor %q: %d bytes for shape %v", path, name, hi-lo, e.Shape)
		}
		if hi > int64(len(data)) {
			return nil, fmt.Errorf("read %s: tensor %q ends at byte %d of %d (truncated file)", path, name, hi, len(data))
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[lo+4*int64(i):]))
		}
		out.Tensors[name] = Tensor{Name: name, Shape: e.Shape, Data: v}
		spans = append(spans, span{lo, hi, name})
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].lo < spans[j].lo })
	for i := 1; i < len(spans); i++ {
		if spans[i].lo < spans[i-1].hi {
			return nil, fmt.Errorf("read %s: tensors %q and %q overlap", path, spans[i-1].name, spans[i].name)
		}
	}
	return out, nil
}

// Get returns a tensor of the expected shape, or an error naming it.
func (f *File) Get(path, name string, shape ...int) ([]float32, error) {
	t, ok := f.Tensors[name]
	if !ok {
		return nil, fmt.Errorf("%s: tensor %q missing", path, name)
	}
	if len(t.Shape) != len(shape) {
		return nil, fmt.Errorf("%s: tensor %q has shape %v, want %v", path, name, t.Shape, shape)
	}
	for i := range shape {
		if t.Shape[i] != shape[i] {
			return nil, fmt.Errorf("%s: tensor %q has shape %v, want %v", path, name, t.Shape, shape)
		}
	}
	return t.Data, nil
}
