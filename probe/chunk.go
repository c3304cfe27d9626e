package probe

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/loupe-dev/loupe/probe/compute"
)

// Chunked prefill: a long prompt runs as consecutive pieces of Chunk
// positions, each attending to the KV cache that the pieces before it
// filled. A layer's activations are then O(Chunk), not O(T): the memory of
// a long prompt is the weights, the KV cache (O(T)) and one piece's
// activations. The hooks see every piece in turn; what they return is put
// back together so that a chunked run reports what an unchunked one does:
// cached activations are concatenated along positions, reductions along
// query rows (their Rows count in the whole prompt), per-head sums added.
// A full attention score or pattern has a different key count in every
// piece, so caching or editing one is refused.

// chunkRows resolves a reduction's rows for one piece: rows count over the
// whole prompt of total queries (negative ones from its end); the piece
// holds queries [base, base+n). It gives the rows in the piece, counted
// from the piece's start, and ok = false when none fall in it. Nil (every
// row) stays nil.
func chunkRows(rows []int, base, n, total int, hook string) (local []int, ok bool, err error) {
	if rows == nil {
		return nil, true, nil
	}
	abs, err := resolveRows(rows, total, hook)
	if err != nil {
		return nil, false, err
	}
	for _, r := range abs {
		if r >= base && r < base+n {
			local = append(local, r-base)
		}
	}
	return local, len(local) > 0, nil
}

// checkChunkable refuses hooks that cannot follow a prompt in pieces.
func (hs *hookSet) checkChunkable(m *Model) error {
	if hs == nil {
		return nil
	}
	for l := 0; l < m.Config.Layers; l++ {
		for _, suffix := range []string{"attn.hook_attn_scores", "attn.hook_pattern"} {
			name := hookName(l, suffix)
			if hs.caches(name) || hs.edits(name) {
				return fmt.Errorf("chunked prefill: %s would be cached or edited, but every piece of the prompt has its own key count; reduce it (Hooks.Reduce) or run without chunks", name)
			}
			if suffix == "attn.hook_attn_scores" && hs.reduces(name) {
				return fmt.Errorf("chunked prefill: reductions of %s need the full scores; reduce hook_pattern instead, or run without chunks", name)
			}
		}
	}
	return nil
}

// prefillChunks runs ids [B*T] (positions pos, key validity valid, both
// [B*T]) through the model in pieces of chunk positions after the kv.len
// positions already cached, filling kv. It returns the logits of mode
// (LogitsAll: every position's, stitched; LogitsLast: the last position's)
// and leaves in hs the cache and reductions as one pass would.
func (m *Model) prefillChunks(ctx context.Context, hs *hookSet, ids, pos []int, valid []bool, B, T, chunk int, kv *kvCache, mode LogitMode) ([]float32, error) {
	if err := hs.checkChunkable(m); err != nil {
		return nil, err
	}
	V := m.Config.Vocab
	var logits []float32
	if mode == LogitsAll {
		logits = make([]float32, B*T*V)
	}
	var cache map[string]*Activation
	reduced := map[reducedKey][]*Reduced{}
	past0 := kv.len
	for c0 := 0; c0 < T; c0 += chunk {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		c1 := min(c0+chunk, T)
		n := c1 - c0
		pieceIDs := make([]int, B*n)
		piecePos := make([]int, B*n)
		for b := 0; b < B; b++ {
			copy(pieceIDs[b*n:], ids[b*T+c0:b*T+c1])
			copy(piecePos[b*n:], pos[b*T+c0:b*T+c1])
		}
		p := &pass{m: m, b: m.backend, hooks: hs, B: B, T: n, past: kv.len, pos: piecePos, kv: kv,
			mask: compute.AttnMask{Causal: true}}
		if valid != nil {
			// KeyValid is [B*Tk] for this piece's Tk = past + c1.
			Tk := past0 + c1
			p.mask.KeyValid = make([]bool, B*Tk)
			for b := 0; b < B; b++ {
				for j := 0; j < Tk; j++ {
					p.mask.KeyValid[b*Tk+j] = j < past0 || valid[b*T+j-past0]
				}
			}
		}
		if hs != nil {
			hs.rowBase, hs.rowTotal = c0, T
			hs.cache, hs.reduce = map[string]*Activation{}, nil
		}
		pieceMode := mode
		last := c1 == T
		if mode == LogitsLast && !last {
			pieceMode = LogitsNone
		}
		lg, err := p.run(ctx, pieceIDs, pieceMode)
		if err != nil {
			return nil, err
		}
		kv.len += n
		if mode == LogitsAll {
			for b := 0; b < B; b++ {
				copy(logits[(b*T+c0)*V:(b*T+c1)*V], lg[b*n*V:(b+1)*n*V])
			}
		} else if last {
			logits = lg
		}
		if hs == nil {
			continue
		}
		for name, a := range hs.cache {
			if mode == LogitsLast && !last && (name == "ln_final.hook_normalized" || name == "logits") {
				continue // the last position's, from the last piece
			}
			if cache == nil {
				cache = map[string]*Activation{}
			}
			cache[name] = appendPositions(cache[name], a, mode == LogitsLast && (name == "ln_final.hook_normalized" || name == "logits"))
		}
		mergeReduced(reduced, hs.reduce, c0)
	}
	if hs != nil {
		hs.rowBase, hs.rowTotal = 0, 0
		hs.cache, hs.reduce = cache, orderReduced(reduced)
		if hs.cache == nil {
			hs.cache = map[string]*Activation{}
		}
	}
	return logits, nil
}

