// Package compute is the small set of tensor operations that Loupe's model
// definitions are written against. A Backend owns its tensors: the CPU
// backend keeps them in Go slices, a device backend in device memory. Model
// code calls only these operations and never asks which device it runs on.
//
// Conventions, for every operation:
//   - Tensors are float32, row-major; the last dimension is contiguous.
//   - Activations of a batch are [B*T, D]: row b*T+t holds position t of
//     sequence b.
//   - A linear layer's weight is [out, in] (the PyTorch nn.Linear layout),
//     so Linear computes x·Wᵀ + b.
//   - Attention tensors: queries [B*Tq, H*Dh]; keys and values
//     [B*Tcap, Hkv*Dh] of which the first Tk positions of each sequence are
//     valid (a KV cache may hold more capacity than is filled); scores and
//     patterns [B, H, Tq, Tk]; the mixed values z [B*Tq, H*Dh]. Query head h
//     reads key/value head h/(H/Hkv) (grouped-query attention).
package compute

// Tensor is an n-dimensional float32 array owned by a Backend.
type Tensor interface {
	Shape() []int
}

// Numel is the number of elements of a shape.
func Numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// AttnMask says which keys a query may attend to.
type AttnMask struct {
	// Past is the number of key positions before the first query: query i
	// sits at key position Past+i. With Causal set it sees keys 0..Past+i.
	Past   int
	Causal bool
	// KeyValid, when not nil, is [B*Tk]: false marks a padding key that no
	// query may attend to.
	KeyValid []bool
	// Window, when > 0, is a sliding window: a query at absolute position p
	// (Past+i) sees key j only if p-j < Window (Mistral, Gemma 3's local
	// layers). Positions are key indices, padding included, as in
	// transformers' sliding-window mask.
	Window int
}

// AttnShape gives the sizes of one attention computation.
type AttnShape struct {
	B, Tq, Tk, Tcap int // batch, queries, valid keys, key capacity per sequence
	H, Hkv, Dh      int // query heads, key/value heads, head dimension
}

// Backend is a compute device. Every operation returns a new tensor unless
// its name ends in InPlace.
type Backend interface {
	Name() string

	// FromHost copies data into a new tensor of the given shape.
	FromHost(data []float32, shape ...int) Tensor
	// Zeros makes a zero tensor.
	Zeros(shape ...int) Tensor
	// ToHost copies a tensor out.
	ToHost(t Tensor) []float32
	// Reshape views t with a new shape of the same size.
	Reshape(t Tensor, shape ...int) Tensor
	// Rows copies rows [lo, hi) of a 2-D tensor.
	Rows(t Tensor, lo, hi int) Tensor
	// GatherRows copies the given rows of a 2-D tensor, in order.
	GatherRows(t Tensor, rows []int) Tensor
	// CopyRowsInPlace writes src's rows into dst starting at row off.
	CopyRowsInPlace(dst, src Tensor, off int)
	// Columns copies columns [lo, hi) of a 2-D tensor.
	Columns(t Tensor, lo, hi int) Tensor
	// FillColumnsInPlace sets columns [lo, hi) of every row of a 2-D tensor
	// to vals (len hi-lo).
	FillColumnsInPlace(t Tensor, lo, hi int, vals []float32)

	// Linear computes x·Wᵀ (+ bias): x [M, K], w [N, K], bias [N] or nil.
	Linear(x, w, bias Tensor) Tensor
	// Add computes a + b elementwise (same shapes).
	Add(a, b Tensor) Tensor
	// Mul computes a * b elementwise (same shapes).
	Mul(a, b Tensor) Tensor
	// AddInPlace adds b to a; b may also be one row broadcast over a's rows.
	AddInPlace(a, b Tensor)
	// ScaleInPlace multiplies every element by s.
	ScaleInPlace(a Tensor, s float32)

	// RMSNorm normalises each row: x / sqrt(mean(x²) + eps) * w.
	RMSNorm(x, w Tensor, eps float32) Tensor
	// LayerNorm normalises each row to zero mean and unit variance, then
	// scales by w and shifts by b.
	LayerNorm(x, w, b Tensor, eps float32) Tensor
	// SwiGLU computes silu(gate) * up.
	SwiGLU(gate, up Tensor) Tensor
	// GELU applies GELU: the tanh approximation when tanh is set, else the
	// exact erf form.
	GELU(x Tensor, tanh bool) Tensor

	// Embed gathers rows of table [V, D] for ids: [len(ids), D].
	Embed(table Tensor, ids []int) Tensor
	// RotaryInPlace rotates the first rotDim dimensions of every head of
	// x [N, heads*headDim] in the rotate-half convention (pairs (i, i+rotDim/2)),
	// row r at position pos[r], with angles pos·invFreq[i].
	RotaryInPlace(x Tensor, heads, headDim, rotDim int, pos []int, invFreq []float32)

	// Attention is the fused attention operation (DESIGN decision 8): it
	// returns z and what spec asks (full scores or pattern, reductions of
	// the exact softmax), building nothing of size Tq×Tk unless the full
	// scores or pattern are asked. attention.go states the contract.
	Attention(q, k, v Tensor, s AttnShape, scale float32, mask AttnMask, spec AttnSpec) AttnResult

	// AttentionScores computes scale·q·kᵀ with masked entries set to -Inf:
	// [B, H, Tq, Tk].
	AttentionScores(q, k Tensor, s AttnShape, scale float32, mask AttnMask) Tensor
	// SoftmaxRows applies softmax over the last dimension. A row that is
	// entirely -Inf becomes all zeros.
	SoftmaxRows(x Tensor) Tensor
	// AttentionMix computes z = pattern·v: [B*Tq, H*Dh].
	AttentionMix(pattern, v Tensor, s AttnShape) Tensor

	// ArgmaxRows gives the index of each row's largest element.
	ArgmaxRows(x Tensor) []int

	Reducer
}

// Reducer computes small summaries of attention patterns [B, H, Tq, Tk]
// where they live, so the full pattern never has to reach the host.
type Reducer interface {
	// TopKRows gives, for every row, the k largest entries' column indices
	// and values, largest first: [rows*k] each.
	TopKRows(x Tensor, k int) (idx []int32, val []float32)
	// SpanMassRows sums each row over columns [lo, hi): [rows].
	SpanMassRows(x Tensor, lo, hi int) []float32
	// EntropyRows gives each row's entropy -Σ p log p (natural log): [rows].
	EntropyRows(x Tensor) []float32
}
