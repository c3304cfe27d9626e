package compute

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// naiveMasked is naiveAttention with the sliding window too: it returns
// the float64 pattern so that reductions can be taken from it exactly.
func naiveMasked(q, k, v []float32, s AttnShape, scale float32, mask AttnMask) (pattern []float64, z []float64, lse []float64) {
	pattern = make([]float64, s.B*s.H*s.Tq*s.Tk)
	z = make([]float64, s.B*s.Tq*s.H*s.Dh)
	lse = make([]float64, s.B*s.H*s.Tq)
	group := s.H / s.Hkv
	for b := 0; b < s.B; b++ {
		for h := 0; h < s.H; h++ {
			kh := h / group
			for i := 0; i < s.Tq; i++ {
				p := mask.Past + i
				row := make([]float64, s.Tk)
				m := math.Inf(-1)
				for j := 0; j < s.Tk; j++ {
					ok := (!mask.Causal || j <= p) && (mask.Window == 0 || p-j < mask.Window) &&
						(mask.KeyValid == nil || mask.KeyValid[b*s.Tk+j])
					if !ok {
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
				li := (b*s.H+h)*s.Tq + i
				if math.IsInf(m, -1) {
					lse[li] = math.Inf(-1)
					continue
				}
				var sum float64
				for j := range row {
					row[j] = math.Exp(row[j] - m)
					sum += row[j]
				}
				lse[li] = m + math.Log(sum)
				for j := range row {
					w := row[j] / sum
					pattern[li*s.Tk+j] = w
					for d := 0; d < s.Dh; d++ {
						z[(b*s.Tq+i)*s.H*s.Dh+h*s.Dh+d] += w * float64(v[(b*s.Tcap+j)*s.Hkv*s.Dh+kh*s.Dh+d])
					}
				}
			}
		}
	}
	return pattern, z, lse
}

type attnCase struct {
	name   string
	s      AttnShape
	past   int
	pad    int // left padding of sequence 0
	causal bool
	window int
}

var attnCases = []attnCase{
	{"prefill", AttnShape{B: 2, Tq: 150, Tk: 150, Tcap: 150, H: 4, Hkv: 2, Dh: 8}, 0, 0, true, 0},
	{"prefill long keys", AttnShape{B: 1, Tq: 300, Tk: 600, Tcap: 640, H: 3, Hkv: 1, Dh: 16}, 300, 0, true, 0},
	{"padded", AttnShape{B: 2, Tq: 70, Tk: 70, Tcap: 70, H: 2, Hkv: 1, Dh: 4}, 0, 9, true, 0},
	{"cached step", AttnShape{B: 1, Tq: 1, Tk: 531, Tcap: 600, H: 3, Hkv: 3, Dh: 8}, 530, 0, true, 0},
	{"cached chunk", AttnShape{B: 1, Tq: 80, Tk: 100, Tcap: 120, H: 2, Hkv: 1, Dh: 8}, 20, 0, true, 0},
	{"bidirectional", AttnShape{B: 1, Tq: 65, Tk: 65, Tcap: 65, H: 2, Hkv: 2, Dh: 4}, 0, 0, false, 0},
	{"sliding window", AttnShape{B: 2, Tq: 400, Tk: 400, Tcap: 400, H: 2, Hkv: 1, Dh: 8}, 0, 5, true, 37},
	{"window step", AttnShape{B: 1, Tq: 1, Tk: 700, Tcap: 700, H: 2, Hkv: 2, Dh: 8}, 699, 0, true, 300},
}

func (tc attnCase) mask() AttnMask {
	m := AttnMask{Past: tc.past, Causal: tc.causal, Window: tc.window}
	if tc.pad > 0 {
		m.KeyValid = make([]bool, tc.s.B*tc.s.Tk)
		for i := range m.KeyValid {
			m.KeyValid[i] = i >= tc.pad
		}
	}
	return m
}

func TestFusedAttentionMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 3))
	c := NewCPU()
	for _, tc := range attnCases {
		t.Run(tc.name, func(t *testing.T) {
			s, mask := tc.s, tc.mask()
			q := randData(rng, s.B*s.Tq*s.H*s.Dh)
			k := randData(rng, s.B*s.Tcap*s.Hkv*s.Dh)
			v := randData(rng, s.B*s.Tcap*s.Hkv*s.Dh)
			for i := range q {
				q[i] *= 3 // sharper patterns than unit scores give
			}
			scale := float32(1 / math.Sqrt(float64(s.Dh)))
			wantP, wantZ, wantLSE := naiveMasked(q, k, v, s, scale, mask)
			qt := c.FromHost(q, s.B*s.Tq, s.H*s.Dh)
			kt := c.FromHost(k, s.B*s.Tcap, s.Hkv*s.Dh)
			vt := c.FromHost(v, s.B*s.Tcap, s.Hkv*s.Dh)
			for _, spec := range []AttnSpec{{LSE: true}, {LSE: true, Pattern: true, Scores: true}} {
				res := c.Attention(qt, kt, vt, s, scale, mask, spec)
				for i, w := range wantZ {
					if d := math.Abs(float64(Data(res.Z)[i]) - w); d > 1e-5 {
						t.Fatalf("pattern=%v: z[%d] = %g, naive %g", spec.Pattern, i, Data(res.Z)[i], w)
					}
				}
				for i, w := range wantLSE {
					g := float64(res.LSE[i])
					if math.IsInf(w, -1) != math.IsInf(g, -1) || !math.IsInf(w, -1) && math.Abs(g-w) > 1e-5*max(1, math.Abs(w)) {
						t.Fatalf("pattern=%v: lse[%d] = %g, naive %g", spec.Pattern, i, g, w)
					}
				}
				if spec.Pattern {
					for i, w := range wantP {
						if d := math.Abs(float64(Data(res.Pattern)[i]) - w); d > 1e-6 {
							t.Fatalf("pattern[%d] = %g, naive %g", i, Data(res.Pattern)[i], w)
						}
					}
				}
			}
		})
	}
}

