package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/loupe-dev/loupe/probe/compute"
)

// The tests below need a GPU; they skip, saying why, without one.
// scripts/gpu-test.sh builds this package's test binary here and runs it on
// a GPU machine.

var gpu struct {
	once sync.Once
	b    *Backend
	err  error
}

func testGPU(t *testing.T) *Backend {
	t.Helper()
	gpu.once.Do(func() { gpu.b, gpu.err = New(Options{}) })
	if gpu.err != nil {
		t.Skipf("no usable GPU: %v", gpu.err)
	}
	return gpu.b
}

func randVec(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

func maxAbsDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	d := 0.0
	for i := range a {
		if a[i] == b[i] {
			continue
		}
		x := math.Abs(float64(a[i]) - float64(b[i]))
		if math.IsNaN(x) {
			return math.Inf(1)
		}
		d = max(d, x)
	}
	return d
}

// Every operation of compute.Backend against the CPU backend on the same
// random inputs.
func TestOpsMatchCPU(t *testing.T) {
	g := testGPU(t)
	c := compute.NewCPU()
	rng := rand.New(rand.NewPCG(1, 2))
	both := func(data []float32, shape ...int) (compute.Tensor, compute.Tensor) {
		return g.FromHost(data, shape...), c.FromHost(data, shape...)
	}
	check := func(name string, gt, ct compute.Tensor, tol float64) {
		t.Helper()
		gh, ch := g.ToHost(gt), c.ToHost(ct)
		if d := maxAbsDiff(gh, ch); d > tol {
			t.Errorf("%s: max |GPU - CPU| %g > %g", name, d, tol)
		}
	}
	M, K, N := 37, 96, 53
	x := randVec(rng, M*K)
	w := randVec(rng, N*K)
	bias := randVec(rng, N)
	gx, cx := both(x, M, K)
	gw, cw := both(w, N, K)
	gb, cb := both(bias, N)
	check("Linear", g.Linear(gx, gw, gb), c.Linear(cx, cw, cb), 1e-4)
	check("Linear no bias", g.Linear(gx, gw, nil), c.Linear(cx, cw, nil), 1e-4)
	res := randVec(rng, M*N)
	gres, cres := both(res, M, N)
	check("LinearAdd", g.LinearAdd(gx, gw, gb, gres), compute.LinearAdd(c, cx, cw, cb, cres), 1e-4)
	check("LinearAdd no bias", g.LinearAdd(gx, gw, nil, gres), compute.LinearAdd(c, cx, cw, nil, cres), 1e-4)
	if d := maxAbsDiff(g.ToHost(gres), res); d != 0 {
		t.Errorf("LinearAdd changed its residual (%g)", d)
	}
	y := randVec(rng, M*K)
	gy, cy := both(y, M, K)
	check("Add", g.Add(gx, gy), c.Add(cx, cy), 0)
	check("Mul", g.Mul(gx, gy), c.Mul(cx, cy), 0)
	ga, ca := g.Add(gx, gy), c.Add(cx, cy)
	row := randVec(rng, K)
	grow, crow := both(row, K)
	g.AddInPlace(ga, grow)
	c.AddInPlace(ca, crow)
	g.ScaleInPlace(ga, 0.37)
	c.ScaleInPlace(ca, 0.37)
	check("AddInPlace broadcast, ScaleInPlace", ga, ca, 1e-6)
	nw := randVec(rng, K)
	nb := randVec(rng, K)
	gnw, cnw := both(nw, K)
	gnb, cnb := both(nb, K)
	check("RMSNorm", g.RMSNorm(gx, gnw, 1e-5), c.RMSNorm(cx, cnw, 1e-5), 1e-5)
	check("LayerNorm", g.LayerNorm(gx, gnw, gnb, 1e-5), c.LayerNorm(cx, cnw, cnb, 1e-5), 1e-5)
	check("SwiGLU", g.SwiGLU(gx, gy), c.SwiGLU(cx, cy), 1e-5)
	check("GELU tanh", g.GELU(gx, true), c.GELU(cx, true), 1e-6)
	check("GELU erf", g.GELU(gx, false), c.GELU(cx, false), 1e-6)
	ids := []int{3, 0, 36, 5, 5}
	check("Embed", g.Embed(gx, ids), c.Embed(cx, ids), 0)
	check("GatherRows", g.GatherRows(gx, ids), c.GatherRows(cx, ids), 0)
	check("Rows", g.Rows(gx, 4, 9), c.Rows(cx, 4, 9), 0)
	check("Columns", g.Columns(gx, 10, 42), c.Columns(cx, 10, 42), 0)
	check("Reshape", g.Reshape(gx, K, M), c.Reshape(cx, K, M), 0)
	gz, cz := g.Zeros(8, K), c.Zeros(8, K)
	g.CopyRowsInPlace(gz, g.Rows(gx, 0, 3), 2)
	c.CopyRowsInPlace(cz, c.Rows(cx, 0, 3), 2)
	vals := randVec(rng, 6)
	g.FillColumnsInPlace(gz, 7, 13, vals)
	c.FillColumnsInPlace(cz, 7, 13, vals)
	check("Zeros, CopyRowsInPlace, FillColumnsInPlace", gz, cz, 0)

	// RoPE on [rows, heads*headDim], partial rotary, positions up to 30000.
	heads, hd, rot := 3, 16, 12
	pos := []int{0, 1, 2, 17, 511, 4095, 30000}
	inv := make([]float32, rot/2)
	for i := range inv {
		inv[i] = float32(math.Pow(10000, -float64(2*i)/float64(rot)))
	}
	rx := randVec(rng, len(pos)*heads*hd)
	grx, crx := both(rx, len(pos), heads*hd)
	g.RotaryInPlace(grx, heads, hd, rot, pos, inv)
	c.RotaryInPlace(crx, heads, hd, rot, pos, inv)
	check("RotaryInPlace", grx, crx, 2e-5)

	// Attention: GQA, a KV cache with spare capacity, past keys, padding.
	for _, tc := range []struct {
		name string
		s    compute.AttnShape
		mask compute.AttnMask
	}{
		{"causal", compute.AttnShape{B: 2, Tq: 45, Tk: 45, Tcap: 45, H: 6, Hkv: 2, Dh: 64}, compute.AttnMask{Causal: true}},
		{"kv cache", compute.AttnShape{B: 2, Tq: 3, Tk: 40, Tcap: 50, H: 4, Hkv: 4, Dh: 32}, compute.AttnMask{Causal: true, Past: 37}},
		{"padding", compute.AttnShape{B: 2, Tq: 33, Tk: 33, Tcap: 33, H: 2, Hkv: 1, Dh: 8}, compute.AttnMask{Causal: true, KeyValid: padMask(2, 33, []int{0, 7})}},
		{"window", compute.AttnShape{B: 1, Tq: 70, Tk: 70, Tcap: 70, H: 2, Hkv: 2, Dh: 128}, compute.AttnMask{Causal: true, Window: 9}},
	} {
		s := tc.s
		q := randVec(rng, s.B*s.Tq*s.H*s.Dh)
		k := randVec(rng, s.B*s.Tcap*s.Hkv*s.Dh)
		v := randVec(rng, s.B*s.Tcap*s.Hkv*s.Dh)
		gq, cq := both(q, s.B*s.Tq, s.H*s.Dh)
		gk, ck := both(k, s.B*s.Tcap, s.Hkv*s.Dh)
		gv, cv := both(v, s.B*s.Tcap, s.Hkv*s.Dh)
		scale := float32(1 / math.Sqrt(float64(s.Dh)))
		gs, cs := g.AttentionScores(gq, gk, s, scale, tc.mask), c.AttentionScores(cq, ck, s, scale, tc.mask)
		if tc.name == "window" {
			applyWindowCPU(c, cs, s, tc.mask)
		}
		check(tc.name+": AttentionScores", gs, cs, 1e-4)
		gp, cp := g.SoftmaxRows(gs), c.SoftmaxRows(cs)
		check(tc.name+": SoftmaxRows", gp, cp, 1e-6)
		gzz, czz := g.AttentionMix(gp, gv, s), c.AttentionMix(cp, cv, s)
		check(tc.name+": AttentionMix", gzz, czz, 1e-5)
		fz, flse := g.FlashAttention(gq, gk, gv, s, scale, tc.mask, true)
		check(tc.name+": FlashAttention z", fz, czz, 2e-5)
		lse := g.ToHost(flse)
		scores := c.ToHost(cs)
		for r := range lse {
			want := logSumExp(scores[r*s.Tk : (r+1)*s.Tk])
			if d := math.Abs(float64(lse[r]) - want); d > 1e-4 && !(math.IsInf(want, -1) && math.IsInf(float64(lse[r]), -1)) {
				t.Fatalf("%s: row %d log-sum-exp %g, want %g", tc.name, r, lse[r], want)
			}
		}
		gi, gvv := g.TopKRows(gp, 5)
		ci, cvv := c.TopKRows(cp, 5)
		if maxAbsDiff(gvv, cvv) > 1e-6 {
			t.Errorf("%s: TopKRows values differ", tc.name)
		}
		for i := range gi {
			if gi[i] != ci[i] && math.Abs(float64(gvv[i]-cvv[i])) == 0 && gvv[i] != 0 {
				t.Errorf("%s: TopKRows index %d: GPU %d CPU %d", tc.name, i, gi[i], ci[i])
				break
			}
		}
		if d := maxAbsDiff(g.SpanMassRows(gp, 2, 9), c.SpanMassRows(cp, 2, 9)); d > 1e-6 {
			t.Errorf("%s: SpanMassRows differ by %g", tc.name, d)
		}
		if d := maxAbsDiff(g.EntropyRows(gp), c.EntropyRows(cp)); d > 1e-5 {
			t.Errorf("%s: EntropyRows differ by %g", tc.name, d)
		}
	}
	am := randVec(rng, 7*1000)
	am[3*1000+17], am[3*1000+400] = 50, 50 // a tie keeps the lower index
	gam, cam := both(am, 7, 1000)
	ga2, ca2 := g.ArgmaxRows(gam), c.ArgmaxRows(cam)
	for i := range ga2 {
		if ga2[i] != ca2[i] {
			t.Errorf("ArgmaxRows row %d: GPU %d CPU %d", i, ga2[i], ca2[i])
		}
	}
	if err := g.Err(); err != nil {
		t.Fatal(err)
	}
}

