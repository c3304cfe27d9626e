package gemm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// naive computes alpha·A·op(B) + beta·C in float64.
func naive(transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) []float64 {
	out := make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for p := 0; p < k; p++ {
				var bv float32
				if transB {
					bv = b[j*ldb+p]
				} else {
					bv = b[p*ldb+j]
				}
				s += float64(a[i*lda+p]) * float64(bv)
			}
			v := float64(alpha) * s
			if beta != 0 {
				v += float64(beta) * float64(c[i*ldc+j])
			}
			out[i*n+j] = v
		}
	}
	return out
}

func randSlice(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64())
	}
	return s
}

// withImpl runs f with best set to im (the package-level switch the public
// functions read), restoring it afterwards.
func withImpl(im *impl, f func()) {
	old := best
	best = im
	defer func() { best = old }()
	f()
}

type tcase struct {
	transB           bool
	m, n, k          int
	padA, padB, padC int
	alpha, beta      float32
	nanC             bool
}

func runCase(t *testing.T, r *rand.Rand, tc tcase) {
	t.Helper()
	// BLAS strides: at least one, at least the row length.
	lda := max(1, tc.k+tc.padA)
	ldc := max(1, tc.n+tc.padC)
	var ldb, bRows int
	if tc.transB {
		ldb, bRows = max(1, tc.k+tc.padB), tc.n
	} else {
		ldb, bRows = max(1, tc.n+tc.padB), tc.k
	}
	a := randSlice(r, max(0, (tc.m-1)*lda+tc.k))
	b := randSlice(r, max(0, (bRows-1)*ldb+max(tc.k, tc.n)))
	c := randSlice(r, tc.m*ldc)
	if tc.nanC {
		for i := range c {
			c[i] = float32(math.NaN())
		}
	}
	want := naive(tc.transB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, c, ldc)
	orig := append([]float32(nil), c...)
	if tc.transB {
		MulNT(tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, c, ldc)
	} else {
		MulNN(tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, c, ldc)
	}
	tol := 1e-5 * math.Sqrt(float64(max(tc.k, 1)))
	bad := 0
	for i := 0; i < tc.m; i++ {
		for j := 0; j < ldc; j++ {
			got := c[i*ldc+j]
			if j >= tc.n {
				if math.Float32bits(got) != math.Float32bits(orig[i*ldc+j]) {
					t.Fatalf("%+v: padding C[%d,%d] changed", tc, i, j)
				}
				continue
			}
			w := want[i*tc.n+j]
			// scale: magnitude of the terms summed
			mag := math.Abs(float64(tc.alpha))*math.Sqrt(float64(max(tc.k, 1))) + math.Abs(float64(tc.beta))*3 + 1
			if math.IsNaN(float64(got)) || math.Abs(float64(got)-w) > tol*mag {
				if bad < 5 {
					t.Errorf("%+v: C[%d,%d] = %v, want %v", tc, i, j, got, w)
				}
				bad++
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%+v: %d wrong elements", tc, bad)
	}
}

var sizes = []int{1, 2, 3, 5, 7, 16, 17, 31, 64, 65, 100, 257}

func TestShapes(t *testing.T) {
	for _, im := range available {
		t.Run(im.name, func(t *testing.T) {
			withImpl(im, func() {
				r := rand.New(rand.NewPCG(1, 2))
				for _, transB := range []bool{true, false} {
					for _, m := range sizes {
						for _, n := range sizes {
							for _, k := range sizes {
								if m*n*k > 300000 && (m+n+k)%3 != 0 {
									continue // keep the test quick
								}
								runCase(t, r, tcase{transB: transB, m: m, n: n, k: k, alpha: 1})
							}
						}
					}
				}
			})
		})
	}
}

func TestStridedAlphaBeta(t *testing.T) {
	for _, im := range available {
		t.Run(im.name, func(t *testing.T) {
			withImpl(im, func() {
				r := rand.New(rand.NewPCG(3, 4))
				for _, transB := range []bool{true, false} {
					for _, ab := range [][2]float32{{1, 0}, {0.5, 1}, {-2, 0.25}, {1, 1}, {0, 0.5}, {0, 0}, {3, -1}} {
						for _, nanC := range []bool{false, true} {
							if nanC && ab[1] != 0 {
								continue
							}
							for i := 0; i < 25; i++ {
								tc := tcase{
									transB: transB,
									m:      sizes[r.IntN(len(sizes))],
									n:      sizes[r.IntN(len(sizes))],
									k:      sizes[r.IntN(len(sizes))],
									padA:   r.IntN(9),
									padB:   r.IntN(9),
									padC:   r.IntN(9),
									alpha:  ab[0], beta: ab[1], nanC: nanC,
								}
								runCase(t, r, tc)
							}
						}
					}
				}
			})
		})
	}
}

// TestLarge covers products that are split across goroutines and blocked
// in k, m and n, plus the model's shapes (scaled so the naive reference
// stays quick).
func TestLarge(t *testing.T) {
	cases := []tcase{
		{transB: true, m: 1, n: 4099, k: 576, alpha: 1},            // decode unembedding
		{transB: true, m: 3, n: 1031, k: 579, alpha: 1, beta: 0.5}, // small m
		{transB: true, m: 2, n: 777, k: 5, alpha: 1},
		{transB: true, m: 129, n: 403, k: 576, alpha: 1},
		{transB: true, m: 300, n: 97, k: 1536, alpha: 1, beta: 1},
		{transB: true, m: 64, n: 301, k: 64, padA: 64 * 8, padB: 64 * 2, padC: 11, alpha: 0.125}, // attention scores
		{transB: false, m: 64, n: 64, k: 301, padA: 7, padB: 64 * 2, padC: 64 * 8, alpha: 1},     // attention · V
		{transB: false, m: 1, n: 64, k: 333, padB: 64 * 2, alpha: 1},                             // decode attention · V
		{transB: false, m: 150, n: 3300, k: 70, alpha: 1, beta: -1},
		{transB: true, m: 40, n: 3300, k: 600, alpha: 1},
		{transB: false, m: 700, n: 50, k: 300, alpha: 2},
		{transB: true, m: 1, n: 8003, k: 577, alpha: 1, beta: 2, padA: 3, padB: 5, padC: 1}, // parallel small-m NT
		{transB: false, m: 2, n: 3001, k: 2000, alpha: 1, beta: 1, padB: 9},                 // parallel small-m NN
	}
	for _, im := range available {
		t.Run(im.name, func(t *testing.T) {
			withImpl(im, func() {
				r := rand.New(rand.NewPCG(5, 6))
				for _, tc := range cases {
					t.Run(fmt.Sprintf("%v_%dx%dx%d", tc.transB, tc.m, tc.n, tc.k), func(t *testing.T) {
						runCase(t, r, tc)
					})
				}
			})
		})
	}
}

// TestImplsAgree checks that every kernel (the pure-Go fallback included)
// gives the same results as the best one on a product that is blocked in
// every dimension.
func TestImplsAgree(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	m, n, k := 301, 3203, 517
	a, b := randSlice(r, m*k), randSlice(r, n*k)
	var ref []float32
	for _, im := range available {
		c := make([]float32, m*n)
		withImpl(im, func() { MulNT(m, n, k, 1, a, k, b, k, 0, c, n) })
		if ref == nil {
			ref = c
			continue
		}
		for i := range c {
			if d := math.Abs(float64(c[i] - ref[i])); d > 1e-5*math.Sqrt(float64(k))*math.Sqrt(float64(k)) {
				t.Fatalf("%s vs %s: element %d: %v vs %v", im.name, available[0].name, i, c[i], ref[i])
			}
		}
	}
}

// TestParallelSplits forces goroutine splitting on small products, so that
// every split (by rows, by columns, small-m paths) meets ragged edges.
func TestParallelSplits(t *testing.T) {
	old := parallelFlops
	parallelFlops = 64
	defer func() { parallelFlops = old }()
	for _, im := range available {
		t.Run(im.name, func(t *testing.T) {
			withImpl(im, func() {
				r := rand.New(rand.NewPCG(11, 12))
				for i := 0; i < 300; i++ {
					runCase(t, r, tcase{
						transB: i%2 == 0,
						m:      sizes[r.IntN(len(sizes))],
						n:      sizes[r.IntN(len(sizes))],
						k:      sizes[r.IntN(len(sizes))],
						padA:   r.IntN(3), padB: r.IntN(3), padC: r.IntN(3),
						alpha: 1.5, beta: float32(i % 3),
					})
				}
			})
		})
	}
}

func TestConcurrent(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	m, n, k := 200, 300, 256
	a, b := randSlice(r, m*k), randSlice(r, n*k)
	want := make([]float32, m*n)
	MulNT(m, n, k, 1, a, k, b, k, 0, want, n)
	done := make(chan []float32)
	for g := 0; g < 8; g++ {
		go func() {
			c := make([]float32, m*n)
			for it := 0; it < 5; it++ {
				MulNT(m, n, k, 1, a, k, b, k, 0, c, n)
			}
			done <- c
		}()
	}
	for g := 0; g < 8; g++ {
		c := <-done
		for i := range c {
			if c[i] != want[i] {
				t.Fatalf("concurrent result differs at %d", i)
			}
		}
	}
}

func TestBadArgs(t *testing.T) {
	mustPanic := func(name string, f func()) {
		defer func() {
			if recover() == nil {
				t.Errorf("%s: no panic", name)
			}
		}()
		f()
	}
	buf := make([]float32, 100)
	mustPanic("short C", func() { MulNT(10, 10, 1, 1, buf, 1, buf, 1, 0, buf[:50], 10) })
	mustPanic("lda<k", func() { MulNT(2, 2, 4, 1, buf, 3, buf, 4, 0, buf, 2) })
	mustPanic("ldb<n", func() { MulNN(2, 4, 2, 1, buf, 2, buf, 3, 0, buf, 4) })
	mustPanic("negative", func() { MulNN(-1, 4, 2, 1, buf, 2, buf, 4, 0, buf, 4) })
	MulNT(0, 5, 5, 1, nil, 5, nil, 5, 0, nil, 5) // empty: no panic
}

func TestGrid(t *testing.T) {
	for _, tc := range []struct{ threads, m, n int }{
		{2, 512, 1536}, {2, 2048, 576}, {2, 64, 4096}, {16, 64, 576}, {4, 12, 32},
		{8, 4096, 4096}, {3, 100, 100}, {64, 2048, 2048}, {7, 5000, 40},
	} {
		mt, nt := (tc.m+11)/12, (tc.n+31)/32
		tm, tn := grid(tc.threads, mt, nt, tc.m, tc.n, 12, 32)
		if tm < 1 || tn < 1 || tm*tn > tc.threads || tm > mt || tn > nt {
			t.Fatalf("grid(%d, %dx%d) = %dx%d", tc.threads, tc.m, tc.n, tm, tn)
		}
		// The busiest goroutine gets at most 25% over a perfect share
		// (or one tile row/column when there are fewer tiles than that).
		busiest := ((mt + tm - 1) / tm) * ((nt + tn - 1) / tn)
		ideal := float64(mt*nt) / float64(min(tc.threads, mt*nt))
		if float64(busiest) > 1.25*ideal+float64(max(mt/tm, nt/tn)) {
			t.Errorf("grid(%d, %dx%d) = %dx%d: busiest has %d tiles, ideal %.1f", tc.threads, tc.m, tc.n, tm, tn, busiest, ideal)
		}
		t.Logf("grid(%d, %dx%d) = %dx%d", tc.threads, tc.m, tc.n, tm, tn)
	}
}

// FuzzMul checks random shapes, strides and scalars on every kernel against
// the float64 reference.
func FuzzMul(f *testing.F) {
	f.Add(uint8(1), uint8(5), uint8(7), uint8(0), uint8(1), uint8(2), true, int8(2), int8(0), uint64(1))
	f.Add(uint8(13), uint8(33), uint8(17), uint8(3), uint8(0), uint8(1), false, int8(-1), int8(3), uint64(2))
	f.Fuzz(func(t *testing.T, m, n, k, padA, padB, padC uint8, transB bool, alpha, beta int8, seed uint64) {
		r := rand.New(rand.NewPCG(seed, 99))
		tc := tcase{
			transB: transB, m: int(m % 80), n: int(n), k: int(k),
			padA: int(padA % 8), padB: int(padB % 8), padC: int(padC % 8),
			alpha: float32(alpha) / 4, beta: float32(beta) / 4,
		}
		for _, im := range available {
			withImpl(im, func() { runCase(t, r, tc) })
		}
	})
}

// TestDotNT checks the unpacked 4×4 dot-product path directly on awkward
// k (the masked tail), ragged m and n, strides and beta.
func TestDotNT(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 5))
	for _, im := range available {
		if im.dotBlock == nil {
			continue
		}
		for _, k := range []int{1, 5, 15, 16, 17, 31, 64, 100, 577} {
			for _, m := range []int{1, 4, 5, 8, 13} {
				for _, n := range []int{1, 4, 7, 9} {
					for _, beta := range []float32{0, 0.5} {
						lda, ldb, ldc := k+3, k+1, n+2
						a, b, c := randSlice(r, m*lda), randSlice(r, n*ldb), randSlice(r, m*ldc)
						want := naive(true, m, n, k, 1.5, a, lda, b, ldb, beta, c, ldc)
						im.dotNT(m, n, k, 1.5, a, lda, b, ldb, beta, c, ldc)
						for i := 0; i < m; i++ {
							for j := 0; j < n; j++ {
								if d := math.Abs(float64(c[i*ldc+j]) - want[i*n+j]); d > 1e-5*math.Sqrt(float64(k))*(1.5*math.Sqrt(float64(k))+2) {
									t.Fatalf("%s k=%d m=%d n=%d beta=%v: C[%d,%d]=%v want %v", im.name, k, m, n, beta, i, j, c[i*ldc+j], want[i*n+j])
								}
							}
						}
					}
				}
			}
		}
	}
}