// naiveReductions takes a spec's reductions from a float64 pattern, loop by
// loop, as the contract in attention.go words them.
func naiveReductions(pat []float64, s AttnShape, mask AttnMask, spec AttnSpec) (idx [][]int, val [][]float64, spans, sets [][]float64, ent []float64) {
	rows := spec.Rows
	if rows == nil {
		for i := 0; i < s.Tq; i++ {
			rows = append(rows, i)
		}
	}
	R := len(rows)
	spans = make([][]float64, len(spec.Spans))
	sets = make([][]float64, len(spec.KeySets))
	for b := 0; b < s.B; b++ {
		for h := 0; h < s.H; h++ {
			for r, i := range rows {
				row := pat[((b*s.H+h)*s.Tq+i)*s.Tk:][:s.Tk]
				p := mask.Past + i
				order := make([]int, s.Tk)
				for j := range order {
					order[j] = j
				}
				slices.SortStableFunc(order, func(a, b int) int {
					switch {
					case row[a] > row[b]:
						return -1
					case row[a] < row[b]:
						return 1
					}
					return 0
				})
				kk := min(spec.TopK, s.Tk)
				idx = append(idx, order[:kk])
				var vs []float64
				for _, j := range order[:kk] {
					vs = append(vs, row[j])
				}
				val = append(val, vs)
				for si, sp := range spec.Spans {
					lo, hi := sp.Lo, sp.Hi
					if sp.LoRelative {
						lo += p
					}
					if sp.HiRelative {
						hi += p
					}
					m := 0.0
					for j := max(lo, 0); j < min(hi, s.Tk); j++ {
						m += row[j]
					}
					spans[si] = append(spans[si], m)
				}
				for si, ks := range spec.KeySets {
					m := 0.0
					for _, j := range ks.Keys[ks.Off[b*R+r]:ks.Off[b*R+r+1]] {
						if j >= 0 && int(j) < s.Tk {
							m += row[j]
						}
					}
					sets[si] = append(sets[si], m)
				}
				e := 0.0
				for _, w := range row {
					if w > 0 {
						e -= w * math.Log(w)
					}
				}
				ent = append(ent, e)
			}
		}
	}
	return idx, val, spans, sets, ent
}

func randomKeySet(rng *rand.Rand, n, Tk int) KeySet {
	ks := KeySet{Off: []int32{0}}
	for range n {
		for range rng.IntN(5) {
			ks.Keys = append(ks.Keys, int32(rng.IntN(Tk+2)-1)) // some outside [0, Tk)
		}
		ks.Off = append(ks.Off, int32(len(ks.Keys)))
	}
	return ks
}