func padMask(B, T int, pads []int) []bool {
	v := make([]bool, B*T)
	for b := 0; b < B; b++ {
		for t := pads[b]; t < T; t++ {
			v[b*T+t] = true
		}
	}
	return v
}

// applyWindowCPU masks what a sliding window hides in CPU scores (until the
// CPU backend honours AttnMask.Window itself).
func applyWindowCPU(c *compute.CPU, scores compute.Tensor, s compute.AttnShape, mask compute.AttnMask) {
	d := compute.Data(scores)
	for bh := 0; bh < s.B*s.H; bh++ {
		for i := 0; i < s.Tq; i++ {
			p := mask.Past + i
			for j := 0; j < s.Tk; j++ {
				if p-j >= mask.Window {
					d[(bh*s.Tq+i)*s.Tk+j] = float32(math.Inf(-1))
				}
			}
		}
	}
}

func logSumExp(row []float32) float64 {
	m := math.Inf(-1)
	for _, v := range row {
		m = math.Max(m, float64(v))
	}
	if math.IsInf(m, -1) {
		return m
	}
	s := 0.0
	for _, v := range row {
		s += math.Exp(float64(v) - m)
	}
	return m + math.Log(s)
}

// bf16 and f16 weights: a product with bf16 weights is the product of the
// rounded weights and inputs, accumulated in float32.
func TestHalfWeights(t *testing.T) {
	g := testGPU(t)
	c := compute.NewCPU()
	rng := rand.New(rand.NewPCG(3, 4))
	M, K, N := 64, 256, 96
	x, w := randVec(rng, M*K), randVec(rng, N*K)
	for _, dt := range []compute.DType{compute.BF16, compute.F16} {
		gw := g.FromHostAs(dt, w, N, K)
		if compute.DTypeOf(gw) != dt {
			t.Fatalf("weight stored as %s, want %s", compute.DTypeOf(gw), dt)
		}
		round := func(v []float32) []float32 {
			return g.ToHost(g.FromHostAs(dt, v, 1, len(v)))
		}
		wr, xr := round(w), round(x)
		want := c.ToHost(c.Linear(c.FromHost(xr, M, K), c.FromHost(wr, N, K), nil))
		got := g.ToHost(g.Linear(g.FromHost(x, M, K), gw, nil))
		if d := maxAbsDiff(got, want); d > 1e-3 {
			t.Errorf("%s Linear: max diff %g from the product of rounded operands", dt, d)
		}
		// The residual add as the product's epilogue (cuBLASLt's C).
		r := randVec(rng, M*N)
		wantR := c.ToHost(c.Add(c.FromHost(r, M, N), c.FromHost(want, M, N)))
		gotR := g.ToHost(g.LinearAdd(g.FromHost(x, M, K), gw, nil, g.FromHost(r, M, N)))
		if d := maxAbsDiff(gotR, wantR); d > 1e-3 {
			t.Errorf("%s LinearAdd: max diff %g from r + the product of rounded operands", dt, d)
		}
		// Rounding itself: relative error within half an ulp.
		ulp := map[compute.DType]float64{compute.BF16: 1.0 / 128, compute.F16: 1.0 / 1024}[dt]
		for i, v := range w {
			if math.Abs(float64(wr[i]-v)) > ulp/2*math.Abs(float64(v))*1.0001+1e-7 {
				t.Fatalf("%s: %g stored as %g", dt, v, wr[i])
			}
		}
	}
}

