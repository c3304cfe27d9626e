package probe

import (
	"fmt"
	"math"
	"slices"

	"github.com/loupe-dev/loupe/probe/compute"
)

// attention is the attention sublayer shared by every family: it takes the
// normalised residual and returns the output projection (bias included),
// which the family's block passes to hook_attn_out (Gemma after its
// post-attention norm).
//
// The scores → softmax → mix path, which builds the T×T scores and pattern,
// runs only when a hook edits this layer's scores or pattern, or reduces
// its scores. Every other layer goes through the backend's fused
// Attention, which returns the pattern only when a hook caches it and
// computes pattern reductions without storing the pattern.
func (p *pass) attention(i int, x tensor) tensor {
	b, ly := p.b, &p.m.layers[i]
	Hkv := p.m.Config.KVHeads
	if q, k, v, ok := p.fusedQKV(i, x); ok { // one product, rotated (llama.go)
		defer func() { p.qkRotated = false }()
		return p.attend(i, q, k, v, Hkv)
	}
	return p.attend(i, b.Linear(x, ly.wq, ly.bq), b.Linear(x, ly.wk, ly.bk), b.Linear(x, ly.wv, ly.bv), Hkv)
}

// attend runs attention from the projected q [B*T, H*d_head], k and v
// [B*T, Hkv*d_head] (Hkv = H when every query head has its own keys, as in
// a split-input run) and returns the output projection.
func (p *pass) attend(i int, q, k, v tensor, Hkv int) tensor {
	m, b, ly := p.m, p.b, &p.m.layers[i]
	c := m.Config
	H, Dh := c.Heads, c.HeadDim
	q = p.hook(i, "attn.hook_q", q, []int{p.B, p.T, H, Dh})
	k = p.hook(i, "attn.hook_k", k, []int{p.B, p.T, Hkv, Dh})
	v = p.hook(i, "attn.hook_v", v, []int{p.B, p.T, Hkv, Dh})
	if ly.qNorm != nil {
		// QK-norm: an RMSNorm over each head's d_head, before RoPE.
		N, eps := p.B*p.T, float32(c.NormEps)
		q = b.Reshape(b.RMSNorm(b.Reshape(q, N*H, Dh), ly.qNorm, eps), N, H*Dh)
		k = b.Reshape(b.RMSNorm(b.Reshape(k, N*Hkv, Dh), ly.kNorm, eps), N, Hkv*Dh)
	}
	if m.invFreq != nil {
		if pos, freqs := p.pos, m.ropeFreqs(i); !p.qkRotated {
			b.RotaryInPlace(q, H, Dh, c.RotaryDim, pos, freqs)
			b.RotaryInPlace(k, Hkv, Dh, c.RotaryDim, pos, freqs)
		}
		q = p.hook(i, "attn.hook_rot_q", q, []int{p.B, p.T, H, Dh})
		k = p.hook(i, "attn.hook_rot_k", k, []int{p.B, p.T, Hkv, Dh})
	}
	shape := compute.AttnShape{B: p.B, Tq: p.T, Tk: p.T, Tcap: p.T, H: H, Hkv: Hkv, Dh: Dh}
	if p.kv != nil {
		k, v = p.kv.append(b, i, k, v, p.B, p.T)
		shape.Tk, shape.Tcap = p.kv.len+p.T, p.kv.cap
	}
	mask := p.mask
	mask.Past = p.past
	mask.Window = c.Window(i)
	scale := c.AttnScale()
	tl := []int{p.B, H, p.T, shape.Tk} // TransformerLens shape of scores and pattern
	scoresName, patternName := p.name(i, "attn.hook_attn_scores"), p.name(i, "attn.hook_pattern")
	var z tensor
	if p.hooks.edits(scoresName) || p.hooks.edits(patternName) || p.hooks.reduces(scoresName) {
		if p.hooks != nil {
			p.hooks.mask = mask
		}
		scores := p.hook(i, "attn.hook_attn_scores", b.AttentionScores(q, k, shape, scale, mask), tl)
		pattern := p.hook(i, "attn.hook_pattern", b.SoftmaxRows(scores), tl)
		z = b.AttentionMix(pattern, v, shape)
	} else {
		z = p.fusedAttention(q, k, v, shape, scale, mask, scoresName, patternName, tl)
	}
	z = p.hook(i, "attn.hook_z", z, []int{p.B, p.T, H, Dh})
	if p.hooks.active(p.name(i, "attn.hook_result")) {
		return p.attnOutFromResults(i, z)
	}
	if p.oResid != nil {
		return compute.LinearAdd(b, z, ly.wo, ly.bo, p.oResid)
	}
	return b.Linear(z, ly.wo, ly.bo)
}

