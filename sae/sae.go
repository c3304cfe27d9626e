package sae

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"

	"github.com/loupe-dev/loupe/probe/compute"
)

// Arch is an SAE architecture.
type Arch string

const (
	Standard   Arch = "standard"   // ReLU; L1 weighted by decoder-row norms
	TopK       Arch = "topk"       // the K largest pre-activations, ReLU'd
	BatchTopK  Arch = "batchtopk"  // the K·n largest over a batch of n; a threshold at inference
	JumpReLU   Arch = "jumprelu"   // pre·H(pre − θ) with a learned θ per latent
	Matryoshka Arch = "matryoshka" // BatchTopK with nested-prefix reconstruction losses
)

// Arches lists every architecture.
var Arches = []Arch{Standard, TopK, BatchTopK, JumpReLU, Matryoshka}

// ParseArch checks an architecture name.
func ParseArch(s string) (Arch, error) {
	for _, a := range Arches {
		if string(a) == s {
			return a, nil
		}
	}
	return "", fmt.Errorf("unknown SAE architecture %q (want standard, topk, batchtopk, jumprelu or matryoshka)", s)
}

// unitDecoder says whether the architecture keeps decoder rows at unit
// norm (the standard SAE instead weights its L1 penalty by the norms).
func (a Arch) unitDecoder() bool { return a != Standard }

// thresholded says whether inference uses a per-latent threshold: JumpReLU,
// and BatchTopK/Matryoshka, whose batch-level top-k is replaced by the
// learned threshold outside training.
func (a Arch) thresholded() bool { return a == JumpReLU || a == BatchTopK || a == Matryoshka }

// SAE is a sparse autoencoder (or transcoder) and what it was trained on.
type SAE struct {
	Arch             Arch
	DIn, DSAE, DOut  int
	K                int       // TopK, BatchTopK, Matryoshka: active latents per token
	Enc              []float32 // [DSAE, DIn]
	BEnc             []float32 // [DSAE]
	Dec              []float32 // [DSAE, DOut]
	BDec             []float32 // [DOut]
	Threshold        []float32 // [DSAE]: JumpReLU's θ; BatchTopK's learned threshold
	ApplyBDecToInput bool      // encode x − b_dec (SAEs; not transcoders)
	// InScale and OutScale normalise activations for training (x·InScale,
	// targets·OutScale); 1 means none. Export folds them into the weights.
	InScale, OutScale float32
	// Groups are Matryoshka's nested prefix sizes, ascending, the last DSAE.
	Groups []int
	Meta   Metadata
}

// Metadata is what an SAE was trained on (SAELens cfg.json's metadata).
type Metadata struct {
	ModelName     string `json:"model_name"`
	HookName      string `json:"hook_name"`
	HookHeadIndex *int   `json:"hook_head_index"`
	// TargetHookName is a transcoder's output hook ("" for an SAE).
	TargetHookName string `json:"hook_name_out,omitempty"`
	ContextSize    int    `json:"context_size"`
	PrependBOS     bool   `json:"prepend_bos"`
	DatasetPath    string `json:"dataset_path"`
	// ExcludeFirst is how many tokens after BOS each context left out
	// (Data.ExcludeFirst; 0, and absent from cfg.json, for BOS only).
	ExcludeFirst int `json:"exclude_first_tokens_after_bos,omitempty"`
	// TokensSeen counts the training tokens.
	TokensSeen int64 `json:"training_tokens"`
}

// InitThreshold is JumpReLU's initial θ. Gemma Scope starts at 0.001 on raw
// activations with long runs; Loupe trains on activations normalised to
// E‖x‖ = sqrt(d_in), where active pre-activations are O(1), and starts
// nearer that scale so that short runs reach a sparse solution.
const InitThreshold = 0.1

