package compute

// LinearAdder is a backend that adds a product to a residual in the
// product itself: r + x·wᵀ + bias with the add as the matrix product's
// epilogue (cuBLASLt on a GPU), so the residual stream is not read and
// written again by a separate add.
type LinearAdder interface {
	// LinearAdd is r + Linear(x, w, bias), r of Linear's output shape.
	LinearAdd(x, w, bias, r Tensor) Tensor
}

// LinearAdd is r + x·wᵀ + bias on any backend: one operation where b is a
// LinearAdder, else Add(r, Linear(x, w, bias)). The two agree to the
// float32 rounding of one add (the product's accumulator is float32 either
// way).
func LinearAdd(b Backend, x, w, bias, r Tensor) Tensor {
	if la, ok := b.(LinearAdder); ok {
		return la.LinearAdd(x, w, bias, r)
	}
	return b.Add(r, b.Linear(x, w, bias))
}
