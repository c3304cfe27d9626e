package codebook

import (
	"slices"
)

// AveragePrecision is the average precision of scores at ranking the
// positives first, as scikit-learn's average_precision_score defines it:
// the sum over distinct score thresholds, from the highest, of
// (recall_n - recall_{n-1}) * precision_n, tied scores forming one
// threshold. It is 0 when there is no positive.
func AveragePrecision(scores []float32, positive []bool) float64 {
	order := make([]int, len(scores))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case scores[a] > scores[b]:
			return -1
		case scores[a] < scores[b]:
			return 1
		}
		return 0
	})
	total := 0
	for _, p := range positive {
		if p {
			total++
		}
	}
	return apSorted(order, scores, positive, total)
}

// apSorted is AveragePrecision over indices already sorted by descending
// score.
func apSorted(order []int, scores []float32, positive []bool, total int) float64 {
	if total == 0 {
		return 0
	}
	ap, tp, seen, prevRecall := 0.0, 0, 0, 0.0
	for i := 0; i < len(order); {
		j := i
		for j < len(order) && scores[order[j]] == scores[order[i]] {
			if positive[order[j]] {
				tp++
			}
			j++
		}
		seen += j - i
		recall := float64(tp) / float64(total)
		ap += (recall - prevRecall) * float64(tp) / float64(seen)
		prevRecall = recall
		i = j
	}
	return ap
}

// BinaryAveragePrecision is AveragePrecision of a score that is 1 where a
// code fires and 0 elsewhere: fired of n positions fire, hits of them are
// positives, of total positives. With two thresholds it is
// recall·precision + (1 - recall)·(total / n).
func BinaryAveragePrecision(fired, hits, total, n int) float64 {
	if total == 0 || n == 0 {
		return 0
	}
	recall := float64(hits) / float64(total)
	ap := 0.0
	if fired > 0 {
		ap = recall * float64(hits) / float64(fired)
	}
	if fired < n {
		ap += (1 - recall) * float64(total) / float64(n)
	}
	return ap
}
