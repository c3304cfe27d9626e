package sae

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"

	"github.com/loupe-dev/loupe/probe/compute"
	"github.com/loupe-dev/loupe/sae/activations"
	"github.com/loupe-dev/loupe/sae/train"
)

// TrainConfig holds the loss hyperparameters. Zero values take the defaults
// noted on each field.
type TrainConfig struct {
	L1        float64 // standard: L1 coefficient (default 5, for normalised inputs)
	L0        float64 // JumpReLU: L0 coefficient (default 1, for inputs normalised to E‖x‖ = sqrt(d_in))
	Bandwidth float64 // JumpReLU: rectangle-kernel bandwidth ε (default 0.05)
	// AuxKAlpha weights the AuxK loss of TopK-family SAEs (default 1/32, as
	// Gao et al.); AuxK is how many dead latents it uses (default DIn/2).
	AuxKAlpha float64
	AuxK      int
	// DeadWindow is how many tokens a latent may go without firing before
	// it counts as dead (default 1,000,000 as sparsify's 10M at its scale;
	// smaller runs should set it).
	DeadWindow int64
	// ThresholdMomentum is the EMA momentum of BatchTopK's learned
	// threshold (default 0.99, SAELens's topk_threshold_lr of 0.01).
	ThresholdMomentum float64
	// ThresholdAverageFrom, when positive, is the step from which
	// BatchTopK's threshold is the plain mean of every later batch's
	// smallest kept activation instead of the EMA (0: the EMA throughout).
	// Bussmann et al. (2024) define the inference threshold as the average
	// of that minimum over batches; an EMA of time constant 1/(1−momentum)
	// = 100 steps started at the first batch is still dominated by the
	// untrained SAE's values in a run of a few hundred steps, and its
	// threshold then keeps far fewer (or, started at 0 as SAELens's,
	// far more) than K latents a token at inference. Train sets it to the
	// start of the last fifth of the steps, where the weights have nearly
	// settled.
	ThresholdAverageFrom int
}

// thresholdMomentum is the weight of the old threshold at step: the EMA's
// momentum, or from ThresholdAverageFrom on 1 − 1/(steps averaged), so
// that the threshold is the running mean of the minima since then (0 at
// the first averaged step: the threshold restarts from that batch).
func (c *TrainConfig) thresholdMomentum(step int) float64 {
	if c.ThresholdAverageFrom > 0 && step >= c.ThresholdAverageFrom {
		return 1 - 1/float64(step-c.ThresholdAverageFrom+1)
	}
	return c.ThresholdMomentum
}

func (c *TrainConfig) defaults(s *SAE) {
	if c.L1 == 0 {
		c.L1 = 5
	}
	if c.L0 == 0 {
		c.L0 = 1
	}
	if c.Bandwidth == 0 {
		c.Bandwidth = 0.05
	}
	if c.AuxKAlpha == 0 {
		c.AuxKAlpha = 1.0 / 32
	}
	if c.AuxK == 0 {
		c.AuxK = max(1, s.DIn/2)
	}
	if c.DeadWindow == 0 {
		c.DeadWindow = 1_000_000
	}
	if c.ThresholdMomentum == 0 {
		c.ThresholdMomentum = 0.99
	}
}

// Trainable is an SAE being trained: it implements train.Module.
type Trainable struct {
	S   *SAE
	Cfg TrainConfig

	params                []*train.Param
	gEnc, gBEnc, gDec, gB []float32
	logThr, gLogThr       []float32 // JumpReLU trains log θ
	sinceFired            []int64
	thrInit               bool // BatchTopK: the threshold has a first value
	step                  int  // the step Backward is computing

	// per-batch workspace
	in, pre, f, df, tr []float32
	xhat, errv         []float32
	ent                []entry
	rowStart           []int
	heaps              []topHeap
	posBuf             []float32 // BatchTopK: the batch's positive pre-activations

	// frozenAuxErr, when set (tests only), replaces AuxK's error e = y − x̂
	// so that finite differences see e held fixed, as its gradient does.
	frozenAuxErr, lastAuxErr []float32
}

