package probe

import (
	"fmt"

	"github.com/loupe-dev/loupe/probe/compute"
)

// The GPT-2 family.
//
//	x = W_E[ids] + W_pos[positions]
//	per block:  x = x + attn(layernorm₁(x))
//	            x = x + W_proj(gelu(W_fc layernorm₂(x)))
//	logits = layernorm_f(x) · W_Eᵀ
//
// GPT-2 checkpoints store linear layers as Conv1D, [in, out]; they are
// transposed on load to the [out, in] layout every other family uses, and
// the fused c_attn is split into q, k and v.

func loadGPT2(m *Model, l *loader) {
	c := m.Config
	D := c.DModel
	pre := "transformer."
	if !l.has(pre + "wte.weight") {
		pre = "" // checkpoints saved from GPT2Model carry no prefix
	}
	m.embed = l.get(pre+"wte.weight", c.Vocab, D)
	m.posEmbed = l.get(pre+"wpe.weight", c.MaxPos, D)
	m.unembed = m.embed
	m.lnFinalW = l.get(pre+"ln_f.weight", D)
	m.lnFinalB = l.get(pre+"ln_f.bias", D)
	m.layers = make([]layer, c.Layers)
	for i := range m.layers {
		p := fmt.Sprintf("%sh.%d.", pre, i)
		ly := &m.layers[i]
		ly.ln1W, ly.ln1B = l.get(p+"ln_1.weight", D), l.get(p+"ln_1.bias", D)
		ly.ln2W, ly.ln2B = l.get(p+"ln_2.weight", D), l.get(p+"ln_2.bias", D)
		qkv := transpose(l.host(p+"attn.c_attn.weight", D, 3*D), D, 3*D) // [3D, D]
		qkvB := l.host(p+"attn.c_attn.bias", 3*D)
		if l.err != nil {
			return
		}
		ly.wq = compute.FromHostWeight(l.b, qkv[:D*D], D, D)
		ly.wk = compute.FromHostWeight(l.b, qkv[D*D:2*D*D], D, D)
		ly.wv = compute.FromHostWeight(l.b, qkv[2*D*D:], D, D)
		ly.bq = l.b.FromHost(qkvB[:D], D)
		ly.bk = l.b.FromHost(qkvB[D:2*D], D)
		ly.bv = l.b.FromHost(qkvB[2*D:], D)
		ly.wo = l.conv1D(p+"attn.c_proj.weight", D, D)
		ly.bo = l.get(p+"attn.c_proj.bias", D)
		ly.wUp = l.conv1D(p+"mlp.c_fc.weight", D, c.DMLP)
		ly.bUp = l.get(p+"mlp.c_fc.bias", c.DMLP)
		ly.wDown = l.conv1D(p+"mlp.c_proj.weight", c.DMLP, D)
		ly.bDown = l.get(p+"mlp.c_proj.bias", D)
	}
}

// conv1D reads a Conv1D weight [in, out] as a linear weight [out, in].
func (l *loader) conv1D(name string, in, out int) tensor {
	data := l.host(name, in, out)
	if l.err != nil {
		return nil
	}
	return compute.FromHostWeight(l.b, transpose(data, in, out), out, in)
}

// transpose turns a row-major [rows, cols] matrix into [cols, rows].
func transpose(a []float32, rows, cols int) []float32 {
	if a == nil {
		return nil
	}
	t := make([]float32, len(a))
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			t[c*rows+r] = a[r*cols+c]
		}
	}
	return t
}

func (p *pass) gpt2Block(i int, x tensor) tensor {
	m, b, ly := p.m, p.b, &p.m.layers[i]
	eps := float32(m.Config.NormEps)
	x = p.hook(i, "hook_resid_pre", x, p.resid())
	n1 := p.hook(i, "ln1.hook_normalized", b.LayerNorm(x, ly.ln1W, ly.ln1B, eps), p.resid())
	attnOut := p.hook(i, "hook_attn_out", p.attentionIn(i, x, func(t tensor) tensor { return b.LayerNorm(t, ly.ln1W, ly.ln1B, eps) }, n1), p.resid())
	mid := p.hook(i, "hook_resid_mid", b.Add(x, attnOut), p.resid())
	n2 := p.hook(i, "ln2.hook_normalized", b.LayerNorm(p.mlpIn(i, mid), ly.ln2W, ly.ln2B, eps), p.resid())
	mlpOut := p.geluMLP(i, n2)
	return p.hook(i, "hook_resid_post", b.Add(mid, mlpOut), p.resid())
}

// geluMLP is the ungated MLP of GPT-2 and GPT-NeoX.
func (p *pass) geluMLP(i int, n tensor) tensor {
	b, ly := p.b, &p.m.layers[i]
	pre := p.hook(i, "mlp.hook_pre", b.Linear(n, ly.wUp, ly.bUp), p.mlpShape())
	post := p.hook(i, "mlp.hook_post", b.GELU(pre, p.m.Config.Act != "gelu"), p.mlpShape())
	return p.hook(i, "hook_mlp_out", b.Linear(post, ly.wDown, ly.bDown), p.resid())
}

func (p *pass) layerNormFinal(x tensor) tensor {
	return p.b.LayerNorm(x, p.m.lnFinalW, p.m.lnFinalB, float32(p.m.Config.NormEps))
}
