package sae

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/loupe-dev/loupe/sae/activations"
	"github.com/loupe-dev/loupe/sae/train"
)

// signature identifies the active set of a sparse step, so a finite
// difference that crosses a selection boundary can be skipped.
func signature(t *Trainable) string {
	var b []byte
	if t.S.Arch == Standard || t.S.Arch == JumpReLU {
		for _, v := range t.f {
			if v > 0 {
				b = append(b, '1')
			} else {
				b = append(b, '0')
			}
		}
		return string(b)
	}
	for _, e := range t.ent {
		b = fmt.Appendf(b, "%d/%d/%d ", e.row, e.j, e.e)
	}
	return string(b)
}

func randBatch(rng *rand.Rand, n, d, dOut int, transcoder bool) *activations.Batch {
	b := &activations.Batch{Rows: n, Width: d, X: make([]float32, n*d)}
	for i := range b.X {
		b.X[i] = float32(rng.NormFloat64())
	}
	if transcoder {
		b.TWidth = dOut
		b.Y = make([]float32, n*dOut)
		for i := range b.Y {
			b.Y[i] = float32(rng.NormFloat64())
		}
	}
	return b
}

// TestGradientsMatchFiniteDifferences checks every hand-written gradient
// against central differences of the loss, for every architecture, as an
// SAE and as a transcoder. JumpReLU's threshold has no true gradient (the
// loss is piecewise constant in θ); its pseudo-derivative is checked in
// TestJumpReLUThresholdPseudoGradient.
func TestGradientsMatchFiniteDifferences(t *testing.T) {
	for _, arch := range Arches {
		for _, transcoder := range []bool{false, true} {
			name := string(arch)
			if transcoder {
				name += "/transcoder"
			}
			t.Run(name, func(t *testing.T) {
				rng := rand.New(rand.NewPCG(1, 2))
				dIn, dSAE, dOut, n := 6, 16, 6, 5
				if transcoder {
					dOut = 4
				}
				s, err := New(arch, dIn, dSAE, dOut, 3, 7)
				if err != nil {
					t.Fatal(err)
				}
				s.InScale, s.OutScale = 1.3, 0.8
				for i := range s.BDec {
					s.BDec[i] = float32(rng.NormFloat64() * 0.1)
				}
				for i := range s.BEnc {
					s.BEnc[i] = float32(rng.NormFloat64() * 0.1)
				}
				for i := range s.Enc {
					s.Enc[i] += float32(rng.NormFloat64() * 0.3)
				}
				if arch == JumpReLU {
					for j := range s.Threshold {
						s.Threshold[j] = 0.2
					}
				}
				if arch == Matryoshka {
					s.Groups = []int{2, 5, 9, 16}
				}
				cfg := TrainConfig{L1: 0.7, L0: 0.3, DeadWindow: 1, AuxK: 4, AuxKAlpha: 0.5}
				tr := NewTrainable(s, cfg)
				b := randBatch(rng, n, dIn, dOut, transcoder)
				loss := func() (float64, string) {
					st, err := tr.Backward(b, 0)
					if err != nil {
						t.Fatal(err)
					}
					return st[0].Value, signature(tr)
				}
				_, sig0 := loss()
				if tr.lastAuxErr != nil {
					tr.frozenAuxErr = append([]float32(nil), tr.lastAuxErr[:n*dOut]...)
					_, sig0 = loss()
				}
				// gradients as computed (before any unit-norm projection, which
				// Backward applies for the TopK family: undo by checking the
				// projected finite difference instead)
				grads := map[string][]float32{}
				for _, p := range tr.Params() {
					grads[p.Name] = append([]float32(nil), p.Grad...)
				}
				checked, skipped := 0, 0
				for _, p := range tr.Params() {
					if p.NoUpdate || p.Name == "log_threshold" {
						continue
					}
					for trial := 0; trial < 12; trial++ {
						i := rng.IntN(len(p.Value))
						var dir []float32 // perturbation direction in p
						dir = make([]float32, len(p.Value))
						dir[i] = 1
						if p.Name == "W_dec" && s.Arch.unitDecoder() {
							// the gradient is projected onto the sphere's tangent:
							// compare along a tangent direction of row i/dOut
							j := i / dOut
							row := s.Dec[j*dOut : (j+1)*dOut]
							for q := range row {
								dir[j*dOut+q] -= row[i%dOut] * row[q]
							}
						}
						const h = 1e-2
						orig := append([]float32(nil), p.Value...)
						for q := range p.Value {
							p.Value[q] = orig[q] + h*dir[q]
						}
						lp, sp := loss()
						for q := range p.Value {
							p.Value[q] = orig[q] - h*dir[q]
						}
						lm, sm := loss()
						copy(p.Value, orig)
						if sp != sig0 || sm != sig0 {
							skipped++
							continue
						}
						fd := (lp - lm) / (2 * h)
						var an float64
						for q, dq := range dir {
							an += float64(grads[p.Name][q]) * float64(dq)
						}
						if math.Abs(fd-an) > 2e-3+2e-2*math.Abs(fd) {
							t.Errorf("%s[%d]: finite difference %.6g, gradient %.6g", p.Name, i, fd, an)
						}
						checked++
					}
				}
				if checked < 30 {
					t.Fatalf("only %d coordinates checked (%d crossed a selection boundary)", checked, skipped)
				}
				if arch != Standard && arch != JumpReLU {
					if aux, _ := tr.last(); aux == 0 {
						t.Error("no AuxK entries: the auxiliary loss went unchecked")
					}
				}
			})
		}
	}
}

