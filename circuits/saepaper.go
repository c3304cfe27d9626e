package circuits

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/loupe-dev/loupe/probe/compute"
	"github.com/loupe-dev/loupe/sae/train"
)

// PaperSAE is the autoencoder of O'Neill and Bui's code (its src/sae.py,
// after the sparse_autoencoder library), transcribed:
//
//	f = ReLU(W_e·(x − b) + b_e)      W_e [latents, d]
//	x̂ = W_d·f + b                    W_d [d, latents]
//
// with one tied bias b (subtracted before the encoder, added after the
// decoder, starting at zero: the code passes no geometric median), b_e
// starting uniform in ±1/√d, and both weight matrices held at unit norm
// along their last dimension: W_e's rows (one per latent) and W_d's rows
// (one per input dimension, across the latents — the library's
// DIMENSION_CONSTRAIN_UNIT_NORM = -1 on a [d, latents] matrix). The norm
// is kept by projecting each row's gradient off the row (the library's
// backward hook) and renormalising the rows before every forward pass.
// The loss is the mean squared error over every element plus λ times the
// mean over rows of ‖f‖₁.
type PaperSAE struct {
	D, Latents int
	B          []float32 // [D] the tied bias
	WE         []float32 // [Latents, D]
	BE         []float32 // [Latents]
	WD         []float32 // [D, Latents]
}

// NewPaperSAE initialises the autoencoder as the code does: weights
// normal then row-normalised, b_e uniform in ±1/√d, b zero.
func NewPaperSAE(d, latents int, seed uint64) *PaperSAE {
	r := rand.New(rand.NewPCG(seed, 0x5ae0b))
	s := &PaperSAE{D: d, Latents: latents, B: make([]float32, d), WE: make([]float32, latents*d),
		BE: make([]float32, latents), WD: make([]float32, d*latents)}
	for i := range s.WE {
		s.WE[i] = float32(r.NormFloat64())
	}
	for i := range s.WD {
		s.WD[i] = float32(r.NormFloat64())
	}
	bound := 1 / math.Sqrt(float64(d))
	for i := range s.BE {
		s.BE[i] = float32((2*r.Float64() - 1) * bound)
	}
	s.normalise()
	return s
}

// normalise scales every row of W_e and W_d to unit norm, as
// torch.nn.functional.normalize (norms below 1e-12 count as 1e-12).
func (s *PaperSAE) normalise() {
	rows := func(w []float32, n, width int) {
		for i := 0; i < n; i++ {
			row := w[i*width : (i+1)*width]
			ss := 0.0
			for _, v := range row {
				ss += float64(v) * float64(v)
			}
			inv := float32(1 / max(math.Sqrt(ss), 1e-12))
			for j := range row {
				row[j] *= inv
			}
		}
	}
	rows(s.WE, s.Latents, s.D)
	rows(s.WD, s.D, s.Latents)
}

// forward computes x − b, the pre-activations and f for x [n, D] with the
// weights as they are.
func (s *PaperSAE) forward(x []float32, n int) (xc, pre, f []float32) {
	d, L := s.D, s.Latents
	xc = make([]float32, n*d)
	for i := 0; i < n; i++ {
		for j := 0; j < d; j++ {
			xc[i*d+j] = x[i*d+j] - s.B[j]
		}
	}
	pre = make([]float32, n*L)
	for i := 0; i < n; i++ {
		copy(pre[i*L:(i+1)*L], s.BE)
	}
	compute.HostMulNT(n, L, d, 1, xc, d, s.WE, d, 1, pre, L)
	f = make([]float32, n*L)
	for i, v := range pre {
		f[i] = max(v, 0)
	}
	return xc, pre, f
}

// Encode gives the latent activations [n, Latents] of x [n, D]. Like the
// code's forward it renormalises the weight rows first (a no-op after
// training, which leaves them normalised).
func (s *PaperSAE) Encode(x []float32, n int) []float32 {
	s.normalise()
	_, _, f := s.forward(x, n)
	return f
}

// Params are the trainable tensors in the order of the code's
// model.parameters(): b, W_e, b_e, W_d.
func (s *PaperSAE) params() []*train.Param {
	p := func(name string, v []float32) *train.Param {
		return &train.Param{Name: name, Value: v, Grad: make([]float32, len(v))}
	}
	return []*train.Param{p("tied_bias", s.B), p("encoder.weight", s.WE), p("encoder.bias", s.BE), p("decoder.weight", s.WD)}
}

