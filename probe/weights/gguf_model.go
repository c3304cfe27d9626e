package weights

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
)

// openGGUF opens a GGUF file: parses its header, maps its tensors to Hugging
// Face names and layout, and synthesizes config.json from its metadata.
func openGGUF(path string) (*Model, error) {
	mf, err := mapFile(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	var m *Model
	err = guardFault(func() (err error) {
		m, err = newGGUFModel(mf)
		return err
	})
	if err != nil {
		mf.unmap()
		return nil, err
	}
	return m, nil
}

// newGGUFModel builds the Model of a mapped GGUF file (or, in tests and
// fuzzing, of bytes in memory).
func newGGUFModel(mf *mappedFile) (*Model, error) {
	path := mf.path
	g, err := parseGGUF(mf.data)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	arch, isStr := g.kv["general.architecture"].(string)
	if !isStr {
		return nil, fmt.Errorf("open %s: metadata has no general.architecture string", path)
	}
	if !slices.Contains(SupportedGGUFArchitectures, arch) {
		return nil, fmt.Errorf("open %s: GGUF architecture %q is not supported (supported: %s)", path, arch, strings.Join(SupportedGGUFArchitectures, ", "))
	}
	meta := ggufMeta{kv: g.kv, arch: arch}
	hp, err := meta.llamaParams()
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	ts := make([]*tensor, 0, len(g.infos))
	present := map[string]bool{}
	for _, info := range g.infos {
		t := &tensor{
			name: info.name, srcName: info.name, file: mf,
			offset: g.dataAt + info.offset, nbytes: info.nbytes,
			numel: info.numel, dtype: info.typ,
		}
		// ggml lists ne[0] (the contiguous dimension) first; PyTorch lists
		// it last. The bytes are the same row-major array either way.
		t.shape = make([]int, len(info.dims))
		for i, d := range info.dims {
			t.shape[len(info.dims)-1-i] = int(d)
		}
		if hf, part, ok := ggufHFName(arch, info.name); ok {
			t.name = hf
			// Only the llama converter permutes q/k rows (for ggml's
			// adjacent-pair RoPE); qwen2, qwen3, gemma3 and phi3 use
			// ggml's NeoX RoPE and keep the Hugging Face order.
			switch {
			case arch == "llama" && part == "attn_q":
				t.unpermuteHeads = hp.heads
			case arch == "llama" && part == "attn_k":
				t.unpermuteHeads = hp.kvHeads
			}
			t.minusOne = arch == "gemma3" && strings.HasSuffix(info.name, "norm.weight")
			if t.unpermuteHeads > 0 {
				if len(t.shape) == 0 || t.shape[0]%t.unpermuteHeads != 0 || (t.shape[0]/t.unpermuteHeads)%2 != 0 {
					return nil, fmt.Errorf("open %s: tensor %s: shape %v is not %d heads of an even size", path, t.label(), t.shape, t.unpermuteHeads)
				}
			}
		}
		present[t.name] = true
		ts = append(ts, t)
	}
	set, err := newTensorSet([]*mappedFile{mf}, ts)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	m := &Model{Path: path, Format: "gguf", Tensors: set, Metadata: g.kv, close: set.close}
	m.Vocab, err = meta.vocab()
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	embed, hasEmbed := set.Shape("model.embed_tokens.weight")
	vocabSize := 0
	switch {
	case m.Vocab != nil:
		vocabSize = len(m.Vocab.Tokens)
	case hasEmbed && len(embed) == 2:
		vocabSize = embed[0]
	}
	if v, ok, err := meta.int(arch + ".vocab_size"); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	} else if ok && vocabSize == 0 {
		vocabSize = v
	}
	m.ConfigJSON, err = hp.configJSON(meta, vocabSize, present)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	h := sha256.New()
	h.Write([]byte("loupe-weights-v1 gguf\x00"))
	hashFile(h, mf, mf.data[:g.headerAt], g.dataAt)
	m.ContentHash = hex.EncodeToString(h.Sum(nil))
	return m, nil
}

// ggufMeta reads typed values from GGUF metadata. GGUF writers disagree on
// integer widths (uint32 here, int32 or uint64 there), so integer getters
// accept every integer type and check the range.
type ggufMeta struct {
	kv   map[string]any
	arch string
}

