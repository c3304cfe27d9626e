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
		} else if fp, ok := l.b.(compute.FusedProjector); ok {
			loadLlamaConcat(l, fp, ly, p, c)
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
	ly.wq = compute.FromHostWeight(l.b, qkv[:q*D], q, D)
	ly.wk = compute.FromHostWeight(l.b, qkv[q*D:(q+kv)*D], kv, D)
	ly.wv = compute.FromHostWeight(l.b, qkv[(q+kv)*D:], kv, D)
	ly.wGate = compute.FromHostWeight(l.b, gateUp[:c.DMLP*D], c.DMLP, D)
	ly.wUp = compute.FromHostWeight(l.b, gateUp[c.DMLP*D:], c.DMLP, D)
}

// loadLlamaConcat loads q, k, v (where one product can make them: full
// rotary, no biases, no QK-norm) and gate, up as one weight each, for a
// backend with fused products; the separate weights are row views of
// them, for the paths that need them apart (hooks on q, k, v, gate or up;
// split attention inputs).
func loadLlamaConcat(l *loader, fp compute.FusedProjector, ly *layer, p string, c Config) {
	D, Dh := c.DModel, c.HeadDim
	q, kv := c.Heads*Dh, c.KVHeads*Dh
	qkvFusable := c.RotaryDim == Dh && !c.QKNorm && !c.AttnBias &&
		!l.has(p+"self_attn.q_proj.bias") && !l.has(p+"self_attn.k_proj.bias") && !l.has(p+"self_attn.v_proj.bias")
	if qkvFusable {
		ly.wqkv = l.concat(D, p+"self_attn.q_proj.weight", q, p+"self_attn.k_proj.weight", kv, p+"self_attn.v_proj.weight", kv)
		if l.err == nil {
			ly.wq, ly.wk, ly.wv = fp.RowsView(ly.wqkv, 0, q), fp.RowsView(ly.wqkv, q, q+kv), fp.RowsView(ly.wqkv, q+kv, q+2*kv)
		}
	} else {
		ly.wq = l.get(p+"self_attn.q_proj.weight", q, D)
		ly.wk = l.get(p+"self_attn.k_proj.weight", kv, D)
		ly.wv = l.get(p+"self_attn.v_proj.weight", kv, D)
	}
	ly.wGateUp = l.concat(D, p+"mlp.gate_proj.weight", c.DMLP, p+"mlp.up_proj.weight", c.DMLP)
	if l.err == nil {
		ly.wGate, ly.wUp = fp.RowsView(ly.wGateUp, 0, c.DMLP), fp.RowsView(ly.wGateUp, c.DMLP, 2*c.DMLP)
	}
}

// concat reads weights [rows_i, cols] (name, rows pairs) and stores them
// stacked along the rows as one weight on the backend.
func (l *loader) concat(cols int, parts ...any) compute.Tensor {
	var data []float32
	rows := 0
	for i := 0; i+1 < len(parts); i += 2 {
		name, r := parts[i].(string), parts[i+1].(int)
		data = append(data, l.host(name, r, cols)...)
		rows += r
	}
	if l.err != nil {
		return nil
	}
	t := compute.FromHostWeight(l.b, data, rows, cols)
	if err := compute.Err(l.b); err != nil {
		l.err = fmt.Errorf("tensor %q and the weights stacked with it: %w", parts[0], err)
		return nil
	}
	return t
}

// fusedQKV makes block i's q, k and v in one product, rotated, where the
// backend can (compute.FusedProjector), the weights were stacked at load
// and no hook needs q, k or v on their own; ok false otherwise.
func (p *pass) fusedQKV(i int, x tensor) (q, k, v tensor, ok bool) {
	ly := &p.m.layers[i]
	fp, can := p.b.(compute.FusedProjector)
	if !can || ly.wqkv == nil || p.m.invFreq == nil {
		return nil, nil, nil, false
	}
	for _, s := range []string{"attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_rot_q", "attn.hook_rot_k"} {
		if p.hooks.active(p.name(i, s)) {
			return nil, nil, nil, false
		}
	}
	c := p.m.Config
	q, k, v = fp.LinearQKVRotary(x, ly.wqkv, c.Heads, c.KVHeads, c.HeadDim, p.pos, p.m.ropeFreqs(i))
	p.qkRotated = true
	return q, k, v, true
}

// mlpPost is silu(gate) ⊙ up of block i's MLP: one product and the SwiGLU
// on a backend with fused products when no hook needs gate or up on their
// own, else the two products, their hook points, and SwiGLU.
func (p *pass) mlpPost(i int, n2 tensor) tensor {
	b, ly := p.b, &p.m.layers[i]
	if fp, ok := b.(compute.FusedProjector); ok && ly.wGateUp != nil &&
		!p.hooks.active(p.name(i, "mlp.hook_pre")) && !p.hooks.active(p.name(i, "mlp.hook_pre_linear")) {
		return fp.LinearSwiGLU(n2, ly.wGateUp)
	}
	gate := p.hook(i, "mlp.hook_pre", b.Linear(n2, ly.wGate, nil), p.mlpShape())
	up := p.hook(i, "mlp.hook_pre_linear", b.Linear(n2, ly.wUp, nil), p.mlpShape())
	return b.SwiGLU(gate, up)
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
	post := p.hook(i, "mlp.hook_post", p.mlpPost(i, n2), p.mlpShape())
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
