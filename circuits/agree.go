package circuits

import (
	"math"
	"sort"
)

// Agreement compares two methods' head rankings.
type Agreement struct {
	K        int
	TopA     []Node  // a's top K heads
	TopB     []Node  // b's top K heads
	Overlap  int     // heads in both top-K lists
	Jaccard  float64 // |A ∩ B| / |A ∪ B| of the top-K lists
	Spearman float64 // rank correlation over every head both score (average ranks for ties)
}

// Agree compares the head scores of two methods over the heads both score.
func Agree(a, b map[Node]float64, k int) Agreement {
	var hs []Node
	for n := range a {
		if _, ok := b[n]; ok && n.Kind == NodeHead {
			hs = append(hs, n)
		}
	}
	sort.Slice(hs, func(i, j int) bool { return hs[i].Layer*1000+hs[i].Head < hs[j].Layer*1000+hs[j].Head })
	ag := Agreement{K: min(k, len(hs)), Spearman: math.NaN()}
	top := func(s map[Node]float64) []Node {
		c := append([]Node(nil), hs...)
		sort.SliceStable(c, func(i, j int) bool { return s[c[i]] > s[c[j]] })
		return c[:ag.K]
	}
	ag.TopA, ag.TopB = top(a), top(b)
	inA := map[Node]bool{}
	for _, n := range ag.TopA {
		inA[n] = true
	}
	for _, n := range ag.TopB {
		if inA[n] {
			ag.Overlap++
		}
	}
	if u := 2*ag.K - ag.Overlap; u > 0 {
		ag.Jaccard = float64(ag.Overlap) / float64(u)
	}
	if len(hs) > 1 {
		ra, rb := ranks(hs, a), ranks(hs, b)
		ag.Spearman = pearson(ra, rb)
	}
	return ag
}

// ranks gives average ranks (1 = smallest) of the nodes' scores.
func ranks(ns []Node, s map[Node]float64) []float64 {
	idx := make([]int, len(ns))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(i, j int) bool { return s[ns[idx[i]]] < s[ns[idx[j]]] })
	r := make([]float64, len(ns))
	for i := 0; i < len(idx); {
		j := i
		for j+1 < len(idx) && s[ns[idx[j+1]]] == s[ns[idx[i]]] {
			j++
		}
		avg := float64(i+j)/2 + 1
		for k := i; k <= j; k++ {
			r[idx[k]] = avg
		}
		i = j + 1
	}
	return r
}

func pearson(x, y []float64) float64 {
	mx, my := 0.0, 0.0
	for i := range x {
		mx += x[i]
		my += y[i]
	}
	mx /= float64(len(x))
	my /= float64(len(y))
	sxy, sxx, syy := 0.0, 0.0, 0.0
	for i := range x {
		sxy += (x[i] - mx) * (y[i] - my)
		sxx += (x[i] - mx) * (x[i] - mx)
		syy += (y[i] - my) * (y[i] - my)
	}
	if sxx == 0 || syy == 0 {
		return math.NaN()
	}
	return sxy / math.Sqrt(sxx*syy)
}