// entry is one (row, latent) pair with a gradient in a sparse step: f is the
// latent's value (its decoder weight's multiplier), g the gradient at its
// pre-activation, e which error vector of the row its decoder row sees.
type entry struct {
	row int32
	j   int32
	e   int32
	f   float32
	g   float32
}

// NewTrainable prepares s for training with cfg.
func NewTrainable(s *SAE, cfg TrainConfig) *Trainable {
	cfg.defaults(s)
	t := &Trainable{S: s, Cfg: cfg,
		gEnc: make([]float32, len(s.Enc)), gBEnc: make([]float32, len(s.BEnc)),
		gDec: make([]float32, len(s.Dec)), gB: make([]float32, len(s.BDec)),
		sinceFired: make([]int64, s.DSAE)}
	t.params = []*train.Param{
		{Name: "W_enc", Shape: []int{s.DSAE, s.DIn}, Value: s.Enc, Grad: t.gEnc},
		{Name: "b_enc", Shape: []int{s.DSAE}, Value: s.BEnc, Grad: t.gBEnc},
		{Name: "W_dec", Shape: []int{s.DSAE, s.DOut}, Value: s.Dec, Grad: t.gDec},
		{Name: "b_dec", Shape: []int{s.DOut}, Value: s.BDec, Grad: t.gB},
	}
	switch {
	case s.Arch == JumpReLU:
		t.logThr = make([]float32, s.DSAE)
		for j, v := range s.Threshold {
			t.logThr[j] = float32(math.Log(float64(v)))
		}
		t.gLogThr = make([]float32, s.DSAE)
		t.params = append(t.params, &train.Param{Name: "log_threshold", Shape: []int{s.DSAE}, Value: t.logThr, Grad: t.gLogThr})
	case s.Arch.thresholded():
		t.params = append(t.params, &train.Param{Name: "threshold", Shape: []int{s.DSAE}, Value: s.Threshold, Grad: make([]float32, s.DSAE), NoUpdate: true})
	}
	return t
}

func (t *Trainable) Params() []*train.Param { return t.params }

// AfterUpdate renormalises unit-norm decoder rows and refreshes JumpReLU's
// θ = exp(log θ).
func (t *Trainable) AfterUpdate() {
	s := t.S
	if s.Arch.unitDecoder() {
		parallelRows(s.DSAE, func(lo, hi int) {
			for j := lo; j < hi; j++ {
				row := s.Dec[j*s.DOut : (j+1)*s.DOut]
				var ss float64
				for _, v := range row {
					ss += float64(v) * float64(v)
				}
				if ss > 0 {
					inv := float32(1 / math.Sqrt(ss))
					for i := range row {
						row[i] *= inv
					}
				}
			}
		})
	}
	t.refreshThreshold()
}

// refreshThreshold sets JumpReLU's θ = exp(log θ).
func (t *Trainable) refreshThreshold() {
	if t.S.Arch == JumpReLU {
		for j, v := range t.logThr {
			t.S.Threshold[j] = float32(math.Exp(float64(v)))
		}
	}
}

type trainableState struct {
	SinceFired []int64 `json:"since_fired"`
	ThrInit    bool    `json:"thr_init"`
	InScale    float32 `json:"in_scale"`
	OutScale   float32 `json:"out_scale"`
}

func (t *Trainable) State() ([]byte, error) {
	return json.Marshal(trainableState{SinceFired: t.sinceFired, ThrInit: t.thrInit, InScale: t.S.InScale, OutScale: t.S.OutScale})
}

func (t *Trainable) SetState(b []byte) error {
	var st trainableState
	if err := json.Unmarshal(b, &st); err != nil {
		return err
	}
	if len(st.SinceFired) != t.S.DSAE {
		return fmt.Errorf("dead-latent counters for %d latents, the SAE has %d", len(st.SinceFired), t.S.DSAE)
	}
	copy(t.sinceFired, st.SinceFired)
	t.thrInit = st.ThrInit
	t.S.InScale, t.S.OutScale = st.InScale, st.OutScale
	t.refreshThreshold()
	return nil
}