// int returns key's integer value; ok is false when the key is absent, and
// err is set when it has a non-integer type or does not fit in an int32
// (every count and id in a model does).
func (m ggufMeta) int(key string) (v int, ok bool, err error) {
	raw, ok := m.kv[key]
	if !ok {
		return 0, false, nil
	}
	var x int64
	switch n := raw.(type) {
	case uint8:
		x = int64(n)
	case int8:
		x = int64(n)
	case uint16:
		x = int64(n)
	case int16:
		x = int64(n)
	case uint32:
		x = int64(n)
	case int32:
		x = int64(n)
	case int64:
		x = n
	case uint64:
		if n > math.MaxInt32 {
			return 0, true, fmt.Errorf("metadata %q: %d is out of range", key, n)
		}
		x = int64(n)
	default:
		return 0, true, fmt.Errorf("metadata %q: want an integer, have %T", key, raw)
	}
	if x < math.MinInt32 || x > math.MaxInt32 {
		return 0, true, fmt.Errorf("metadata %q: %d is out of range", key, x)
	}
	return int(x), true, nil
}

func (m ggufMeta) float(key string) (v float64, ok bool, err error) {
	switch n := m.kv[key].(type) {
	case nil:
		return 0, false, nil
	case float32:
		return float64(n), true, nil
	case float64:
		return n, true, nil
	}
	if i, ok, err := m.int(key); ok && err == nil {
		return float64(i), true, nil
	}
	return 0, true, fmt.Errorf("metadata %q: want a number, have %T", key, m.kv[key])
}

func (m ggufMeta) str(key string) (string, bool, error) {
	raw, ok := m.kv[key]
	if !ok {
		return "", false, nil
	}
	s, isStr := raw.(string)
	if !isStr {
		return "", true, fmt.Errorf("metadata %q: want a string, have %T", key, raw)
	}
	return s, true, nil
}

func (m ggufMeta) boolean(key string) (bool, error) {
	raw, ok := m.kv[key]
	if !ok {
		return false, nil
	}
	b, isBool := raw.(bool)
	if !isBool {
		return false, fmt.Errorf("metadata %q: want a bool, have %T", key, raw)
	}
	return b, nil
}

// positive reads a required count.
func (m ggufMeta) positive(key string) (int, error) {
	v, ok, err := m.int(key)
	switch {
	case err != nil:
		return 0, err
	case !ok:
		if _, isArr := m.kv[key].([]any); isArr {
			return 0, fmt.Errorf("metadata %q: per-layer values are not supported", key)
		}
		return 0, fmt.Errorf("metadata %q is missing", key)
	case v <= 0:
		return 0, fmt.Errorf("metadata %q: %d is not positive", key, v)
	}
	return v, nil
}

// llamaParams are the <arch>.* hyperparameters of the llama-like
// architectures (llama, qwen2, qwen3, gemma3, phi3).
type llamaParams struct {
	hidden, layers, heads, kvHeads, ffn int
	headDim, rotDim, ctx                int
	slidingWindow                       int     // 0 when absent
	swaLayers                           []bool  // per layer: sliding (attention.sliding_window_pattern), nil when absent
	attnScale                           float64 // attention.scale, 0 when absent
	ropeThetaSWA                        float64 // rope.freq_base_swa, 0 when absent
	eps, ropeTheta                      float64
	ropeScaling                         map[string]any
}

