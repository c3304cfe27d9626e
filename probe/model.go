package probe

import (
	"fmt"
	"slices"

	"github.com/loupe-dev/loupe/probe/compute"
	"github.com/loupe-dev/loupe/probe/weights"
)

// Model is a loaded transformer: its config and its weights on a backend.
type Model struct {
	Config Config

	backend      compute.Backend
	invFreq      []float32 // RoPE inverse frequencies (rotary families)
	invFreqLocal []float32 // those of the sliding-window layers when their base differs (Gemma 3)

	embed    compute.Tensor // [vocab, d_model]
	posEmbed compute.Tensor // [max_pos, d_model] (GPT-2)
	unembed  compute.Tensor // [vocab, d_model]: logits = x·unembedᵀ
	lnFinalW compute.Tensor
	lnFinalB compute.Tensor // nil for RMSNorm
	layers   []layer

	// blockHookNames maps a block hook suffix ("hook_resid_post") to its
	// full name in each layer, so a pass never formats names.
	blockHookNames map[string][]string
}

// layer holds one block's weights. Linear weights are [out, in]; families
// without a gate leave wGate nil, RMSNorm families leave the norm biases nil.
type layer struct {
	ln1W, ln1B, ln2W, ln2B compute.Tensor
	ln1PostW, ln2PostW     compute.Tensor // Gemma's norms after attention and MLP
	qNorm, kNorm           compute.Tensor // QK-norm weights [d_head] (Qwen3, Gemma 3)
	wq, wk, wv, wo         compute.Tensor
	bq, bk, bv, bo         compute.Tensor
	wGate, wUp, wDown      compute.Tensor
	bUp, bDown             compute.Tensor
	// wqkv = [wq; wk; wv] and wGateUp = [wGate; wUp], on a backend with
	// fused products (llama.go); wq ... wUp are then views of them.
	wqkv, wGateUp compute.Tensor
}

// Backend is the compute backend the model's weights live on.
func (m *Model) Backend() compute.Backend { return m.backend }

// NumParams counts the model's parameters (a tied unembedding once).
func (m *Model) NumParams() int {
	n := 0
	add := func(ts ...compute.Tensor) {
		for _, t := range ts {
			if t != nil {
				n += compute.Numel(t.Shape())
			}
		}
	}
	add(m.embed, m.posEmbed, m.lnFinalW, m.lnFinalB)
	if !m.Config.TiedEmbed {
		add(m.unembed)
	}
	for _, l := range m.layers {
		add(l.ln1PostW, l.ln2PostW, l.qNorm, l.kNorm)
		add(l.ln1W, l.ln1B, l.ln2W, l.ln2B, l.wq, l.wk, l.wv, l.wo, l.bq, l.bk, l.bv, l.bo, l.wGate, l.wUp, l.wDown, l.bUp, l.bDown)
	}
	return n
}

// New builds a model of the given config from tensors under their Hugging
// Face names, placing the weights on backend b.
func New(cfg Config, ts weights.Tensors, b compute.Backend) (*Model, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	// A device with a memory limit refuses weights that cannot fit before
	// any is copied.
	var shapes [][]int
	for _, n := range ts.Names() {
		if s, ok := ts.Shape(n); ok {
			shapes = append(shapes, s)
		}
	}
	if err := compute.CheckFit(b, shapes); err != nil {
		return nil, err
	}
	m := &Model{Config: cfg, backend: b}
	l := &loader{ts: ts, b: b}
	switch cfg.Family {
	case FamilyLlama:
		loadLlama(m, l)
	case FamilyGPT2:
		loadGPT2(m, l)
	case FamilyGPTNeoX:
		loadNeoX(m, l)
	case FamilyGemma3:
		loadGemma3(m, l)
	default:
		return nil, fmt.Errorf("unknown architecture family %q", cfg.Family)
	}
	if l.err != nil {
		return nil, l.err
	}
	if cfg.Family != FamilyGPT2 {
		m.invFreq = cfg.invFreq(cfg.RopeTheta, true)
		if cfg.RopeLocalTheta > 0 {
			// transformers scales only the global layers' RoPE (Gemma 3's
			// rope_scaling applies to full_attention).
			m.invFreqLocal = cfg.invFreq(cfg.RopeLocalTheta, false)
		}
		// llama.cpp stores Llama-3's RoPE scaling not in metadata but as
		// per-frequency divisors, the GGUF tensor rope_freqs.weight.
		if l.has("rope_freqs.weight") {
			if cfg.RopeScale != nil {
				return nil, fmt.Errorf("tensor \"rope_freqs.weight\": the config also sets rope_scaling; only one may scale RoPE")
			}
			f := l.host("rope_freqs.weight", cfg.RotaryDim/2)
			if l.err != nil {
				return nil, l.err
			}
			for i, d := range f {
				m.invFreq[i] /= d
			}
		}
	}
	m.blockHookNames = map[string][]string{}
	for _, suffix := range append(blockHooks[:len(blockHooks):len(blockHooks)], splitHooks...) {
		names := make([]string, cfg.Layers)
		for i := range names {
			names[i] = hookName(i, suffix)
		}
		m.blockHookNames[suffix] = names
	}
	return m, nil
}

// ropeFreqs gives layer i's RoPE inverse frequencies.
func (m *Model) ropeFreqs(i int) []float32 {
	if m.invFreqLocal != nil && m.Config.Window(i) > 0 {
		return m.invFreqLocal
	}
	return m.invFreq
}

// loader reads tensors by name, checks their shapes and keeps the first error.
type loader struct {
	ts  weights.Tensors
	b   compute.Backend
	err error
}

// has says whether a tensor exists.
func (l *loader) has(name string) bool {
	_, ok := l.ts.Shape(name)
	return ok
}

// host reads a tensor as float32 and checks its shape.
func (l *loader) host(name string, shape ...int) []float32 {
	if l.err != nil {
		return nil
	}
	got, ok := l.ts.Shape(name)
	if !ok {
		l.err = fmt.Errorf("tensor %q: missing", name)
		return nil
	}
	if !slices.Equal(got, shape) {
		l.err = fmt.Errorf("tensor %q: shape %v, the config implies %v", name, got, shape)
		return nil
	}
	data, err := l.ts.Float32(name)
	if err != nil {
		l.err = err
		return nil
	}
	return data
}

// get reads a tensor onto the backend.
func (l *loader) get(name string, shape ...int) compute.Tensor {
	data := l.host(name, shape...)
	if l.err != nil {
		return nil
	}
	t := compute.FromHostWeight(l.b, data, shape...)
	if err := compute.Err(l.b); err != nil {
		l.err = fmt.Errorf("tensor %q: %w", name, err)
		return nil
	}
	return t
}

// optional reads a tensor that a checkpoint may omit (nil when absent).
func (l *loader) optional(name string, shape ...int) compute.Tensor {
	if !l.has(name) {
		return nil
	}
	return l.get(name, shape...)
}
