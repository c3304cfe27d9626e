package codebook

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/loupe-dev/loupe/probe/compute"
	"github.com/loupe-dev/loupe/sae/activations"
	"github.com/loupe-dev/loupe/sae/train"
)

// Trainable trains one layer's codes on a frozen model's activations, as a
// train.Module: the loss is the reconstruction error
//
//	mean over rows of Σ_g |out_g − x_g|²
//
// whose gradient reaches the chosen codes only (the choice itself is not
// differentiated). Inputs are scaled by Scale (so that E|x| = sqrt(width)
// on the init sample); the codes live in that scaled space until Export.
//
// Dead codes (chosen by no row for ReplaceEvery steps) are replaced by
// random rows of the latest batch, with a little noise, as the reference's
// replace_dead_codes does; their Adam moments are kept.
//
// The choice of codes (the similarities to every code, a matrix product
// of rows x codes x width, and their top k: nearly all of a step's work)
// runs on the backend given to SetBackend, a GPU when the model runs on
// one; only the ids come back. The gradient (rows x k x width) and Adam
// stay on the host, where the codes live.
type Trainable struct {
	L            *Layer
	Scale        float32
	ReplaceEvery int

	b        compute.Backend
	param    train.Param
	used     []int64 // choices per code since the last replacement
	since    int     // steps since the last replacement
	replaced int64   // codes replaced so far
	pcg      *rand.PCG
	rng      *rand.Rand
	last     []float32 // the latest batch, scaled
}

// NewTrainable wraps l (whose Codes are the starting point, already in the
// scaled space) for training.
func NewTrainable(l *Layer, scale float32, replaceEvery int, seed uint64) (*Trainable, error) {
	if l.LayerNorm {
		return nil, fmt.Errorf("codebook %s: frozen-model codebooks reconstruct the raw activation; layer norm is for fine-tuned models", l.Hook)
	}
	if err := l.Check(); err != nil {
		return nil, err
	}
	pcg := rand.NewPCG(seed, 0x636f646573) // "codes"
	t := &Trainable{L: l, Scale: scale, ReplaceEvery: replaceEvery, b: compute.NewCPU(),
		used: make([]int64, l.Groups*l.NumCodes), pcg: pcg, rng: rand.New(pcg)}
	t.param = train.Param{Name: "codes", Shape: []int{l.Groups, l.NumCodes, l.Dim}, Value: l.Codes, Grad: make([]float32, len(l.Codes))}
	return t, nil
}

// SetBackend makes the step choose its codes on b (the CPU by default).
func (t *Trainable) SetBackend(b compute.Backend) { t.b = b }

// Backend is where the step chooses its codes.
func (t *Trainable) Backend() compute.Backend { return t.b }

// Params is the code table.
func (t *Trainable) Params() []*train.Param { return []*train.Param{&t.param} }

