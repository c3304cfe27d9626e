package cuda

import (
	_ "embed"
	"fmt"
	"slices"

	"github.com/loupe-dev/loupe/probe/compute"
)

// The Llama block's input products as one matrix product each
// (compute.FusedProjector): q/k/v from the stacked [Wq; Wk; Wv] and
// gate/up from [Wgate; Wup], the weights stacked once at load. The product
// writes one float32 temporary [rows, q + 2kv] (or [rows, 2F]); the
// consumer's kernel reads it once and splits it: qkv_rotary writes q, k
// and v, q and k rotated, with the bf16 copies attention reads (no rotary
// or rounding launches of their own), swiglu_split writes silu(gate)·up
// and its bf16 copy, as swiglu does.

//go:embed proj.cu
var projSource string

// projNames are proj.cu's kernels (compiled in the kernels module).
var projNames = []string{"qkv_rotary", "swiglu_split"}

// RowsView is rows [lo, hi) of a 2-D weight, sharing its memory
// (compute.FusedProjector). The view has no bf16 copy of its own: it is
// for weights, which are stored in their dtype and never changed. Where
// the rows do not start on a 256-byte boundary, which cuBLASLt's plans
// assume of every operand (its default minimum alignment), it is a copy.
func (b *Backend) RowsView(w compute.Tensor, lo, hi int) compute.Tensor {
	t := tensorOf("RowsView", w)
	if len(t.shape) != 2 || lo < 0 || hi > t.shape[0] || lo > hi {
		panic(fmt.Sprintf("cuda: RowsView [%d, %d) of %v", lo, hi, t.shape))
	}
	cols := t.shape[1]
	off := t.off + uintptr(lo*cols*t.dt.Size())
	if off%256 != 0 {
		return b.Rows(w, lo, hi)
	}
	return &Tensor{shape: []int{hi - lo, cols}, dt: t.dt, buf: t.buf, off: off}
}

// stackedProduct checks x [M, K] · wᵀ for a stacked weight w [N, K] and
// gives M, N and K.
func stackedProduct(op string, xt, wt *Tensor) (m, n, k int) {
	mustF32(op+" (input)", xt)
	m, k = rowsCols(xt)
	if len(wt.shape) != 2 || wt.shape[1] != k {
		panic(fmt.Sprintf("cuda: %s x %v · wᵀ %v", op, xt.shape, wt.shape))
	}
	return m, wt.shape[0], k
}

// product runs x·wᵀ into a float32 temporary [m, n] (owner goroutine);
// the caller releases it.
func (b *Backend) product(x, w compute.Tensor, m, n, k int) *Tensor {
	xt, wt := b.get(x), b.get(w)
	a := xt
	if wt.dt != compute.F32 {
		a = b.rounded(xt, wt.dt) // x's shadow, kept for the next product of x
	}
	y := b.newTensor(compute.F32, m, n)
	b.gemmNT(m, n, k, a.ptr(), wt.ptr(), k, k, wt.dt, y.ptr(), n, 0)
	return y
}

// LinearQKVRotary is q, k, v from one product, q and k rotated
// (compute.FusedProjector).
func (b *Backend) LinearQKVRotary(x, w compute.Tensor, H, Hkv, dh int, pos []int, invFreq []float32) (q, k, v compute.Tensor) {
	m, n, kd := stackedProduct("LinearQKVRotary", tensorOf("LinearQKVRotary", x), tensorOf("LinearQKVRotary", w))
	if n != (H+2*Hkv)*dh || dh%2 != 0 || len(pos) != m || len(invFreq) < dh/2 {
		panic(fmt.Sprintf("cuda: LinearQKVRotary: weight of %d rows for %d+2·%d heads of %d, %d positions for %d rows, %d frequencies", n, H, Hkv, dh, len(pos), m, len(invFreq)))
	}
	pos, inv := slices.Clone(pos), slices.Clone(invFreq[:dh/2])
	newOut := func(cols int) *Tensor {
		return &Tensor{shape: []int{m, cols}, dt: compute.F32, buf: &buffer{scope: -1}}
	}
	qt, kt, vt := newOut(H*dh), newOut(Hkv*dh), newOut(Hkv*dh)
	b.async(func() {
		b.place(qt)
		b.place(kt)
		b.place(vt)
		if b.err != nil || m == 0 {
			return
		}
		y := b.product(x, w, m, n, kd)
		qh, kh, vh := b.shadowPtr(qt), b.shadowPtr(kt), b.shadowPtr(vt)
		p, f := b.uploadInts(pos), b.uploadFloats(inv)
		b.launch("qkv_rotary", grid1(m*dh/2), block256, 0, pArg(y.ptr()), pArg(qt.ptr()), pArg(kt.ptr()), pArg(vt.ptr()),
			qh, kh, vh, pArg(p.ptr), pArg(f.ptr), iArg(m), iArg(H), iArg(Hkv), iArg(dh))
		b.releaseTemp(p)
		b.releaseTemp(f)
		b.releaseTemp(y.buf)
	})
	return qt, kt, vt
}

// LinearSwiGLU is silu(gate)·up from one product (compute.FusedProjector).
func (b *Backend) LinearSwiGLU(x, w compute.Tensor) compute.Tensor {
	m, n, kd := stackedProduct("LinearSwiGLU", tensorOf("LinearSwiGLU", x), tensorOf("LinearSwiGLU", w))
	if n%2 != 0 {
		panic(fmt.Sprintf("cuda: LinearSwiGLU: a stacked gate/up weight of %d rows", n))
	}
	F := n / 2
	return b.produce(compute.F32, []int{m, F}, func(out *Tensor) {
		if m == 0 {
			return
		}
		y := b.product(x, w, m, n, kd)
		b.launch("swiglu_split", grid1(m*F/4), block256, 0, pArg(y.ptr()), pArg(out.ptr()), b.shadowPtr(out), lArg(m), iArg(F))
		b.releaseTemp(y.buf)
	})
}

var _ compute.FusedProjector = (*Backend)(nil)