// SinceFired gives a copy of the dead-latent counters: tokens since each
// latent last fired.
func (t *Trainable) SinceFired() []int64 { return slices.Clone(t.sinceFired) }

// Dead gives the fraction of latents that have not fired in the last
// DeadWindow tokens.
func (t *Trainable) Dead() float64 {
	n := 0
	for _, c := range t.sinceFired {
		if c >= t.Cfg.DeadWindow {
			n++
		}
	}
	return float64(n) / float64(len(t.sinceFired))
}

func grow(b []float32, n int) []float32 {
	if cap(b) < n {
		return make([]float32, n)
	}
	return b[:n]
}

// Backward computes the loss on a batch and every gradient.
func (t *Trainable) Backward(b *activations.Batch, step int) (train.Stats, error) {
	s := t.S
	if b.Width != s.DIn {
		return nil, fmt.Errorf("sae: batch rows have %d features, the SAE reads %d", b.Width, s.DIn)
	}
	if b.X == nil && b.DX != nil {
		return nil, fmt.Errorf("sae: the batch is on a device; the CPU step needs host rows")
	}
	y, yw := b.X, b.Width
	if b.Y != nil {
		y, yw = b.Y, b.TWidth
	}
	if yw != s.DOut {
		return nil, fmt.Errorf("sae: targets have %d features, the SAE writes %d", yw, s.DOut)
	}
	n := b.Rows
	t.step = step
	t.in = grow(t.in, n*s.DIn)
	t.pre = grow(t.pre, n*s.DSAE)
	s.preActs(b.X, n, t.in, t.pre)
	// normalised targets
	t.xhat = grow(t.xhat, n*s.DOut)
	yn := make([]float32, n*s.DOut)
	for i, v := range y {
		yn[i] = v * s.OutScale
	}
	var st train.Stats
	var err error
	if s.Arch == Standard || s.Arch == JumpReLU {
		st, err = t.backwardDense(yn, n)
	} else {
		st, err = t.backwardSparse(yn, n)
	}
	if err != nil {
		return nil, err
	}
	if s.Arch.unitDecoder() {
		projectOut(t.gDec, s.Dec, s.DSAE, s.DOut)
	}
	return st, nil
}

// projectOut removes from each gradient row its component along the
// (unit) decoder row, so a step moves the row along the sphere.
func projectOut(g, w []float32, rows, d int) {
	parallelRows(rows, func(lo, hi int) {
		for j := lo; j < hi; j++ {
			gr, wr := g[j*d:(j+1)*d], w[j*d:(j+1)*d]
			var dot float32
			for i := range gr {
				dot += gr[i] * wr[i]
			}
			for i := range gr {
				gr[i] -= dot * wr[i]
			}
		}
	})
}

// fvuStats gives the summed squared error, the FVU and the mean cosine of
// xhat against y (n rows of width d).
func fvuStats(y, xhat []float32, n, d int) (sse, fvu float64) {
	mean := make([]float64, d)
	for r := 0; r < n; r++ {
		for i, v := range y[r*d : (r+1)*d] {
			mean[i] += float64(v)
		}
	}
	for i := range mean {
		mean[i] /= float64(n)
	}
	var sst float64
	for r := 0; r < n; r++ {
		for i := 0; i < d; i++ {
			e := float64(xhat[r*d+i] - y[r*d+i])
			sse += e * e
			c := float64(y[r*d+i]) - mean[i]
			sst += c * c
		}
	}
	if sst == 0 {
		return sse, math.NaN()
	}
	return sse, sse / sst
}