// Backward computes the reconstruction loss of a batch and the codes'
// gradient.
func (t *Trainable) Backward(bt *activations.Batch, step int) (train.Stats, error) {
	l := t.L
	if bt.Width != l.Width() {
		return nil, fmt.Errorf("codebook %s: batch rows have %d features, the codebook reads %d", l.Hook, bt.Width, l.Width())
	}
	n, w := bt.Rows, bt.Width
	x := make([]float32, n*w)
	for i, v := range bt.X[:n*w] {
		x[i] = v * t.Scale
	}
	t.last = x
	// The codes change every step: their tables are this scope's
	// temporaries, uploaded afresh.
	sc := compute.Mark(t.b)
	ids, err := l.Select(t.b, t.b.FromHost(x, n, w), nil, nil)
	if rerr := compute.Release(t.b, sc); err == nil && rerr != nil {
		err = fmt.Errorf("codebook %s: the step's code choice: %w", l.Hook, rerr)
	}
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		if id < -1 || int(id) >= l.NumCodes {
			return nil, fmt.Errorf("codebook %s: code id %d out of range [0, %d) (or -1 for none)", l.Hook, id, l.NumCodes)
		}
	}
	clear(t.param.Grad)
	coef := float32(2) / float32(n)
	scale := float32(1)
	if l.Reduce == Mean {
		coef /= float32(l.K)
		scale = 1 / float32(l.K)
	}
	mean := make([]float64, w)
	for r := 0; r < n; r++ {
		for d := 0; d < w; d++ {
			mean[d] += float64(x[r*w+d]) / float64(n)
		}
	}
	// diff = out − x per row, out the mean (or sum) of the row's codes;
	// rows in fixed blocks over the cores, each block's sums kept apart and
	// added in block order, so the figures do not depend on the core count.
	diff := make([]float32, n*w)
	blocks := (n + stepBlock - 1) / stepBlock
	sse, ss := make([]float64, blocks), make([]float64, blocks)
	parallelFor(blocks, func(bk int) {
		for r := bk * stepBlock; r < min(n, (bk+1)*stepBlock); r++ {
			for g := 0; g < l.Groups; g++ {
				lo := r*w + g*l.Dim
				dst := diff[lo : lo+l.Dim]
				for _, id := range ids[(r*l.Groups+g)*l.K : (r*l.Groups+g+1)*l.K] {
					if id < 0 {
						continue
					}
					for d, v := range l.Code(g, int(id)) {
						dst[d] += v
					}
				}
				for d := range dst {
					dst[d] = float32(dst[d]*scale) - x[lo+d] // rounded as the output was
					sse[bk] += float64(dst[d]) * float64(dst[d])
					c := float64(x[lo+d]) - mean[g*l.Dim+d]
					ss[bk] += c * c
				}
			}
		}
	})
	// The gradient of each code is coef Σ diff over the rows that chose it,
	// in row order (as one loop over the rows would add them): the rows are
	// listed per code, and the codes shared out over the cores.
	codes := l.Groups * l.NumCodes
	start := make([]int32, codes+1)
	for i, id := range ids {
		if id >= 0 {
			start[(i/l.K)%l.Groups*l.NumCodes+int(id)+1]++
		}
	}
	for c := 0; c < codes; c++ {
		t.used[c] += int64(start[c+1])
		start[c+1] += start[c]
	}
	rowsOf := make([]int32, start[codes])
	fill := slices.Clone(start[:codes])
	for i, id := range ids {
		if id >= 0 {
			c := (i/l.K)%l.Groups*l.NumCodes + int(id)
			rowsOf[fill[c]] = int32(i / l.K / l.Groups)
			fill[c]++
		}
	}
	parallelFor((codes+stepBlock-1)/stepBlock, func(bk int) {
		for c := bk * stepBlock; c < min(codes, (bk+1)*stepBlock); c++ {
			g := c / l.NumCodes
			gr := t.param.Grad[c*l.Dim : (c+1)*l.Dim]
			for _, r := range rowsOf[start[c]:start[c+1]] {
				lo := int(r)*w + g*l.Dim
				for d, v := range diff[lo : lo+l.Dim] {
					gr[d] += coef * v
				}
			}
		}
	})
	var sseAll, ssAll float64
	for bk := range sse {
		sseAll += sse[bk]
		ssAll += ss[bk]
	}
	t.since++
	dead := 0
	for _, u := range t.used {
		if u == 0 {
			dead++
		}
	}
	return train.Stats{{Name: "mse", Value: sseAll / float64(n)}, {Name: "fvu", Value: sseAll / max(ssAll, 1e-30)},
		{Name: "dead", Value: float64(dead) / float64(len(t.used))}, {Name: "replaced", Value: float64(t.replaced)}}, nil
}

// stepBlock is the rows (and codes) per task of a step's parallel loops.
const stepBlock = 64

// parallelFor runs f(0..n-1) over the cores; each call is independent.
func parallelFor(n int, f func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		for i := range n {
			f(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				f(i)
			}
		}()
	}
	wg.Wait()
}

// AfterUpdate replaces dead codes every ReplaceEvery steps.
func (t *Trainable) AfterUpdate() {
	if t.ReplaceEvery <= 0 || t.since < t.ReplaceEvery || t.last == nil {
		return
	}
	l := t.L
	rows := len(t.last) / l.Width()
	for c, u := range t.used {
		if u != 0 {
			continue
		}
		g := c / l.NumCodes
		r := t.rng.IntN(rows)
		src := t.last[r*l.Width()+g*l.Dim : r*l.Width()+(g+1)*l.Dim]
		dst := l.Codes[c*l.Dim : (c+1)*l.Dim]
		var norm float64
		for _, v := range src {
			norm += float64(v) * float64(v)
		}
		eps := 1e-2 * math.Sqrt(norm/float64(l.Dim))
		for d, v := range src {
			dst[d] = v + float32(eps*t.rng.NormFloat64())
		}
		t.replaced++
	}
	clear(t.used)
	t.since = 0
}

