package sae

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/loupe-dev/loupe/sae/activations"
)

// Metrics are an SAE's reconstruction statistics over evaluation tokens.
type Metrics struct {
	Tokens int64
	// L0 is the mean number of active latents per token.
	L0 float64
	// FVU = Σ‖y − ŷ‖² / Σ‖y − ȳ‖², ȳ the mean over the evaluation tokens.
	FVU float64
	// MSE is the mean squared error per element: Σ‖y − ŷ‖² / (tokens·d).
	MSE float64
	// Cosine is the mean over tokens of cos(y, ŷ).
	Cosine float64
	// RelativeBias is the relative reconstruction bias γ of Rajamanoharan et
	// al. (2024, Gated SAEs, §5.1): the γ minimising E‖ŷ/γ − y‖²,
	// γ = E‖ŷ‖² / E[ŷ·y]; γ < 1 means the reconstructions shrink.
	RelativeBias float64
	// Density is each latent's firing frequency; Dead the fraction of
	// latents that never fired.
	Density []float64
	Dead    float64
	// Histogram counts latents by log10 density in HistBins bins over
	// [HistLo, 0], with dead latents (density 0) in their own count.
	Histogram []int
	DeadCount int
}

// Histogram layout of Metrics.Histogram.
const (
	HistBins = 20
	HistLo   = -8.0
)

// Accumulator gathers Metrics over batches in float64.
type Accumulator struct {
	s         *SAE
	n         int64
	active    float64
	sse, cos  float64
	sumY      []float64
	sumYY     float64
	xhxh, xhy float64
	fired     []int64
}

// NewAccumulator starts an evaluation of s.
func NewAccumulator(s *SAE) *Accumulator {
	return &Accumulator{s: s, sumY: make([]float64, s.DOut), fired: make([]int64, s.DSAE)}
}

// Add evaluates n rows: x the SAE's input, y its target (x for an SAE);
// raw activations in both.
func (a *Accumulator) Add(x, y []float32, n int) (f, yhat []float32) {
	s := a.s
	f = s.Encode(x, n)
	yhat = s.Decode(f, n)
	a.AddDecoded(f, y, yhat, n)
	return f, yhat
}

// AddDecoded adds rows whose latents f and reconstructions yhat are known.
func (a *Accumulator) AddDecoded(f, y, yhat []float32, n int) {
	s := a.s
	d := s.DOut
	for r := 0; r < n; r++ {
		for j, v := range f[r*s.DSAE : (r+1)*s.DSAE] {
			if v != 0 {
				a.active++
				a.fired[j]++
			}
		}
		var dot, nn, hh float64
		for i := 0; i < d; i++ {
			yv, hv := float64(y[r*d+i]), float64(yhat[r*d+i])
			e := hv - yv
			a.sse += e * e
			a.sumY[i] += yv
			a.sumYY += yv * yv
			dot += hv * yv
			nn += yv * yv
			hh += hv * hv
		}
		a.xhxh += hh
		a.xhy += dot
		if nn > 0 && hh > 0 {
			a.cos += dot / math.Sqrt(nn*hh)
		}
	}
	a.n += int64(n)
}

// Metrics gives the statistics so far.
func (a *Accumulator) Metrics() Metrics {
	s := a.s
	n := float64(a.n)
	var m Metrics
	m.Tokens = a.n
	if a.n == 0 {
		return m
	}
	// Σ‖y − ȳ‖² = Σ‖y‖² − n‖ȳ‖²
	var meanSq float64
	for _, v := range a.sumY {
		meanSq += (v / n) * (v / n)
	}
	sst := a.sumYY - n*meanSq
	m.L0 = a.active / n
	m.FVU = a.sse / sst
	m.MSE = a.sse / (n * float64(s.DOut))
	m.Cosine = a.cos / n
	m.RelativeBias = a.xhxh / a.xhy
	m.Density = make([]float64, s.DSAE)
	m.Histogram = make([]int, HistBins)
	for j, c := range a.fired {
		d := float64(c) / n
		m.Density[j] = d
		if c == 0 {
			m.DeadCount++
			continue
		}
		b := int((math.Log10(d) - HistLo) / -HistLo * HistBins)
		m.Histogram[min(max(b, 0), HistBins-1)]++
	}
	m.Dead = float64(m.DeadCount) / float64(s.DSAE)
	return m
}

// Evaluate runs s over up to tokens rows of a source from its current
// position, batch rows at a time.
func Evaluate(ctx context.Context, s *SAE, src activations.Source, tokens int64) (Metrics, error) {
	if src.Width() != s.DIn {
		return Metrics{}, fmt.Errorf("sae: the activations have %d features, the SAE reads %d", src.Width(), s.DIn)
	}
	if tw := src.TargetWidth(); tw != 0 && tw != s.DOut {
		return Metrics{}, fmt.Errorf("sae: the targets have %d features, the SAE writes %d", tw, s.DOut)
	}
	acc := NewAccumulator(s)
	for acc.n < tokens {
		ch, err := src.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Metrics{}, err
		}
		rows := int(min(int64(ch.Rows), tokens-acc.n))
		y := ch.Y
		if y == nil {
			y = ch.X
		}
		acc.Add(ch.X[:rows*s.DIn], y[:rows*s.DOut], rows)
	}
	if acc.n == 0 {
		return Metrics{}, fmt.Errorf("sae: no evaluation tokens")
	}
	return acc.Metrics(), nil
}
