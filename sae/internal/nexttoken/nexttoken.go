// Package nexttoken scores a spliced forward pass against the clean one by
// next-token loss, as SAE and codebook evaluations report it: the
// cross-entropies of the clean, the edited (SAE or codebooks spliced in) and
// the zero-ablated runs, the KL divergence from clean to edited, and CE loss
// recovered = (CE_zero − CE_edited) / (CE_zero − CE_clean).
package nexttoken

import (
	"math"

	"github.com/loupe-dev/loupe/probe"
)

// Losses sums, over every predicted token (position t predicting t+1), the
// three runs' cross-entropies (nats) and KL(clean ‖ edited).
type Losses struct {
	Clean, Edited, Zero, KL float64
	Tokens                  int64
}

// Add takes one batch: the three runs' results over the same token ids,
// with logits at every position (probe.LogitsAll).
func (l *Losses) Add(batch [][]int, clean, edited, zeroed *probe.Result) {
	for b := range batch {
		for t := 0; t+1 < len(batch[b]); t++ {
			next := batch[b][t+1]
			lc, pc := logSoftmax(clean.LogitsAt(b, t))
			le, _ := logSoftmax(edited.LogitsAt(b, t))
			lz, _ := logSoftmax(zeroed.LogitsAt(b, t))
			l.Clean -= lc[next]
			l.Edited -= le[next]
			l.Zero -= lz[next]
			var kl float64
			for v := range lc {
				kl += pc[v] * (lc[v] - le[v])
			}
			l.KL += kl
			l.Tokens++
		}
	}
}

// Means gives the per-token means and CE loss recovered.
func (l *Losses) Means() (clean, edited, zero, kl, recovered float64) {
	n := float64(l.Tokens)
	clean, edited, zero, kl = l.Clean/n, l.Edited/n, l.Zero/n, l.KL/n
	return clean, edited, zero, kl, (zero - edited) / (zero - clean)
}

// logSoftmax gives log p and p of a logit row, in float64.
func logSoftmax(logits []float32) (logp, p []float64) {
	mx := math.Inf(-1)
	for _, v := range logits {
		mx = math.Max(mx, float64(v))
	}
	var z float64
	for _, v := range logits {
		z += math.Exp(float64(v) - mx)
	}
	lz := mx + math.Log(z)
	logp, p = make([]float64, len(logits)), make([]float64, len(logits))
	for i, v := range logits {
		logp[i] = float64(v) - lz
		p[i] = math.Exp(logp[i])
	}
	return logp, p
}
