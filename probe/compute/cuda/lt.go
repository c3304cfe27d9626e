package cuda

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"github.com/ebitengine/purego"
	"github.com/loupe-dev/loupe/probe/compute"
)

// Matrix products through cuBLASLt. cublasLtMatmul computes
// D = alpha·op(A)·op(B) + beta·C with C and D separate matrices, which
// GemmEx cannot: the residual add of a block (x + W_O·z, x + W_down·h)
// becomes the product's epilogue instead of a separate pass over the
// residual stream (Backend.LinearAdd). Every product of the forward pass
// goes through it when libcublasLt has the functions; otherwise (or with
// LOUPE_CUBLASLT=0, for measurements) through cublasGemmEx as before.
//
// A plan (the descriptors and the algorithm cuBLASLt's heuristic picks)
// is made once per shape and kept: a forward pass repeats a handful of
// shapes, and asking the heuristic costs tens of microseconds of host time.

type ltAPI struct {
	create, descCreate, descSet, layoutCreate, prefCreate, prefSet, heuristic, matmul uintptr
}

// loadLt resolves cuBLASLt's functions through cuBLAS's handle (libcublas
// depends on libcublasLt, which libs.go opened beside it).
func loadLt(path string) (*ltAPI, error) {
	h, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		return nil, fmt.Errorf("cuda: cuBLASLt: %v", err)
	}
	l := &ltAPI{}
	err = symbols(h, path+" (cuBLASLt)", map[string]*uintptr{
		"cublasLtCreate": &l.create, "cublasLtMatmulDescCreate": &l.descCreate,
		"cublasLtMatmulDescSetAttribute": &l.descSet, "cublasLtMatrixLayoutCreate": &l.layoutCreate,
		"cublasLtMatmulPreferenceCreate": &l.prefCreate, "cublasLtMatmulPreferenceSetAttribute": &l.prefSet,
		"cublasLtMatmulAlgoGetHeuristic": &l.heuristic, "cublasLtMatmul": &l.matmul,
	})
	if err != nil {
		return nil, err
	}
	return l, nil
}

// ltCompanion is the libcublasLt that goes with the libcublas at path: the
// file beside it (libs.go opened it first), else the soname of the same
// major version.
func ltCompanion(path string) string {
	for _, c := range libCUBLAS.companions {
		if ms := newestFirst(globAll(filepath.Join(filepath.Dir(path), c))); len(ms) > 0 {
			return ms[0]
		}
	}
	if strings.HasSuffix(path, ".so.12") {
		return "libcublasLt.so.12"
	}
	return "libcublasLt.so.13"
}

// ltWorkspaceBytes is the workspace cuBLASLt may use (NVIDIA's advice for
// Hopper is 32 MiB).
const ltWorkspaceBytes = 32 << 20

// ltState is the backend's cuBLASLt handle, workspace and plans (owned by
// the owner goroutine).
type ltState struct {
	api    *ltAPI
	handle uintptr
	pref   uintptr
	ws     uintptr
	plans  map[ltKey]*ltPlan
}

type ltKey struct {
	m, n, k, lda, ldw, ldc int
	dt                     compute.DType
	withC                  bool
}

// ltPlan is one shape's descriptors and algorithm; nil algo means the
// heuristic found none and the product goes to GemmEx.
type ltPlan struct {
	desc, a, b, c uintptr
	algo          [64]byte
	ok            bool
}

const (
	ltDescTransA  = 3 // CUBLASLT_MATMUL_DESC_TRANSA
	ltDescTransB  = 4 // CUBLASLT_MATMUL_DESC_TRANSB
	ltPrefMaxWS   = 1 // CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES
	ltHeuristicSz = 96
)

