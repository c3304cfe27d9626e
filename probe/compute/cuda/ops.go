package cuda

import (
	"fmt"
	"slices"

	"github.com/loupe-dev/loupe/probe/compute"
)

// The operations of compute.Backend that return tensors or change them in
// place: each checks its shapes in the caller, returns at once and queues
// its kernels on the owner goroutine (see produce). Operations that give
// results to the host (ToHost, the reductions) wait, in backend.go.

// tensorOf is the *Tensor behind a compute.Tensor, checked in the caller.
func tensorOf(op string, x compute.Tensor) *Tensor {
	t, ok := x.(*Tensor)
	if !ok {
		panic(fmt.Sprintf("cuda: %s: a %T tensor given to the GPU backend", op, x))
	}
	return t
}

func (b *Backend) Zeros(shape ...int) compute.Tensor {
	return b.produce(compute.F32, shape, func(out *Tensor) {
		if n := 4 * out.numel(); n > 0 {
			b.fail(b.d.check("cuMemsetD8Async", call(b.d.cuMemsetD8Async, out.ptr(), 0, uintptr(n), b.stream)))
		}
	})
}

func (b *Backend) Rows(x compute.Tensor, lo, hi int) compute.Tensor {
	t := tensorOf("Rows", x)
	_, cols := rowsCols(t)
	return b.produce(t.dt, []int{hi - lo, cols}, func(out *Tensor) {
		t := b.get(x)
		es := t.dt.Size()
		b.copyDtoD(out.ptr(), t.ptr()+uintptr(lo*cols*es), (hi-lo)*cols*es)
	})
}

func (b *Backend) GatherRows(x compute.Tensor, rows []int) compute.Tensor {
	t := tensorOf("GatherRows", x)
	_, cols := rowsCols(t)
	rows = slices.Clone(rows)
	return b.produce(t.dt, []int{len(rows), cols}, func(out *Tensor) {
		t := b.get(x)
		if len(rows) == 0 || cols == 0 {
			return
		}
		idx := b.uploadInts(rows)
		n := len(rows) * cols
		b.launch("gather_rows", grid1(n), block256, 0, pArg(t.ptr()), pArg(idx.ptr), pArg(out.ptr()), iArg(len(rows)), iArg(cols), iArg(t.dt.Size()))
		b.releaseTemp(idx)
	})
}

func (b *Backend) CopyRowsInPlace(dst, src compute.Tensor, off int) {
	d, s := tensorOf("CopyRowsInPlace", dst), tensorOf("CopyRowsInPlace", src)
	if d.dt != s.dt {
		panic(fmt.Sprintf("cuda: CopyRowsInPlace %s into %s", s.dt, d.dt))
	}
	b.async(func() {
		d, s := b.get(dst), b.get(src)
		_, cols := rowsCols(d)
		es := d.dt.Size()
		b.copyDtoD(d.ptr()+uintptr(off*cols*es), s.ptr(), s.numel()*es)
		b.mirrorRows(d, s, off*cols)
	})
}

// mirrorRows keeps d's shadow a copy of d after s's elements were written
// at element offset at: the same elements, rounded, into the shadow.
func (b *Backend) mirrorRows(d, s *Tensor, at int) {
	h := d.buf.half
	if h == nil || h.dead || d.dt != compute.F32 || b.err != nil {
		return
	}
	k := "cvt_f32_bf16"
	if d.buf.halfDT == compute.F16 {
		k = "cvt_f32_f16"
	}
	if n := s.numel(); n > 0 {
		b.launch(k, grid1(n), block256, 0, pArg(s.ptr()), pArg(h.ptr+uintptr(2*at)), lArg(n))
	}
}

// CopySeqRowsInPlace appends T rows of each of B sequences: src rows
// [s*T, (s+1)*T) go to dst rows [s*cap+off, s*cap+off+T), in one launch
// (compute.SeqRowCopier: a KV cache's append for a whole batch). dst's
// shadow, if it has one, gets the same rows rounded.
func (b *Backend) CopySeqRowsInPlace(dst, src compute.Tensor, B, T, capacity, off int) {
	d, s := tensorOf("CopySeqRowsInPlace", dst), tensorOf("CopySeqRowsInPlace", src)
	mustF32("CopySeqRowsInPlace", d, s)
	if _, dc := rowsCols(d); s.numel() != B*T*dc {
		panic(fmt.Sprintf("cuda: CopySeqRowsInPlace %v into %v for %d x %d rows", s.shape, d.shape, B, T))
	}
	b.async(func() {
		d, s := b.get(dst), b.get(src)
		_, cols := rowsCols(d)
		n := B * T * cols
		if n == 0 || b.err != nil {
			return
		}
		var h uint64
		if sh := d.buf.half; sh != nil && !sh.dead && d.buf.halfDT == compute.BF16 {
			h = pArg(sh.ptr)
		} else {
			b.dropShadow(d.buf)
		}
		b.launch("copy_seq_rows", grid1(n), block256, 0, pArg(s.ptr()), pArg(d.ptr()), h,
			iArg(B), iArg(T), iArg(capacity), iArg(off), iArg(cols))
	})
}