// New makes an SAE with Loupe's initialisation: decoder rows in random
// directions (unit norm, or norm 0.1 for the standard SAE, after Anthropic's
// April 2024 recipe), the encoder their transpose, zero biases, JumpReLU
// thresholds at InitThreshold. b_dec is set from the data by Train (the
// geometric median of a sample).
// CheckK says whether k active latents of dSAE suit the architecture: the
// top-k family needs 0 < k <= dSAE, the others ignore k. An unknown
// architecture is an error too.
func (a Arch) CheckK(k, dSAE int) error {
	switch a {
	case TopK, BatchTopK, Matryoshka:
		if k <= 0 || k > dSAE {
			return fmt.Errorf("sae: %s needs 0 < k <= d_sae (%d), got %d", a, dSAE, k)
		}
	case Standard, JumpReLU:
	default:
		return fmt.Errorf("sae: unknown architecture %q", a)
	}
	return nil
}

func New(arch Arch, dIn, dSAE, dOut, k int, seed uint64) (*SAE, error) {
	if dIn <= 0 || dSAE <= 0 || dOut <= 0 {
		return nil, fmt.Errorf("sae: sizes d_in %d, d_sae %d, d_out %d must be positive", dIn, dSAE, dOut)
	}
	if err := arch.CheckK(k, dSAE); err != nil {
		return nil, err
	}
	s := &SAE{Arch: arch, DIn: dIn, DSAE: dSAE, DOut: dOut, K: k,
		Enc: make([]float32, dSAE*dIn), BEnc: make([]float32, dSAE),
		Dec: make([]float32, dSAE*dOut), BDec: make([]float32, dOut),
		ApplyBDecToInput: dIn == dOut, InScale: 1, OutScale: 1}
	if arch.thresholded() {
		s.Threshold = make([]float32, dSAE)
		if arch == JumpReLU {
			for i := range s.Threshold {
				s.Threshold[i] = InitThreshold
			}
		}
	}
	if arch == Matryoshka {
		s.Groups = DefaultGroups(dSAE)
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d))
	norm := 1.0
	if arch == Standard {
		norm = 0.1
	}
	for j := 0; j < dSAE; j++ {
		row := s.Dec[j*dOut : (j+1)*dOut]
		var ss float64
		for i := range row {
			v := rng.NormFloat64()
			row[i] = float32(v)
			ss += v * v
		}
		scale := float32(norm / math.Sqrt(ss))
		for i := range row {
			row[i] *= scale
		}
	}
	// Encoder = decoderᵀ where the widths agree; a transcoder's encoder gets
	// its own random directions of the same norm.
	for j := 0; j < dSAE; j++ {
		e := s.Enc[j*dIn : (j+1)*dIn]
		if dIn == dOut {
			copy(e, s.Dec[j*dOut:(j+1)*dOut])
			continue
		}
		var ss float64
		for i := range e {
			v := rng.NormFloat64()
			e[i] = float32(v)
			ss += v * v
		}
		scale := float32(norm / math.Sqrt(ss))
		for i := range e {
			e[i] *= scale
		}
	}
	return s, nil
}

// DefaultGroups are Matryoshka prefix sizes: DSAE/16, /8, /4, /2 and DSAE
// (those of at least one latent, without repeats).
func DefaultGroups(dSAE int) []int {
	var g []int
	for _, div := range []int{16, 8, 4, 2, 1} {
		m := dSAE / div
		if m >= 1 && (len(g) == 0 || m > g[len(g)-1]) {
			g = append(g, m)
		}
	}
	return g
}

// preActs computes pre = (x·InScale − b_dec·[ApplyBDecToInput])·Encᵀ + b_enc
// for n rows of x. in receives the encoder's input (n×DIn), pre n×DSAE.
func (s *SAE) preActs(x []float32, n int, in, pre []float32) {
	d := s.DIn
	parallelRows(n, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xi, out := x[r*d:(r+1)*d], in[r*d:(r+1)*d]
			for i, v := range xi {
				out[i] = v * s.InScale
			}
			if s.ApplyBDecToInput {
				for i := range out {
					out[i] -= s.BDec[i]
				}
			}
		}
	})
	for r := 0; r < n; r++ {
		copy(pre[r*s.DSAE:(r+1)*s.DSAE], s.BEnc)
	}
	compute.HostMulNT(n, s.DSAE, d, 1, in, d, s.Enc, d, 1, pre, s.DSAE)
}

