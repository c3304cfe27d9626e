package compute

import "github.com/loupe-dev/loupe/probe/compute/internal/gemm"

// HostMulNT computes C = alpha·A·Bᵀ + beta·C on host float32 slices with the
// CPU backend's matrix multiply (A [m,k] stride lda, B [n,k] stride ldb,
// C [m,n] stride ldc; beta == 0 overwrites C). It exists for code above
// probe that trains on the host (package sae) and needs the same kernels as
// Linear without wrapping every operand in a tensor.
func HostMulNT(m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	gemm.MulNT(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// HostMulNN computes C = alpha·A·B + beta·C on host slices (A [m,k],
// B [k,n], C [m,n], row strides lda, ldb, ldc); see HostMulNT.
func HostMulNN(m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	gemm.MulNN(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}