// A scope's temporaries go back to the pool; an allocation that cannot
// fit fails with an error naming the tensor, the bytes wanted and free,
// and the backend stays usable.
func TestScopesAndOutOfMemory(t *testing.T) {
	g := testGPU(t)
	// Earlier tests' tensors go back to the pool when the collector finds
	// them; let that happen before measuring.
	runtime.GC()
	runtime.GC()
	time.Sleep(10 * time.Millisecond)
	before := g.PoolStats()
	for i := 0; i < 100; i++ {
		s := g.Mark()
		x := g.Zeros(1024, 1024)
		g.Add(x, x)
		if err := g.Release(s); err != nil {
			t.Fatal(err)
		}
	}
	after := g.PoolStats()
	if after.InUse > before.InUse || after.Reserved > before.Reserved+2*(4<<20) {
		t.Fatalf("pool grew: %+v -> %+v", before, after)
	}
	s := g.Mark()
	huge := g.Zeros(1<<20, 1<<20) // 4 TiB
	g.Add(huge, huge)
	err := g.Release(s)
	if err == nil || !strings.Contains(err.Error(), "out of GPU memory") || !strings.Contains(err.Error(), "[1048576 1048576]") ||
		!strings.Contains(err.Error(), "4398046511104 bytes wanted") || !strings.Contains(err.Error(), "free") {
		t.Fatalf("allocating 4 TiB gave %v", err)
	}
	t.Logf("out of memory: %v", err)
	x := g.FromHost([]float32{1, 2, 3}, 3)
	if got := g.ToHost(g.Add(x, x)); got[2] != 6 {
		t.Fatalf("after the failure: %v", got)
	}
	if err := g.Err(); err != nil {
		t.Fatal(err)
	}
}

// What `loupe devices` reports: every GPU has a name, memory, a compute
// capability and the libraries it was found with (the report is logged).
func TestDevicesReport(t *testing.T) {
	devs, err := Devices()
	if err != nil {
		t.Skipf("no GPU: %v", err)
	}
	if len(devs) == 0 {
		t.Fatal("Devices gave no error and no GPU")
	}
	for _, d := range devs {
		t.Logf("%+v", d)
		if d.Name == "" || d.TotalBytes == 0 || d.FreeBytes == 0 || d.FreeBytes > d.TotalBytes || d.Major == 0 ||
			d.Multiprocessors == 0 || d.DriverVersion == 0 || d.DriverLibrary == "" {
			t.Errorf("GPU %d: incomplete report %+v", d.Index, d)
		}
		if len(d.LibraryProblems) == 0 && (d.NVRTCVersion == "" || d.CUBLASVersion == 0) {
			t.Errorf("GPU %d: no library problem named, yet NVRTC %q / cuBLAS %d missing", d.Index, d.NVRTCVersion, d.CUBLASVersion)
		}
	}
}

