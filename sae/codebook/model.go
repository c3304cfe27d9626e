package codebook

import (
	"fmt"

	"github.com/loupe-dev/loupe/probe"
	"github.com/loupe-dev/loupe/probe/compute"
	"github.com/loupe-dev/loupe/probe/tokenizer"
	"github.com/loupe-dev/loupe/probe/weights"
)

// Model is a model folder that carries its codebooks: a Hugging Face
// directory (config.json, model.safetensors) with codebooks.json and
// codebooks.safetensors beside them, as organism/tokfsm/train writes
// (train_text.py adds tokenizer.json).
type Model struct {
	*probe.Model
	Weights *weights.Model
	Set     *Set
	// Tokenizer is the folder's tokenizer.json; nil when it has none (the
	// TokFSM model's tokens are its digits).
	Tokenizer *tokenizer.Tokenizer
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
	var tok *tokenizer.Tokenizer
	if wm.TokenizerJSON != "" {
		if tok, err = tokenizer.FromFile(wm.TokenizerJSON); err != nil {
			wm.Close()
			return nil, fmt.Errorf("load %s: %w", dir, err)
		}
	}
	set.Upload(m.Backend())
	return &Model{Model: m, Weights: wm, Set: set, Tokenizer: tok}, nil
}

// Close releases the weight files.
func (m *Model) Close() error { return m.Weights.Close() }
