package compute

import (
	"math"
	"slices"
	"sync"
)

// ropeCache keeps RoPE's cos and sin tables per set of inverse
// frequencies, so that a forward pass computes each (position, frequency)
// pair's cos and sin once instead of twice a layer (for q and k) in every
// layer: on SmolLM2 at 2048 tokens the trigonometry was about 5% of a
// prefill's CPU time. Tables hold positions below ropeCacheMax; later
// positions are computed as they come.
type ropeCache struct {
	mu   sync.Mutex
	tabs []*ropeTable
}

// ropeCacheMax bounds a table: 65536 positions of a 64-wide rotary half
// are 32 MiB of cos and sin.
const ropeCacheMax = 1 << 16

// ropeTable is immutable once published: a longer prompt replaces it with
// a longer table, and passes still holding the old one read it safely.
type ropeTable struct {
	invFreq  []float32
	n        int       // positions held
	cos, sin []float32 // [n, len(invFreq)]
}

// ropeAngles writes the cos and sin of position p's angles, in float32 as
// PyTorch computes them (position times inverse frequency in float32).
func ropeAngles(cos, sin []float32, p int, invFreq []float32) {
	for i, f := range invFreq {
		a := float32(p) * f
		cos[i] = float32(math.Cos(float64(a)))
		sin[i] = float32(math.Sin(float64(a)))
	}
}

// table returns a table of invFreq holding positions up to need
// (exclusive, at most ropeCacheMax).
func (rc *ropeCache) table(invFreq []float32, need int) *ropeTable {
	need = min(need, ropeCacheMax)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	at := -1
	for i, t := range rc.tabs {
		if slices.Equal(t.invFreq, invFreq) {
			if t.n >= need {
				return t
			}
			at = i
			break
		}
	}
	n := 1024
	for n < need {
		n *= 2
	}
	n = min(n, ropeCacheMax)
	half := len(invFreq)
	t := &ropeTable{invFreq: slices.Clone(invFreq), n: n, cos: make([]float32, n*half), sin: make([]float32, n*half)}
	for p := 0; p < n; p++ {
		ropeAngles(t.cos[p*half:(p+1)*half], t.sin[p*half:(p+1)*half], p, invFreq)
	}
	if at >= 0 {
		rc.tabs[at] = t
	} else {
		rc.tabs = append(rc.tabs, t)
	}
	return t
}