// The fused Attention against the CPU's, with every kind of request: rows,
// top-k, absolute and relative spans, key sets, entropy, per-head sums,
// the log-sum-exp, and the full scores and pattern.
func TestFusedAttentionMatchesCPU(t *testing.T) {
	g := testGPU(t)
	c := compute.NewCPU()
	rng := rand.New(rand.NewPCG(5, 6))
	for _, tc := range []struct {
		name string
		s    compute.AttnShape
		mask compute.AttnMask
		rows []int
	}{
		{"causal gqa", compute.AttnShape{B: 2, Tq: 77, Tk: 77, Tcap: 77, H: 6, Hkv: 2, Dh: 64}, compute.AttnMask{Causal: true}, nil},
		{"padding rows", compute.AttnShape{B: 2, Tq: 40, Tk: 40, Tcap: 40, H: 4, Hkv: 4, Dh: 32}, compute.AttnMask{Causal: true, KeyValid: padMask(2, 40, []int{0, 11})}, []int{0, 5, 12, 39}},
		{"kv cache window", compute.AttnShape{B: 1, Tq: 5, Tk: 300, Tcap: 320, H: 2, Hkv: 1, Dh: 256}, compute.AttnMask{Causal: true, Past: 295, Window: 100}, nil},
	} {
		s := tc.s
		q := randVec(rng, s.B*s.Tq*s.H*s.Dh)
		k := randVec(rng, s.B*s.Tcap*s.Hkv*s.Dh)
		v := randVec(rng, s.B*s.Tcap*s.Hkv*s.Dh)
		R := s.Tq
		if tc.rows != nil {
			R = len(tc.rows)
		}
		var ks compute.KeySet
		ks.Off = []int32{0}
		for i := 0; i < s.B*R; i++ {
			for n := rng.IntN(6); n > 0; n-- {
				ks.Keys = append(ks.Keys, int32(rng.IntN(s.Tk+4)-2))
			}
			ks.Off = append(ks.Off, int32(len(ks.Keys)))
		}
		scale := float32(1 / math.Sqrt(float64(s.Dh)))
		for _, sum := range []bool{false, true} {
			spec := compute.AttnSpec{Rows: tc.rows, TopK: 4, Entropy: true, LSE: true, SumRows: sum, Scores: !sum, Pattern: !sum,
				Spans:   []compute.KeySpan{{Lo: 0, Hi: 3}, {Lo: -7, Hi: 1, LoRelative: true, HiRelative: true}, {Lo: 1, Hi: 0, HiRelative: true}},
				KeySets: []compute.KeySet{ks}}
			gr := g.Attention(g.FromHost(q, s.B*s.Tq, s.H*s.Dh), g.FromHost(k, s.B*s.Tcap, s.Hkv*s.Dh), g.FromHost(v, s.B*s.Tcap, s.Hkv*s.Dh), s, scale, tc.mask, spec)
			cr := c.Attention(c.FromHost(q, s.B*s.Tq, s.H*s.Dh), c.FromHost(k, s.B*s.Tcap, s.Hkv*s.Dh), c.FromHost(v, s.B*s.Tcap, s.Hkv*s.Dh), s, scale, tc.mask, spec)
			name := fmt.Sprintf("%s (sum rows %v)", tc.name, sum)
			near := func(what string, a, b []float32, tol float64) {
				t.Helper()
				if d := maxAbsDiff(a, b); d > tol {
					t.Errorf("%s: %s differ by %g", name, what, d)
				}
			}
			near("z", g.ToHost(gr.Z), c.ToHost(cr.Z), 2e-5)
			near("lse", gr.LSE, cr.LSE, 1e-4)
			near("top-k weights", gr.TopVal, cr.TopVal, 1e-5)
			if !sum {
				// Each key the GPU lists weighs what its slot says in the
				// CPU's pattern (near-ties may order either way).
				pat := c.ToHost(cr.Pattern)
				rows := tc.rows
				if rows == nil {
					rows = make([]int, s.Tq)
					for i := range rows {
						rows[i] = i
					}
				}
				kk := len(gr.TopIdx) / (s.B * s.H * R)
				for slot, key := range gr.TopIdx {
					bh, r := slot/kk/R, slot/kk%R
					w := pat[(bh*s.Tq+rows[r])*s.Tk+int(key)]
					if math.Abs(float64(w-gr.TopVal[slot])) > 1e-5 {
						t.Fatalf("%s: top-k slot %d names key %d of weight %g, says %g", name, slot, key, w, gr.TopVal[slot])
					}
				}
			}
			for i := range cr.SpanMass {
				near(fmt.Sprintf("span %d", i), gr.SpanMass[i], cr.SpanMass[i], 1e-5)
			}
			near("key-set mass", gr.SetMass[0], cr.SetMass[0], 1e-5)
			near("entropy", gr.Entropy, cr.Entropy, 1e-4)
			if !sum {
				near("scores", g.ToHost(gr.Scores), c.ToHost(cr.Scores), 1e-4)
				near("pattern", g.ToHost(gr.Pattern), c.ToHost(cr.Pattern), 1e-6)
			} else if gr.Scores != nil || gr.Pattern != nil {
				t.Errorf("%s: scores or pattern built though not asked", name)
			}
		}
	}
	if err := g.Err(); err != nil {
		t.Fatal(err)
	}
}

// TestGEMMSpeed is a benchmark, run only when LOUPE_BENCH_GEMM is set
// (scripts/gpu-test.sh bench): bf16 products of the Llama-3-8B prefill
// shapes through cuBLAS (bf16 in, fp32 accumulate, fp32 out), alone and as
// Linear (which also rounds the float32 input to bf16). One JSON line each.
func TestGEMMSpeed(t *testing.T) {
	if os.Getenv("LOUPE_BENCH_GEMM") == "" {
		t.Skip("a benchmark: set LOUPE_BENCH_GEMM=1")
	}
	g := testGPU(t)
	rng := rand.New(rand.NewPCG(9, 9))
	for _, M := range []int{2048, 8192, 32768} {
		for _, nk := range [][2]int{{6144, 4096}, {4096, 4096}, {28672, 4096}, {4096, 14336}} {
			N, K := nk[0], nk[1]
			s := g.Mark()
			x := g.FromHost(randVec(rng, M*K), M, K)
			w := g.FromHostAs(compute.BF16, randVec(rng, N*K), N, K)
			var xb *Tensor
			g.do(func() { xb = g.to16(x.(*Tensor), compute.BF16) })
			out := g.Zeros(M, N).(*Tensor)
			const reps = 10
			raw := func() {
				g.do(func() {
					g.gemmNT(M, N, K, xb.ptr(), w.(*Tensor).ptr(), K, K, compute.BF16, out.ptr(), N, 0)
				})
			}
			lin := func() {
				inner := g.Mark()
				g.Linear(x, w, nil)
				if err := g.Release(inner); err != nil {
					t.Fatal(err)
				}
			}
			for _, v := range []struct {
				name string
				f    func()
			}{{"gemm", raw}, {"linear", lin}} {
				v.f()
				if err := g.Synchronize(); err != nil {
					t.Fatal(err)
				}
				t0 := time.Now()
				for range reps {
					v.f()
				}
				if err := g.Synchronize(); err != nil {
					t.Fatal(err)
				}
				sec := time.Since(t0).Seconds() / reps
				fmt.Printf("{\"impl\":\"loupe\",\"kind\":\"%s\",\"M\":%d,\"N\":%d,\"K\":%d,\"seconds\":%g,\"tflops\":%.1f}\n", v.name, M, N, K, sec, 2*float64(M)*float64(N)*float64(K)/sec/1e12)
			}
			if err := g.Release(s); err != nil {
				t.Fatal(err)
			}
		}
	}
}

var gpu16 struct {
	once sync.Once
	b    *Backend
	err  error
}