func (b *Backend) Columns(x compute.Tensor, lo, hi int) compute.Tensor {
	t := tensorOf("Columns", x)
	rows, cols := rowsCols(t)
	return b.produce(t.dt, []int{rows, hi - lo}, func(out *Tensor) {
		t := b.get(x)
		if n := rows * (hi - lo); n > 0 {
			b.launch("columns", grid1(n), block256, 0, pArg(t.ptr()), pArg(out.ptr()), iArg(rows), iArg(cols), iArg(lo), iArg(hi-lo), iArg(t.dt.Size()))
		}
	})
}

func (b *Backend) FillColumnsInPlace(x compute.Tensor, lo, hi int, vals []float32) {
	mustF32("FillColumnsInPlace", tensorOf("FillColumnsInPlace", x))
	vals = slices.Clone(vals[:hi-lo])
	b.async(func() {
		t := b.get(x)
		b.dropShadow(t.buf)
		rows, cols := rowsCols(t)
		n := rows * (hi - lo)
		if n == 0 || b.err != nil {
			return
		}
		v := b.uploadFloats(vals)
		b.launch("fill_columns", grid1(n), block256, 0, pArg(t.ptr()), pArg(v.ptr), iArg(rows), iArg(cols), iArg(lo), iArg(hi-lo))
		b.releaseTemp(v)
	})
}

func (b *Backend) Linear(x, w, bias compute.Tensor) compute.Tensor {
	xt, wt := tensorOf("Linear", x), tensorOf("Linear", w)
	mustF32("Linear (input)", xt)
	m, k := rowsCols(xt)
	if len(wt.shape) != 2 || wt.shape[1] != k {
		panic(fmt.Sprintf("cuda: Linear x %v · wᵀ %v", xt.shape, wt.shape))
	}
	n := wt.shape[0]
	return b.produce(compute.F32, []int{m, n}, func(out *Tensor) {
		xt, wt := b.get(x), b.get(w)
		a := xt
		if wt.dt != compute.F32 {
			a = b.rounded(xt, wt.dt) // x's shadow, kept for the next product of x
		}
		b.gemmNT(m, n, k, a.ptr(), wt.ptr(), k, k, wt.dt, out.ptr(), n, 0)
		if bias != nil {
			bt, tmp := b.f32(b.get(bias))
			b.launch("add_bcast", grid1(m*n), block256, 0, pArg(out.ptr()), pArg(bt.ptr()), lArg(m*n), iArg(n))
			if tmp {
				b.releaseTemp(bt.buf)
			}
		}
	})
}

// LinearAdd is r + x·wᵀ + bias (compute.LinearAdder): the product writes
// r plus itself, with the add as cuBLASLt's epilogue (beta = 1, C = r),
// so the residual stream is read once, by the product. The bias, when
// there is one, is added after.
func (b *Backend) LinearAdd(x, w, bias, r compute.Tensor) compute.Tensor {
	xt, wt, rt := tensorOf("LinearAdd", x), tensorOf("LinearAdd", w), tensorOf("LinearAdd", r)
	mustF32("LinearAdd (input)", xt)
	mustF32("LinearAdd (residual)", rt)
	m, k := rowsCols(xt)
	if len(wt.shape) != 2 || wt.shape[1] != k {
		panic(fmt.Sprintf("cuda: LinearAdd x %v · wᵀ %v", xt.shape, wt.shape))
	}
	n := wt.shape[0]
	if rt.numel() != m*n {
		panic(fmt.Sprintf("cuda: LinearAdd residual %v for a [%d %d] product", rt.shape, m, n))
	}
	return b.produce(compute.F32, []int{m, n}, func(out *Tensor) {
		xt, wt, rt := b.get(x), b.get(w), b.get(r)
		a := xt
		if wt.dt != compute.F32 {
			a = b.rounded(xt, wt.dt)
		}
		b.gemmNTC(m, n, k, a.ptr(), wt.ptr(), k, k, wt.dt, rt.ptr(), out.ptr(), n, 1)
		if bias != nil {
			bt, tmp := b.f32(b.get(bias))
			b.launch("add_bcast", grid1(m*n), block256, 0, pArg(out.ptr()), pArg(bt.ptr()), lArg(m*n), iArg(n))
			if tmp {
				b.releaseTemp(bt.buf)
			}
		}
	})
}

