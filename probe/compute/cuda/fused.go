package cuda

import (
	"fmt"
	"unsafe"

	"github.com/loupe-dev/loupe/probe/compute"
)

// Attention is the fused attention operation (compute/attention.go states
// the contract). z and each row's log-sum-exp always come from the flash
// kernel, so asking for a pattern never changes a run's numbers. The full
// scores and pattern are built only when asked. Reductions are a second
// pass: for chunks of the asked rows, a kernel recomputes each row's
// weights exp(s − lse) from q, k and the first pass's lse into a chunk of
// at most reduceChunkBytes, and the row kernels (top-k, spans, key sets,
// entropy) reduce it on the device; only the small results reach the host.
func (b *Backend) Attention(q, k, v compute.Tensor, s compute.AttnShape, scale float32, mask compute.AttnMask, spec compute.AttnSpec) compute.AttnResult {
	checkSpec(s, spec)
	for _, x := range []compute.Tensor{q, k, v} {
		mustF32("Attention", tensorOf("Attention", x))
	}
	declare := func(shape ...int) *Tensor {
		return &Tensor{shape: shape, dt: compute.F32, buf: &buffer{scope: -1}}
	}
	res := compute.AttnResult{}
	z := declare(s.B*s.Tq, s.H*s.Dh)
	var sc, pat *Tensor
	if spec.Scores {
		sc = declare(s.B, s.H, s.Tq, s.Tk)
	}
	if spec.Pattern {
		pat = declare(s.B, s.H, s.Tq, s.Tk)
	}
	res.Z = z
	if sc != nil {
		res.Scores = sc
	}
	if pat != nil {
		res.Pattern = pat
	}
	host := spec.LSE || spec.Reductions() // results the caller waits for
	mask = cloneMask(mask)
	run := func() {
		for _, t := range []*Tensor{z, sc, pat} {
			if t != nil {
				b.place(t)
			}
		}
		if b.err != nil {
			return
		}
		qt, kt, vt := b.get(q), b.get(k), b.get(v)
		var lse *Tensor
		if host || spec.Pattern {
			lse = b.newTensor(compute.F32, s.B, s.H, s.Tq)
		}
		if b.tensorCores(s) && s.Tk > 0 && tcReductions(spec) {
			// Top-1 and the lse only: from the tensor-core pass itself.
			b.flashTop1(z, qt, kt, vt, s, scale, mask, spec, &res)
			return
		}
		if b.tensorCores(s) {
			// bf16 products for z; what hooks read (lse, pattern,
			// reductions) from the fp32 kernel, so that they are exact
			// functions of one softmax. z does not depend on the spec.
			b.flashTCInto(z, qt, kt, vt, s, scale, mask)
			if lse != nil {
				z32 := b.newTensor(compute.F32, s.B*s.Tq, s.H*s.Dh)
				b.flashInto(z32, lse, qt, kt, vt, s, scale, mask)
				b.releaseTemp(z32.buf)
			}
		} else {
			b.flashInto(z, lse, qt, kt, vt, s, scale, mask)
		}
		if sc != nil {
			b.scoresInto(sc, qt, kt, s, scale, mask)
		}
		if pat != nil {
			// The weights exp(s − lse) by the same kernel as the
			// reductions, so that a reduction equals what it reduces to
			// the bit.
			b.probsInto(pat, qt, kt, lse, nil, s, scale, mask)
		}
		if spec.LSE {
			res.LSE = b.downloadFloats(lse)
		}
		if spec.Reductions() {
			b.reduce(qt, kt, lse, s, scale, mask, spec, &res)
		}
		if lse != nil {
			b.releaseTemp(lse.buf)
		}
	}
	if host {
		b.do(run)
	} else {
		b.async(run)
	}
	return res
}

// tcReductions says whether a spec asks for nothing but the top-1 key of
// each row and the lse. In the 16-bit weight modes those come from the
// tensor-core pass that makes z (flash2top): the softmax of the scores of
// q and k rounded to bf16, products accumulated in fp32, the pass z comes
// from. Every other reduction is the exact fp32 second pass. This is what
// lets retrieval-style top-1 scores run on 128K-token prompts: the fp32
// kernels would take hours there.
func tcReductions(spec compute.AttnSpec) bool {
	return (spec.TopK == 1 || spec.TopK == 0 && spec.LSE) && !spec.Scores && !spec.Pattern &&
		len(spec.Spans) == 0 && len(spec.KeySets) == 0 && !spec.Entropy
}

