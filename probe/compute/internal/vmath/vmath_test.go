package vmath

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestExp(t *testing.T) {
	worst := 0.0
	for x := float32(-87); x <= 88; x += 0.000731 {
		got, want := float64(Exp(x)), math.Exp(float64(x))
		ulp := float64(math.Nextafter32(float32(want), float32(math.Inf(1))) - float32(want))
		worst = max(worst, math.Abs(got-want)/ulp)
	}
	if worst > 3 {
		t.Fatalf("Exp is off by up to %.2f ulp", worst)
	}
}

// Every implementation's loops agree with math.Exp to 3 ulp, give 0 below
// the threshold and for -Inf, and handle every length (tails included).
func TestKernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, k := range available() {
		impl = k
		for _, n := range []int{0, 1, 7, 8, 15, 16, 17, 31, 32, 33, 64, 100, 256, 1000} {
			x := make([]float32, n)
			for i := range x {
				x[i] = float32(rng.NormFloat64() * 30)
				switch rng.IntN(10) {
				case 0:
					x[i] = float32(math.Inf(-1))
				case 1:
					x[i] = -95 + float32(rng.Float64()*20) // around the threshold
				}
			}
			m := Max(x)
			wantMax := float32(math.Inf(-1))
			for _, v := range x {
				wantMax = max(wantMax, v)
			}
			if m != wantMax {
				t.Fatalf("%s n=%d: Max %g, want %g", k.name, n, m, wantMax)
			}
			shift := m
			if n == 0 || rng.IntN(2) == 0 {
				shift = -40 // arguments up to ~130: the saturation side
			}
			orig := append([]float32(nil), x...)
			sum := ExpShiftSum(x, shift)
			var wantSum float64
			for i, v := range orig {
				want := math.Exp(float64(v - shift))
				wantSum += want
				ulp := float64(math.Nextafter32(float32(want), float32(math.Inf(1))) - float32(want))
				if v-shift > 88 {
					if x[i] < float32(math.Exp(88))*(1-1e-6) {
						t.Fatalf("%s: e^(%g) = %g, want at least e^88", k.name, v-shift, x[i])
					}
					continue
				}
				if math.IsInf(float64(v), -1) && x[i] != 0 || math.Abs(float64(x[i])-want) > max(3*ulp, 1.2e-38) {
					t.Fatalf("%s n=%d: e^(%g) = %g, want %g", k.name, n, v-shift, x[i], want)
				}
			}
			if shift == m && math.Abs(float64(sum)-wantSum) > 1e-6*max(1, wantSum) {
				t.Fatalf("%s n=%d: sum %g, want %g", k.name, n, sum, wantSum)
			}
		}
		t.Logf("%s: ok", k.name)
	}
	impl = available()[len(available())-1]
}

func BenchmarkExpShiftSum(b *testing.B) {
	src := make([]float32, 256)
	for i := range src {
		src[i] = -float32(i) / 16
	}
	x := make([]float32, len(src))
	for _, k := range available() {
		impl = k
		b.Run(k.name, func(b *testing.B) {
			for range b.N {
				copy(x, src)
				ExpShiftSum(x, 0)
			}
			b.ReportMetric(float64(len(x)*b.N)/b.Elapsed().Seconds()/1e9, "Gexp/s")
		})
	}
	impl = available()[len(available())-1]
}

// The column loops of every implementation agree with a plain loop (max)
// and with math.Exp to 3 ulp (exp), over widths that take whole vectors,
// vectors and a tail, and tails alone, and leave the other lanes alone.
func TestColumnKernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, k := range available() {
		impl = k
		for _, w := range []int{1, 5, 8, 16, 17, 32, 40} {
			for _, n := range []int{0, 1, 3, 240} {
				stride := w + rng.IntN(3)*8
				x := make([]float32, max(1, n)*stride)
				for i := range x {
					x[i] = float32(rng.NormFloat64() * 20)
					if rng.IntN(8) == 0 {
						x[i] = float32(math.Inf(-1))
					}
				}
				m := make([]float32, w)
				for c := range m {
					m[c] = float32(math.Inf(-1))
					if rng.IntN(3) == 0 {
						m[c] = 30 // already above most of the column
					}
				}
				want := append([]float32(nil), m...)
				for c := range want {
					for p := 0; p < n; p++ {
						want[c] = max(want[c], x[p*stride+c])
					}
				}
				ColMax(x, n, stride, m)
				for c := range m {
					if m[c] != want[c] {
						t.Fatalf("%s w=%d n=%d: ColMax lane %d = %g, want %g", k.name, w, n, c, m[c], want[c])
					}
				}
				shift := make([]float32, w)
				for c := range shift {
					shift[c] = m[c]
					if math.IsInf(float64(m[c]), -1) {
						shift[c] = 0
					}
				}
				orig := append([]float32(nil), x...)
				sum := make([]float32, w+1)
				sum[w] = 7 // past the lanes: untouched
				for c := range w {
					sum[c] = 0.5
				}
				ColExpShiftSum(x, n, stride, shift, sum[:w+1])
				for c := 0; c < w; c++ {
					ws := 0.5
					for p := 0; p < n; p++ {
						i := p*stride + c
						e := math.Exp(float64(orig[i] - shift[c]))
						ws += e
						ulp := float64(math.Nextafter32(float32(e), float32(math.Inf(1))) - float32(e))
						if math.IsInf(float64(orig[i]), -1) && x[i] != 0 || math.Abs(float64(x[i])-e) > max(3*ulp, 1.2e-38) {
							t.Fatalf("%s w=%d n=%d: e^(%g) = %g, want %g", k.name, w, n, orig[i]-shift[c], x[i], e)
						}
					}
					if math.Abs(float64(sum[c])-ws) > 1e-6*ws {
						t.Fatalf("%s w=%d n=%d: lane %d sum %g, want %g", k.name, w, n, c, sum[c], ws)
					}
				}
				if sum[w] != 7 {
					t.Fatalf("%s: ColExpShiftSum wrote past its lanes", k.name)
				}
				for p := 0; p < n; p++ {
					for c := w; c < stride; c++ {
						if x[p*stride+c] != orig[p*stride+c] {
							t.Fatalf("%s: ColExpShiftSum changed column %d outside the lanes", k.name, c)
						}
					}
				}
			}
		}
		t.Logf("%s: ok", k.name)
	}
	impl = available()[len(available())-1]
}