// backwardDense is the standard and JumpReLU step: every product is a
// dense GEMM (these architectures have many active latents early on).
func (t *Trainable) backwardDense(yn []float32, n int) (train.Stats, error) {
	s := t.S
	S, dO := s.DSAE, s.DOut
	t.f = grow(t.f, n*S)
	pre, f := t.pre, t.f
	l0 := 0
	for i, v := range pre {
		switch {
		case s.Arch == Standard:
			f[i] = max(v, 0)
		case v > s.Threshold[i%S]:
			f[i] = v
		default:
			f[i] = 0
		}
		if f[i] > 0 {
			l0++
		}
	}
	xhat := t.xhat
	for r := 0; r < n; r++ {
		copy(xhat[r*dO:(r+1)*dO], s.BDec)
	}
	compute.HostMulNN(n, dO, S, 1, f, S, s.Dec, dO, 1, xhat, dO)
	sse, fvu := fvuStats(yn, xhat, n, dO)
	// R = dL/dx̂ = (2/n)(x̂ − y)
	R := make([]float32, n*dO)
	scale := float32(2 / float64(n))
	for i := range R {
		R[i] = scale * (xhat[i] - yn[i])
	}
	t.df = grow(t.df, n*S)
	df := t.df
	compute.HostMulNT(n, S, dO, 1, R, dO, s.Dec, dO, 0, df, S)
	// dDec = fᵀ·R
	t.tr = grow(t.tr, n*S)
	transpose(f, n, S, t.tr)
	compute.HostMulNN(S, dO, n, 1, t.tr, n, R, dO, 0, t.gDec, dO)
	loss := sse / float64(n)
	var sparsity float64
	norms := make([]float32, S)
	if s.Arch == Standard {
		// L1 weighted by decoder-row norms: λ/n Σ_b Σ_j f_bj‖d_j‖.
		for j := 0; j < S; j++ {
			var ss float64
			for _, v := range s.Dec[j*dO : (j+1)*dO] {
				ss += float64(v) * float64(v)
			}
			norms[j] = float32(math.Sqrt(ss))
		}
		lam := float32(t.Cfg.L1 / float64(n))
		colSum := make([]float64, S)
		for r := 0; r < n; r++ {
			for j := 0; j < S; j++ {
				v := f[r*S+j]
				if v > 0 {
					sparsity += float64(v * norms[j])
					colSum[j] += float64(v)
					df[r*S+j] += lam * norms[j]
				}
			}
		}
		sparsity *= t.Cfg.L1 / float64(n)
		for j := 0; j < S; j++ {
			if norms[j] == 0 || colSum[j] == 0 {
				continue
			}
			c := lam * float32(colSum[j]) / norms[j]
			g, w := t.gDec[j*dO:(j+1)*dO], s.Dec[j*dO:(j+1)*dO]
			for i := range g {
				g[i] += c * w[i]
			}
		}
	} else {
		// JumpReLU: L0 penalty and the threshold's pseudo-derivatives.
		eps := float32(t.Cfg.Bandwidth)
		lam := float32(t.Cfg.L0 / float64(n))
		sparsity = t.Cfg.L0 * float64(l0) / float64(n)
		clear(t.gLogThr)
		gθ := make([]float64, S)
		for r := 0; r < n; r++ {
			for j := 0; j < S; j++ {
				th := s.Threshold[j]
				u := pre[r*S+j] - th
				if u > -eps/2 && u < eps/2 {
					// ∂f/∂θ = −(θ/ε)·K, ∂H/∂θ = −(1/ε)·K, K the rectangle
					gθ[j] += float64(-(th/eps)*df[r*S+j] - lam/eps)
				}
			}
		}
		for j := range gθ {
			t.gLogThr[j] = float32(gθ[j]) * s.Threshold[j] // d/d log θ = θ·d/dθ
		}
	}
	loss += sparsity
	// gradient at the pre-activations
	for i := range df {
		if f[i] == 0 {
			df[i] = 0
		}
	}
	t.finishEncoderGrads(df, n)
	t.dbDec(R, n)
	t.markFired(f, n)
	return train.Stats{
		{Name: "loss", Value: loss},
		{Name: "mse", Value: sse / float64(n)},
		{Name: "l0", Value: float64(l0) / float64(n)},
		{Name: "fvu", Value: fvu},
		{Name: "dead%", Value: 100 * t.Dead()},
	}, nil
}