// flashTop1 runs the tensor-core pass with the top-1 reduction and the lse
// for every row and gives the host the rows spec asks.
func (b *Backend) flashTop1(z, qt, kt, vt *Tensor, s compute.AttnShape, scale float32, mask compute.AttnMask, spec compute.AttnSpec, res *compute.AttnResult) {
	n := s.B * s.H * s.Tq
	lse := b.newTensor(compute.F32, s.B, s.H, s.Tq)
	top := [2]*buffer{b.alloc(4*n, func() string { return "top-1 keys" }), b.alloc(4*n, func() string { return "top-1 weights" })}
	b.flashTC(z, lse, &top, qt, kt, vt, s, scale, mask)
	if spec.LSE {
		res.LSE = b.downloadFloats(lse)
	}
	if spec.TopK == 1 {
		idx, val := make([]int32, n), make([]float32, n)
		if n > 0 {
			b.download(unsafe.Pointer(&idx[0]), top[0].ptr, 4*n)
			b.download(unsafe.Pointer(&val[0]), top[1].ptr, 4*n)
		}
		if spec.Rows == nil {
			res.TopIdx, res.TopVal = idx, val
		} else {
			R := len(spec.Rows)
			res.TopIdx, res.TopVal = make([]int32, s.B*s.H*R), make([]float32, s.B*s.H*R)
			for bh := 0; bh < s.B*s.H; bh++ {
				for r, i := range spec.Rows {
					res.TopIdx[bh*R+r], res.TopVal[bh*R+r] = idx[bh*s.Tq+i], val[bh*s.Tq+i]
				}
			}
		}
	}
	b.releaseTemp(lse.buf)
	b.releaseTemp(top[0])
	b.releaseTemp(top[1])
}

func checkSpec(s compute.AttnShape, spec compute.AttnSpec) {
	for i, r := range spec.Rows {
		if r < 0 || r >= s.Tq || (i > 0 && r <= spec.Rows[i-1]) {
			panic(fmt.Sprintf("cuda: Attention: rows %v are not ascending in [0, %d)", spec.Rows, s.Tq))
		}
	}
	R := s.Tq
	if spec.Rows != nil {
		R = len(spec.Rows)
	}
	for i, ks := range spec.KeySets {
		if len(ks.Off) != s.B*R+1 || ks.Off[0] != 0 || int(ks.Off[s.B*R]) > len(ks.Keys) {
			panic(fmt.Sprintf("cuda: Attention: key set %d has %d offsets for %d sequences × %d rows", i, len(ks.Off), s.B, R))
		}
	}
}

func (b *Backend) downloadFloats(t *Tensor) []float32 {
	out := make([]float32, t.numel())
	if len(out) > 0 {
		b.download(unsafe.Pointer(&out[0]), t.ptr(), 4*len(out))
	}
	return out
}

// reduceChunkBytes bounds the second pass's scratch of recomputed weights.
const reduceChunkBytes = 256 << 20