// fusedAttention runs the backend's fused attention with what the hooks of
// this layer's scores and pattern ask for (caches, pattern reductions), and
// records their results as the hook points would have.
func (p *pass) fusedAttention(q, k, v tensor, shape compute.AttnShape, scale float32, mask compute.AttnMask, scoresName, patternName string, tl []int) tensor {
	hs := p.hooks
	if hs == nil {
		return p.b.Attention(q, k, v, shape, scale, mask, compute.AttnSpec{}).Z
	}
	plan, err := hs.planReductions(patternName, shape, mask)
	if err != nil {
		p.err = err
		return p.b.Attention(q, k, v, shape, scale, mask, compute.AttnSpec{}).Z
	}
	spec := plan.spec
	spec.Scores, spec.Pattern = hs.caches(scoresName), hs.caches(patternName)
	res := p.b.Attention(q, k, v, shape, scale, mask, spec)
	if res.Scores != nil {
		hs.record(p.b, scoresName, res.Scores, tl)
	}
	hs.reduce = append(hs.reduce, plan.results(patternName, &res, shape)...)
	if res.Pattern != nil {
		hs.record(p.b, patternName, res.Pattern, tl)
	}
	return res.Z
}

// reductionPlan maps a layer's Reductions onto one AttnSpec: the union of
// their rows, the largest K, one span or key set per reduction.
type reductionPlan struct {
	spec  compute.AttnSpec
	reds  []Reduction
	ids   []int   // each reduction's index in Hooks.Reduce
	rows  [][]int // each reduction's rows (nil: every row)
	slot  []int   // each reduction's span or key-set index in spec
	union []int   // spec.Rows resolved (every row when spec.Rows is nil)
}

