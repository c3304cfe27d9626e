package probe

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/loupe-dev/loupe/probe/compute"
	"github.com/loupe-dev/loupe/probe/weights"
)

// randomTensors fills every tensor a config needs with seeded noise (norm
// weights near 1), under the family's Hugging Face names.
func randomTensors(c Config, seed uint64) weights.Map {
	rng := rand.New(rand.NewPCG(seed, 7))
	ts := weights.Map{}
	put := func(name string, shape ...int) {
		d := make([]float32, compute.Numel(shape))
		for i := range d {
			d[i] = float32(rng.NormFloat64() * 0.2)
		}
		ts[name] = weights.Array{Shape: shape, Data: d}
	}
	norm := func(name string, n int) {
		d := make([]float32, n)
		for i := range d {
			d[i] = 1 + float32(rng.NormFloat64()*0.1)
		}
		ts[name] = weights.Array{Shape: []int{n}, Data: d}
	}
	D, H, Hkv, Dh, F := c.DModel, c.Heads, c.KVHeads, c.HeadDim, c.DMLP
	switch c.Family {
	case FamilyLlama, FamilyGemma3:
		put("model.embed_tokens.weight", c.Vocab, D)
		norm("model.norm.weight", D)
		if !c.TiedEmbed {
			put("lm_head.weight", c.Vocab, D)
		}
		for l := 0; l < c.Layers; l++ {
			p := fmt.Sprintf("model.layers.%d.", l)
			norm(p+"input_layernorm.weight", D)
			if c.Family == FamilyGemma3 {
				norm(p+"pre_feedforward_layernorm.weight", D)
				norm(p+"post_feedforward_layernorm.weight", D)
			}
			norm(p+"post_attention_layernorm.weight", D)
			if c.QKNorm {
				norm(p+"self_attn.q_norm.weight", Dh)
				norm(p+"self_attn.k_norm.weight", Dh)
			}
			if c.ModelType == "phi3" {
				put(p+"self_attn.qkv_proj.weight", (H+2*Hkv)*Dh, D)
				put(p+"mlp.gate_up_proj.weight", 2*F, D)
			} else {
				put(p+"self_attn.q_proj.weight", H*Dh, D)
				put(p+"self_attn.k_proj.weight", Hkv*Dh, D)
				put(p+"self_attn.v_proj.weight", Hkv*Dh, D)
				put(p+"mlp.gate_proj.weight", F, D)
				put(p+"mlp.up_proj.weight", F, D)
			}
			put(p+"self_attn.o_proj.weight", D, H*Dh)
			if c.AttnBias {
				put(p+"self_attn.q_proj.bias", H*Dh)
				put(p+"self_attn.k_proj.bias", Hkv*Dh)
				put(p+"self_attn.v_proj.bias", Hkv*Dh)
			}
			put(p+"mlp.down_proj.weight", D, F)
		}
	case FamilyGPT2:
		put("transformer.wte.weight", c.Vocab, D)
		put("transformer.wpe.weight", c.MaxPos, D)
		norm("transformer.ln_f.weight", D)
		put("transformer.ln_f.bias", D)
		for l := 0; l < c.Layers; l++ {
			p := fmt.Sprintf("transformer.h.%d.", l)
			norm(p+"ln_1.weight", D)
			put(p+"ln_1.bias", D)
			norm(p+"ln_2.weight", D)
			put(p+"ln_2.bias", D)
			put(p+"attn.c_attn.weight", D, 3*D)
			put(p+"attn.c_attn.bias", 3*D)
			put(p+"attn.c_proj.weight", D, D)
			put(p+"attn.c_proj.bias", D)
			put(p+"mlp.c_fc.weight", D, F)
			put(p+"mlp.c_fc.bias", F)
			put(p+"mlp.c_proj.weight", F, D)
			put(p+"mlp.c_proj.bias", D)
		}
	case FamilyGPTNeoX:
		put("gpt_neox.embed_in.weight", c.Vocab, D)
		norm("gpt_neox.final_layer_norm.weight", D)
		put("gpt_neox.final_layer_norm.bias", D)
		put("embed_out.weight", c.Vocab, D)
		for l := 0; l < c.Layers; l++ {
			p := fmt.Sprintf("gpt_neox.layers.%d.", l)
			norm(p+"input_layernorm.weight", D)
			put(p+"input_layernorm.bias", D)
			norm(p+"post_attention_layernorm.weight", D)
			put(p+"post_attention_layernorm.bias", D)
			put(p+"attention.query_key_value.weight", 3*D, D)
			put(p+"attention.query_key_value.bias", 3*D)
			put(p+"attention.dense.weight", D, D)
			put(p+"attention.dense.bias", D)
			put(p+"mlp.dense_h_to_4h.weight", F, D)
			put(p+"mlp.dense_h_to_4h.bias", F)
			put(p+"mlp.dense_4h_to_h.weight", D, F)
			put(p+"mlp.dense_4h_to_h.bias", D)
		}
	}
	return ts
}

// testConfigs are small models of every family and variant.
func testConfigs() map[string]Config {
	base := Config{Layers: 3, DModel: 32, Heads: 4, KVHeads: 4, HeadDim: 8, DMLP: 48, Vocab: 50, MaxPos: 64, NormEps: 1e-5, BOS: -1, EOS: -1}
	llama := base
	llama.Family, llama.Act, llama.KVHeads, llama.RopeTheta, llama.RotaryDim = FamilyLlama, "silu", 2, 10000, 8
	qwen := llama
	qwen.AttnBias, qwen.TiedEmbed = true, true
	gpt2 := base
	gpt2.Family, gpt2.Act, gpt2.TiedEmbed, gpt2.AttnBias = FamilyGPT2, "gelu_new", true, true
	neox := base
	neox.Family, neox.Act, neox.RopeTheta, neox.RotaryDim, neox.ParallelResidual, neox.AttnBias = FamilyGPTNeoX, "gelu", 10000, 2, true, true
	neoxSeq := neox
	neoxSeq.ParallelResidual = false
	qwen3 := llama
	qwen3.ModelType, qwen3.QKNorm, qwen3.HeadDim, qwen3.RotaryDim = "qwen3", true, 12, 12
	mistral := llama
	mistral.ModelType, mistral.LayerWindow = "mistral", []int{4, 4, 4}
	phi3 := llama
	phi3.ModelType, phi3.RotaryDim, phi3.LayerWindow = "phi3", 4, []int{5, 5, 5}
	gemma3 := llama
	gemma3.Family, gemma3.ModelType, gemma3.Act, gemma3.TiedEmbed = FamilyGemma3, "gemma3_text", "gelu_pytorch_tanh", true
	gemma3.QKNorm, gemma3.LayerWindow, gemma3.RopeTheta, gemma3.RopeLocalTheta = true, []int{4, 0, 4}, 1e6, 1e4
	gemma3.QueryPreAttnScalar, gemma3.EmbedScale = 12, float32(math.Sqrt(32))
	return map[string]Config{"llama": llama, "qwen2": qwen, "gpt2": gpt2, "neox": neox, "neox_seq": neoxSeq,
		"qwen3": qwen3, "mistral": mistral, "phi3": phi3, "gemma3": gemma3}
}

func newTestModel(name string) *Model {
	c := testConfigs()[name]
	m, err := New(c, randomTensors(c, 1), testBackend())
	if err != nil {
		panic(err)
	}
	return m
}
