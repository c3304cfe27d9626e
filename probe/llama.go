package probe

import (
	"fmt"

	"github.com/loupe-dev/loupe/probe/compute"
)

// The Llama family: Llama 1-3, Mistral, Qwen2, Qwen3, Phi-3, SmolLM.
//
//	x = embed[ids]
//	per block:  x = x + attn(rmsnorm₁(x))      (RoPE on q and k, GQA)
//	            x = x + W_down(silu(W_gate n) ⊙ W_up n),  n = rmsnorm₂(x)
//	logits = rmsnorm_f(x) · W_Uᵀ   (W_U = embed when tied)
//
// The members differ only in details that the config carries: q/k/v biases
// (Qwen2), an RMSNorm over each head's queries and keys before RoPE (Qwen3),
// a sliding attention window (Mistral, Phi-3, Qwen with use_sliding_window),
// partial rotary (Phi-3), and Phi-3's checkpoint layout, which fuses q, k, v
// into one qkv_proj and gate, up into one gate_up_proj: they are split on
// load, so the forward pass is the same for all.

func loadLlama(m *Model, l *loader) {
	c := m.Config
	D, Dh := c.DModel, c.HeadDim
	loadEmbedUnembed(m, l)
	m.lnFinalW = l.get("model.norm.weight", D)
	m.layers = make([]layer, c.Layers)
	for i := range m.layers {
		p := fmt.Sprintf("model.layers.%d.", i)
		ly := &m.layers[i]
		ly.ln1W = l.get(p+"input_layernorm.weight", D)
		ly.ln2W = l.get(p+"post_attention_layernorm.weight", D)
		if c.ModelType == "phi3" {
			loadPhi3Fused(l, ly, p, c)
		} else {
			ly.wq = l.get(p+"self_attn.q_proj.weight", c.Heads*Dh, D)
			ly.wk = l.get(p+"self_attn.k_proj.weight", c.KVHeads*Dh, D)
			ly.wv = l.get(p+"self_attn.v_proj.weight", c.KVHeads*Dh, D)
			ly.wGate = l.get(p+"mlp.gate_proj.weight", c.DMLP, D)
			ly.wUp = l.get(p+"mlp.up_proj.weight", c.DMLP, D)
		}
		ly.wo = l.get(p+"self_attn.o_proj.weight", D, c.Heads*Dh)
		ly.bq = l.optional(p+"self_attn.q_proj.bias", c.Heads*Dh)
		ly.bk = l.optional(p+"self_attn.k_proj.bias", c.KVHeads*Dh)
		ly.bv = l.optional(p+"self_attn.v_proj.bias", c.KVHeads*Dh)
		ly.bo = l.optional(p+"self_attn.o_proj.bias", D)
		ly.wDown = l.get(p+"mlp.down_proj.weight", D, c.DMLP)
		if c.QKNorm {
			ly.qNorm = l.get(p+"self_attn.q_norm.weight", Dh)
			ly.kNorm = l.get(p+"self_attn.k_norm.weight", Dh)
		}
		if c.AttnBias && ly.bq == nil && l.err == nil {
			l.err = fmt.Errorf("tensor %q: missing (the config asks for attention biases)", p+"self_attn.q_proj.bias")
		}
	}
}

// loadPhi3Fused splits Phi-3's qkv_proj [(H + 2·Hkv)·d_head, D] into q, k
// and v (in that order along the rows) and gate_up_proj [2·d_mlp, D] into
// gate and up, as Phi3Attention and Phi3MLP slice them.
func loadPhi3Fused(l *loader, ly *layer, p string, c Config) {
	D, Dh := c.DModel, c.HeadDim
	q, kv := c.Heads*Dh, c.KVHeads*Dh
	qkv := l.host(p+"self_attn.qkv_proj.weight", q+2*kv, D)
	gateUp := l.host(p+"mlp.gate_up_proj.weight", 2*c.DMLP, D)
	if l.err != nil {
		return
	}
	ly.wq = l.b.FromHost(qkv[:q*D], q, D)
	ly.wk = l.b.FromHost(qkv[q*D:(q+kv)*D], kv, D)
	ly.wv = l.b.FromHost(qkv[(q+kv)*D:], kv, D)
	ly.wGate = l.b.FromHost(gateUp[:c.DMLP*D], c.DMLP, D)
	ly.wUp = l.b.FromHost(gateUp[c.DMLP*D:], c.DMLP, D)
}

func (p *pass) llamaBlock(i int, x tensor) tensor {
	m, b, ly := p.m, p.b, &p.m.layers[i]
	eps := float32(m.Config.NormEps)
	x = p.hook(i, "hook_resid_pre", x, p.resid())
	n1 := p.hook(i, "ln1.hook_normalized", b.RMSNorm(x, ly.ln1W, eps), p.resid())
	norm1 := func(t tensor) tensor { return b.RMSNorm(t, ly.ln1W, eps) }
	var mid tensor
	if p.fusesResidual(i, "hook_attn_out") && !p.hooks.edits(p.name(i, "hook_attn_in")) && !p.hooks.active(p.name(i, "attn.hook_result")) {
		// Nothing reads attn_out: the output projection adds x itself.
		p.oResid = x
		mid = p.attentionIn(i, x, norm1, n1)
		p.oResid = nil
	} else {
		attnOut := p.hook(i, "hook_attn_out", p.attentionIn(i, x, norm1, n1), p.resid())
		mid = b.Add(x, attnOut)
	}
	mid = p.hook(i, "hook_resid_mid", mid, p.resid())
	n2 := p.hook(i, "ln2.hook_normalized", b.RMSNorm(p.mlpIn(i, mid), ly.ln2W, eps), p.resid())
	gate := p.hook(i, "mlp.hook_pre", b.Linear(n2, ly.wGate, nil), p.mlpShape())
	up := p.hook(i, "mlp.hook_pre_linear", b.Linear(n2, ly.wUp, nil), p.mlpShape())
	post := p.hook(i, "mlp.hook_post", b.SwiGLU(gate, up), p.mlpShape())
	if p.fusesResidual(i, "hook_mlp_out") {
		return p.hook(i, "hook_resid_post", compute.LinearAdd(b, post, ly.wDown, nil, mid), p.resid())
	}
	mlpOut := p.hook(i, "hook_mlp_out", b.Linear(post, ly.wDown, nil), p.resid())
	return p.hook(i, "hook_resid_post", b.Add(mid, mlpOut), p.resid())
}

// fusesResidual says whether block i may add a sublayer's output to the
// residual stream inside its output product (compute.LinearAdder): only on
// a backend that has it, and only when no hook reads or edits the
// sublayer's output (the hook point suffix), which then never exists on
// its own. Backends without it (the CPU) run the separate add.
func (p *pass) fusesResidual(i int, suffix string) bool {
	if _, ok := p.b.(compute.LinearAdder); !ok {
		return false
	}
	return !p.hooks.active(p.name(i, suffix))
}

func (p *pass) llamaFinal(x tensor) tensor {
	return p.b.RMSNorm(x, p.m.lnFinalW, float32(p.m.Config.NormEps))
}

// loadEmbedUnembed loads the Hugging Face Llama-layout embedding and the
// unembedding, which is the embedding itself when tied (or when the
// checkpoint has no lm_head).
func loadEmbedUnembed(m *Model, l *loader) {
	c := m.Config
	m.embed = l.get("model.embed_tokens.weight", c.Vocab, c.DModel)
	if c.TiedEmbed || !l.has("lm_head.weight") {
		m.unembed = m.embed
	} else {
		m.unembed = l.get("lm_head.weight", c.Vocab, c.DModel)
	}
}
