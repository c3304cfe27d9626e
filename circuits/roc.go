package circuits

import (
	"math"
	"slices"
)

// Scoring a discovered circuit against a known one.

// RankAUC is the ROC AUC of a ranking: the chance that a random member of
// the true circuit scores above a random non-member, ties counting half
// (the Mann–Whitney statistic). NaN when either class is empty.
func RankAUC(scores []float64, truth []bool) float64 {
	pos, neg := 0, 0
	for _, t := range truth {
		if t {
			pos++
		} else {
			neg++
		}
	}
	if pos == 0 || neg == 0 {
		return math.NaN()
	}
	wins := 0.0
	for i, ti := range truth {
		if !ti {
			continue
		}
		for j, tj := range truth {
			if tj {
				continue
			}
			switch {
			case scores[i] > scores[j]:
				wins++
			case scores[i] == scores[j]:
				wins += 0.5
			}
		}
	}
	return wins / float64(pos*neg)
}

// ROCPoint is one circuit's false- and true-positive rates.
type ROCPoint struct{ FPR, TPR float64 }

// Rates compares a found set with the truth over a universe of n items:
// the ROC point, precision and recall.
func Rates[T comparable](found, truth []T, n int) (pt ROCPoint, precision, recall float64) {
	isTrue := map[T]bool{}
	for _, t := range truth {
		isTrue[t] = true
	}
	tp, fp := 0, 0
	seen := map[T]bool{}
	for _, f := range found {
		if seen[f] {
			continue
		}
		seen[f] = true
		if isTrue[f] {
			tp++
		} else {
			fp++
		}
	}
	if len(isTrue) > 0 {
		pt.TPR = float64(tp) / float64(len(isTrue))
	}
	if n > len(isTrue) {
		pt.FPR = float64(fp) / float64(n-len(isTrue))
	}
	precision = math.NaN()
	if tp+fp > 0 {
		precision = float64(tp) / float64(tp+fp)
	}
	return pt, precision, pt.TPR
}

// CurveAUC is the area under the ROC curve through the points of a
// threshold sweep, with (0, 0) and (1, 1) added, by the trapezoid rule (as
// Conmy et al. score ACDC's sweeps). At one FPR the best TPR is kept.
func CurveAUC(points []ROCPoint) float64 {
	pts := append([]ROCPoint{{0, 0}, {1, 1}}, points...)
	slices.SortFunc(pts, func(a, b ROCPoint) int {
		if a.FPR != b.FPR {
			if a.FPR < b.FPR {
				return -1
			}
			return 1
		}
		if a.TPR > b.TPR {
			return -1
		}
		if a.TPR < b.TPR {
			return 1
		}
		return 0
	})
	area, last := 0.0, ROCPoint{0, 0}
	bestTPR := 0.0
	for _, p := range pts {
		tpr := math.Max(p.TPR, bestTPR) // a curve never falls
		area += (p.FPR - last.FPR) * (tpr + last.TPR) / 2
		last, bestTPR = ROCPoint{p.FPR, tpr}, tpr
	}
	return area
}