// setupLt opens cuBLASLt for this backend; a failure leaves b.lt nil and
// products on GemmEx (the error is not fatal: GemmEx is correct, only
// without epilogues).
func (b *Backend) setupLt() {
	if os.Getenv("LOUPE_CUBLASLT") == "0" {
		return
	}
	api, err := loadLt(b.cb.ltPath)
	if err != nil {
		return
	}
	s := &ltState{api: api, plans: map[ltKey]*ltPlan{}}
	if call(api.create, uintptr(unsafe.Pointer(&s.handle))) != 0 {
		return
	}
	if call(api.prefCreate, uintptr(unsafe.Pointer(&s.pref))) != 0 {
		return
	}
	ws := uint64(ltWorkspaceBytes)
	if call(api.prefSet, s.pref, ltPrefMaxWS, uintptr(unsafe.Pointer(&ws)), 8) != 0 {
		return
	}
	if call(b.d.cuMemAlloc, uintptr(unsafe.Pointer(&s.ws)), ltWorkspaceBytes) != 0 {
		return
	}
	b.lt = s
}

func (b *Backend) teardownLt() {
	if b.lt != nil && b.lt.ws != 0 {
		call(b.d.cuMemFree, b.lt.ws)
	}
}

// plan gives the cached plan of a product shape, making it on first use.
func (s *ltState) plan(key ltKey) *ltPlan {
	if p, ok := s.plans[key]; ok {
		return p
	}
	p := &ltPlan{}
	s.plans[key] = p
	api := s.api
	if call(api.descCreate, uintptr(unsafe.Pointer(&p.desc)), computeF32, 0) != 0 { // scale type CUDA_R_32F
		return p
	}
	opT, opN := int32(1), int32(0)
	if call(api.descSet, p.desc, ltDescTransA, uintptr(unsafe.Pointer(&opT)), 4) != 0 ||
		call(api.descSet, p.desc, ltDescTransB, uintptr(unsafe.Pointer(&opN)), 4) != 0 {
		return p
	}
	// Column-major, as cuBLAS sees Loupe's row-major matrices: A = w [k, n]
	// (transposed), B = x [k, m], C = D = out [n, m].
	if call(api.layoutCreate, uintptr(unsafe.Pointer(&p.a)), cudaType(key.dt), uintptr(key.k), uintptr(key.n), uintptr(key.ldw)) != 0 ||
		call(api.layoutCreate, uintptr(unsafe.Pointer(&p.b)), cudaType(key.dt), uintptr(key.k), uintptr(key.m), uintptr(key.lda)) != 0 ||
		call(api.layoutCreate, uintptr(unsafe.Pointer(&p.c)), cudaType(compute.F32), uintptr(key.n), uintptr(key.m), uintptr(key.ldc)) != 0 {
		return p
	}
	var res [ltHeuristicSz]byte
	var got int32
	if call(api.heuristic, s.handle, p.desc, p.a, p.b, p.c, p.c, s.pref, 1, uintptr(unsafe.Pointer(&res[0])), uintptr(unsafe.Pointer(&got))) != 0 || got < 1 {
		return p
	}
	copy(p.algo[:], res[:64])
	p.ok = true
	return p
}

// gemmLt computes d[M,N] = a[M,K]·w[N,K]ᵀ + beta·c (row-major, d float32;
// c may be d, or 0 when beta is 0) through cuBLASLt. It reports false when
// cuBLASLt cannot run the shape, leaving the product to the caller.
func (b *Backend) gemmLt(m, n, k int, a, w uintptr, lda, ldw int, dt compute.DType, c, d uintptr, ldc int, beta float32) bool {
	if b.lt == nil {
		return false
	}
	p := b.lt.plan(ltKey{m: m, n: n, k: k, lda: lda, ldw: ldw, ldc: ldc, dt: dt, withC: beta != 0})
	if !p.ok {
		return false
	}
	if c == 0 {
		c = d
	}
	alpha := float32(1)
	r := call(b.lt.api.matmul, b.lt.handle, p.desc, uintptr(unsafe.Pointer(&alpha)), w, p.a, a, p.b,
		uintptr(unsafe.Pointer(&beta)), c, p.c, d, p.c, uintptr(unsafe.Pointer(&p.algo[0])), b.lt.ws, ltWorkspaceBytes, b.stream)
	if r != 0 {
		b.fail(fmt.Errorf("cuda: cublasLtMatmul %dx%dx%d %s: status %d (%s)", m, n, k, dt, r, b.blasStatus(r)))
	}
	return true
}