// Encode gives the latents of n rows of raw activations x [n, DIn] as a
// dense [n, DSAE] matrix: ReLU (standard), the top K then ReLU (TopK), or
// pre·[pre > θ] (JumpReLU, and BatchTopK/Matryoshka at inference).
func (s *SAE) Encode(x []float32, n int) []float32 {
	in := make([]float32, n*s.DIn)
	pre := make([]float32, n*s.DSAE)
	s.preActs(x, n, in, pre)
	S := s.DSAE
	parallelRows(n, func(lo, hi int) {
		var h topHeap
		for r := lo; r < hi; r++ {
			row := pre[r*S : (r+1)*S]
			switch {
			case s.Arch == Standard:
				for j, v := range row {
					row[j] = max(v, 0)
				}
			case s.Arch == TopK:
				h.top(row, s.K)
				keep := h.idx
				vals := make([]float32, len(keep))
				for i, j := range keep {
					vals[i] = row[j]
				}
				clear(row)
				for i, j := range keep {
					row[j] = max(vals[i], 0)
				}
			default: // thresholded
				for j, v := range row {
					if !(v > s.Threshold[j]) {
						row[j] = 0
					}
				}
			}
		}
	})
	return pre
}

// Decode reconstructs raw activations [n, DOut] from dense latents
// f [n, DSAE]: (f·Dec + b_dec) / OutScale.
func (s *SAE) Decode(f []float32, n int) []float32 {
	out := make([]float32, n*s.DOut)
	for r := 0; r < n; r++ {
		copy(out[r*s.DOut:(r+1)*s.DOut], s.BDec)
	}
	compute.HostMulNN(n, s.DOut, s.DSAE, 1, f, s.DSAE, s.Dec, s.DOut, 1, out, s.DOut)
	if s.OutScale != 1 {
		inv := 1 / s.OutScale
		for i := range out {
			out[i] *= inv
		}
	}
	return out
}

// parallelRows splits [0, n) into contiguous ranges, one per CPU; each
// output element is written by one goroutine in a fixed order, so results
// do not depend on scheduling.
func parallelRows(n int, fn func(lo, hi int)) {
	rs := splits(n)
	if len(rs) == 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	for _, rg := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(rg[0], rg[1])
		}()
	}
	wg.Wait()
}

// splits cuts [0, n) into one contiguous range per CPU (one range when n
// is small).
func splits(n int) [][2]int {
	w := runtime.GOMAXPROCS(0)
	if w <= 1 || n < 2*w {
		return [][2]int{{0, n}}
	}
	var rs [][2]int
	step := (n + w - 1) / w
	for lo := 0; lo < n; lo += step {
		rs = append(rs, [2]int{lo, min(lo+step, n)})
	}
	return rs
}

// topHeap selects the k largest values of a row (indices in idx, in no
// particular order), with a min-heap of size k. Ties keep the lower index.
type topHeap struct {
	idx []int32
	val []float32
}

func (h *topHeap) top(row []float32, k int) {
	k = min(k, len(row))
	h.idx, h.val = h.idx[:0], h.val[:0]
	for j, v := range row {
		if len(h.idx) < k {
			h.idx = append(h.idx, int32(j))
			h.val = append(h.val, v)
			h.up(len(h.idx) - 1)
			continue
		}
		if v > h.val[0] {
			h.idx[0], h.val[0] = int32(j), v
			h.down(0)
		}
	}
}

func (h *topHeap) less(a, b int) bool {
	// the heap's root is the smallest value; among equal values the highest
	// index, so a later equal value never displaces an earlier one
	if h.val[a] != h.val[b] {
		return h.val[a] < h.val[b]
	}
	return h.idx[a] > h.idx[b]
}

func (h *topHeap) swap(a, b int) {
	h.idx[a], h.idx[b] = h.idx[b], h.idx[a]
	h.val[a], h.val[b] = h.val[b], h.val[a]
}

func (h *topHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(i, p) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

func (h *topHeap) down(i int) {
	n := len(h.idx)
	for {
		l, m := 2*i+1, i
		if l < n && h.less(l, m) {
			m = l
		}
		if l+1 < n && h.less(l+1, m) {
			m = l + 1
		}
		if m == i {
			return
		}
		h.swap(i, m)
		i = m
	}
}
