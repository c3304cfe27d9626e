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
