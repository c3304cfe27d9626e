package compute

// FusedProjector is a backend that runs a Llama block's input products as
// one matrix product each, on weights concatenated once at load: q, k and
// v from x·[Wq; Wk; Wv]ᵀ, and gate and up from x·[Wgate; Wup]ᵀ. One large
// product keeps the tensor cores busier than three or two smaller ones,
// and the split happens inside the consumer's kernel (RoPE, SwiGLU), so it
// costs no pass of its own. The model uses it only where no hook needs
// q, k, v (before or after RoPE), gate or up on their own; the separate
// weights are row views of the concatenated one, for every other path.
type FusedProjector interface {
	// RowsView is rows [lo, hi) of a 2-D weight [R, C], sharing its
	// memory (row-major, so the rows are one contiguous block) where the
	// backend can address it there, or else a copy (the GPU's products
	// want 256-byte-aligned operands). For weights, which nothing changes
	// in place, so the two cannot be told apart.
	RowsView(w Tensor, lo, hi int) Tensor
	// LinearQKVRotary computes x·wᵀ for w = [Wq; Wk; Wv]
	// [(H+2·Hkv)·dh, D] and returns q [N, H·dh], k and v [N, Hkv·dh], q and
	// k rotated in the rotate-half convention over every dimension of each
	// head, row r at position pos[r] with angles pos·invFreq[i]: what
	// Linear with each part and RotaryInPlace with rotDim = dh give.
	LinearQKVRotary(x, w Tensor, H, Hkv, dh int, pos []int, invFreq []float32) (q, k, v Tensor)
	// LinearSwiGLU computes silu(x·Wgateᵀ) ⊙ (x·Wupᵀ) for w = [Wgate; Wup]
	// [2F, D]: what SwiGLU of the two Linears gives.
	LinearSwiGLU(x, w Tensor) Tensor
}
