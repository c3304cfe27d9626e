package cuda

import (
	"fmt"

	"github.com/loupe-dev/loupe/probe/compute"
)

// Shadows: a float32 activation that feeds a bf16 (or f16) product is
// rounded to that dtype once, and the rounded copy is kept beside it, so
// the next product of the same input (q, k and v share one; gate and up
// share one) reads it instead of rounding again. Kernels that make a
// tensor which will feed a product (RMSNorm, SwiGLU, attention's z in the
// 16-bit weight modes) write the rounded copy as they write the float32
// values: one pass instead of two.
//
// A shadow is a buffer of the same elements in the half dtype. It lives
// exactly as long as its float32 buffer (same scope, or owned with it), is
// kept with it by Release, and is dropped by any operation that changes
// the float32 values in place, except CopyRowsInPlace, which writes the
// rounded rows into the shadow too: a KV cache's shadow stays a full copy
// as rows are appended, so attention never re-rounds the whole cache.

// halfDType is the dtype shadows are kept in: the weights' (none in the
// float32 mode).
func (b *Backend) halfDType() (compute.DType, bool) {
	dt := b.opt.WeightDType
	return dt, dt == compute.BF16 || dt == compute.F16
}

// shadowOf is t's shadow in dt, or nil.
func shadowOf(t *Tensor, dt compute.DType) *buffer {
	h := t.buf.half
	if h == nil || h.dead || h.failed || t.buf.halfDT != dt {
		return nil
	}
	return h
}

// newShadow gives t's buffer a fresh (unfilled) shadow in dt, owned like
// the buffer itself; nil when the backend has failed.
func (b *Backend) newShadow(t *Tensor, dt compute.DType) *buffer {
	b.dropShadow(t.buf)
	if b.err != nil || t.buf.failed {
		return nil
	}
	parent := t.buf
	saved := b.scopes
	if parent.scope >= 0 && parent.scope < len(b.scopes) {
		b.scopes = b.scopes[:parent.scope+1] // allocInto files it in the parent's scope
	} else {
		b.scopes = nil // owned, like the parent
	}
	h := b.alloc(t.numel()*dt.Size(), func() string { return fmt.Sprintf("the %s copy of a tensor %v", dt, t.shape) })
	b.scopes = saved
	if h.failed {
		return nil
	}
	parent.half, parent.halfDT = h, dt
	return h
}

// dropShadow releases buf's shadow: its float32 values are about to
// change.
func (b *Backend) dropShadow(buf *buffer) {
	if h := buf.half; h != nil {
		buf.half = nil
		if !h.dead {
			b.releaseTemp(h)
		}
	}
}

// rounded gives t's elements in dt for a product: its shadow, made now
// (rounding t once) when it has none.
func (b *Backend) rounded(t *Tensor, dt compute.DType) *Tensor {
	if h := shadowOf(t, dt); h != nil {
		return &Tensor{shape: t.shape, dt: dt, buf: h}
	}
	h := b.newShadow(t, dt)
	if h == nil {
		return b.to16(t, dt) // a failed backend: the product does nothing anyway
	}
	out := &Tensor{shape: t.shape, dt: dt, buf: h}
	k := "cvt_f32_bf16"
	if dt == compute.F16 {
		k = "cvt_f32_f16"
	}
	if n := t.numel(); n > 0 {
		b.launch(k, grid1(n), block256, 0, pArg(t.ptr()), pArg(h.ptr), lArg(n))
	}
	return out
}

// shadowPtr makes out's shadow for a kernel that writes it beside the
// float32 values, and returns its address (0, and no shadow, in the
// float32 mode or for f16 weights: the fused kernels write bf16 only).
func (b *Backend) shadowPtr(out *Tensor) uint64 {
	dt, ok := b.halfDType()
	if !ok || dt != compute.BF16 {
		return 0
	}
	h := b.newShadow(out, dt)
	if h == nil {
		return 0
	}
	return pArg(h.ptr)
}