func (m ggufMeta) llamaParams() (*llamaParams, error) {
	a := m.arch + "."
	p := &llamaParams{}
	var err error
	for _, f := range []struct {
		key string
		dst *int
	}{
		{"embedding_length", &p.hidden},
		{"block_count", &p.layers},
		{"attention.head_count", &p.heads},
		{"feed_forward_length", &p.ffn},
	} {
		if *f.dst, err = m.positive(a + f.key); err != nil {
			return nil, err
		}
	}
	p.kvHeads = p.heads
	if _, ok := m.kv[a+"attention.head_count_kv"]; ok {
		if p.kvHeads, err = m.positive(a + "attention.head_count_kv"); err != nil {
			return nil, err
		}
	}
	if p.heads%p.kvHeads != 0 {
		return nil, fmt.Errorf("metadata: %d attention heads are not a multiple of %d key/value heads", p.heads, p.kvHeads)
	}
	// The head size is key_length when given, else (llama, which requires
	// n_rot == head size) rope.dimension_count, else hidden/heads. The
	// rotated dimensions are rope.dimension_count, else the whole head
	// (phi3 rotates part of it).
	p.headDim = p.hidden / p.heads
	keys := []string{"attention.key_length"}
	if m.arch == "llama" {
		keys = append(keys, "rope.dimension_count")
	}
	for _, k := range keys {
		if _, ok := m.kv[a+k]; ok {
			if p.headDim, err = m.positive(a + k); err != nil {
				return nil, err
			}
			break
		}
	}
	if p.headDim == 0 {
		return nil, fmt.Errorf("metadata: hidden size %d is smaller than %d heads", p.hidden, p.heads)
	}
	p.rotDim = p.headDim
	if _, ok := m.kv[a+"rope.dimension_count"]; ok {
		if p.rotDim, err = m.positive(a + "rope.dimension_count"); err != nil {
			return nil, err
		}
	}
	if p.rotDim != p.headDim && m.arch != "phi3" {
		return nil, fmt.Errorf("metadata %q: %d rotary dimensions of %d per head: partial rotary is not supported for %s", a+"rope.dimension_count", p.rotDim, p.headDim, m.arch)
	}
	if _, ok := m.kv[a+"attention.sliding_window"]; ok {
		if p.slidingWindow, err = m.positive(a + "attention.sliding_window"); err != nil {
			return nil, err
		}
	}
	// attention.sliding_window_pattern, as gguf-py writes it: an integer n
	// (every n-th layer global, llama.cpp's set_swa_pattern) or one bool a
	// layer (true: sliding).
	key := a + "attention.sliding_window_pattern"
	switch v := m.kv[key].(type) {
	case nil:
	case []bool:
		if len(v) != p.layers {
			return nil, fmt.Errorf("metadata %q: %d entries for %d layers", key, len(v), p.layers)
		}
		p.swaLayers = v
	default:
		n, err := m.positive(key)
		if err != nil {
			return nil, err
		}
		p.swaLayers = make([]bool, p.layers)
		for i := range p.swaLayers {
			p.swaLayers[i] = i%n < n-1
		}
	}
	if p.attnScale, _, err = m.float(a + "attention.scale"); err != nil {
		return nil, err
	}
	if p.ropeThetaSWA, _, err = m.float(a + "rope.freq_base_swa"); err != nil {
		return nil, err
	}
	if p.ctx, _, err = m.int(a + "context_length"); err != nil {
		return nil, err
	}
	var ok bool
	if p.eps, ok, err = m.float(a + "attention.layer_norm_rms_epsilon"); err != nil {
		return nil, err
	} else if !ok {
		return nil, fmt.Errorf("metadata %q is missing", a+"attention.layer_norm_rms_epsilon")
	}
	if p.ropeTheta, ok, err = m.float(a + "rope.freq_base"); err != nil {
		return nil, err
	} else if !ok {
		p.ropeTheta = 10000 // llama.cpp's default
	}
	typ, hasType, err := m.str(a + "rope.scaling.type")
	if err != nil {
		return nil, err
	}
	factor, hasFactor, err := m.float(a + "rope.scaling.factor")
	if err != nil {
		return nil, err
	}
	if (hasType && typ != "none") || (!hasType && hasFactor && factor != 0 && factor != 1) {
		if !hasType {
			typ = "linear" // llama.cpp's meaning of a bare factor
		}
		p.ropeScaling = map[string]any{"rope_type": typ}
		if hasFactor {
			p.ropeScaling["factor"] = factor
		}
		if n, ok, err := m.int(a + "rope.scaling.original_context_length"); err != nil {
			return nil, err
		} else if ok {
			p.ropeScaling["original_max_position_embeddings"] = n
		}
	}
	return p, nil
}