func TestFusedReductionsMatchPattern(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 5))
	c := NewCPU()
	for _, tc := range attnCases {
		for _, rowsAsked := range []string{"all", "some", "last"} {
			t.Run(tc.name+"/"+rowsAsked, func(t *testing.T) {
				s, mask := tc.s, tc.mask()
				q := randData(rng, s.B*s.Tq*s.H*s.Dh)
				k := randData(rng, s.B*s.Tcap*s.Hkv*s.Dh)
				v := randData(rng, s.B*s.Tcap*s.Hkv*s.Dh)
				for i := range q {
					q[i] *= 2
				}
				scale := float32(1 / math.Sqrt(float64(s.Dh)))
				spec := AttnSpec{TopK: 5, Entropy: true, Spans: []KeySpan{{Lo: 0, Hi: 4}, {Lo: -15, Hi: 1, LoRelative: true, HiRelative: true}, {Lo: 3, Hi: 1 << 30}, {Lo: 2, Hi: 0, HiRelative: true}}}
				switch rowsAsked {
				case "some":
					for i := 0; i < s.Tq; i++ {
						if rng.IntN(3) == 0 {
							spec.Rows = append(spec.Rows, i)
						}
					}
					if spec.Rows == nil {
						spec.Rows = []int{0}
					}
				case "last":
					spec.Rows = []int{s.Tq - 1}
				}
				R := s.Tq
				if spec.Rows != nil {
					R = len(spec.Rows)
				}
				spec.KeySets = []KeySet{randomKeySet(rng, s.B*R, s.Tk)}
				pat, _, _ := naiveMasked(q, k, v, s, scale, mask)
				wantIdx, wantVal, wantSpans, wantSets, wantEnt := naiveReductions(pat, s, mask, spec)
				qt := c.FromHost(q, s.B*s.Tq, s.H*s.Dh)
				kt := c.FromHost(k, s.B*s.Tcap, s.Hkv*s.Dh)
				vt := c.FromHost(v, s.B*s.Tcap, s.Hkv*s.Dh)
				for _, materialised := range []bool{false, true} {
					sp := spec
					sp.Pattern = materialised
					res := c.Attention(qt, kt, vt, s, scale, mask, sp)
					kk := min(spec.TopK, s.Tk)
					for r := range wantIdx {
						for j := 0; j < kk; j++ {
							gi, gv := int(res.TopIdx[r*kk+j]), float64(res.TopVal[r*kk+j])
							if math.Abs(gv-wantVal[r][j]) > 1e-5 {
								t.Fatalf("materialised=%v row %d: top-%d weight %d is %g, naive %g", materialised, r, kk, j, gv, wantVal[r][j])
							}
							// Indices agree except where the exact weights tie
							// (or are within float32 rounding of a tie).
							if gi != wantIdx[r][j] && math.Abs(pat[r0(s, spec, r)*s.Tk+gi]-wantVal[r][j]) > 1e-6 {
								t.Fatalf("materialised=%v row %d: top key %d is %d, naive %d", materialised, r, j, gi, wantIdx[r][j])
							}
						}
					}
					for si := range spec.Spans {
						checkClose(t, "span mass", res.SpanMass[si], wantSpans[si])
					}
					checkClose(t, "key-set mass", res.SetMass[0], wantSets[0])
					checkClose(t, "entropy", res.Entropy, wantEnt)
					// Per-head sums.
					sp.SumRows = true
					sum := c.Attention(qt, kt, vt, s, scale, mask, sp)
					for bh := 0; bh < s.B*s.H; bh++ {
						var e float64
						for _, x := range wantEnt[bh*R : (bh+1)*R] {
							e += x
						}
						if d := math.Abs(float64(sum.Entropy[bh]) - e); d > 1e-5*max(1, e) {
							t.Fatalf("materialised=%v: summed entropy of (b,h) %d is %g, naive %g", materialised, bh, sum.Entropy[bh], e)
						}
					}
				}
			})
		}
	}
}

// r0 maps a reduction row (over [B, H, R]) to its pattern row.
func r0(s AttnShape, spec AttnSpec, r int) int {
	R := s.Tq
	if spec.Rows != nil {
		R = len(spec.Rows)
	}
	bh, i := r/R, r%R
	if spec.Rows != nil {
		i = spec.Rows[i]
	}
	return bh*s.Tq + i
}

