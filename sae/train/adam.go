package train

import (
	"math"
	"runtime"
	"sync"
)

// Schedule is the learning rate over steps: linear warm-up from 0 over
// Warmup steps, constant LR, then linear decay to 0 over the last Decay
// steps of Total (the schedule of Anthropic's and SAELens's SAE training).
type Schedule struct {
	LR            float64
	Warmup, Decay int
	Total         int
}

// At gives the learning rate of step (from 0).
func (s Schedule) At(step int) float64 {
	lr := s.LR
	if s.Warmup > 0 && step < s.Warmup {
		lr *= float64(step+1) / float64(s.Warmup)
	}
	if s.Decay > 0 && step >= s.Total-s.Decay {
		lr *= math.Max(0, float64(s.Total-step)/float64(s.Decay))
	}
	return lr
}

// Adam is the Adam optimizer (Kingma & Ba) with bias correction and no
// weight decay. M and V are the first and second moments, one slice per
// parameter in Params order.
type Adam struct {
	Beta1, Beta2, Eps float64
	M, V              [][]float32
	T                 int // updates made
}

// NewAdam makes an optimizer for params with the usual defaults
// (beta1 0.9, beta2 0.999, eps 1e-8) where zero values are given.
func NewAdam(params []*Param, beta1, beta2, eps float64) *Adam {
	if beta1 == 0 {
		beta1 = 0.9
	}
	if beta2 == 0 {
		beta2 = 0.999
	}
	if eps == 0 {
		eps = 1e-8
	}
	a := &Adam{Beta1: beta1, Beta2: beta2, Eps: eps}
	for _, p := range params {
		a.M = append(a.M, make([]float32, len(p.Value)))
		a.V = append(a.V, make([]float32, len(p.Value)))
	}
	return a
}

// Step updates every parameter (except NoUpdate ones) with learning rate lr.
func (a *Adam) Step(params []*Param, lr float64) {
	a.T++
	b1, b2 := float32(a.Beta1), float32(a.Beta2)
	c1 := 1 - math.Pow(a.Beta1, float64(a.T))
	c2 := 1 - math.Pow(a.Beta2, float64(a.T))
	// value -= lr/c1 · m / (sqrt(v/c2) + eps)
	step := float32(lr / c1)
	inv2 := float32(1 / c2)
	eps := float32(a.Eps)
	for i, p := range params {
		if p.NoUpdate {
			continue
		}
		m, v, g, x := a.M[i], a.V[i], p.Grad, p.Value
		// Element j's update depends on element j alone, so splitting the
		// range across goroutines changes no bit.
		inParallel(len(x), func(lo, hi int) {
			for j := lo; j < hi; j++ {
				gj := g[j]
				mj := b1*m[j] + (1-b1)*gj
				vj := b2*v[j] + (1-b2)*gj*gj
				m[j], v[j] = mj, vj
				x[j] -= step * mj / (float32(math.Sqrt(float64(vj*inv2))) + eps)
			}
		})
	}
}

// inParallel runs fn over [0, n) in one contiguous range per CPU when n is
// large enough to pay for the goroutines.
func inParallel(n int, fn func(lo, hi int)) {
	w := runtime.GOMAXPROCS(0)
	if w <= 1 || n < 1<<16 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	step := (n + w - 1) / w
	for lo := 0; lo < n; lo += step {
		wg.Add(1)
		go func(lo, hi int) {
			defer wg.Done()
			fn(lo, hi)
		}(lo, min(lo+step, n))
	}
	wg.Wait()
}
