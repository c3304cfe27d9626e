package compute

import (
	"math"
	"math/rand/v2"
	"testing"
)

func randData(rng *rand.Rand, n int) []float32 {
	d := make([]float32, n)
	for i := range d {
		d[i] = float32(rng.NormFloat64())
	}
	return d
}

// naiveAttention is scores, softmax and mix written out loop by loop.
func naiveAttention(q, k, v []float32, s AttnShape, scale float32, mask AttnMask) (pattern, z []float32) {
	pattern = make([]float32, s.B*s.H*s.Tq*s.Tk)
	z = make([]float32, s.B*s.Tq*s.H*s.Dh)
	group := s.H / s.Hkv
	for b := 0; b < s.B; b++ {
		for h := 0; h < s.H; h++ {
			kh := h / group
			for i := 0; i < s.Tq; i++ {
				row := make([]float64, s.Tk)
				m := math.Inf(-1)
				for j := 0; j < s.Tk; j++ {
					allowed := !(mask.Causal && j > mask.Past+i) && (mask.KeyValid == nil || mask.KeyValid[b*s.Tk+j]) &&
						(mask.Window == 0 || mask.Past+i-j < mask.Window)
					if !allowed {
						row[j] = math.Inf(-1)
						continue
					}
					var dot float64
					for d := 0; d < s.Dh; d++ {
						dot += float64(q[(b*s.Tq+i)*s.H*s.Dh+h*s.Dh+d]) * float64(k[(b*s.Tcap+j)*s.Hkv*s.Dh+kh*s.Dh+d])
					}
					row[j] = dot * float64(scale)
					m = math.Max(m, row[j])
				}
				var sum float64
				for j := range row {
					row[j] = math.Exp(row[j] - m)
					sum += row[j]
				}
				for j := range row {
					p := row[j] / sum
					pattern[((b*s.H+h)*s.Tq+i)*s.Tk+j] = float32(p)
					for d := 0; d < s.Dh; d++ {
						z[(b*s.Tq+i)*s.H*s.Dh+h*s.Dh+d] += float32(p * float64(v[(b*s.Tcap+j)*s.Hkv*s.Dh+kh*s.Dh+d]))
					}
				}
			}
		}
	}
	return pattern, z
}

func TestAttentionMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	c := NewCPU()
	for _, tc := range []struct {
		name     string
		s        AttnShape
		past     int
		padFirst int
		causal   bool
		window   int
	}{
		{"prefill long", AttnShape{B: 2, Tq: 150, Tk: 150, Tcap: 150, H: 4, Hkv: 2, Dh: 8}, 0, 0, true, 0},
		{"prefill padded", AttnShape{B: 2, Tq: 70, Tk: 70, Tcap: 70, H: 2, Hkv: 1, Dh: 4}, 0, 9, true, 0},
		{"cached step", AttnShape{B: 1, Tq: 1, Tk: 131, Tcap: 200, H: 3, Hkv: 3, Dh: 8}, 130, 0, true, 0},
		{"cached chunk", AttnShape{B: 1, Tq: 80, Tk: 100, Tcap: 120, H: 2, Hkv: 1, Dh: 8}, 20, 0, true, 0},
		{"bidirectional", AttnShape{B: 1, Tq: 65, Tk: 65, Tcap: 65, H: 2, Hkv: 2, Dh: 4}, 0, 0, false, 0},
		{"window prefill padded", AttnShape{B: 2, Tq: 150, Tk: 150, Tcap: 150, H: 2, Hkv: 1, Dh: 4}, 0, 9, true, 17},
		{"window cached step", AttnShape{B: 1, Tq: 1, Tk: 131, Tcap: 200, H: 3, Hkv: 3, Dh: 8}, 130, 0, true, 64},
		{"window cached chunk", AttnShape{B: 1, Tq: 80, Tk: 100, Tcap: 120, H: 2, Hkv: 1, Dh: 8}, 20, 0, true, 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.s
			q := randData(rng, s.B*s.Tq*s.H*s.Dh)
			k := randData(rng, s.B*s.Tcap*s.Hkv*s.Dh)
			v := randData(rng, s.B*s.Tcap*s.Hkv*s.Dh)
			mask := AttnMask{Past: tc.past, Causal: tc.causal, Window: tc.window}
			if tc.padFirst > 0 {
				mask.KeyValid = make([]bool, s.B*s.Tk)
				for i := range mask.KeyValid {
					mask.KeyValid[i] = i >= tc.padFirst // sequence 0 is left-padded
				}
			}
			scale := float32(1 / math.Sqrt(float64(s.Dh)))
			wantP, wantZ := naiveAttention(q, k, v, s, scale, mask)
			qt := c.FromHost(q, s.B*s.Tq, s.H*s.Dh)
			kt := c.FromHost(k, s.B*s.Tcap, s.Hkv*s.Dh)
			vt := c.FromHost(v, s.B*s.Tcap, s.Hkv*s.Dh)
			p := c.SoftmaxRows(c.AttentionScores(qt, kt, s, scale, mask))
			z := c.AttentionMix(p, vt, s)
			check := func(what string, got, want []float32) {
				for i := range want {
					if math.Abs(float64(got[i]-want[i])) > 1e-5 {
						t.Fatalf("%s[%d] = %g, naive %g", what, i, got[i], want[i])
					}
				}
			}
			check("pattern", Data(p), wantP)
			check("z", Data(z), wantZ)
		})
	}
}

func TestTopKRows(t *testing.T) {
	c := NewCPU()
	x := c.FromHost([]float32{1, 5, 3, 5, 0, -2, 7, 7, 1, 0}, 2, 5)
	idx, val := c.TopKRows(x, 3)
	wantIdx := []int32{1, 3, 2, 1, 2, 3}
	wantVal := []float32{5, 5, 3, 7, 7, 1}
	for i := range wantIdx {
		if idx[i] != wantIdx[i] || val[i] != wantVal[i] {
			t.Fatalf("top-3: got %v %v, want %v %v", idx, val, wantIdx, wantVal)
		}
	}
}

func TestExp32(t *testing.T) {
	worst := 0.0
	for x := float32(-87); x <= 88; x += 0.000731 {
		got, want := float64(exp32(x)), math.Exp(float64(x))
		ulp := float64(math.Nextafter32(float32(want), float32(math.Inf(1))) - float32(want))
		worst = max(worst, math.Abs(got-want)/ulp)
	}
	if worst > 3 {
		t.Fatalf("exp32 is off by up to %.2f ulp", worst)
	}
	t.Logf("exp32: max error %.2f ulp", worst)
	for _, c := range []struct{ x, want float32 }{{0, 1}, {float32(math.Inf(-1)), 0}, {-200, 0}, {100, float32(math.Inf(1))}} {
		if got := exp32(c.x); got != c.want {
			t.Errorf("exp32(%g) = %g, want %g", c.x, got, c.want)
		}
	}
	if got := exp32(-90); math.Abs(float64(got)-math.Exp(-90)) > 1e-45 {
		t.Errorf("exp32(-90) = %g", got)
	}
}

func BenchmarkExp(b *testing.B) {
	xs := make([]float32, 4096)
	for i := range xs {
		xs[i] = -float32(i) / 256
	}
	b.Run("exp32", func(b *testing.B) {
		var s float32
		for i := 0; i < b.N; i++ {
			for _, x := range xs {
				s += exp32(x)
			}
		}
		_ = s
	})
	b.Run("math.Exp", func(b *testing.B) {
		var s float32
		for i := 0; i < b.N; i++ {
			for _, x := range xs {
				s += float32(math.Exp(float64(x)))
			}
		}
		_ = s
	})
}
