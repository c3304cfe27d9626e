package cuda

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/loupe-dev/loupe/probe/compute"
)

// NVRTC needs no GPU: where it is installed the kernels module (kernels.cu
// with proj.cu) must compile for sm_90 and sm_80 and hold proj.cu's
// kernels.
func TestProjKernelsCompile(t *testing.T) {
	if _, err := loadNVRTC(); err != nil {
		t.Skipf("no NVRTC here: %v", err)
	}
	t.Setenv("LOUPE_CACHE", t.TempDir())
	for _, arch := range []int{80, 90} {
		bin, err := compile("kernels", kernelSource+projSource, arch)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range projNames {
			if !slices.Contains(cubinSymbols(bin), name) {
				t.Errorf("sm_%d: kernel %s missing from the cubin", arch, name)
			}
		}
	}
}

// cubinSymbols lists the NUL-terminated names in a cubin's bytes that
// could be kernel names (a crude scan: the ELF string table holds them).
func cubinSymbols(bin []byte) []string {
	var out []string
	start := 0
	for i, c := range bin {
		if c == 0 {
			if i > start {
				out = append(out, string(bin[start:i]))
			}
			start = i + 1
		}
	}
	return out
}

// The stacked products against the separate ones on the same GPU
// (Linear with each row view, RotaryInPlace, SwiGLU) and against the
// CPU's, in the float32 and the bf16 weight modes, for GQA shapes with
// odd row counts: values to float32 rounding (the products are the same
// sums in another tiling), the views equal to the weight's rows, and in
// the bf16 mode q, k, v and silu(gate)·up carry bf16 copies equal to
// rounding them.
func TestStackedProductsMatchSeparate(t *testing.T) {
	rng := rand.New(rand.NewPCG(41, 42))
	c := compute.NewCPU()
	const rows, D, H, Hkv, dh, F = 37, 96, 6, 2, 16, 72
	pos := make([]int, rows)
	for i := range pos {
		pos[i] = 3*i + 1
	}
	inv := make([]float32, dh/2)
	for i := range inv {
		inv[i] = float32(math.Pow(10000, -2*float64(i)/dh))
	}
	for _, g := range []*Backend{testGPU(t), testGPU16(t)} {
		mode := g.opt.WeightDType
		xh := randVec(rng, rows*D)
		nqkv := (H + 2*Hkv) * dh
		wqkvH, wguH := randVec(rng, nqkv*D), randVec(rng, 2*F*D)
		x := g.FromHost(xh, rows, D)
		wqkv, wgu := g.FromHostWeight(wqkvH, nqkv, D), g.FromHostWeight(wguH, 2*F, D)
		// The weights as the GPU holds them (bf16-rounded in that mode),
		// for the CPU's reference.
		wqkvR, wguR := g.ToHost(wqkv), g.ToHost(wgu)
		view := func(w compute.Tensor, host []float32, lo, hi int) compute.Tensor {
			v := g.RowsView(w, lo, hi)
			if got := g.ToHost(v); !slices.Equal(got, host[lo*D:hi*D]) {
				t.Fatalf("%s: RowsView [%d, %d) differs from the weight's rows", mode, lo, hi)
			}
			return v
		}
		wq, wk, wv := view(wqkv, wqkvR, 0, H*dh), view(wqkv, wqkvR, H*dh, (H+Hkv)*dh), view(wqkv, wqkvR, (H+Hkv)*dh, nqkv)
		wg, wu := view(wgu, wguR, 0, F), view(wgu, wguR, F, 2*F)
		view(wqkv, wqkvR, 1, 4) // rows off the 256-byte grid: a copy
		if odd := g.RowsView(wqkv, 1, 4).(*Tensor); odd.buf == wqkv.(*Tensor).buf {
			t.Errorf("%s: a view of rows starting %d bytes in shares the weight's memory (cuBLASLt wants 256-byte alignment)", mode, D*compute.DTypeOf(wqkv).Size())
		}

		q, k, v := g.LinearQKVRotary(x, wqkv, H, Hkv, dh, pos, inv)
		sq, sk, sv := g.Linear(x, wq, nil), g.Linear(x, wk, nil), g.Linear(x, wv, nil)
		g.RotaryInPlace(sq, H, dh, dh, pos, inv)
		g.RotaryInPlace(sk, Hkv, dh, dh, pos, inv)
		post := g.LinearSwiGLU(x, wgu)
		spost := g.SwiGLU(g.Linear(x, wg, nil), g.Linear(x, wu, nil))

		// The CPU's reference: x rounded as the GPU's product reads it.
		cx := xh
		if mode == compute.BF16 {
			cx = g.ToHost(g.FromHostAs(compute.BF16, xh, rows, D))
		}
		cy := c.Linear(c.FromHost(cx, rows, D), c.FromHost(wqkvR, nqkv, D), nil)
		cq, ck, cv := c.Columns(cy, 0, H*dh), c.Columns(cy, H*dh, (H+Hkv)*dh), c.Columns(cy, (H+Hkv)*dh, nqkv)
		c.RotaryInPlace(cq, H, dh, dh, pos, inv)
		c.RotaryInPlace(ck, Hkv, dh, dh, pos, inv)
		cgu := c.Linear(c.FromHost(cx, rows, D), c.FromHost(wguR, 2*F, D), nil)
		cpost := c.SwiGLU(c.Columns(cgu, 0, F), c.Columns(cgu, F, 2*F))

		for _, tc := range []struct {
			name        string
			got, sep    compute.Tensor
			cpu         compute.Tensor
			shadow      bool
			wantColumns int
		}{
			{"q", q, sq, cq, true, H * dh}, {"k", k, sk, ck, true, Hkv * dh}, {"v", v, sv, cv, true, Hkv * dh},
			{"silu(gate)·up", post, spost, cpost, true, F},
		} {
			got := g.ToHost(tc.got)
			if s := tc.got.Shape(); len(s) != 2 || s[0] != rows || s[1] != tc.wantColumns {
				t.Fatalf("%s: %s has shape %v, want [%d %d]", mode, tc.name, s, rows, tc.wantColumns)
			}
			// Relative to the largest value (|q| reaches ~40, silu(gate)·up
			// ~1000 here): float32 sums of 96 terms in another order.
			sep := g.ToHost(tc.sep)
			scale := 0.0
			for _, v := range sep {
				scale = max(scale, math.Abs(float64(v)))
			}
			if d := maxAbsDiff(got, sep); d > 1e-5*scale {
				t.Errorf("%s: %s differs from the separate products by %g (largest value %g)", mode, tc.name, d, scale)
			}
			if d := maxAbsDiff(got, c.ToHost(tc.cpu)); d > 1e-5*scale {
				t.Errorf("%s: %s differs from the CPU's by %g (largest value %g)", mode, tc.name, d, scale)
			}
			var sh *buffer
			g.do(func() { sh = shadowOf(tc.got.(*Tensor), compute.BF16) })
			if mode != compute.BF16 {
				if sh != nil {
					t.Errorf("%s: %s has a bf16 copy in the %s mode", mode, tc.name, mode)
				}
				continue
			}
			if sh == nil {
				t.Fatalf("bf16: %s has no bf16 copy", tc.name)
			}
			half := g.ToHost(&Tensor{shape: tc.got.Shape(), dt: compute.BF16, buf: sh})
			if want := g.ToHost(g.FromHostAs(compute.BF16, got, tc.got.Shape()...)); !slices.Equal(half, want) {
				t.Errorf("bf16: %s's bf16 copy differs from rounding it (max %g)", tc.name, maxAbsDiff(half, want))
			}
		}
		if err := g.Err(); err != nil {
			t.Fatal(err)
		}
	}
}