// finishEncoderGrads sets dEnc = gᵀ·in and db_enc from the dense gradient
// g [n, DSAE] at the pre-activations.
func (t *Trainable) finishEncoderGrads(g []float32, n int) {
	s := t.S
	S, dI := s.DSAE, s.DIn
	transpose(g, n, S, t.tr)
	compute.HostMulNN(S, dI, n, 1, t.tr, n, t.in, dI, 0, t.gEnc, dI)
	parallelRows(S, func(lo, hi int) {
		for j := lo; j < hi; j++ {
			var sum float32
			for _, v := range t.tr[j*n : (j+1)*n] {
				sum += v
			}
			t.gBEnc[j] = sum
		}
	})
}

// dbDec sets b_dec's gradient: the sum of the output error gradients R, less
// (when b_dec is subtracted from the input) Σ_j db_enc_j·Enc_j.
func (t *Trainable) dbDec(R []float32, n int) {
	s := t.S
	clear(t.gB)
	for r := 0; r < n; r++ {
		for i, v := range R[r*s.DOut : (r+1)*s.DOut] {
			t.gB[i] += v
		}
	}
	if s.ApplyBDecToInput {
		for j := 0; j < s.DSAE; j++ {
			c := t.gBEnc[j]
			if c == 0 {
				continue
			}
			for i, w := range s.Enc[j*s.DIn : (j+1)*s.DIn] {
				t.gB[i] -= c * w
			}
		}
	}
}

// markFired updates the dead-latent counters from dense latents f [n, S].
func (t *Trainable) markFired(f []float32, n int) {
	S := t.S.DSAE
	parallelRows(S, func(lo, hi int) {
		for j := lo; j < hi; j++ {
			fired := false
			for r := 0; r < n && !fired; r++ {
				fired = f[r*S+j] > 0
			}
			if fired {
				t.sinceFired[j] = 0
			} else {
				t.sinceFired[j] += int64(n)
			}
		}
	})
}

// transpose writes the [rows, cols] matrix a as [cols, rows] into out.
func transpose(a []float32, rows, cols int, out []float32) {
	const blk = 64
	parallelRows((cols+blk-1)/blk, func(lo, hi int) {
		for cb := lo * blk; cb < min(hi*blk, cols); cb += blk {
			for rb := 0; rb < rows; rb += blk {
				for c := cb; c < min(cb+blk, cols); c++ {
					o := out[c*rows:]
					for r := rb; r < min(rb+blk, rows); r++ {
						o[r] = a[r*cols+c]
					}
				}
			}
		}
	})
}

