package codebook

import (
	"fmt"

	"github.com/loupe-dev/loupe/probe"
	"github.com/loupe-dev/loupe/probe/compute"
	"github.com/loupe-dev/loupe/probe/weights"
)

// Model is a model folder that carries its codebooks: a Hugging Face
// directory (config.json, model.safetensors) with codebooks.json and
// codebooks.safetensors beside them, as organism/tokfsm/train writes.
type Model struct {
	*probe.Model
	Weights *weights.Model
	Set     *Set
}

// LoadModel opens such a folder on backend b (the CPU when nil) and checks
// the codebooks against the model.
func LoadModel(dir string, b compute.Backend) (*Model, error) {
	m, wm, err := probe.LoadModel(dir, b)
	if err != nil {
		return nil, err
	}
	set, err := Load(dir)
	if err == nil {
		err = set.CheckModel(m.Config)
	}
	if err != nil {
		wm.Close()
		return nil, fmt.Errorf("load %s: %w", dir, err)
	}
	set.Upload(m.Backend())
	return &Model{Model: m, Weights: wm, Set: set}, nil
}

// Close releases the weight files.
func (m *Model) Close() error { return m.Weights.Close() }