// llamaConfig is the config.json transformers reads for the llama-like
// architectures, in LlamaConfig's key order; the keys after mlp_bias are
// those of Gemma 3, Phi-3 and Mistral-style sliding windows.
type llamaConfig struct {
	Architectures     []string       `json:"architectures"`
	ModelType         string         `json:"model_type"`
	HiddenSize        int            `json:"hidden_size"`
	IntermediateSize  int            `json:"intermediate_size"`
	NumHiddenLayers   int            `json:"num_hidden_layers"`
	NumAttentionHeads int            `json:"num_attention_heads"`
	NumKeyValueHeads  int            `json:"num_key_value_heads"`
	HeadDim           int            `json:"head_dim,omitempty"`
	HiddenAct         string         `json:"hidden_act"`
	MaxPositionEmb    int            `json:"max_position_embeddings,omitempty"`
	RMSNormEps        float64        `json:"rms_norm_eps"`
	RopeTheta         float64        `json:"rope_theta"`
	RopeScaling       map[string]any `json:"rope_scaling,omitempty"`
	VocabSize         int            `json:"vocab_size"`
	TieWordEmbeddings bool           `json:"tie_word_embeddings"`
	AttentionBias     bool           `json:"attention_bias"`
	MLPBias           bool           `json:"mlp_bias"`
	BOSTokenID        *int           `json:"bos_token_id,omitempty"`
	EOSTokenID        *int           `json:"eos_token_id,omitempty"`
	PadTokenID        *int           `json:"pad_token_id,omitempty"`

	SlidingWindow       int      `json:"sliding_window,omitempty"`
	PartialRotaryFactor float64  `json:"partial_rotary_factor,omitempty"`
	HiddenActivation    string   `json:"hidden_activation,omitempty"`
	QueryPreAttnScalar  float64  `json:"query_pre_attn_scalar,omitempty"`
	RopeLocalBaseFreq   float64  `json:"rope_local_base_freq,omitempty"`
	LayerTypes          []string `json:"layer_types,omitempty"`
	FinalLogitSoftcap   *float64 `json:"final_logit_softcapping,omitempty"`
	AttnLogitSoftcap    *float64 `json:"attn_logit_softcapping,omitempty"`
}

// ggufModelTypes: the Hugging Face model_type and class of each GGUF
// architecture.
var ggufModelTypes = map[string][2]string{
	"llama":  {"llama", "LlamaForCausalLM"},
	"qwen2":  {"qwen2", "Qwen2ForCausalLM"},
	"qwen3":  {"qwen3", "Qwen3ForCausalLM"},
	"gemma3": {"gemma3_text", "Gemma3ForCausalLM"},
	"phi3":   {"phi3", "Phi3ForCausalLM"},
}

func (p *llamaParams) configJSON(m ggufMeta, vocabSize int, present map[string]bool) ([]byte, error) {
	mt := ggufModelTypes[m.arch]
	c := llamaConfig{
		Architectures:     []string{mt[1]},
		ModelType:         mt[0],
		HiddenSize:        p.hidden,
		IntermediateSize:  p.ffn,
		NumHiddenLayers:   p.layers,
		NumAttentionHeads: p.heads,
		NumKeyValueHeads:  p.kvHeads,
		HiddenAct:         "silu",
		MaxPositionEmb:    p.ctx,
		RMSNormEps:        p.eps,
		RopeTheta:         p.ropeTheta,
		RopeScaling:       p.ropeScaling,
		VocabSize:         vocabSize,
		// llama.cpp writes no output.weight when the LM head is the
		// embedding: that absence is the only record of tying.
		TieWordEmbeddings: !present["lm_head.weight"],
		AttentionBias:     present["model.layers.0.self_attn.q_proj.bias"],
		MLPBias:           present["model.layers.0.mlp.up_proj.bias"],
	}
	if p.headDim != p.hidden/p.heads || p.hidden%p.heads != 0 {
		c.HeadDim = p.headDim
	}
	for _, name := range []string{"rope_factors_long.weight", "rope_factors_short.weight"} {
		if present[name] {
			return nil, fmt.Errorf("tensor %q: LongRoPE scaling is not supported", name)
		}
	}
	switch m.arch {
	case "phi3":
		c.SlidingWindow = p.slidingWindow
		if p.rotDim != p.headDim {
			c.PartialRotaryFactor = float64(p.rotDim) / float64(p.headDim)
		}
	case "gemma3":
		c.HeadDim = p.headDim
		c.HiddenAct = ""
		c.HiddenActivation = "gelu_pytorch_tanh"
		c.SlidingWindow = p.slidingWindow
		// llama.cpp's gemma3 graph, which a GGUF is made for, fixes what
		// the metadata may leave out: every 6th layer global, the local
		// layers' RoPE base 10000, and queries scaled by
		// 1/sqrt(head_dim), except for the 62-layer 27B model, scaled by
		// 1/sqrt(hidden/heads).
		swa := p.swaLayers
		if swa == nil {
			swa = make([]bool, p.layers)
			for i := range swa {
				swa[i] = i%6 < 5
			}
		}
		for _, sliding := range swa {
			c.LayerTypes = append(c.LayerTypes, map[bool]string{true: "sliding_attention", false: "full_attention"}[sliding])
		}
		c.RopeLocalBaseFreq = 10000
		if p.ropeThetaSWA > 0 {
			c.RopeLocalBaseFreq = p.ropeThetaSWA
		}
		c.QueryPreAttnScalar = float64(p.headDim)
		if p.layers == 62 {
			c.QueryPreAttnScalar = float64(p.hidden / p.heads)
		}
		if p.attnScale > 0 {
			c.QueryPreAttnScalar = 1 / (p.attnScale * p.attnScale)
		}
		for key, dst := range map[string]**float64{
			"final_logit_softcapping": &c.FinalLogitSoftcap,
			"attn_logit_softcapping":  &c.AttnLogitSoftcap,
		} {
			v, ok, err := m.float(m.arch + "." + key)
			if err != nil {
				return nil, err
			}
			if ok && v != 0 {
				*dst = &v
			}
		}
	}
	for _, id := range []struct {
		key string
		dst **int
	}{
		{"tokenizer.ggml.bos_token_id", &c.BOSTokenID},
		{"tokenizer.ggml.eos_token_id", &c.EOSTokenID},
		{"tokenizer.ggml.padding_token_id", &c.PadTokenID},
	} {
		v, ok, err := m.int(id.key)
		if err != nil {
			return nil, err
		}
		if ok {
			*id.dst = &v
		}
	}
	return json.MarshalIndent(c, "", "  ")
}