// appendPositions concatenates activation b [B, n, ...] after a
// [B, t, ...] along positions (a nil a starts one). whole keeps b as it is
// (the last position's activations).
func appendPositions(a, b *Activation, whole bool) *Activation {
	if a == nil || whole {
		return &Activation{Name: b.Name, Shape: slices.Clone(b.Shape), Data: b.Data}
	}
	B := a.Shape[0]
	ra, rb := len(a.Data)/B, len(b.Data)/B // floats per sequence
	data := make([]float32, 0, len(a.Data)+len(b.Data))
	for s := 0; s < B; s++ {
		data = append(data, a.Data[s*ra:(s+1)*ra]...)
		data = append(data, b.Data[s*rb:(s+1)*rb]...)
	}
	shape := slices.Clone(a.Shape)
	shape[1] += b.Shape[1]
	return &Activation{Name: a.Name, Shape: shape, Data: data}
}

// reducedKey names a reduction's result: the hook point and the index of
// the Reduction in Hooks.Reduce.
type reducedKey struct {
	hook      string
	reduction int
}

// mergeReduced adds one piece's reductions (queries from base on) to those
// of the pieces before; orderReduced joins them once all pieces are in (one
// copy of each result, not one per piece: a 256K-token prompt in 16 pieces
// would copy its earlier rows 15 times).
func mergeReduced(acc map[reducedKey][]*Reduced, piece []*Reduced, base int) {
	for _, r := range piece {
		for i := range r.Rows {
			r.Rows[i] += base
		}
		k := reducedKey{r.Hook, r.reduction}
		acc[k] = append(acc[k], r)
	}
}

// orderReduced joins each reduction's pieces and lists the results as one
// pass reports them: by layer, then in the order of Hooks.Reduce.
func orderReduced(acc map[reducedKey][]*Reduced) []*Reduced {
	out := make([]*Reduced, 0, len(acc))
	for _, pieces := range acc {
		out = append(out, concatPieces(pieces))
	}
	layer := func(r *Reduced) int {
		rest, _ := strings.CutPrefix(r.Hook, "blocks.")
		l, _ := strconv.Atoi(rest[:strings.IndexByte(rest+".", '.')])
		return l
	}
	slices.SortFunc(out, func(a, b *Reduced) int {
		if la, lb := layer(a), layer(b); la != lb {
			return la - lb
		}
		return a.reduction - b.reduction
	})
	return out
}

// concatPieces joins the pieces' results of one reduction, in order:
// values per (batch, head) one piece after the other, or added for
// per-head sums.
func concatPieces(rs []*Reduced) *Reduced {
	a := rs[0]
	if len(rs) == 1 {
		return a
	}
	out := *a
	out.KeysLen = rs[len(rs)-1].KeysLen
	out.Shape = slices.Clone(a.Shape)
	BH := a.Shape[0] * a.Shape[1]
	anyRows := false
	for _, r := range rs {
		anyRows = anyRows || r.Rows != nil
	}
	if len(a.Shape) == 2 { // SumRows
		out.Values = slices.Clone(a.Values)
		for _, r := range rs[1:] {
			for i, v := range r.Values {
				out.Values[i] += v
			}
		}
		out.Rows = nil
		for _, r := range rs {
			out.Rows = append(out.Rows, r.Rows...)
		}
		return &out
	}
	nv, ni := 0, 0
	for _, r := range rs[1:] {
		out.Shape[2] += r.Shape[2]
	}
	for _, r := range rs {
		nv += len(r.Values)
		ni += len(r.Index)
	}
	out.Values = make([]float32, 0, nv)
	if a.Index != nil {
		out.Index = make([]int32, 0, ni)
	}
	for bh := 0; bh < BH; bh++ {
		for _, r := range rs {
			p := len(r.Values) / BH
			out.Values = append(out.Values, r.Values[bh*p:(bh+1)*p]...)
			if a.Index != nil {
				out.Index = append(out.Index, r.Index[bh*p:(bh+1)*p]...)
			}
		}
	}
	out.Rows = nil
	if anyRows {
		for _, r := range rs {
			out.Rows = append(out.Rows, r.Rows...)
		}
	}
	return &out
}