// The tensor-core flash kernel of the bf16 mode against the CPU's
// attention on the same inputs rounded to bf16: its products are bf16 x
// bf16 with fp32 accumulation, the weights P rounded to bf16 before P·V.
// Every build of the kernel (flashBuilds) runs,
// each on fresh inputs so that a stale output buffer cannot pass.
func TestTensorCoreFlashAttention(t *testing.T) {
	g := testGPU16(t)
	c := compute.NewCPU()
	rng := rand.New(rand.NewPCG(11, 12))
	bf := func(v []float32) []float32 { return g.ToHost(g.FromHostAs(compute.BF16, v, 1, len(v))) }
	for _, tc := range []struct {
		name string
		s    compute.AttnShape
		mask compute.AttnMask
	}{
		{"causal d64 G=3", compute.AttnShape{B: 2, Tq: 150, Tk: 150, Tcap: 150, H: 9, Hkv: 3, Dh: 64}, compute.AttnMask{Causal: true}},
		{"causal d128 G=4", compute.AttnShape{B: 1, Tq: 200, Tk: 200, Tcap: 200, H: 4, Hkv: 1, Dh: 128}, compute.AttnMask{Causal: true}},
		{"long causal d128 G=4", compute.AttnShape{B: 1, Tq: 700, Tk: 700, Tcap: 700, H: 8, Hkv: 2, Dh: 128}, compute.AttnMask{Causal: true}},
		{"long causal d64 G=1", compute.AttnShape{B: 1, Tq: 333, Tk: 333, Tcap: 333, H: 2, Hkv: 2, Dh: 64}, compute.AttnMask{Causal: true}},
		{"G=16", compute.AttnShape{B: 2, Tq: 40, Tk: 40, Tcap: 40, H: 16, Hkv: 1, Dh: 64}, compute.AttnMask{Causal: true}},
		{"not causal", compute.AttnShape{B: 1, Tq: 65, Tk: 129, Tcap: 129, H: 2, Hkv: 2, Dh: 64}, compute.AttnMask{}},
		{"padding", compute.AttnShape{B: 2, Tq: 70, Tk: 70, Tcap: 70, H: 2, Hkv: 2, Dh: 64}, compute.AttnMask{Causal: true, KeyValid: padMask(2, 70, []int{0, 30})}},
		{"kv cache", compute.AttnShape{B: 3, Tq: 1, Tk: 130, Tcap: 160, H: 4, Hkv: 2, Dh: 128}, compute.AttnMask{Causal: true, Past: 129}},
		{"decode batch G=4", compute.AttnShape{B: 5, Tq: 1, Tk: 77, Tcap: 90, H: 32, Hkv: 8, Dh: 128}, compute.AttnMask{Causal: true, Past: 76}},
		{"chunk after a past", compute.AttnShape{B: 1, Tq: 100, Tk: 356, Tcap: 400, H: 4, Hkv: 1, Dh: 128}, compute.AttnMask{Causal: true, Past: 256}},
		{"window", compute.AttnShape{B: 1, Tq: 190, Tk: 190, Tcap: 190, H: 2, Hkv: 1, Dh: 64}, compute.AttnMask{Causal: true, Window: 50}},
		// flash3 (build wg) runs head dimension 128 only: its own
		// padding, window, non-causal and G = 1 cases.
		{"padding d128 G=4", compute.AttnShape{B: 2, Tq: 300, Tk: 300, Tcap: 300, H: 8, Hkv: 2, Dh: 128}, compute.AttnMask{Causal: true, KeyValid: padMask(2, 300, []int{0, 170})}},
		{"window d128", compute.AttnShape{B: 1, Tq: 400, Tk: 400, Tcap: 400, H: 4, Hkv: 1, Dh: 128}, compute.AttnMask{Causal: true, Window: 150}},
		{"not causal d128", compute.AttnShape{B: 1, Tq: 65, Tk: 300, Tcap: 300, H: 2, Hkv: 2, Dh: 128}, compute.AttnMask{}},
		{"long causal d128 G=1", compute.AttnShape{B: 1, Tq: 513, Tk: 513, Tcap: 513, H: 2, Hkv: 2, Dh: 128}, compute.AttnMask{Causal: true}},
	} {
		for _, occ := range flashBuilds {
			g.do(func() { g.flashOcc = occ })
			s := tc.s
			q := bf(randVec(rng, s.B*s.Tq*s.H*s.Dh))
			k := bf(randVec(rng, s.B*s.Tcap*s.Hkv*s.Dh))
			v := bf(randVec(rng, s.B*s.Tcap*s.Hkv*s.Dh))
			scale := float32(1 / math.Sqrt(float64(s.Dh)))
			gz := g.Attention(g.FromHost(q, s.B*s.Tq, s.H*s.Dh), g.FromHost(k, s.B*s.Tcap, s.Hkv*s.Dh), g.FromHost(v, s.B*s.Tcap, s.Hkv*s.Dh), s, scale, tc.mask, compute.AttnSpec{}).Z
			cz := c.Attention(c.FromHost(q, s.B*s.Tq, s.H*s.Dh), c.FromHost(k, s.B*s.Tcap, s.Hkv*s.Dh), c.FromHost(v, s.B*s.Tcap, s.Hkv*s.Dh), s, scale, tc.mask, compute.AttnSpec{}).Z
			got, want := g.ToHost(gz), c.ToHost(cz)
			d, mean := 0.0, 0.0
			for i := range got {
				e := math.Abs(float64(got[i] - want[i]))
				if math.IsNaN(e) {
					e = math.Inf(1)
				}
				d = max(d, e)
				mean += e
			}
			mean /= float64(len(got))
			t.Logf("%s, build _%s: max |tensor cores - CPU| %.2g, mean %.2g", tc.name, occ, d, mean)
			if d > 2e-2 || mean > 2e-3 {
				t.Errorf("%s (build _%s): tensor-core attention off by %g (mean %g)", tc.name, occ, d, mean)
			}
			// The top-1 reduction and the lse from the same pass (every
			// row, then two chosen rows), against the CPU's exact ones: z
			// unchanged to the bit; the same key except where the CPU's two
			// best weights are within 1e-2 (bf16 products cannot order
			// them); weights and lse to 1e-2.
			for _, rows := range [][]int{nil, slices.Compact([]int{0, s.Tq - 1})} {
				spec := compute.AttnSpec{TopK: 1, LSE: true, Rows: rows}
				gq, gk, gv := g.FromHost(q, s.B*s.Tq, s.H*s.Dh), g.FromHost(k, s.B*s.Tcap, s.Hkv*s.Dh), g.FromHost(v, s.B*s.Tcap, s.Hkv*s.Dh)
				gr := g.Attention(gq, gk, gv, s, scale, tc.mask, spec)
				if z2 := g.ToHost(gr.Z); maxAbsDiff(z2, got) != 0 {
					t.Errorf("%s (build _%s): z changed when the top-1 reduction was asked (%g)", tc.name, occ, maxAbsDiff(z2, got))
				}
				cspec := spec
				cspec.TopK = 2
				cr := c.Attention(c.FromHost(q, s.B*s.Tq, s.H*s.Dh), c.FromHost(k, s.B*s.Tcap, s.Hkv*s.Dh), c.FromHost(v, s.B*s.Tcap, s.Hkv*s.Dh), s, scale, tc.mask, cspec)
				kk := min(2, s.Tk)
				bad := 0
				for i := range gr.TopIdx {
					ci, cv := cr.TopIdx[i*kk], cr.TopVal[i*kk]
					near := kk > 1 && cv-cr.TopVal[i*kk+1] < 1e-2
					if (gr.TopIdx[i] != ci && !near) || math.Abs(float64(gr.TopVal[i]-cv)) > 1e-2 {
						if bad < 3 {
							t.Errorf("%s (build _%s, rows %v): top-1 of row %d: key %d weight %g, CPU key %d weight %g", tc.name, occ, rows, i, gr.TopIdx[i], gr.TopVal[i], ci, cv)
						}
						bad++
					}
				}
				if len(gr.TopIdx) != len(cr.TopIdx)/kk || len(gr.LSE) != len(cr.LSE) {
					t.Fatalf("%s: %d top-1 rows and %d lse, CPU %d and %d", tc.name, len(gr.TopIdx), len(gr.LSE), len(cr.TopIdx)/kk, len(cr.LSE))
				}
				for i := range gr.LSE {
					a, b := float64(gr.LSE[i]), float64(cr.LSE[i])
					if !(a == b || math.Abs(a-b) <= 1e-2) {
						t.Errorf("%s (build _%s): lse of row %d: %g, CPU %g", tc.name, occ, i, a, b)
						break
					}
				}
			}
		}
	}
	g.do(func() { g.flashOcc = "" })
	if err := g.Err(); err != nil {
		t.Fatal(err)
	}
}

