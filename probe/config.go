package probe

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
)

// Family names an architecture family: one forward-pass definition each.
type Family string

const (
	FamilyLlama   Family = "llama"   // Llama, Mistral, Qwen2, SmolLM: RMSNorm, RoPE, SwiGLU, GQA
	FamilyGPT2    Family = "gpt2"    // GPT-2: LayerNorm, learned positions, GELU, Conv1D weights
	FamilyGPTNeoX Family = "gptneox" // GPT-NeoX / Pythia: partial rotary, parallel attention and MLP
	FamilyGemma3  Family = "gemma3"  // Gemma 3: sandwich norms, (1 + w) RMSNorm, QK-norm, GeGLU, local/global layers
)

// Config is the architecture of a model, normalised across families.
type Config struct {
	Family    Family
	ModelType string // config.json's model_type

	Layers    int // n_layers
	DModel    int // d_model
	Heads     int // n_heads (query heads)
	KVHeads   int // key/value heads (grouped-query attention); = Heads for MHA
	HeadDim   int // d_head
	DMLP      int // MLP hidden width
	Vocab     int // d_vocab
	MaxPos    int // the context length the model was trained for
	NormEps   float64
	Act       string // hidden activation: silu, gelu, gelu_new
	TiedEmbed bool   // the unembedding is the token embedding

	RopeTheta float64 // RoPE base (rotary families)
	RotaryDim int     // dimensions of each head that are rotated (rotary families)
	RopeScale *RopeScaling

	AttnBias         bool // q/k/v projections have biases (Qwen2; GPT-2, NeoX always)
	ParallelResidual bool // NeoX: x + attn(ln1(x)) + mlp(ln2(x))

	// QKNorm: queries and keys pass an RMSNorm over each head's d_head
	// before RoPE (Qwen3, Gemma 3).
	QKNorm bool
	// LayerWindow is each layer's sliding window (a query sees the Window
	// keys up to itself), 0 for a layer of global attention; nil when every
	// layer is global.
	LayerWindow []int
	// RopeLocalTheta is the RoPE base of the sliding-window layers when it
	// differs from RopeTheta (Gemma 3: 10000 local, 1e6 global); 0 if not.
	RopeLocalTheta float64
	// QueryPreAttnScalar sets the attention scale to its -1/2 power (Gemma);
	// 0 means d_head, the usual 1/sqrt(d_head).
	QueryPreAttnScalar float64
	// EmbedScale multiplies the token embeddings (Gemma: sqrt(d_model),
	// rounded to float32); 0 means 1.
	EmbedScale float32

	BOS, EOS int // -1 when unknown
}

// RopeScaling rescales RoPE's frequencies: "llama3" (Llama 3's
// frequency-dependent rescaling) or "linear" (every frequency divided by
// Factor, i.e. positions divided by it).
type RopeScaling struct {
	Type            string  `json:"rope_type"`
	Factor          float64 `json:"factor"`
	LowFreqFactor   float64 `json:"low_freq_factor"`
	HighFreqFactor  float64 `json:"high_freq_factor"`
	OriginalMaxPos  int     `json:"original_max_position_embeddings"`
	LegacyTypeField string  `json:"type"`
}

