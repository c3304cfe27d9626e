package probe

import "fmt"

// Split inputs: TransformerLens's use_attn_in and use_hook_mlp_in. Circuit
// discovery needs to change what one head (or one MLP) reads without
// changing what the others read or what the residual stream carries on, so
// that an edge "sender → receiver" can be cut alone. These hook points give
// each receiver its own copy of its input:
//
//	blocks.L.hook_attn_in  [batch, pos, head, d_model]  what each query head
//	                       reads, before ln1; its q, k and v are projected
//	                       from its own copy
//	blocks.L.hook_mlp_in   [batch, pos, d_model]  what the MLP reads, before ln2
//
// They exist only in runs that edit them (a Hooks.Edit matching the name):
// a run that merely caches "*" never sees them, so it stays bit-identical to
// a plain run and pays nothing. An edited hook_attn_in computes q, k and v
// per query head; with grouped-query attention each head then has its own
// keys and values, and that run's hook_k / hook_v (and hook_rot_k) carry
// one slice per query head, [batch, pos, head, d_head]. Split-input runs do
// not take a KV cache.

// attentionIn is the attention sublayer of block i on the raw residual x:
// the usual attention of norm(x) unless an edit asks for hook_attn_in.
func (p *pass) attentionIn(i int, x tensor, norm func(tensor) tensor, n tensor) tensor {
	name := p.name(i, "hook_attn_in")
	if !p.hooks.edits(name) {
		return p.attention(i, n)
	}
	if p.kv != nil {
		p.fail(fmt.Errorf("hook %s: split attention inputs do not work with a KV cache", name))
		return p.attention(i, n)
	}
	m, b, ly := p.m, p.b, &p.m.layers[i]
	c := m.Config
	H, Hkv, Dh, D := c.Heads, c.KVHeads, c.HeadDim, c.DModel
	N := p.B * p.T
	host := b.ToHost(x)
	per := make([]float32, N*H*D)
	for n := 0; n < N; n++ {
		for h := 0; h < H; h++ {
			copy(per[(n*H+h)*D:(n*H+h+1)*D], host[n*D:(n+1)*D])
		}
	}
	in := p.hook(i, "hook_attn_in", b.FromHost(per, N, H*D), []int{p.B, p.T, H, D})
	if p.err != nil {
		return p.attention(i, n)
	}
	q := make([]float32, N*H*Dh)
	k := make([]float32, N*H*Dh)
	v := make([]float32, N*H*Dh)
	group := H / Hkv
	for h := 0; h < H; h++ {
		nh := norm(b.Columns(in, h*D, (h+1)*D))
		g := h / group
		put := func(dst []float32, w, bias tensor, row int) {
			var bb tensor
			if bias != nil {
				bb = b.FromHost(b.ToHost(bias)[row*Dh:(row+1)*Dh], Dh)
			}
			out := b.ToHost(b.Linear(nh, b.Rows(w, row*Dh, (row+1)*Dh), bb))
			for r := 0; r < N; r++ {
				copy(dst[(r*H+h)*Dh:(r*H+h+1)*Dh], out[r*Dh:(r+1)*Dh])
			}
		}
		put(q, ly.wq, ly.bq, h)
		put(k, ly.wk, ly.bk, g)
		put(v, ly.wv, ly.bv, g)
	}
	return p.attend(i, b.FromHost(q, N, H*Dh), b.FromHost(k, N, H*Dh), b.FromHost(v, N, H*Dh), H)
}

// mlpIn passes the MLP's input of block i through hook_mlp_in when an edit
// asks for it, on a copy, so the residual stream itself is left alone.
func (p *pass) mlpIn(i int, x tensor) tensor {
	if !p.hooks.edits(p.name(i, "hook_mlp_in")) {
		return x
	}
	N := p.B * p.T
	return p.hook(i, "hook_mlp_in", p.b.Rows(x, 0, N), p.resid())
}

// fail records the pass's first error.
func (p *pass) fail(err error) {
	if p.err == nil {
		p.err = err
	}
}

// splitHooks are the split-input hook points (not in HookNames: they exist
// only in runs that edit them).
var splitHooks = []string{"hook_attn_in", "hook_mlp_in"}