// On a Hopper GPU the wgmma attention kernel must compile (NVRTC, sm_90a)
// and load; elsewhere it says why it is absent. Also reports whether the
// products go through cuBLASLt.
func TestFlash3Available(t *testing.T) {
	g := testGPU16(t)
	var err error
	var lt bool
	g.do(func() { err, lt = g.flash3Err, g.lt != nil })
	t.Logf("cuBLASLt in use: %v", lt)
	if g.info.Major == 9 && g.info.Minor == 0 {
		if err != nil {
			t.Fatalf("flash3 on an sm_90 GPU: %v", err)
		}
		return
	}
	t.Logf("no flash3 here: %v", err)
}

// flash3's pieces alone (flash3.cu's flash3_tiles), against float64
// products of the same bf16 values: S = Q·Kᵀ through the swizzled Q and K
// descriptors, O = P·V through P's register fragments and V's N-major
// descriptor. A wrong descriptor or fragment map shows here as a large
// error in one of the two, which flash3's own test cannot tell apart.
func TestFlash3Tiles(t *testing.T) {
	g := testGPU16(t)
	if g.info.Major != 9 || g.info.Minor != 0 {
		t.Skip("flash3 is for sm_90 GPUs")
	}
	rng := rand.New(rand.NewPCG(21, 22))
	const n = 128
	mat := func() []float32 { return g.ToHost(g.FromHostAs(compute.BF16, randVec(rng, n*n), n, n)) }
	q, k, p, v := mat(), mat(), mat(), mat()
	up := func(x []float32) compute.Tensor { return g.FromHostAs(compute.BF16, x, n, n) }
	qt, kt, pt, vt := up(q), up(k), up(p), up(v)
	var sOut, oOut []float32
	g.do(func() {
		so, oo := g.newTensor(compute.F32, n, n), g.newTensor(compute.F32, n, n)
		g.launch("flash3_tiles", [3]int{1, 1, 1}, [3]int{256, 1, 1}, f3TilesShared,
			pArg(qt.(*Tensor).ptr()), pArg(kt.(*Tensor).ptr()), pArg(pt.(*Tensor).ptr()), pArg(vt.(*Tensor).ptr()), pArg(so.ptr()), pArg(oo.ptr()))
		sOut, oOut = g.downloadFloats(so), g.downloadFloats(oo)
	})
	if err := g.Err(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		got  []float32
		ref  func(i, j int) float64
	}{
		{"S = Q·Kᵀ", sOut, func(i, j int) float64 {
			d := 0.0
			for x := 0; x < n; x++ {
				d += float64(q[i*n+x]) * float64(k[j*n+x])
			}
			return d
		}},
		{"O = P·V", oOut, func(i, j int) float64 {
			d := 0.0
			for x := 0; x < n; x++ {
				d += float64(p[i*n+x]) * float64(v[x*n+j])
			}
			return d
		}},
	} {
		worst, wi, wj := 0.0, 0, 0
		for i := 0; i < n; i++ {
			for j := 0; j < n; j++ {
				e := math.Abs(float64(c.got[i*n+j]) - c.ref(i, j))
				if math.IsNaN(e) || e > worst {
					worst, wi, wj = e, i, j
					if math.IsNaN(e) {
						worst = math.Inf(1)
					}
				}
			}
		}
		t.Logf("%s: max |wgmma - float64| %.3g at [%d %d] (%g vs %g)", c.name, worst, wi, wj, c.got[wi*n+wj], c.ref(wi, wj))
		if worst > 1e-3 {
			t.Errorf("%s: off by %g at [%d %d]", c.name, worst, wi, wj)
		}
	}
}