var _ train.Module = (*Trainable)(nil)

// TestJumpReLUThresholdPseudoGradient checks log θ's gradient against a
// float64 transcription of Rajamanoharan et al. (2024), eq. 11-12: with the
// rectangle kernel K(u) = 1[|u| < 1/2], ∂f/∂θ = −(θ/ε)·K((z−θ)/ε) for
// f = z·H(z−θ), and ∂H(z−θ)/∂θ = −(1/ε)·K((z−θ)/ε) for the L0 term.
func TestJumpReLUThresholdPseudoGradient(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	dIn, dSAE, n := 5, 12, 9
	s, err := New(JumpReLU, dIn, dSAE, dIn, 0, 11)
	if err != nil {
		t.Fatal(err)
	}
	for j := range s.Threshold {
		s.Threshold[j] = 0.1 + 0.3*rng.Float32()
	}
	const eps, lam = 0.4, 0.25
	tr := NewTrainable(s, TrainConfig{L0: lam, Bandwidth: eps})
	b := randBatch(rng, n, dIn, dIn, false)
	if _, err := tr.Backward(b, 0); err != nil {
		t.Fatal(err)
	}
	// reference, in float64 from the parameters
	inWindow := 0
	for j := 0; j < dSAE; j++ {
		th := float64(s.Threshold[j])
		var g float64
		for r := 0; r < n; r++ {
			x := b.X[r*dIn : (r+1)*dIn]
			z := float64(s.BEnc[j])
			for i := range x {
				z += (float64(x[i]) - float64(s.BDec[i])) * float64(s.Enc[j*dIn+i])
			}
			if math.Abs(z-th) >= eps/2 {
				continue
			}
			inWindow++
			// dL/df_j = (2/n)(x̂ − x)·d_j
			var dfj float64
			for i := 0; i < dIn; i++ {
				xh := float64(s.BDec[i])
				for q := 0; q < dSAE; q++ {
					zq := float64(s.BEnc[q])
					for p := range x {
						zq += (float64(x[p]) - float64(s.BDec[p])) * float64(s.Enc[q*dIn+p])
					}
					if zq > float64(s.Threshold[q]) {
						xh += zq * float64(s.Dec[q*dIn+i])
					}
				}
				dfj += 2 / float64(n) * (xh - float64(x[i])) * float64(s.Dec[j*dIn+i])
			}
			g += -(th/eps)*dfj - lam/(float64(n)*eps)
		}
		want := th * g // d/d log θ
		got := float64(tr.gLogThr[j])
		if math.Abs(got-want) > 1e-4+1e-4*math.Abs(want) {
			t.Errorf("latent %d: d loss/d log θ = %.6g, reference %.6g", j, got, want)
		}
	}
	if inWindow < 10 {
		t.Fatalf("only %d (token, latent) pairs in the kernel window: the test checks too little", inWindow)
	}
}

// last reports the number of AuxK entries of the last sparse step (tests).
func (t *Trainable) last() (int, int) {
	aux := 0
	for _, e := range t.ent {
		if e.e > 0 && (t.S.Arch != Matryoshka || int(e.e) == len(t.S.Groups)) {
			aux++
		}
	}
	return aux, len(t.ent)
}