func (b *Backend) Add(x, y compute.Tensor) compute.Tensor {
	xt, yt := tensorOf("Add", x), tensorOf("Add", y)
	mustF32("Add", xt, yt)
	if xt.numel() != yt.numel() {
		panic(fmt.Sprintf("cuda: Add %v + %v", xt.shape, yt.shape))
	}
	return b.produce(compute.F32, xt.shape, func(out *Tensor) {
		xt, yt := b.get(x), b.get(y)
		n := xt.numel()
		b.launch("add", grid1(n/4), block256, 0, pArg(xt.ptr()), pArg(yt.ptr()), pArg(out.ptr()), lArg(n))
	})
}

func (b *Backend) Mul(x, y compute.Tensor) compute.Tensor {
	xt, yt := tensorOf("Mul", x), tensorOf("Mul", y)
	mustF32("Mul", xt, yt)
	if xt.numel() != yt.numel() {
		panic(fmt.Sprintf("cuda: Mul %v * %v", xt.shape, yt.shape))
	}
	return b.produce(compute.F32, xt.shape, func(out *Tensor) {
		xt, yt := b.get(x), b.get(y)
		n := xt.numel()
		b.launch("mul", grid1(n), block256, 0, pArg(xt.ptr()), pArg(yt.ptr()), pArg(out.ptr()), lArg(n))
	})
}

func (b *Backend) AddInPlace(x, y compute.Tensor) {
	xt, yt := tensorOf("AddInPlace", x), tensorOf("AddInPlace", y)
	mustF32("AddInPlace", xt)
	_, cols := rowsCols(xt)
	if yt.numel() != xt.numel() && yt.numel() != cols {
		panic(fmt.Sprintf("cuda: AddInPlace %v += %v", xt.shape, yt.shape))
	}
	b.async(func() {
		xt, yt := b.get(x), b.get(y)
		if b.err != nil {
			return
		}
		b.dropShadow(xt.buf)
		yf, tmp := b.f32(yt)
		n := xt.numel()
		if yf.numel() == n {
			b.launch("add", grid1(n), block256, 0, pArg(xt.ptr()), pArg(yf.ptr()), pArg(xt.ptr()), lArg(n))
		} else {
			b.launch("add_bcast", grid1(n), block256, 0, pArg(xt.ptr()), pArg(yf.ptr()), lArg(n), iArg(cols))
		}
		if tmp {
			b.releaseTemp(yf.buf)
		}
	})
}

func (b *Backend) ScaleInPlace(x compute.Tensor, s float32) {
	mustF32("ScaleInPlace", tensorOf("ScaleInPlace", x))
	b.async(func() {
		t := b.get(x)
		b.dropShadow(t.buf)
		n := t.numel()
		b.launch("scale", grid1(n), block256, 0, pArg(t.ptr()), fArg(s), lArg(n))
	})
}

func (b *Backend) RMSNorm(x, w compute.Tensor, eps float32) compute.Tensor {
	xt := tensorOf("RMSNorm", x)
	mustF32("RMSNorm", xt)
	return b.produce(compute.F32, xt.shape, func(out *Tensor) {
		xt := b.get(x)
		wt, tmp := b.vec(w)
		if rows, cols := rowsCols(xt); rows > 0 {
			b.launch("rmsnorm", [3]int{rows, 1, 1}, block256, 0, pArg(xt.ptr()), pArg(wt.ptr()), pArg(out.ptr()), b.shadowPtr(out), iArg(cols), fArg(eps))
		}
		if tmp {
			b.releaseTemp(wt.buf)
		}
	})
}

func (b *Backend) LayerNorm(x, w, bias compute.Tensor, eps float32) compute.Tensor {
	xt := tensorOf("LayerNorm", x)
	mustF32("LayerNorm", xt)
	return b.produce(compute.F32, xt.shape, func(out *Tensor) {
		xt := b.get(x)
		wt, tw := b.vec(w)
		bt, tb := b.vec(bias)
		if rows, cols := rowsCols(xt); rows > 0 {
			b.launch("layernorm", [3]int{rows, 1, 1}, block256, 0, pArg(xt.ptr()), pArg(wt.ptr()), pArg(bt.ptr()), pArg(out.ptr()), iArg(cols), fArg(eps))
		}
		if tw {
			b.releaseTemp(wt.buf)
		}
		if tb {
			b.releaseTemp(bt.buf)
		}
	})
}

func (b *Backend) SwiGLU(gate, up compute.Tensor) compute.Tensor {
	g, u := tensorOf("SwiGLU", gate), tensorOf("SwiGLU", up)
	mustF32("SwiGLU", g, u)
	return b.produce(compute.F32, g.shape, func(out *Tensor) {
		g, u := b.get(gate), b.get(up)
		n := g.numel()
		b.launch("swiglu", grid1(n/4), block256, 0, pArg(g.ptr()), pArg(u.ptr()), pArg(out.ptr()), b.shadowPtr(out), lArg(n))
	})
}