// In the bf16 mode RoPE writes q's and k's bf16 copy (their shadow, what
// attention reads) as it rotates: it must equal rounding the rotated
// float32 values, to the bit; partial rotary writes none (the rest of
// each head would be missing from it).
func TestRotaryShadow(t *testing.T) {
	g := testGPU16(t)
	rng := rand.New(rand.NewPCG(31, 32))
	const rows, heads, hd = 37, 3, 64
	pos := make([]int, rows)
	for i := range pos {
		pos[i] = 5 * i
	}
	inv := make([]float32, hd/2)
	for i := range inv {
		inv[i] = float32(math.Pow(10000, -2*float64(i)/hd))
	}
	for _, rot := range []int{hd, hd / 2} {
		x := g.FromHost(randVec(rng, rows*heads*hd), rows, heads*hd)
		g.RotaryInPlace(x, heads, hd, rot, pos, inv)
		host := g.ToHost(x)
		var sh *buffer
		g.do(func() { sh = shadowOf(x.(*Tensor), compute.BF16) })
		if rot != hd {
			if sh != nil {
				t.Errorf("partial rotary (%d of %d) left a shadow", rot, hd)
			}
			continue
		}
		if sh == nil {
			t.Fatal("full rotary wrote no bf16 copy")
		}
		got := g.ToHost(&Tensor{shape: []int{rows, heads * hd}, dt: compute.BF16, buf: sh})
		want := g.ToHost(g.FromHostAs(compute.BF16, host, rows, heads*hd))
		if d := maxAbsDiff(got, want); d != 0 {
			t.Errorf("rotary's bf16 copy differs from rounding its output by %g", d)
		}
	}
	if err := g.Err(); err != nil {
		t.Fatal(err)
	}
}

func testGPU16(t *testing.T) *Backend {
	t.Helper()
	testGPU(t)
	gpu16.once.Do(func() { gpu16.b, gpu16.err = New(Options{WeightDType: compute.BF16}) })
	if gpu16.err != nil {
		t.Fatal(gpu16.err)
	}
	return gpu16.b
}

