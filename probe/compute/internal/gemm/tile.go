package gemm

import "fmt"

// Tiles gives direct use of the micro-kernel in use, for a caller that
// keeps its operands packed across many small products and would
// otherwise pay a packing per product: the CPU's fused attention packs
// each sequence's keys and values once and its queries once per block,
// then runs thousands of 64-deep tile products on them.
type Tiles struct {
	// MR and NR are the tile's rows and columns.
	MR, NR int
	im     *impl
}

// Tile returns the micro-kernel that MulNT and MulNN use.
func Tile() Tiles { return Tiles{MR: best.mr, NR: best.nr, im: best} }

// Mul computes the MR×NR tile C = alpha·Σ_{p<k} a[p·MR:(p+1)·MR] ⊗
// b[p·NR:(p+1)·NR] + beta·C, C[i][j] at c[i·ldc+j]; beta == 0 overwrites
// C. a holds k groups of MR floats (column p of an MR-row block of A), b
// k groups of NR floats (row p of an NR-column block of B): the packed
// panels of the blocked product.
func (t Tiles) Mul(k int, a, b, c []float32, ldc int, alpha, beta float32) {
	if k <= 0 {
		panic(fmt.Sprintf("gemm: Tiles.Mul: k = %d", k))
	}
	if len(a) < k*t.MR || len(b) < k*t.NR || ldc < t.NR || len(c) < (t.MR-1)*ldc+t.NR {
		panic(fmt.Sprintf("gemm: Tiles.Mul: %d, %d and %d floats for k=%d, an %d×%d tile and ldc %d", len(a), len(b), len(c), k, t.MR, t.NR, ldc))
	}
	t.im.kern(k, &a[0], &b[0], &c[0], ldc, alpha, beta)
}