// backwardSparse is the step of the TopK family: the latents are selected
// per row (TopK) or over the batch (BatchTopK, Matryoshka), and the
// decoder, its gradient and the encoder's gradient run over the selected
// (row, latent) pairs only.
func (t *Trainable) backwardSparse(yn []float32, n int) (train.Stats, error) {
	s := t.S
	S, dO := s.DSAE, s.DOut

	// 1. selection: rowStart/ent hold each row's active latents, by latent
	t.ent = t.ent[:0]
	t.rowStart = append(t.rowStart[:0], 0)
	switch s.Arch {
	case TopK:
		t.selectTopK(n)
	default:
		t.selectBatchTopK(n)
	}
	G := 1
	groups := []int{S}
	if s.Arch == Matryoshka {
		groups = s.Groups
		G = len(groups)
	}
	// 2. decode by prefix: r_g = x̂_g − y for each prefix g; the error a
	// latent of group g sees is E_g = (2/n)·Σ_{h ≥ g} r_h. One more vector
	// per row is kept for AuxK.
	nv := G + 1
	t.errv = grow(t.errv, n*nv*dO)
	xhat := t.xhat
	scale := float32(2 / float64(n))
	prefixSSE := make([]float64, n) // Σ_g ‖r_g‖² of each row, for the loss
	parallelRows(n, func(lo, hi int) {
		acc := make([]float32, dO)
		for r := lo; r < hi; r++ {
			copy(acc, s.BDec)
			ents := t.ent[t.rowStart[r]:t.rowStart[r+1]]
			k := 0
			ev := t.errv[r*nv*dO : (r+1)*nv*dO]
			yr := yn[r*dO : (r+1)*dO]
			var psse float64
			for g := 0; g < G; g++ {
				for ; k < len(ents) && int(ents[k].j) < groups[g]; k++ {
					e := &ents[k]
					e.e = int32(g)
					axpy(e.f, s.Dec[int(e.j)*dO:(int(e.j)+1)*dO], acc)
				}
				rg := ev[g*dO : (g+1)*dO]
				for i := range rg {
					rg[i] = acc[i] - yr[i]
					psse += float64(rg[i]) * float64(rg[i])
				}
			}
			prefixSSE[r] = psse
			copy(xhat[r*dO:(r+1)*dO], acc)
			// suffix sums, scaled: E_g = (2/n) Σ_{h≥g} r_h
			for g := G - 2; g >= 0; g-- {
				a, b := ev[g*dO:(g+1)*dO], ev[(g+1)*dO:(g+2)*dO]
				for i := range a {
					a[i] += b[i]
				}
			}
			for i := range ev[:G*dO] {
				ev[i] *= scale
			}
			// 3. gradient at each active latent's pre-activation
			for k := range ents {
				e := &ents[k]
				e.g = dot(ev[int(e.e)*dO:(int(e.e)+1)*dO], s.Dec[int(e.j)*dO:(int(e.j)+1)*dO])
			}
		}
	})
	sse, fvu := fvuStats(yn, xhat, n, dO)
	var loss float64
	for _, v := range prefixSSE {
		loss += v
	}
	loss /= float64(n)
	l0 := float64(len(t.ent)) / float64(n)
	t.markFiredSparse(n)
	// 4. AuxK: the dead latents' top pre-activations reconstruct the error.
	aux := t.auxK(yn, n, G)
	loss += aux
	// 5. accumulate by latent
	t.accumulate(n, nv)
	// b_dec: Σ over rows and prefixes of (2/n) r_g = Σ_rows E_0; less the
	// input term
	clear(t.gB)
	for r := 0; r < n; r++ {
		for i, v := range t.errv[r*nv*dO : r*nv*dO+dO] {
			t.gB[i] += v
		}
	}
	if s.ApplyBDecToInput {
		for j := 0; j < S; j++ {
			c := t.gBEnc[j]
			if c == 0 {
				continue
			}
			for i, w := range s.Enc[j*s.DIn : (j+1)*s.DIn] {
				t.gB[i] -= c * w
			}
		}
	}
	return train.Stats{
		{Name: "loss", Value: loss},
		{Name: "mse", Value: sse / float64(n)},
		{Name: "l0", Value: l0},
		{Name: "fvu", Value: fvu},
		{Name: "dead%", Value: 100 * t.Dead()},
		{Name: "auxk", Value: aux},
	}, nil
}

func axpy(a float32, x, y []float32) {
	y = y[:len(x)]
	i := 0
	for ; i+4 <= len(x); i += 4 {
		y[i] += a * x[i]
		y[i+1] += a * x[i+1]
		y[i+2] += a * x[i+2]
		y[i+3] += a * x[i+3]
	}
	for ; i < len(x); i++ {
		y[i] += a * x[i]
	}
}