func (b *Backend) GELU(x compute.Tensor, tanh bool) compute.Tensor {
	xt := tensorOf("GELU", x)
	mustF32("GELU", xt)
	form := 0
	if tanh {
		form = 1
	}
	return b.produce(compute.F32, xt.shape, func(out *Tensor) {
		t := b.get(x)
		n := t.numel()
		b.launch("gelu", grid1(n), block256, 0, pArg(t.ptr()), pArg(out.ptr()), lArg(n), iArg(form))
	})
}

func (b *Backend) Embed(table compute.Tensor, ids []int) compute.Tensor {
	t := tensorOf("Embed", table)
	_, cols := rowsCols(t)
	ids = slices.Clone(ids)
	return b.produce(compute.F32, []int{len(ids), cols}, func(out *Tensor) {
		t := b.get(table)
		if len(ids) == 0 {
			return
		}
		idx := b.uploadInts(ids)
		n := len(ids) * cols
		b.launch("embed", grid1(n), block256, 0, pArg(t.ptr()), pArg(idx.ptr), pArg(out.ptr()), iArg(len(ids)), iArg(cols), iArg(int(t.dt)))
		b.releaseTemp(idx)
	})
}

func (b *Backend) RotaryInPlace(x compute.Tensor, heads, headDim, rotDim int, pos []int, invFreq []float32) {
	mustF32("RotaryInPlace", tensorOf("RotaryInPlace", x))
	pos, inv := slices.Clone(pos), slices.Clone(invFreq[:rotDim/2])
	b.async(func() {
		t := b.get(x)
		b.dropShadow(t.buf)
		rows, _ := rowsCols(t)
		n := rows * (rotDim / 2) // threads: one per (row, pair), looping over the heads
		if n == 0 || heads == 0 || b.err != nil {
			return
		}
		// With full rotary the kernel writes the bf16 copy attention
		// reads (q and k's shadows) as it rotates: no separate rounding.
		var xh uint64
		if rotDim == headDim {
			xh = b.shadowPtr(t)
		}
		p := b.uploadInts(pos)
		f := b.uploadFloats(inv)
		b.launch("rotary", grid1(n), block256, 0, pArg(t.ptr()), xh, pArg(p.ptr), pArg(f.ptr), iArg(rows), iArg(heads), iArg(headDim), iArg(rotDim))
		b.releaseTemp(p)
		b.releaseTemp(f)
	})
}

// cloneMask copies the parts of a mask a queued operation reads later.
func cloneMask(m compute.AttnMask) compute.AttnMask {
	m.KeyValid = slices.Clone(m.KeyValid)
	return m
}

func (b *Backend) AttentionScores(q, k compute.Tensor, s compute.AttnShape, scale float32, mask compute.AttnMask) compute.Tensor {
	mustF32("AttentionScores", tensorOf("AttentionScores", q), tensorOf("AttentionScores", k))
	mask = cloneMask(mask)
	return b.produce(compute.F32, []int{s.B, s.H, s.Tq, s.Tk}, func(out *Tensor) {
		b.scoresInto(out, b.get(q), b.get(k), s, scale, mask)
	})
}

func (b *Backend) SoftmaxRows(x compute.Tensor) compute.Tensor {
	t := tensorOf("SoftmaxRows", x)
	mustF32("SoftmaxRows", t)
	return b.produce(compute.F32, t.shape, func(out *Tensor) {
		t := b.get(x)
		if rows, cols := rowsCols(t); rows > 0 {
			b.launch("softmax_rows", [3]int{rows, 1, 1}, block256, 0, pArg(t.ptr()), pArg(out.ptr()), iArg(cols))
		}
	})
}

func (b *Backend) AttentionMix(pattern, v compute.Tensor, s compute.AttnShape) compute.Tensor {
	mustF32("AttentionMix", tensorOf("AttentionMix", pattern), tensorOf("AttentionMix", v))
	return b.produce(compute.F32, []int{s.B * s.Tq, s.H * s.Dh}, func(out *Tensor) {
		pt, vt := b.get(pattern), b.get(v)
		if out.numel() == 0 {
			return
		}
		grid := [3]int{(s.Dh + 31) / 32, (s.Tq + 31) / 32, s.B * s.H}
		b.launch("attn_mix", grid, [3]int{32, 8, 1}, 0, pArg(pt.ptr()), pArg(vt.ptr()), pArg(out.ptr()),
			iArg(s.B), iArg(s.Tq), iArg(s.Tk), iArg(s.Tcap), iArg(s.H), iArg(s.Hkv), iArg(s.Dh))
	})
}