// Tiles.Mul is the packed-panel product its comment states, for every
// micro-kernel, with beta 0 (overwrite) and 1 (accumulate).
func TestTiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	old := best
	defer func() { best = old }()
	for _, im := range available {
		best = im
		tl := Tile()
		for _, k := range []int{1, 7, 64, 240} {
			a := make([]float32, k*tl.MR)
			b := make([]float32, k*tl.NR)
			for i := range a {
				a[i] = float32(rng.NormFloat64())
			}
			for i := range b {
				b[i] = float32(rng.NormFloat64())
			}
			ldc := tl.NR + 3
			c := make([]float32, tl.MR*ldc)
			for i := range c {
				c[i] = float32(rng.NormFloat64())
			}
			for _, beta := range []float32{0, 1} {
				orig := append([]float32(nil), c...)
				tl.Mul(k, a, b, c, ldc, 0.5, beta)
				for i := 0; i < tl.MR; i++ {
					for j := 0; j < ldc; j++ {
						want := float64(orig[i*ldc+j])
						if j < tl.NR {
							var s float64
							for p := 0; p < k; p++ {
								s += float64(a[p*tl.MR+i]) * float64(b[p*tl.NR+j])
							}
							want = 0.5*s + float64(beta)*want
						}
						if d := math.Abs(float64(c[i*ldc+j]) - want); d > 1e-4*(1+math.Abs(want)) {
							t.Fatalf("%s k=%d beta=%g: C[%d][%d] = %g, want %g", im.name, k, beta, i, j, c[i*ldc+j], want)
						}
					}
				}
			}
		}
	}
}

// Transpose moves every element where it belongs, for every
// implementation, shapes with and without whole groups of eight.
func TestTranspose(t *testing.T) {
	old := best
	defer func() { best = old }()
	for _, im := range available {
		best = im
		for _, sh := range [][2]int{{1, 1}, {3, 5}, {8, 8}, {12, 64}, {13, 70}, {32, 64}, {64, 32}, {37, 9}} {
			rows, cols := sh[0], sh[1]
			ld, ldd := cols+3, rows+5
			src := make([]float32, rows*ld)
			for i := range src {
				src[i] = float32(i)
			}
			dst := make([]float32, cols*ldd)
			for i := range dst {
				dst[i] = -1
			}
			Transpose(rows, cols, src, ld, dst, ldd)
			for j := 0; j < cols; j++ {
				for i := 0; i < ldd; i++ {
					want := float32(-1)
					if i < rows {
						want = src[i*ld+j]
					}
					if dst[j*ldd+i] != want {
						t.Fatalf("%s %d×%d: dst[%d][%d] = %g, want %g", im.name, rows, cols, j, i, dst[j*ldd+i], want)
					}
				}
			}
		}
	}
}