func checkClose(t *testing.T, what string, got []float32, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i, w := range want {
		if d := math.Abs(float64(got[i]) - w); d > 1e-5 {
			t.Fatalf("%s[%d] = %g, naive %g", what, i, got[i], w)
		}
	}
}

// A padding query (no allowed key) gives z = 0, lse = -Inf and a top-k of
// the first keys at weight 0, as TopKRows does on its all-zero row.
func TestFusedAttentionFullyMaskedRow(t *testing.T) {
	c := NewCPU()
	s := AttnShape{B: 1, Tq: 4, Tk: 4, Tcap: 4, H: 1, Hkv: 1, Dh: 2}
	mask := AttnMask{Causal: true, KeyValid: []bool{false, false, true, true}}
	qt := c.FromHost([]float32{1, 2, 3, 4, 5, 6, 7, 8}, 4, 2)
	res := c.Attention(qt, qt, qt, s, 1, mask, AttnSpec{TopK: 3, LSE: true, Entropy: true, Spans: []KeySpan{{Lo: 0, Hi: 4}}})
	if z := Data(res.Z); z[0] != 0 || z[1] != 0 || !math.IsInf(float64(res.LSE[0]), -1) {
		t.Fatalf("padding query: z %v, lse %v", z[:2], res.LSE[0])
	}
	// Its pattern row is all zeros, so are its mass and entropy (not NaN).
	if res.SpanMass[0][0] != 0 || res.Entropy[0] != 0 || res.SpanMass[0][3] != 1 {
		t.Fatalf("padding query: span mass %v, entropy %v", res.SpanMass[0], res.Entropy)
	}
	sum := c.Attention(qt, qt, qt, s, 1, mask, AttnSpec{Entropy: true, SumRows: true, Spans: []KeySpan{{Lo: 0, Hi: 4}}})
	if m := sum.SpanMass[0][0]; math.Abs(float64(m)-2) > 1e-6 || math.IsNaN(float64(sum.Entropy[0])) {
		t.Fatalf("rows summed over two padding queries: span mass %g (want 2), entropy %g", m, sum.Entropy[0])
	}
	if !slices.Equal(res.TopIdx[:3], []int32{0, 1, 2}) || res.TopVal[0] != 0 {
		t.Fatalf("padding query top-3: %v %v", res.TopIdx[:3], res.TopVal[:3])
	}
	// Query 2 sees key 2 only: weight 1 there, then keys 0 and 1 at 0.
	if !slices.Equal(res.TopIdx[6:9], []int32{2, 0, 1}) || res.TopVal[6] != 1 || res.Entropy[2] != 0 {
		t.Fatalf("query 2 top-3: %v %v entropy %g", res.TopIdx[6:9], res.TopVal[6:9], res.Entropy[2])
	}
}

// BenchmarkAttention compares, at SmolLM2's attention shape (9 query heads,
// 3 KV heads, d_head 64), the fused attention with the scores → softmax →
// mix path.
func BenchmarkAttention(b *testing.B) {
	c := NewCPU()
	rng := rand.New(rand.NewPCG(1, 1))
	for _, T := range []int{512, 2048, 8192} {
		s := AttnShape{B: 1, Tq: T, Tk: T, Tcap: T, H: 9, Hkv: 3, Dh: 64}
		q := c.FromHost(randData(rng, T*s.H*s.Dh), T, s.H*s.Dh)
		k := c.FromHost(randData(rng, T*s.Hkv*s.Dh), T, s.Hkv*s.Dh)
		v := c.FromHost(randData(rng, T*s.Hkv*s.Dh), T, s.Hkv*s.Dh)
		mask := AttnMask{Causal: true}
		b.Run(fmt.Sprintf("T=%d/fused", T), func(b *testing.B) {
			for range b.N {
				c.Attention(q, k, v, s, 0.125, mask, AttnSpec{})
			}
		})
		b.Run(fmt.Sprintf("T=%d/fused+top1", T), func(b *testing.B) {
			for range b.N {
				c.Attention(q, k, v, s, 0.125, mask, AttnSpec{TopK: 1})
			}
		})
		if T > 2048 {
			continue
		}
		b.Run(fmt.Sprintf("T=%d/materialised", T), func(b *testing.B) {
			for range b.N {
				c.AttentionMix(c.SoftmaxRows(c.AttentionScores(q, k, s, 0.125, mask)), v, s)
			}
		})
	}
}