// TestAttentionSpeed is a benchmark, run only when LOUPE_BENCH_ATTN is set
// (scripts/gpu-test.sh bench): the bf16 mode's fused attention alone on
// the prefill shapes of Llama-3-8B (32 query heads, 8 key/value heads,
// head dimension 128, causal) at 2K, 8K and 32K tokens and of SmolLM2
// (64 x 256, 9/3 heads, 64), for every build of the kernel. One JSON line
// each: the whole operation (rounding q, k, v to bf16 included) by wall
// time over repeated calls, and the kernel alone from CUDA events.
// LOUPE_BENCH_BUILDS (comma-separated) limits the builds.
// scripts/gpu/bench_attn_torch.py measures PyTorch's sdpa on the same
// shapes. FLOPs count 4·B·H·Tq·Tk·Dh, halved when causal.
func TestAttentionSpeed(t *testing.T) {
	if os.Getenv("LOUPE_BENCH_ATTN") == "" {
		t.Skip("a benchmark: set LOUPE_BENCH_ATTN=1")
	}
	g := testGPU16(t)
	rng := rand.New(rand.NewPCG(5, 6))
	builds := flashBuilds
	if v := os.Getenv("LOUPE_BENCH_BUILDS"); v != "" { // e.g. "w4,wg2,ws"
		builds = strings.Split(v, ",")
	}
	shapes := []compute.AttnShape{
		{B: 1, Tq: 2048, Tk: 2048, Tcap: 2048, H: 32, Hkv: 8, Dh: 128},
		{B: 1, Tq: 8192, Tk: 8192, Tcap: 8192, H: 32, Hkv: 8, Dh: 128},
		{B: 1, Tq: 32768, Tk: 32768, Tcap: 32768, H: 32, Hkv: 8, Dh: 128},
		{B: 64, Tq: 256, Tk: 256, Tcap: 256, H: 9, Hkv: 3, Dh: 64},
	}
	for _, s := range shapes {
		sc := g.Mark()
		q := g.FromHost(randVec(rng, s.B*s.Tq*s.H*s.Dh), s.B*s.Tq, s.H*s.Dh)
		k := g.FromHost(randVec(rng, s.B*s.Tcap*s.Hkv*s.Dh), s.B*s.Tcap, s.Hkv*s.Dh)
		v := g.FromHost(randVec(rng, s.B*s.Tcap*s.Hkv*s.Dh), s.B*s.Tcap, s.Hkv*s.Dh)
		scale := float32(1 / math.Sqrt(float64(s.Dh)))
		mask := compute.AttnMask{Causal: true}
		flops := 4 * float64(s.B) * float64(s.H) * float64(s.Tq) * float64(s.Tk) * float64(s.Dh) / 2
		for _, occ := range builds {
			g.do(func() { g.flashOcc = occ })
			run := func() {
				inner := g.Mark()
				g.Attention(q, k, v, s, scale, mask, compute.AttnSpec{})
				if err := g.Release(inner); err != nil {
					t.Fatal(err)
				}
			}
			run()
			if err := g.Synchronize(); err != nil {
				t.Fatal(err)
			}
			reps := max(3, min(50, int(2e12/flops)))
			t0 := time.Now()
			for range reps {
				run()
			}
			if err := g.Synchronize(); err != nil {
				t.Fatal(err)
			}
			sec := time.Since(t0).Seconds() / float64(reps)
			g.ProfileStart()
			run()
			prof, err := g.ProfileStop()
			if err != nil {
				t.Fatal(err)
			}
			kms := 0.0
			for _, p := range prof {
				if strings.HasPrefix(p.Name, "flash2") || strings.HasPrefix(p.Name, "flash3") {
					kms += p.MS
				}
			}
			fmt.Printf("{\"impl\":\"loupe\",\"kind\":\"attention\",\"build\":\"%s\",\"B\":%d,\"T\":%d,\"H\":%d,\"Hkv\":%d,\"Dh\":%d,\"ms_op\":%.3f,\"tflops_op\":%.1f,\"ms_kernel\":%.3f,\"tflops_kernel\":%.1f}\n",
				occ, s.B, s.Tq, s.H, s.Hkv, s.Dh, sec*1e3, flops/sec/1e12, kms, flops/(kms/1e3)/1e12)
		}
		g.do(func() { g.flashOcc = "" })
		if err := g.Release(sc); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFlash3WSDiag times flash3ws's diagnostic variants (flash3.cu's
// F3_DIAG: no K/V loads after the first stages, no softmax, neither) of
// build wsp
// beside the real kernel on the 8B prefill shapes, to tell what limits
// it; a benchmark, run only when LOUPE_BENCH_ATTN is set. The variants'
// outputs are wrong by design and not looked at.
func TestFlash3WSDiag(t *testing.T) {
	if os.Getenv("LOUPE_BENCH_ATTN") == "" {
		t.Skip("a benchmark: set LOUPE_BENCH_ATTN=1")
	}
	g := testGPU16(t)
	if g.fn[flash3WSP] == 0 {
		t.Skip("no flash3ws here")
	}
	variants := map[int]uintptr{0: g.fn[flash3WSP]}
	diags := []int{1, 2, 3}
	for _, v := range diags {
		bin, err := compileFor(fmt.Sprintf("flash3diag%d", v), fmt.Sprintf("#define F3_DIAG %d\n", v)+flash3Source, "90a")
		if err != nil {
			t.Fatal(err)
		}
		var mod, f uintptr
		name := cString(flash3WSP)
		g.do(func() {
			if err = g.d.check("cuModuleLoadData", call(g.d.cuModuleLoadData, uintptr(unsafe.Pointer(&mod)), uintptr(unsafe.Pointer(&bin[0])))); err != nil {
				return
			}
			if err = g.d.check("cuModuleGetFunction", call(g.d.cuModuleGetFunction, uintptr(unsafe.Pointer(&f)), mod, uintptr(unsafe.Pointer(&name[0])))); err != nil {
				return
			}
			err = g.d.check("cuFuncSetAttribute", call(g.d.cuFuncSetAttribute, f, funcAttrMaxDynamicShared, uintptr(f3WSPShared)))
		})
		if err != nil {
			t.Fatal(err)
		}
		variants[v] = f
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for _, T := range []int{8192, 32768} {
		s := compute.AttnShape{B: 1, Tq: T, Tk: T, Tcap: T, H: 32, Hkv: 8, Dh: 128}
		sc := g.Mark()
		q := g.FromHost(randVec(rng, s.B*s.Tq*s.H*s.Dh), s.B*s.Tq, s.H*s.Dh)
		k := g.FromHost(randVec(rng, s.B*s.Tcap*s.Hkv*s.Dh), s.B*s.Tcap, s.Hkv*s.Dh)
		v := g.FromHost(randVec(rng, s.B*s.Tcap*s.Hkv*s.Dh), s.B*s.Tcap, s.Hkv*s.Dh)
		scale := float32(1 / math.Sqrt(float64(s.Dh)))
		flops := 4 * float64(s.H) * float64(T) * float64(T) * float64(s.Dh) / 2
		for _, dv := range append(append([]int{0}, diags...), 0) {
			g.do(func() { g.flashOcc, g.fn[flash3WSP] = "wsp", variants[dv] })
			g.Attention(q, k, v, s, scale, compute.AttnMask{Causal: true}, compute.AttnSpec{}) // warm-up
			g.ProfileStart()
			for range 3 {
				inner := g.Mark()
				g.Attention(q, k, v, s, scale, compute.AttnMask{Causal: true}, compute.AttnSpec{})
				if err := g.Release(inner); err != nil {
					t.Fatal(err)
				}
			}
			prof, err := g.ProfileStop()
			if err != nil {
				t.Fatal(err)
			}
			ms := 0.0
			for _, p := range prof {
				if p.Name == flash3WSP {
					ms += p.MS / 3
				}
			}
			fmt.Printf("{\"impl\":\"loupe\",\"kind\":\"ws-diag\",\"diag\":%d,\"T\":%d,\"ms_kernel\":%.3f,\"tflops_kernel\":%.1f}\n", dv, T, ms, flops/(ms/1e3)/1e12)
		}
		g.do(func() { g.flashOcc, g.fn[flash3WSP] = "", variants[0] })
		if err := g.Release(sc); err != nil {
			t.Fatal(err)
		}
	}
}

// A KV cache keeps a bf16 copy of itself (its shadow) across passes, and
// appends write the new rows into both. Attention over the cache after
// each append must equal, to the bit, attention over a fresh upload of the
// same keys and values (which rounds everything anew): batched appends
// (CopySeqRowsInPlace), one sequence's (CopyRowsInPlace), and an in-place
// change that must drop the shadow.
func TestKVCacheShadow(t *testing.T) {
	g := testGPU16(t)
	rng := rand.New(rand.NewPCG(21, 22))
	for _, B := range []int{3, 1} {
		const H, Hkv, Dh, capacity = 8, 2, 128, 40
		cols := Hkv * Dh
		kh, vh := make([]float32, B*capacity*cols), make([]float32, B*capacity*cols)
		k, v := g.Zeros(B*capacity, cols), g.Zeros(B*capacity, cols)
		n := 0
		for step, T := range []int{7, 1, 1, 3, 1} {
			kn, vn := randVec(rng, B*T*cols), randVec(rng, B*T*cols)
			for s := 0; s < B; s++ {
				copy(kh[(s*capacity+n)*cols:], kn[s*T*cols:(s+1)*T*cols])
				copy(vh[(s*capacity+n)*cols:], vn[s*T*cols:(s+1)*T*cols])
			}
			if B > 1 {
				g.CopySeqRowsInPlace(k, g.FromHost(kn, B*T, cols), B, T, capacity, n)
				g.CopySeqRowsInPlace(v, g.FromHost(vn, B*T, cols), B, T, capacity, n)
			} else {
				g.CopyRowsInPlace(k, g.FromHost(kn, T, cols), n)
				g.CopyRowsInPlace(v, g.FromHost(vn, T, cols), n)
			}
			if step == 3 {
				// An in-place change of the cache: its shadow must go.
				g.ScaleInPlace(k, 0.5)
				for i := range kh {
					kh[i] *= 0.5
				}
			}
			s := compute.AttnShape{B: B, Tq: T, Tk: n + T, Tcap: capacity, H: H, Hkv: Hkv, Dh: Dh}
			mask := compute.AttnMask{Causal: true, Past: n}
			qh := randVec(rng, B*T*H*Dh)
			q := g.FromHost(qh, B*T, H*Dh)
			got := g.ToHost(g.Attention(q, k, v, s, 0.09, mask, compute.AttnSpec{}).Z)
			want := g.ToHost(g.Attention(g.FromHost(qh, B*T, H*Dh), g.FromHost(kh, B*capacity, cols), g.FromHost(vh, B*capacity, cols), s, 0.09, mask, compute.AttnSpec{}).Z)
			if d := maxAbsDiff(got, want); d != 0 {
				t.Errorf("B=%d, step %d (%d keys): attention over the cache differs from a fresh upload by %g", B, step, n+T, d)
			}
			n += T
		}
		g.Free(k, v)
	}
	if err := g.Err(); err != nil {
		t.Fatal(err)
	}
}
