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

// Transpose sets dst[j·ldd+i] = src[i·ld+j] for i < rows and j < cols,
// with the packing's AVX transposes where the CPU has them (eight or four
// rows at a time over a multiple of eight columns).
func Transpose(rows, cols int, src []float32, ld int, dst []float32, ldd int) {
	if rows <= 0 || cols <= 0 {
		return
	}
	if ld < cols || ldd < rows || len(src) < (rows-1)*ld+cols || len(dst) < (cols-1)*ldd+rows {
		panic(fmt.Sprintf("gemm: Transpose: %d×%d from %d floats (ld %d) into %d floats (ldd %d)", rows, cols, len(src), ld, len(dst), ldd))
	}
	im := best
	done, kv := 0, 0
	if im.tr8 != nil {
		kv = cols &^ 7
	}
	if kv > 0 {
		for ; done+8 <= rows; done += 8 {
			im.tr8(kv, &src[done*ld], ld, &dst[done], ldd)
		}
		for ; done+4 <= rows; done += 4 {
			im.tr4(kv, &src[done*ld], ld, &dst[done], ldd)
		}
	}
	for i := 0; i < rows; i++ {
		s := src[i*ld : i*ld+cols]
		j0 := 0
		if i < done {
			j0 = kv
		}
		for j := j0; j < cols; j++ {
			dst[j*ldd+i] = s[j]
		}
	}
}