// vocab collects the tokenizer.ggml.* keys; nil when the file carries no
// token list.
func (m ggufMeta) vocab() (*Vocab, error) {
	raw, ok := m.kv["tokenizer.ggml.tokens"]
	if !ok {
		return nil, nil
	}
	tokens, isStrs := raw.([]string)
	if !isStrs {
		return nil, fmt.Errorf("metadata \"tokenizer.ggml.tokens\": want an array of strings, have %T", raw)
	}
	v := &Vocab{Arch: m.arch, Tokens: tokens, BOS: -1, EOS: -1, UNK: -1, PAD: -1}
	var err error
	if v.Model, _, err = m.str("tokenizer.ggml.model"); err != nil {
		return nil, err
	}
	if v.Pre, _, err = m.str("tokenizer.ggml.pre"); err != nil {
		return nil, err
	}
	if v.ChatTemplate, _, err = m.str("tokenizer.chat_template"); err != nil {
		return nil, err
	}
	if raw, ok := m.kv["tokenizer.ggml.merges"]; ok {
		if v.Merges, ok = raw.([]string); !ok {
			return nil, fmt.Errorf("metadata \"tokenizer.ggml.merges\": want an array of strings, have %T", raw)
		}
	}
	if raw, ok := m.kv["tokenizer.ggml.token_type"]; ok {
		if v.TokenTypes, err = int32s(raw); err != nil {
			return nil, fmt.Errorf("metadata \"tokenizer.ggml.token_type\": %w", err)
		}
	}
	if raw, ok := m.kv["tokenizer.ggml.scores"]; ok {
		if v.Scores, ok = raw.([]float32); !ok {
			return nil, fmt.Errorf("metadata \"tokenizer.ggml.scores\": want an array of float32, have %T", raw)
		}
	}
	for _, id := range []struct {
		key string
		dst *int
	}{
		{"tokenizer.ggml.bos_token_id", &v.BOS},
		{"tokenizer.ggml.eos_token_id", &v.EOS},
		{"tokenizer.ggml.unknown_token_id", &v.UNK},
		{"tokenizer.ggml.padding_token_id", &v.PAD},
	} {
		n, ok, err := m.int(id.key)
		if err != nil {
			return nil, err
		}
		if ok {
			*id.dst = n
		}
	}
	if v.AddBOS, err = m.boolean("tokenizer.ggml.add_bos_token"); err != nil {
		return nil, err
	}
	if v.AddEOS, err = m.boolean("tokenizer.ggml.add_eos_token"); err != nil {
		return nil, err
	}
	return v, nil
}

// int32s accepts token types stored as any integer array (the converter
// writes int32; other writers vary).
func int32s(raw any) ([]int32, error) {
	switch a := raw.(type) {
	case []int32:
		return a, nil
	case []uint32:
		return conv32(a), nil
	case []int8:
		return conv32(a), nil
	case []uint8:
		return conv32(a), nil
	case []int16:
		return conv32(a), nil
	case []uint16:
		return conv32(a), nil
	case []int64:
		return conv32(a), nil
	case []uint64:
		return conv32(a), nil
	}
	return nil, fmt.Errorf("want an array of integers, have %T", raw)
}

func conv32[T int8 | uint8 | int16 | uint16 | uint32 | int64 | uint64](a []T) []int32 {
	out := make([]int32, len(a))
	for i, x := range a {
		out[i] = int32(x)
	}
	return out
}
