package codebook

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/loupe-dev/loupe/probe/compute"
	"github.com/loupe-dev/loupe/probe/weights"
)

// Format names the codebooks.json layout; Version is its version.
const (
	Format  = "loupe-codebooks"
	Version = 1
)

// Set is the codebook layers of one model, as one folder holds them.
type Set struct {
	Layers []*Layer
	// Meta is free-form provenance (the model, how they were trained).
	Meta map[string]any

	uploaded map[*Layer]*Tables // Upload's tables, of one backend
}

// Upload puts every layer's tables (the codes, their unit-length copies and
// the layer norms) on backend b once, for every later forward pass there.
// Call it outside a forward pass (on a GPU, tensors made inside one are
// its temporaries and end with it), and again after changing the codes;
// without it each pass uploads the tables itself.
func (s *Set) Upload(b compute.Backend) {
	s.uploaded = map[*Layer]*Tables{}
	for _, l := range s.Layers {
		s.uploaded[l] = l.Tables(b)
	}
}

// tables gives l's uploaded tables when they are on b, else makes them for
// one pass.
func (s *Set) tables(l *Layer, b compute.Backend) *Tables {
	if t := s.uploaded[l]; t != nil && t.b == b {
		return t
	}
	return l.Tables(b)
}

// layerJSON is one layer's entry in codebooks.json.
type layerJSON struct {
	Hook       string  `json:"hook"`
	Groups     int     `json:"groups"`
	Dim        int     `json:"dim"`
	NumCodes   int     `json:"num_codes"`
	K          int     `json:"k"`
	Reduce     Reduce  `json:"reduce"`
	Similarity string  `json:"similarity"`
	LayerNorm  bool    `json:"layernorm"`
	LNEps      float32 `json:"ln_eps,omitempty"`
}

type setJSON struct {
	Format    string         `json:"format"`
	Version   int            `json:"version"`
	Codebooks []layerJSON    `json:"codebooks"`
	Meta      map[string]any `json:"meta,omitempty"`
}

// Layer returns the layer at hook site, or nil.
func (s *Set) Layer(site string) *Layer {
	for _, l := range s.Layers {
		if l.Hook == site {
			return l
		}
	}
	return nil
}

// Load reads dir/codebooks.json and dir/codebooks.safetensors.
func Load(dir string) (*Set, error) {
	jsonPath := filepath.Join(dir, "codebooks.json")
	data, err := os.ReadFile(jsonPath)
	if err != nil {
		return nil, fmt.Errorf("codebooks: %w", err)
	}
	var sj setJSON
	if err := json.Unmarshal(data, &sj); err != nil {
		return nil, fmt.Errorf("codebooks %s: %w", jsonPath, err)
	}
	if sj.Format != Format || sj.Version != Version {
		return nil, fmt.Errorf("codebooks %s: format %q version %d, want %q version %d", jsonPath, sj.Format, sj.Version, Format, Version)
	}
	if len(sj.Codebooks) == 0 {
		return nil, fmt.Errorf("codebooks %s: no codebooks listed", jsonPath)
	}
	stPath := filepath.Join(dir, "codebooks.safetensors")
	wm, err := weights.Open(stPath)
	if err != nil {
		return nil, fmt.Errorf("codebooks: %w", err)
	}
	defer wm.Close()
	get := func(name string, shape ...int) ([]float32, error) {
		got, ok := wm.Tensors.Shape(name)
		if !ok {
			return nil, fmt.Errorf("codebooks %s: tensor %q missing", stPath, name)
		}
		if !slices.Equal(got, shape) {
			return nil, fmt.Errorf("codebooks %s: tensor %q is %v, codebooks.json says %v", stPath, name, got, shape)
		}
		v, err := wm.Tensors.Float32(name)
		if err != nil {
			return nil, fmt.Errorf("codebooks %s: %w", stPath, err)
		}
		return slices.Clone(v), nil
	}
	s := &Set{Meta: sj.Meta}
	for _, lj := range sj.Codebooks {
		if lj.Similarity != "" && lj.Similarity != "cosine" {
			return nil, fmt.Errorf("codebooks %s: %s: similarity %q (Loupe runs cosine codebooks)", jsonPath, lj.Hook, lj.Similarity)
		}
		if s.Layer(lj.Hook) != nil {
			return nil, fmt.Errorf("codebooks %s: two codebooks at %s", jsonPath, lj.Hook)
		}
		l := &Layer{Hook: lj.Hook, Groups: lj.Groups, Dim: lj.Dim, NumCodes: lj.NumCodes, K: lj.K, Reduce: lj.Reduce,
			LayerNorm: lj.LayerNorm, LNEps: lj.LNEps}
		if l.Groups < 1 || l.Dim < 1 || l.NumCodes < 1 {
			return nil, fmt.Errorf("codebooks %s: %s: groups %d, dim %d, codes %d must be positive", jsonPath, l.Hook, l.Groups, l.Dim, l.NumCodes)
		}
		if l.Codes, err = get(l.Hook+".codes", l.Groups, l.NumCodes, l.Dim); err != nil {
			return nil, err
		}
		if l.LayerNorm {
			if l.LNWeight, err = get(l.Hook+".ln.weight", l.Groups, l.Dim); err != nil {
				return nil, err
			}
			if l.LNBias, err = get(l.Hook+".ln.bias", l.Groups, l.Dim); err != nil {
				return nil, err
			}
		}
		if err := l.Check(); err != nil {
			return nil, fmt.Errorf("codebooks %s: %w", dir, err)
		}
		s.Layers = append(s.Layers, l)
	}
	return s, nil
}

// Exists says whether dir holds a codebook set.
func Exists(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "codebooks.json"))
	return !errors.Is(err, os.ErrNotExist)
}
