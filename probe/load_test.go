package probe

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/loupe-dev/loupe/probe/compute"
	"github.com/loupe-dev/loupe/probe/weights"
)

func TestParseConfigErrors(t *testing.T) {
	for name, tc := range map[string]struct{ json, want string }{
		"unknown architecture": {`{"model_type": "mamba", "hidden_size": 8}`, `unknown architecture model_type "mamba"`},
		"no model_type":        {`{"hidden_size": 8}`, "no model_type"},
		"not json":             {`{"model_type": `, "config.json"},
		"zero layers":          {`{"model_type": "llama", "hidden_size": 8, "num_attention_heads": 2, "intermediate_size": 4, "vocab_size": 10}`, "must be positive"},
		"bad gqa":              {`{"model_type": "llama", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 3, "num_key_value_heads": 2, "intermediate_size": 4, "vocab_size": 10}`, "not a multiple"},
		"rope scaling":         {`{"model_type": "llama", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 4, "vocab_size": 10, "rope_scaling": {"rope_type": "yarn", "factor": 2}}`, `rope_scaling: rope_type "yarn" is not supported`},
		"rope parameters":      {`{"model_type": "qwen3", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 4, "vocab_size": 10, "rope_parameters": {"rope_type": "dynamic", "rope_theta": 1e6}}`, `rope_parameters: rope_type "dynamic" is not supported`},
		"phi3 longrope":        {`{"model_type": "phi3", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 4, "vocab_size": 10, "rope_scaling": {"type": "longrope", "short_factor": [1], "long_factor": [2]}}`, `rope_scaling: rope_type "longrope" is not supported`},
		"gemma local scaling":  {`{"model_type": "gemma3_text", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 4, "vocab_size": 10, "rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 1e6}, "sliding_attention": {"rope_type": "linear", "factor": 8, "rope_theta": 1e4}}}`, "rope_parameters.sliding_attention"},
		"gemma softcap":        {`{"model_type": "gemma3_text", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 4, "vocab_size": 10, "final_logit_softcapping": 30.0}`, "final_logit_softcapping: logit soft-capping is not supported"},
		"gemma bidirectional":  {`{"model_type": "gemma3_text", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 4, "vocab_size": 10, "use_bidirectional_attention": true}`, "use_bidirectional_attention"},
		"gemma multimodal":     {`{"model_type": "gemma3", "text_config": {}}`, `only the text model, model_type "gemma3_text"`},
		"layer type":           {`{"model_type": "gemma3_text", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 4, "vocab_size": 10, "layer_types": ["chunked_attention"]}`, `layer_types[0]: "chunked_attention" is not supported`},
		"layer types count":    {`{"model_type": "gemma3_text", "hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 4, "vocab_size": 10, "layer_types": ["full_attention"]}`, "layer_types: 1 entries for 2 layers"},
		"sliding no window":    {`{"model_type": "qwen3", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 4, "vocab_size": 10, "use_sliding_window": true, "layer_types": ["sliding_attention"], "sliding_window": null}`, "sliding_window is not set"},
		"partial rotary":       {`{"model_type": "llama", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 4, "vocab_size": 10, "partial_rotary_factor": 0.5}`, "partial_rotary_factor: 0.5 is not supported for llama"},
		"mlp bias":             {`{"model_type": "llama", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 4, "vocab_size": 10, "mlp_bias": true}`, "mlp_bias"},
	} {
		_, err := ParseConfig([]byte(tc.json))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", name, err, tc.want)
		}
	}
}

func TestNewNamesTheBadTensor(t *testing.T) {
	c := testConfigs()["llama"]
	ts := randomTensors(c, 1)
	bad := ts["model.layers.1.self_attn.k_proj.weight"]
	bad.Shape = []int{c.DModel, c.DModel}
	ts["model.layers.1.self_attn.k_proj.weight"] = bad
	_, err := New(c, ts, compute.NewCPU())
	if err == nil || !strings.Contains(err.Error(), `"model.layers.1.self_attn.k_proj.weight": shape [32 32], the config implies [16 32]`) {
		t.Errorf("wrong shape: %v", err)
	}
	delete(ts, "model.layers.2.mlp.up_proj.weight")
	ts["model.layers.1.self_attn.k_proj.weight"] = weights.Array{Shape: []int{16, 32}, Data: make([]float32, 16*32)}
	if _, err := New(c, ts, compute.NewCPU()); err == nil || !strings.Contains(err.Error(), `"model.layers.2.mlp.up_proj.weight": missing`) {
		t.Errorf("missing tensor: %v", err)
	}
}

func TestLoadErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	// A directory whose config names an unknown architecture.
	src := "testdata/ref/models/gpt2"
	for _, f := range []string{"model.safetensors"} {
		data, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, f), data, 0o644)
	}
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"model_type": "rwkv"}`), 0o644)
	_, _, err := LoadModel(dir, nil)
	if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), `"rwkv"`) {
		t.Errorf("unknown architecture: %v", err)
	}
	// A model directory without a tokenizer loads for ids but not for text.
	if _, err := Load(src, nil); err == nil || !strings.Contains(err.Error(), "no tokenizer") {
		t.Errorf("missing tokenizer: %v", err)
	}
}

// A GGUF's rope_freqs.weight (llama.cpp's form of Llama-3 RoPE scaling)
// scales the frequencies exactly as rope_scaling in a config does.
func TestRopeFreqsTensorEqualsRopeScaling(t *testing.T) {
	c := testConfigs()["llama"]
	c.RopeScale = &RopeScaling{Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPos: 8}
	scaled, err := New(c, randomTensors(c, 1), compute.NewCPU())
	if err != nil {
		t.Fatal(err)
	}
	plainCfg := c
	plainCfg.RopeScale = nil
	base := plainCfg.invFreq(plainCfg.RopeTheta, true)
	ts := randomTensors(c, 1)
	divisors := make([]float32, len(base))
	for i := range divisors {
		divisors[i] = base[i] / scaled.invFreq[i]
	}
	ts["rope_freqs.weight"] = weights.Array{Shape: []int{len(divisors)}, Data: divisors}
	fromTensor, err := New(plainCfg, ts, compute.NewCPU())
	if err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(fromTensor.invFreq, scaled.invFreq); d > 1e-7 {
		t.Fatalf("inverse frequencies differ by %g", d)
	}
	if slices.Min(divisors) == slices.Max(divisors) {
		t.Fatalf("the test config does not exercise scaling: divisors %v", divisors)
	}
	if _, err := New(c, ts, compute.NewCPU()); err == nil {
		t.Fatal("rope_freqs with rope_scaling: no error")
	}
}