// hfConfig holds the config.json keys of every supported family.
type hfConfig struct {
	ModelType     string   `json:"model_type"`
	Architectures []string `json:"architectures"`

	HiddenSize       int             `json:"hidden_size"`
	Intermediate     int             `json:"intermediate_size"`
	NumLayers        int             `json:"num_hidden_layers"`
	NumHeads         int             `json:"num_attention_heads"`
	NumKVHeads       int             `json:"num_key_value_heads"`
	HeadDim          int             `json:"head_dim"`
	RMSNormEps       *float64        `json:"rms_norm_eps"`
	LayerNormEps     *float64        `json:"layer_norm_eps"`
	RopeTheta        *float64        `json:"rope_theta"`
	RawRopeScaling   json.RawMessage `json:"rope_scaling"`
	RopeParameters   json.RawMessage `json:"rope_parameters"`
	MaxPos           int             `json:"max_position_embeddings"`
	VocabSize        int             `json:"vocab_size"`
	TieEmbed         *bool           `json:"tie_word_embeddings"`
	HiddenAct        string          `json:"hidden_act"`
	AttentionBias    *bool           `json:"attention_bias"`
	MLPBias          *bool           `json:"mlp_bias"`
	RotaryPct        *float64        `json:"rotary_pct"`
	PartialRotary    *float64        `json:"partial_rotary_factor"`
	RotaryEmbBase    *float64        `json:"rotary_emb_base"`
	ParallelResidual *bool           `json:"use_parallel_residual"`
	BOS              json.RawMessage `json:"bos_token_id"`
	EOS              json.RawMessage `json:"eos_token_id"`

	// Sliding-window attention (Mistral, Phi-3, Qwen2/3, Gemma 3).
	SlidingWindow        *int     `json:"sliding_window"`
	UseSlidingWindow     *bool    `json:"use_sliding_window"`
	MaxWindowLayers      *int     `json:"max_window_layers"`
	LayerTypes           []string `json:"layer_types"`
	SlidingWindowPattern *int     `json:"sliding_window_pattern"`
	SlidingPatternV5     *int     `json:"_sliding_window_pattern"`

	// Gemma's names and features.
	HiddenActivation   string          `json:"hidden_activation"`
	QueryPreAttnScalar *float64        `json:"query_pre_attn_scalar"`
	RopeLocalBaseFreq  *float64        `json:"rope_local_base_freq"`
	FinalSoftcap       json.RawMessage `json:"final_logit_softcapping"`
	AttnSoftcap        json.RawMessage `json:"attn_logit_softcapping"`
	Bidirectional      *bool           `json:"use_bidirectional_attention"`
	TextConfig         json.RawMessage `json:"text_config"`

	// GPT-2's names.
	NEmbd      int      `json:"n_embd"`
	NLayer     int      `json:"n_layer"`
	NHead      int      `json:"n_head"`
	NInner     *int     `json:"n_inner"`
	NPositions int      `json:"n_positions"`
	LNEps      *float64 `json:"layer_norm_epsilon"`
	ActFn      string   `json:"activation_function"`
}

// ropeParams is one set of RoPE parameters: transformers 5's
// rope_parameters (or one of Gemma 3's per-layer-type entries in it), or
// the legacy rope_scaling.
type ropeParams struct {
	RopeScaling
	Theta         *float64 `json:"rope_theta"`
	PartialRotary *float64 `json:"partial_rotary_factor"`
}

// parseRope reads a rope_parameters / rope_scaling object; key names it in
// errors. The scaling is nil when the type is absent or "default".
func parseRope(raw json.RawMessage, key string) (ropeParams, *RopeScaling, error) {
	var rp ropeParams
	if len(raw) == 0 || string(raw) == "null" {
		return rp, nil, nil
	}
	if err := json.Unmarshal(raw, &rp); err != nil {
		return rp, nil, fmt.Errorf("%s: %w", key, err)
	}
	if rp.Type == "" {
		rp.Type = rp.LegacyTypeField
	}
	if rp.Type == "" || rp.Type == "default" {
		return rp, nil, nil
	}
	switch rp.Type {
	case "llama3":
	case "linear":
		if rp.Factor <= 0 {
			return rp, nil, fmt.Errorf("%s: linear scaling factor %g is not positive", key, rp.Factor)
		}
	default:
		return rp, nil, fmt.Errorf("%s: rope_type %q is not supported (supported: default, linear, llama3)", key, rp.Type)
	}
	s := rp.RopeScaling
	return rp, &s, nil
}

// ParseConfig reads a Hugging Face config.json document. A key asking for a
// feature Loupe does not implement is refused, naming the key.
func ParseConfig(data []byte) (Config, error) {
	c, err := parseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("config.json: %w", err)
	}
	return c, nil
}