// step computes the loss and its gradients for the batch x [n, D] into
// ps (from params), after renormalising the weights as the forward pass
// does, and projects the weight gradients off their rows.
func (s *PaperSAE) step(ps []*train.Param, x []float32, n int, l1 float64) float64 {
	d, L := s.D, s.Latents
	s.normalise()
	xc, pre, f := s.forward(x, n)
	xhat := make([]float32, n*d)
	for i := 0; i < n; i++ {
		copy(xhat[i*d:(i+1)*d], s.B)
	}
	compute.HostMulNT(n, d, L, 1, f, L, s.WD, L, 1, xhat, d)
	loss, l1sum := 0.0, 0.0
	gx := make([]float32, n*d) // dLoss/dx̂
	scale := 2 / float64(n*d)
	for i, v := range xhat {
		e := float64(v - x[i])
		loss += e * e
		gx[i] = float32(scale * e)
	}
	for _, v := range f {
		l1sum += float64(v)
	}
	loss = loss/float64(n*d) + l1*l1sum/float64(n)
	gB, gWE, gBE, gWD := ps[0].Grad, ps[1].Grad, ps[2].Grad, ps[3].Grad
	clear(gB)
	// Decoder: x̂ = f·W_dᵀ + b.
	for i := 0; i < n; i++ {
		for j := 0; j < d; j++ {
			gB[j] += gx[i*d+j]
		}
	}
	gxT := transpose(gx, n, d) // [d, n]
	compute.HostMulNN(d, L, n, 1, gxT, n, f, L, 0, gWD, L)
	// dLoss/df = gx·W_d + λ/n, through the ReLU.
	gpre := make([]float32, n*L)
	compute.HostMulNN(n, L, d, 1, gx, d, s.WD, L, 0, gpre, L)
	lam := float32(l1 / float64(n))
	for i := range gpre {
		if pre[i] > 0 {
			gpre[i] += lam
		} else {
			gpre[i] = 0
		}
	}
	clear(gBE)
	for i := 0; i < n; i++ {
		for j := 0; j < L; j++ {
			gBE[j] += gpre[i*L+j]
		}
	}
	gpreT := transpose(gpre, n, L) // [L, n]
	compute.HostMulNN(L, d, n, 1, gpreT, n, xc, d, 0, gWE, d)
	// The encoder's input is x − b: b's gradient gets −Σ gpre·W_e.
	gxc := make([]float32, n*d)
	compute.HostMulNN(n, d, L, 1, gpre, L, s.WE, d, 0, gxc, d)
	for i := 0; i < n; i++ {
		for j := 0; j < d; j++ {
			gB[j] -= gxc[i*d+j]
		}
	}
	project(gWE, s.WE, L, d)
	project(gWD, s.WD, d, L)
	return loss
}

// project removes from each row of the gradient g its component along
// the row of w (the library's unit-norm backward hook: g − (g·w)·w/‖w‖).
func project(g, w []float32, rows, width int) {
	for i := 0; i < rows; i++ {
		gr, wr := g[i*width:(i+1)*width], w[i*width:(i+1)*width]
		dot, ss := 0.0, 0.0
		for j := range gr {
			dot += float64(gr[j]) * float64(wr[j])
			ss += float64(wr[j]) * float64(wr[j])
		}
		if ss == 0 {
			continue
		}
		norm := math.Sqrt(ss)
		for j := range gr {
			gr[j] -= float32(dot * float64(wr[j]) / norm)
		}
	}
}

func transpose(a []float32, rows, cols int) []float32 {
	out := make([]float32, len(a))
	for i := 0; i < rows; i++ {
		for j := 0; j < cols; j++ {
			out[j*rows+i] = a[i*cols+j]
		}
	}
	return out
}

// Train runs full-batch Adam (PyTorch's defaults, no schedule) on x
// [n, D] for epochs steps at learning rate lr with L1 coefficient l1, as
// the code's train(). It returns the last loss.
func (s *PaperSAE) Train(ctx context.Context, x []float32, n, epochs int, lr, l1 float64) (float64, error) {
	if len(x) != n*s.D || n == 0 {
		return 0, fmt.Errorf("sae method: %d feature values for %d rows of %d", len(x), n, s.D)
	}
	ps := s.params()
	adam := train.NewAdam(ps, 0, 0, 0)
	loss := math.NaN()
	for e := 0; e < epochs; e++ {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		loss = s.step(ps, x, n, l1)
		adam.Step(ps, lr)
	}
	return loss, nil
}

// TrainPaperSAE fits the paper's own autoencoder (PaperSAE) with the
// method's settings and returns its encoder: the SAE method's default.
func TrainPaperSAE(ctx context.Context, feats []float32, n, d int, cfg SAEConfig) (func(x []float32, n int) []float32, error) {
	s := NewPaperSAE(d, cfg.Latents, cfg.Seed)
	if _, err := s.Train(ctx, feats, n, cfg.Epochs, cfg.LR, cfg.L1); err != nil {
		return nil, fmt.Errorf("sae method: %w", err)
	}
	return s.Encode, nil
}