func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// selectTopK keeps each row's K largest positive pre-activations.
func (t *Trainable) selectTopK(n int) {
	s := t.S
	S := s.DSAE
	per := make([][]entry, n)
	t.ensureHeaps(n)
	parallelChunks(n, func(w, lo, hi int) {
		h := &t.heap(w)[0]
		for r := lo; r < hi; r++ {
			row := t.pre[r*S : (r+1)*S]
			h.top(row, s.K)
			var es []entry
			for _, j := range h.idx {
				if v := row[j]; v > 0 {
					es = append(es, entry{row: int32(r), j: j, f: v})
				}
			}
			sort.Slice(es, func(a, b int) bool { return es[a].j < es[b].j })
			per[r] = es
		}
	})
	for r := 0; r < n; r++ {
		t.ent = append(t.ent, per[r]...)
		t.rowStart = append(t.rowStart, len(t.ent))
	}
}

// heap gives worker w a top-k heap of its own; call ensureHeaps first.
func (t *Trainable) heap(w int) []topHeap { return t.heaps[w : w+1] }

func (t *Trainable) ensureHeaps(n int) {
	for len(t.heaps) < len(splits(n)) {
		t.heaps = append(t.heaps, topHeap{})
	}
}

// selectBatchTopK keeps the K·n largest positive pre-activations of the
// batch and moves the learned threshold towards the smallest kept value.
func (t *Trainable) selectBatchTopK(n int) {
	s := t.S
	S := s.DSAE
	pos := t.posBuf[:0]
	for _, v := range t.pre[:n*S] {
		if v > 0 {
			pos = append(pos, v)
		}
	}
	t.posBuf = pos
	want := s.K * n
	var tau float32 // keep v > tau, or all positives when fewer than want
	if len(pos) > want {
		tau = kthLargest(pos, want+1)
	}
	minKept := float32(math.Inf(1))
	for r := 0; r < n; r++ {
		row := t.pre[r*S : (r+1)*S]
		for j, v := range row {
			if v > tau && v > 0 {
				t.ent = append(t.ent, entry{row: int32(r), j: int32(j), f: v})
				minKept = min(minKept, v)
			}
		}
		t.rowStart = append(t.rowStart, len(t.ent))
	}
	if len(t.ent) > 0 {
		m := float32(t.Cfg.thresholdMomentum(t.step))
		th := minKept
		if t.thrInit && m != 0 {
			th = m*s.Threshold[0] + (1-m)*minKept
		}
		for j := range s.Threshold {
			s.Threshold[j] = th
		}
		t.thrInit = true
	}
}

// kthLargest gives the k-th largest value of v (1-based), reordering v.
func kthLargest(v []float32, k int) float32 {
	lo, hi := 0, len(v)-1
	target := k - 1 // index in descending order
	for lo < hi {
		p := v[(lo+hi)/2]
		i, j := lo, hi
		for i <= j {
			for v[i] > p {
				i++
			}
			for v[j] < p {
				j--
			}
			if i <= j {
				v[i], v[j] = v[j], v[i]
				i++
				j--
			}
		}
		switch {
		case target <= j:
			hi = j
		case target >= i:
			lo = i
		default:
			return v[target]
		}
	}
	return v[target]
}

// markFiredSparse updates the dead-latent counters from the active entries.
func (t *Trainable) markFiredSparse(n int) {
	fired := make([]bool, t.S.DSAE)
	for _, e := range t.ent {
		fired[e.j] = true
	}
	for j, f := range fired {
		if f {
			t.sinceFired[j] = 0
		} else {
			t.sinceFired[j] += int64(n)
		}
	}
}