// resolveRows turns a Reduction's rows (negative counting from the end)
// into ascending distinct query indices in [0, Tq); nil stays nil (every
// row).
func resolveRows(rows []int, Tq int, hook string) ([]int, error) {
	if rows == nil {
		return nil, nil
	}
	out := make([]int, 0, len(rows))
	for _, r := range rows {
		i := r
		if i < 0 {
			i += Tq
		}
		if i < 0 || i >= Tq {
			return nil, fmt.Errorf("reduction on %s: query row %d outside the %d queries of this pass", hook, r, Tq)
		}
		out = append(out, i)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// planReductions builds the spec for the reductions that match a pattern
// hook.
func (hs *hookSet) planReductions(name string, s compute.AttnShape, mask compute.AttnMask) (*reductionPlan, error) {
	pl := &reductionPlan{}
	all := false
	var union []int
	for ri, r := range hs.hooks.Reduce {
		if !match(r.Hook, name) {
			continue
		}
		var rows []int
		var err error
		if hs.rowTotal > 0 { // one piece of a chunked prefill
			var ok bool
			rows, ok, err = chunkRows(r.Rows, hs.rowBase, s.Tq, hs.rowTotal, name)
			if err == nil && !ok {
				continue // none of its rows in this piece
			}
		} else {
			rows, err = resolveRows(r.Rows, s.Tq, name)
		}
		if err != nil {
			return nil, err
		}
		all = all || rows == nil
		union = append(union, rows...)
		pl.reds, pl.rows, pl.ids = append(pl.reds, r), append(pl.rows, rows), append(pl.ids, ri)
	}
	if len(pl.reds) == 0 {
		return pl, nil
	}
	if all {
		pl.union = make([]int, s.Tq)
		for i := range pl.union {
			pl.union[i] = i
		}
	} else {
		slices.Sort(union)
		pl.union = slices.Compact(union)
		pl.spec.Rows = pl.union
	}
	R := len(pl.union)
	sameRows, sum := true, true
	for ri, r := range pl.reds {
		sameRows = sameRows && slices.Equal(pl.rows[ri], pl.rows[0])
		sum = sum && r.SumRows
		slot := -1
		switch r.Op {
		case TopK:
			pl.spec.TopK = max(pl.spec.TopK, r.K)
		case SpanMass:
			slot = len(pl.spec.Spans)
			pl.spec.Spans = append(pl.spec.Spans, r.span())
		case KeyMass:
			slot = len(pl.spec.KeySets)
			ks := compute.KeySet{Off: make([]int32, 1, s.B*R+1)}
			for b := 0; b < s.B; b++ {
				for _, i := range pl.union {
					for _, j := range r.Keys(b, mask.Past+i) {
						ks.Keys = append(ks.Keys, int32(j))
					}
					ks.Off = append(ks.Off, int32(len(ks.Keys)))
				}
			}
			pl.spec.KeySets = append(pl.spec.KeySets, ks)
		case Entropy:
			pl.spec.Entropy = true
		}
		pl.slot = append(pl.slot, slot)
	}
	// The backend sums over rows only when every reduction wants the sums
	// over the same rows; otherwise the host sums the per-row values.
	pl.spec.SumRows = sum && sameRows
	return pl, nil
}

// span is a SpanMass reduction's key span.
func (r Reduction) span() compute.KeySpan {
	sp := compute.KeySpan{Lo: r.Lo, Hi: r.Hi, LoRelative: r.LoRelative, HiRelative: r.HiRelative}
	if !r.HiRelative && r.Hi <= 0 {
		sp.Hi = math.MaxInt32 // up to the last key
	}
	return sp
}

// results turns the backend's reductions into one Reduced per Reduction,
// in the order the Reductions were given.
func (pl *reductionPlan) results(name string, res *compute.AttnResult, s compute.AttnShape) []*Reduced {
	var out []*Reduced
	R := len(pl.union)
	for ri, r := range pl.reds {
		rows := pl.rows[ri]
		// pick maps this reduction's rows to their index in the union.
		pick := make([]int, 0, R)
		if rows == nil {
			for i := range pl.union {
				pick = append(pick, i)
			}
		} else {
			for _, i := range rows {
				j, _ := slices.BinarySearch(pl.union, i)
				pick = append(pick, j)
			}
		}
		red := &Reduced{Hook: name, Op: r.Op, Rows: rows, KeysLen: s.Tk, Shape: []int{s.B, s.H, len(pick)}, reduction: pl.ids[ri]}
		var perRow []float32
		switch r.Op {
		case TopK:
			kk, k := min(pl.spec.TopK, s.Tk), min(r.K, s.Tk)
			red.Shape = append(red.Shape, k)
			if k == kk && pickAll(pick, R) {
				// Already in this reduction's layout (a 128K-token prompt
				// has millions of rows: no copy). Full slices: an append
				// elsewhere copies rather than writes into these.
				n := s.B * s.H * R * k
				red.Index, red.Values = res.TopIdx[:n:n], res.TopVal[:n:n]
				out = append(out, red)
				continue
			}
			red.Index = make([]int32, 0, s.B*s.H*len(pick)*k)
			red.Values = make([]float32, 0, s.B*s.H*len(pick)*k)
			for bh := 0; bh < s.B*s.H; bh++ {
				for _, j := range pick {
					at := (bh*R + j) * kk
					red.Index = append(red.Index, res.TopIdx[at:at+k]...)
					red.Values = append(red.Values, res.TopVal[at:at+k]...)
				}
			}
			out = append(out, red)
			continue
		case SpanMass:
			perRow = res.SpanMass[pl.slot[ri]]
		case KeyMass:
			perRow = res.SetMass[pl.slot[ri]]
		case Entropy:
			perRow = res.Entropy
		}
		switch {
		case pl.spec.SumRows:
			red.Values, red.Shape = perRow, red.Shape[:2]
		case r.SumRows:
			red.Shape = red.Shape[:2]
			red.Values = make([]float32, s.B*s.H)
			for bh := range red.Values {
				var t float64
				for _, j := range pick {
					t += float64(perRow[bh*R+j])
				}
				red.Values[bh] = float32(t)
			}
		default:
			for bh := 0; bh < s.B*s.H; bh++ {
				for _, j := range pick {
					red.Values = append(red.Values, perRow[bh*R+j])
				}
			}
		}
		out = append(out, red)
	}
	return out
}

// pickAll says whether pick lists 0..R-1 in order.
func pickAll(pick []int, R int) bool {
	if len(pick) != R {
		return false
	}
	for i, j := range pick {
		if i != j {
			return false
		}
	}
	return true
}

// reducePatternOnHost computes the pattern reductions of an edited (hence
// materialised) pattern t, with the same definitions as the fused path.
func (hs *hookSet) reducePatternOnHost(b compute.Backend, name string, t compute.Tensor, shape []int, mask compute.AttnMask) error {
	s := compute.AttnShape{B: shape[0], H: shape[1], Tq: shape[2], Tk: shape[3]}
	plan, err := hs.planReductions(name, s, mask)
	if err != nil || len(plan.reds) == 0 {
		return err
	}
	var res compute.AttnResult
	compute.ReducePattern(b.ToHost(t), s, mask, plan.spec, &res)
	hs.reduce = append(hs.reduce, plan.results(name, &res, s)...)
	return nil
}