func parseConfig(data []byte) (Config, error) {
	var h hfConfig
	if err := json.Unmarshal(data, &h); err != nil {
		return Config{}, err
	}
	c := Config{ModelType: h.ModelType, BOS: firstID(h.BOS), EOS: firstID(h.EOS)}
	// transformers 5 moved rope_theta and rope_scaling into rope_parameters;
	// Gemma 3 keeps one set per layer type there.
	var rope *RopeScaling
	var localRope ropeParams
	var perType map[string]json.RawMessage
	if json.Unmarshal(h.RopeParameters, &perType) != nil || perType["full_attention"] == nil {
		perType = nil
	}
	globalRaw := h.RopeParameters
	if perType != nil {
		globalRaw = perType["full_attention"]
		var local *RopeScaling
		var err error
		if localRope, local, err = parseRope(perType["sliding_attention"], "rope_parameters.sliding_attention"); err != nil {
			return Config{}, err
		}
		if local != nil {
			return Config{}, fmt.Errorf("rope_parameters.sliding_attention: rope_type %q: scaling the local layers' RoPE is not supported", local.Type)
		}
	}
	key := "rope_parameters"
	if perType != nil {
		key = "rope_parameters.full_attention"
	}
	rp, s, err := parseRope(globalRaw, key)
	if err != nil {
		return Config{}, err
	}
	rope = s
	if h.RopeTheta == nil {
		h.RopeTheta = rp.Theta
	}
	if h.PartialRotary == nil {
		h.PartialRotary = rp.PartialRotary
	}
	if _, s, err := parseRope(h.RawRopeScaling, "rope_scaling"); err != nil {
		return Config{}, err
	} else if s != nil {
		rope = s
	}
	llamaLike := func() {
		c.Family = FamilyLlama
		c.DModel, c.DMLP, c.Layers = h.HiddenSize, h.Intermediate, h.NumLayers
		c.Heads, c.KVHeads, c.HeadDim = h.NumHeads, h.NumKVHeads, h.HeadDim
		c.NormEps = deref(h.RMSNormEps, 1e-6)
		c.RopeTheta = deref(h.RopeTheta, 10000)
		c.MaxPos, c.Vocab = h.MaxPos, h.VocabSize
		c.TiedEmbed = derefBool(h.TieEmbed, false)
		c.Act = orDefault(h.HiddenAct, "silu")
		c.AttnBias = derefBool(h.AttentionBias, false)
		c.RopeScale = rope
	}
	switch h.ModelType {
	case "llama", "mistral", "qwen2", "qwen3", "phi3", "smollm", "smollm2":
		llamaLike()
		c.AttnBias = c.AttnBias || h.ModelType == "qwen2"
		c.QKNorm = h.ModelType == "qwen3"
		if derefBool(h.MLPBias, false) {
			return Config{}, fmt.Errorf("mlp_bias: MLP biases are not supported")
		}
		switch h.ModelType {
		case "mistral", "phi3":
			// Every layer slides when sliding_window is set.
			if h.SlidingWindow != nil {
				c.LayerWindow = repeatWindow(c.Layers, *h.SlidingWindow)
			}
		case "qwen2", "qwen3":
			if derefBool(h.UseSlidingWindow, false) {
				types := h.LayerTypes
				if types == nil {
					// transformers: layers from max_window_layers on slide.
					from := c.Layers
					if h.MaxWindowLayers != nil {
						from = *h.MaxWindowLayers
					}
					for i := range c.Layers {
						types = append(types, map[bool]string{true: "sliding_attention", false: "full_attention"}[i >= from])
					}
				}
				if c.LayerWindow, err = layerWindows(types, h.SlidingWindow, c.Layers); err != nil {
					return Config{}, err
				}
			}
		}
	case "gemma3_text":
		llamaLike()
		c.Family = FamilyGemma3
		c.QKNorm = true
		c.TiedEmbed = derefBool(h.TieEmbed, true)
		c.Act = orDefault(h.HiddenActivation, orDefault(h.HiddenAct, "gelu_pytorch_tanh"))
		c.QueryPreAttnScalar = deref(h.QueryPreAttnScalar, 256)
		c.EmbedScale = float32(math.Sqrt(float64(c.DModel)))
		c.RopeTheta = deref(h.RopeTheta, 1000000)
		c.RopeLocalTheta = deref(h.RopeLocalBaseFreq, 10000)
		if perType != nil && localRope.Theta != nil {
			c.RopeLocalTheta = *localRope.Theta
		}
		for _, f := range []struct {
			key string
			raw json.RawMessage
		}{{"final_logit_softcapping", h.FinalSoftcap}, {"attn_logit_softcapping", h.AttnSoftcap}} {
			if len(f.raw) > 0 && string(f.raw) != "null" {
				return Config{}, fmt.Errorf("%s: logit soft-capping is not supported", f.key)
			}
		}
		if derefBool(h.Bidirectional, false) {
			return Config{}, fmt.Errorf("use_bidirectional_attention: bidirectional attention is not supported")
		}
		types := h.LayerTypes
		if types == nil {
			// transformers' default: every sliding_window_pattern-th layer is global.
			pattern := 6
			for _, p := range []*int{h.SlidingWindowPattern, h.SlidingPatternV5} {
				if p != nil {
					pattern = *p
				}
			}
			if pattern <= 0 {
				return Config{}, fmt.Errorf("sliding_window_pattern: %d is not positive", pattern)
			}
			for i := range c.Layers {
				types = append(types, map[bool]string{true: "sliding_attention", false: "full_attention"}[(i+1)%pattern != 0])
			}
		}
		window := h.SlidingWindow
		if window == nil {
			w := 4096 // transformers' default
			window = &w
		}
		if c.LayerWindow, err = layerWindows(types, window, c.Layers); err != nil {
			return Config{}, err
		}
	case "gemma3":
		return Config{}, fmt.Errorf("model_type \"gemma3\" is the multimodal Gemma 3 (text_config and a vision tower); only the text model, model_type \"gemma3_text\", is supported")
	case "gpt2":
		c.Family = FamilyGPT2
		c.DModel, c.Layers, c.Heads = h.NEmbd, h.NLayer, h.NHead
		c.KVHeads = h.NHead
		c.DMLP = 4 * h.NEmbd
		if h.NInner != nil && *h.NInner > 0 {
			c.DMLP = *h.NInner
		}
		c.NormEps = deref(h.LNEps, 1e-5)
		c.MaxPos, c.Vocab = h.NPositions, h.VocabSize
		c.TiedEmbed = true
		c.Act = orDefault(h.ActFn, "gelu_new")
		c.AttnBias = true
	case "gpt_neox":
		c.Family = FamilyGPTNeoX
		c.DModel, c.DMLP, c.Layers = h.HiddenSize, h.Intermediate, h.NumLayers
		c.Heads, c.KVHeads = h.NumHeads, h.NumHeads
		c.NormEps = deref(h.LayerNormEps, 1e-5)
		c.RopeTheta = deref(h.RopeTheta, deref(h.RotaryEmbBase, 10000))
		c.MaxPos, c.Vocab = h.MaxPos, h.VocabSize
		c.TiedEmbed = derefBool(h.TieEmbed, false)
		c.Act = orDefault(h.HiddenAct, "gelu")
		c.AttnBias = true
		c.ParallelResidual = derefBool(h.ParallelResidual, true)
		if rope != nil {
			return Config{}, fmt.Errorf("rope_scaling: RoPE scaling %q is not supported for gpt_neox", rope.Type)
		}
	case "":
		return Config{}, fmt.Errorf("no model_type")
	default:
		return Config{}, fmt.Errorf("unknown architecture model_type %q (supported: %s)", h.ModelType, strings.Join(SupportedModelTypes, ", "))
	}
	if c.HeadDim == 0 && c.Heads > 0 {
		c.HeadDim = c.DModel / c.Heads
	}
	if c.KVHeads == 0 {
		c.KVHeads = c.Heads
	}
	c.RotaryDim = c.HeadDim
	switch {
	case c.Family == FamilyGPTNeoX:
		pct := deref(h.RotaryPct, deref(h.PartialRotary, 0.25))
		c.RotaryDim = int(float64(c.HeadDim) * pct)
	case h.ModelType == "phi3":
		c.RotaryDim = int(float64(c.HeadDim) * deref(h.PartialRotary, 1))
	case h.PartialRotary != nil && *h.PartialRotary != 1:
		return Config{}, fmt.Errorf("partial_rotary_factor: %g is not supported for %s (only 1)", *h.PartialRotary, h.ModelType)
	}
	if err := c.validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// SupportedModelTypes are the config.json model_type values ParseConfig reads.
var SupportedModelTypes = []string{"llama", "mistral", "qwen2", "qwen3", "phi3", "gemma3_text", "gpt2", "gpt_neox"}

func repeatWindow(layers, window int) []int {
	w := make([]int, layers)
	for i := range w {
		w[i] = window
	}
	return w
}

// layerWindows turns transformers' layer_types into per-layer windows.
func layerWindows(types []string, window *int, layers int) ([]int, error) {
	if len(types) != layers {
		return nil, fmt.Errorf("layer_types: %d entries for %d layers", len(types), layers)
	}
	w := make([]int, layers)
	for i, t := range types {
		switch t {
		case "full_attention":
		case "sliding_attention":
			if window == nil || *window <= 0 {
				return nil, fmt.Errorf("layer_types[%d] is sliding_attention but sliding_window is not set", i)
			}
			w[i] = *window
		default:
			return nil, fmt.Errorf("layer_types[%d]: %q is not supported (supported: full_attention, sliding_attention)", i, t)
		}
	}
	return w, nil
}

// LayerNorm says whether the family's norms are LayerNorms (centre, scale,
// shift); the others use RMSNorm.
func (c Config) LayerNorm() bool {
	return c.Family == FamilyGPT2 || c.Family == FamilyGPTNeoX
}

// Window is layer i's sliding window, 0 for global attention.
func (c Config) Window(i int) int {
	if c.LayerWindow == nil {
		return 0
	}
	return c.LayerWindow[i]
}

// AttnScale is the factor of the attention scores q·k.
func (c Config) AttnScale() float32 {
	if c.QueryPreAttnScalar > 0 {
		return float32(math.Pow(c.QueryPreAttnScalar, -0.5))
	}
	return float32(1 / math.Sqrt(float64(c.HeadDim)))
}

func (c Config) validate() error {
	switch {
	case c.Layers <= 0 || c.DModel <= 0 || c.Heads <= 0 || c.Vocab <= 0 || c.DMLP <= 0:
		return fmt.Errorf("layers %d, d_model %d, heads %d, vocab %d, d_mlp %d: all must be positive", c.Layers, c.DModel, c.Heads, c.Vocab, c.DMLP)
	case c.Heads%c.KVHeads != 0:
		return fmt.Errorf("%d query heads are not a multiple of %d key/value heads", c.Heads, c.KVHeads)
	case c.RotaryDim%2 != 0:
		return fmt.Errorf("rotary dimension %d is odd", c.RotaryDim)
	case c.LayerWindow != nil && len(c.LayerWindow) != c.Layers:
		return fmt.Errorf("%d sliding windows for %d layers", len(c.LayerWindow), c.Layers)
	case c.Family == FamilyGemma3 && c.Act != "gelu_pytorch_tanh" && c.Act != "gelu":
		return fmt.Errorf("activation %q is not supported for Gemma 3 (gelu_pytorch_tanh, gelu)", c.Act)
	}
	for i, w := range c.LayerWindow {
		if w < 0 {
			return fmt.Errorf("layer %d: sliding window %d is negative", i, w)
		}
	}
	switch c.Act {
	case "silu", "gelu", "gelu_new", "gelu_pytorch_tanh":
	default:
		return fmt.Errorf("activation %q is not supported", c.Act)
	}
	return nil
}

// invFreq gives RoPE's inverse frequencies for base theta, with the
// config's scaling applied when scaled is set.
func (c Config) invFreq(theta float64, scaled bool) []float32 {
	half := c.RotaryDim / 2
	f := make([]float32, half)
	for i := range f {
		// PyTorch computes base ** (arange(0, dim, 2) / dim) in float32.
		// Rounding as PyTorch does keeps long-context angles within an ulp
		// of the reference.
		exp := float32(2*i) / float32(c.RotaryDim)
		f[i] = 1 / float32(math.Pow(float64(float32(theta)), float64(exp)))
	}
	s := c.RopeScale
	if !scaled || s == nil {
		return f
	}
	if s.Type == "linear" {
		for i, v := range f {
			f[i] = float32(float64(v) / s.Factor)
		}
	}
	if s.Type == "llama3" {
		lowWavelen := float64(s.OriginalMaxPos) / s.LowFreqFactor
		highWavelen := float64(s.OriginalMaxPos) / s.HighFreqFactor
		for i, v := range f {
			wavelen := 2 * math.Pi / float64(v)
			switch {
			case wavelen > lowWavelen:
				f[i] = float32(float64(v) / s.Factor)
			case wavelen >= highWavelen:
				smooth := (float64(s.OriginalMaxPos)/wavelen - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor)
				f[i] = float32((1-smooth)*float64(v)/s.Factor + smooth*float64(v))
			}
		}
	}
	return f
}

func firstID(raw json.RawMessage) int {
	var one int
	if json.Unmarshal(raw, &one) == nil {
		return one
	}
	var many []int
	if json.Unmarshal(raw, &many) == nil && len(many) > 0 {
		return many[0]
	}
	return -1
}

func deref(p *float64, def float64) float64 {
	if p == nil {
		return def
	}
	return *p
}

func derefBool(p *bool, def bool) bool {
	if p == nil {
		return def
	}
	return *p
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