// auxK adds Gao et al.'s auxiliary loss: the error e = y − x̂ (held fixed)
// is reconstructed by each row's AuxK largest pre-activations among the
// dead latents; loss α·(1/n)·Σ‖ê − e‖², scaled down while fewer than AuxK
// latents are dead. Its entries go into t.ent with error vector G.
func (t *Trainable) auxK(yn []float32, n, G int) float64 {
	s := t.S
	S, dO := s.DSAE, s.DOut
	var dead []int32
	for j, c := range t.sinceFired {
		if c >= t.Cfg.DeadWindow {
			dead = append(dead, int32(j))
		}
	}
	if len(dead) == 0 {
		return 0
	}
	k := min(t.Cfg.AuxK, len(dead))
	alpha := t.Cfg.AuxKAlpha * math.Min(1, float64(len(dead))/float64(t.Cfg.AuxK))
	nv := G + 1
	per := make([][]entry, n)
	sums := make([]float64, n)
	scale := float32(2 * alpha / float64(n))
	t.ensureHeaps(n)
	t.lastAuxErr = grow(t.lastAuxErr, n*dO)
	parallelChunks(n, func(w, lo, hi int) {
		h := &t.heap(w)[0]
		vals := make([]float32, len(dead))
		ehat := make([]float32, dO)
		for r := lo; r < hi; r++ {
			row := t.pre[r*S : (r+1)*S]
			for i, j := range dead {
				vals[i] = row[j]
			}
			h.top(vals, k)
			clear(ehat)
			var es []entry
			for _, i := range h.idx {
				j := dead[i]
				if v := row[j]; v > 0 {
					es = append(es, entry{row: int32(r), j: j, e: int32(G), f: v})
					axpy(v, s.Dec[int(j)*dO:(int(j)+1)*dO], ehat)
				}
			}
			// error vector for AuxK: (2α/n)(ê − e), e = y − x̂
			ev := t.errv[(r*nv+G)*dO : (r*nv+G+1)*dO]
			xh, yr := t.xhat[r*dO:(r+1)*dO], yn[r*dO:(r+1)*dO]
			var ss float64
			for i := range ev {
				e := yr[i] - xh[i]
				if t.frozenAuxErr != nil {
					e = t.frozenAuxErr[r*dO+i]
				}
				t.lastAuxErr[r*dO+i] = e
				d := ehat[i] - e
				ss += float64(d) * float64(d)
				ev[i] = scale * d
			}
			sums[r] = ss
			for q := range es {
				es[q].g = dot(ev, s.Dec[int(es[q].j)*dO:(int(es[q].j)+1)*dO])
			}
			per[r] = es
		}
	})
	var total float64
	for r := 0; r < n; r++ {
		total += sums[r]
		t.ent = append(t.ent, per[r]...)
	}
	return alpha * total / float64(n)
}

// accumulate turns the entries into gradients, latent by latent: dDec_j =
// Σ f·E, dEnc_j = Σ g·in_row, db_enc_j = Σ g. Entries are grouped by
// latent with a stable counting sort, so sums run in row order whatever
// the split across goroutines.
func (t *Trainable) accumulate(n, nv int) {
	s := t.S
	S, dO, dI := s.DSAE, s.DOut, s.DIn
	start := make([]int, S+1)
	for _, e := range t.ent {
		start[e.j+1]++
	}
	for j := 0; j < S; j++ {
		start[j+1] += start[j]
	}
	byJ := make([]int32, len(t.ent))
	fill := slices.Clone(start[:S])
	// entries are in row order (main entries of all rows, then AuxK's of all
	// rows); order within a latent is fixed by that
	for i, e := range t.ent {
		byJ[fill[e.j]] = int32(i)
		fill[e.j]++
	}
	parallelRows(S, func(lo, hi int) {
		for j := lo; j < hi; j++ {
			gd := t.gDec[j*dO : (j+1)*dO]
			ge := t.gEnc[j*dI : (j+1)*dI]
			clear(gd)
			clear(ge)
			var gb float32
			for _, i := range byJ[start[j]:start[j+1]] {
				e := &t.ent[i]
				r := int(e.row)
				axpy(e.f, t.errv[(r*nv+int(e.e))*dO:(r*nv+int(e.e)+1)*dO], gd)
				axpy(e.g, t.in[r*dI:(r+1)*dI], ge)
				gb += e.g
			}
			t.gBEnc[j] = gb
		}
	})
}

// parallelChunks is parallelRows that also gives each range its index
// (for per-worker scratch space such as heaps, sized by workers first).
func parallelChunks(n int, fn func(w, lo, hi int)) {
	rs := splits(n)
	var wg sync.WaitGroup
	for i, rg := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(i, rg[0], rg[1])
		}()
	}
	wg.Wait()
}