type trainableState struct {
	Used     []int64 `json:"used"`
	Since    int     `json:"since"`
	Replaced int64   `json:"replaced"`
	RNG      []byte  `json:"rng"`
}

// State is what a resume needs besides the codes: the usage counters and
// the replacement generator (the latest batch is the resumed run's next).
func (t *Trainable) State() ([]byte, error) {
	rng, err := t.pcg.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return json.Marshal(trainableState{Used: t.used, Since: t.since, Replaced: t.replaced, RNG: rng})
}

// SetState restores State.
func (t *Trainable) SetState(data []byte) error {
	var s trainableState
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("codebook state: %w", err)
	}
	if len(s.Used) != len(t.used) {
		return fmt.Errorf("codebook state: %d usage counters, the codebook has %d codes", len(s.Used), len(t.used))
	}
	copy(t.used, s.Used)
	t.since, t.replaced = s.Since, s.Replaced
	return t.pcg.UnmarshalBinary(s.RNG)
}

// KMeans sets the codes of l to minibatch k-means centres (Sculley 2010)
// of the rows x [n, l.Width()], per group: centres start at distinct random
// rows; each of iters minibatches of batch rows moves every row's nearest
// centre (Euclidean) towards it by 1/(rows it has taken so far).
func KMeans(l *Layer, x []float32, n, iters, batch int, seed uint64) error {
	if n < l.NumCodes {
		return fmt.Errorf("codebook %s: k-means of %d codes needs at least as many rows, got %d", l.Hook, l.NumCodes, n)
	}
	b := compute.NewCPU()
	rng := rand.New(rand.NewPCG(seed, 0x6b6d65616e73)) // "kmeans"
	w := l.Width()
	for g := 0; g < l.Groups; g++ {
		col := func(r int) []float32 { return x[r*w+g*l.Dim : r*w+(g+1)*l.Dim] }
		centres := l.Codes[g*l.NumCodes*l.Dim : (g+1)*l.NumCodes*l.Dim]
		for c, r := range rng.Perm(n)[:l.NumCodes] {
			copy(centres[c*l.Dim:(c+1)*l.Dim], col(r))
		}
		counts := make([]int, l.NumCodes)
		rows := make([]float32, batch*l.Dim)
		for range iters {
			pick := make([]int, batch)
			for i := range pick {
				pick[i] = rng.IntN(n)
				copy(rows[i*l.Dim:(i+1)*l.Dim], col(pick[i]))
			}
			// nearest: argmax 2 x·c − |c|²
			dots := b.ToHost(b.Linear(b.FromHost(rows, batch, l.Dim), b.FromHost(centres, l.NumCodes, l.Dim), nil))
			norms := make([]float32, l.NumCodes)
			for c := range norms {
				for _, v := range centres[c*l.Dim : (c+1)*l.Dim] {
					norms[c] += v * v
				}
			}
			nearest := make([]int, batch)
			for i := range nearest {
				best, bestV := 0, float32(math.Inf(-1))
				for c := range l.NumCodes {
					if v := 2*dots[i*l.NumCodes+c] - norms[c]; v > bestV {
						best, bestV = c, v
					}
				}
				nearest[i] = best
			}
			for i, c := range nearest {
				counts[c]++
				eta := 1 / float32(counts[c])
				cen := centres[c*l.Dim : (c+1)*l.Dim]
				for d, v := range rows[i*l.Dim : (i+1)*l.Dim] {
					cen[d] += eta * (v - cen[d])
				}
			}
		}
	}
	if slices.ContainsFunc(l.Codes, func(v float32) bool { return math.IsNaN(float64(v)) }) {
		return fmt.Errorf("codebook %s: k-means gave NaN codes", l.Hook)
	}
	return nil
}
