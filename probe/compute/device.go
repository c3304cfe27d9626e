package compute

// Optional interfaces for backends whose tensors live in device memory (the
// CUDA backend). The CPU backend implements none of them; the helpers below
// do nothing for such a backend, so model code calls them unconditionally
// and never asks which device it runs on.

// DType is the element type a backend stores a tensor in. ToHost always
// gives float32 whatever the dtype.
type DType int

const (
	F32  DType = iota // float32
	BF16              // bfloat16: float32's exponent, 8 bits of mantissa
	F16               // IEEE half precision
)

func (d DType) String() string {
	switch d {
	case F32:
		return "f32"
	case BF16:
		return "bf16"
	case F16:
		return "f16"
	}
	return "dtype?"
}

// Size is the bytes of one element.
func (d DType) Size() int {
	if d == F32 {
		return 4
	}
	return 2
}

// ParseDType reads "f32"/"fp32"/"float32", "bf16"/"bfloat16" or
// "f16"/"fp16"/"float16".
func ParseDType(s string) (DType, bool) {
	switch s {
	case "f32", "fp32", "float32":
		return F32, true
	case "bf16", "bfloat16":
		return BF16, true
	case "f16", "fp16", "float16":
		return F16, true
	}
	return F32, false
}

// Typed is a tensor that says its element type.
type Typed interface {
	DType() DType
}

// DTypeOf is t's element type: F32 for a tensor that does not say.
func DTypeOf(t Tensor) DType {
	if d, ok := t.(Typed); ok {
		return d.DType()
	}
	return F32
}

// WeightStore is a backend that keeps weights in a dtype of its own
// (bf16 on a GPU): FromHostWeight stores a model weight, converting it.
// Matrices take the backend's weight dtype; vectors (norm weights, biases)
// stay float32.
type WeightStore interface {
	FromHostWeight(data []float32, shape ...int) Tensor
}

// FromHostWeight stores a model weight on b: in b's weight dtype when b
// keeps one, else as FromHost does.
func FromHostWeight(b Backend, data []float32, shape ...int) Tensor {
	if w, ok := b.(WeightStore); ok {
		return w.FromHostWeight(data, shape...)
	}
	return b.FromHost(data, shape...)
}

// Scoped is a backend that takes tensors from a memory pool. Tensors made
// between Mark and the matching Release are the scope's temporaries and
// go back to the pool at Release; tensors made outside every scope are
// owned (weights, KV caches) and live until Free or until they are
// garbage. A forward pass is one scope and each block a scope inside it,
// so a pass's peak memory is about one block's temporaries.
//
// Operations of a Scoped backend can fail (device memory runs out, the
// device reports an error). The operation then does nothing, the failure
// is kept, and the next Release or Err returns it; the backend stays
// usable.
type Scoped interface {
	// Mark opens a scope and returns its handle.
	Mark() int
	// Release closes scope s and every scope opened inside it: their
	// temporaries go back to the pool, except keep, which move to the
	// enclosing scope (or become owned). It returns the first failure of
	// any operation since the last Release or Err, and clears it.
	Release(s int, keep ...Tensor) error
	// Err returns and clears the first failure since the last Release or
	// Err.
	Err() error
	// Free returns owned tensors' memory now (not waiting for the garbage
	// collector). Freeing a scope's temporary is a no-op.
	Free(ts ...Tensor)
}

// Mark opens a scope on b (see Scoped); -1 on a backend without scopes.
func Mark(b Backend) int {
	if s, ok := b.(Scoped); ok {
		return s.Mark()
	}
	return -1
}

// Release closes scope s on b, keeping keep; it returns the first failure
// of an operation since the last check. Nil on a backend without scopes.
func Release(b Backend, s int, keep ...Tensor) error {
	if sb, ok := b.(Scoped); ok && s >= 0 {
		return sb.Release(s, keep...)
	}
	return nil
}

// Err returns and clears b's first failure since the last check (always
// nil on the CPU).
func Err(b Backend) error {
	if s, ok := b.(Scoped); ok {
		return s.Err()
	}
	return nil
}

// Free returns owned tensors' memory on b now; on the CPU the garbage
// collector does it.
func Free(b Backend, ts ...Tensor) {
	if s, ok := b.(Scoped); ok {
		s.Free(ts...)
	}
}

// Budgeted is a backend with a memory limit (a GPU): CheckFit refuses a
// model whose weights (their shapes given) cannot fit, before any is
// loaded, saying how many bytes they need and how many are free.
type Budgeted interface {
	CheckFit(shapes [][]int) error
}

// CheckFit asks b whether weights of these shapes fit (always nil on a
// backend without a limit).
func CheckFit(b Backend, shapes [][]int) error {
	if bb, ok := b.(Budgeted); ok {
		return bb.CheckFit(shapes)
	}
	return nil
}