func (b *Backend) reduce(qt, kt, lse *Tensor, s compute.AttnShape, scale float32, mask compute.AttnMask, spec compute.AttnSpec, res *compute.AttnResult) {
	rows := spec.Rows
	if rows == nil {
		rows = make([]int, s.Tq)
		for i := range rows {
			rows[i] = i
		}
	}
	R, BH := len(rows), s.B*s.H
	kk := 0
	if spec.TopK > 0 {
		kk = min(spec.TopK, s.Tk)
		res.TopIdx, res.TopVal = make([]int32, BH*R*kk), make([]float32, BH*R*kk)
	}
	if len(spec.Spans) > 0 {
		res.SpanMass = make([][]float32, len(spec.Spans))
		for i := range res.SpanMass {
			res.SpanMass[i] = make([]float32, BH*R)
		}
	}
	if len(spec.KeySets) > 0 {
		res.SetMass = make([][]float32, len(spec.KeySets))
		for i := range res.SetMass {
			res.SetMass[i] = make([]float32, BH*R)
		}
	}
	if spec.Entropy {
		res.Entropy = make([]float32, BH*R)
	}
	if R == 0 || s.Tk == 0 {
		return
	}
	chunk := max(1, min(R, reduceChunkBytes/(4*s.Tk*BH)))
	var sets [][2]*buffer
	for _, ks := range spec.KeySets {
		off := make([]int, len(ks.Off))
		for i, o := range ks.Off {
			off[i] = int(o)
		}
		keys := make([]int, len(ks.Keys))
		for i, x := range ks.Keys {
			keys[i] = int(x)
		}
		sets = append(sets, [2]*buffer{b.uploadInts(off), b.uploadInts(keys)})
	}
	for r0 := 0; r0 < R; r0 += chunk {
		n := min(chunk, R-r0)
		pt := b.probs(qt, kt, lse, rows[r0:r0+n], s, scale, mask)
		p := pt.buf
		nrows := BH * n
		// place copies a chunk's per-row values [BH, n] into [BH, R].
		place := func(dst []float32, src []float32) {
			for bh := 0; bh < BH; bh++ {
				copy(dst[bh*R+r0:bh*R+r0+n], src[bh*n:(bh+1)*n])
			}
		}
		out := b.alloc(4*nrows, func() string { return "reduction results" })
		perRow := func(kernel string, args ...uint64) []float32 {
			b.launch(kernel, [3]int{nrows, 1, 1}, block256, 0, args...)
			h := make([]float32, nrows)
			b.download(unsafe.Pointer(&h[0]), out.ptr, 4*nrows)
			return h
		}
		if kk > 0 {
			ib := b.alloc(4*nrows*kk, func() string { return "top-k indices" })
			vb := b.alloc(4*nrows*kk, func() string { return "top-k values" })
			b.launch("topk_rows", [3]int{nrows, 1, 1}, block256, 0, pArg(p.ptr), pArg(ib.ptr), pArg(vb.ptr), iArg(s.Tk), iArg(kk))
			hi, hv := make([]int32, nrows*kk), make([]float32, nrows*kk)
			b.download(unsafe.Pointer(&hi[0]), ib.ptr, 4*len(hi))
			b.download(unsafe.Pointer(&hv[0]), vb.ptr, 4*len(hv))
			for bh := 0; bh < BH; bh++ {
				copy(res.TopIdx[(bh*R+r0)*kk:(bh*R+r0+n)*kk], hi[bh*n*kk:(bh+1)*n*kk])
				copy(res.TopVal[(bh*R+r0)*kk:(bh*R+r0+n)*kk], hv[bh*n*kk:(bh+1)*n*kk])
			}
			b.releaseTemp(ib)
			b.releaseTemp(vb)
		}
		for si, sp := range spec.Spans {
			lohi := make([]int, 2*n)
			for r := 0; r < n; r++ {
				lo, hi := sp.Bounds(mask.Past + rows[r0+r])
				lo, hi = max(lo, 0), min(hi, s.Tk)
				if hi < lo {
					hi = lo
				}
				lohi[2*r], lohi[2*r+1] = lo, hi
			}
			lb := b.uploadInts(lohi)
			place(res.SpanMass[si], perRow("span_rows", pArg(p.ptr), pArg(out.ptr), iArg(s.Tk), iArg(n), pArg(lb.ptr)))
			b.releaseTemp(lb)
		}
		for si, set := range sets {
			place(res.SetMass[si], perRow("keyset_rows", pArg(p.ptr), pArg(out.ptr), iArg(s.Tk), iArg(n), iArg(s.H), iArg(R), iArg(r0), pArg(set[0].ptr), pArg(set[1].ptr)))
		}
		if spec.Entropy {
			place(res.Entropy, perRow("entropy_rows", pArg(p.ptr), pArg(out.ptr), iArg(s.Tk)))
		}
		b.releaseTemp(out)
		b.releaseTemp(p)
	}
	for _, set := range sets {
		b.releaseTemp(set[0])
		b.releaseTemp(set[1])
	}
	if spec.SumRows {
		compute.SumRowsPerHead(res, s, R)
	}
}

// probs recomputes the attention weights exp(s − lse) of the given query
// rows (every row when rows is nil) from q, k and the flash pass's lse:
// [B, H, len(rows), Tk], 0 on keys the mask hides.
func (b *Backend) probs(qt, kt, lse *Tensor, rows []int, s compute.AttnShape, scale float32, mask compute.AttnMask) *Tensor {
	n := s.Tq
	if rows != nil {
		n = len(rows)
	}
	out := b.newTensor(compute.F32, s.B, s.H, n, s.Tk)
	b.probsInto(out, qt, kt, lse, rows, s, scale, mask)
	return out
}

// probsInto is probs into out [B, H, len(rows), Tk].
func (b *Backend) probsInto(out, qt, kt, lse *Tensor, rows []int, s compute.AttnShape, scale float32, mask compute.AttnMask) {
	if rows == nil {
		rows = make([]int, s.Tq)
		for i := range rows {
			rows[i] = i
		}
	}
	n := len(rows)
	if out.numel() == 0 || b.err != nil {
		return
	}
	rbuf := b.uploadInts(rows)
	mk := b.uploadMask(mask.KeyValid)
	b.launch("attn_probs", [3]int{(s.Tk + 127) / 128, n, s.B * s.H}, [3]int{128, 1, 1}, 4*s.Dh,
		pArg(qt.ptr()), pArg(kt.ptr()), pArg(lse.ptr()), pArg(rbuf.ptr), pArg(out.ptr()),
		iArg(n), iArg(s.Tq), iArg(s.Tk), iArg(s.Tcap), iArg(s.H), iArg(s.Hkv), iArg(s.Dh), fArg(scale),
		iArg(mask.Past), boolArg(mask.Causal), iArg(mask.Window), maskPtr(mk))
	b.releaseTemp(rbuf)
	if mk != nil {
		b.releaseTemp(mk)
	}
}
