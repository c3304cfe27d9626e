package probe

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"

	"github.com/loupe-dev/loupe/probe/compute"
)

// kvCache keeps every layer's keys and values (after RoPE) so that each
// generated token costs one position's work. Keys and values of sequence s
// occupy rows [s*cap, s*cap+len) of [B*cap, Hkv*Dh] tensors. Generation runs
// one sequence, so no key is padding.
type kvCache struct {
	k, v []tensor
	cap  int
	len  int // positions filled, per sequence
}

func newKVCache(m *Model, B, capacity int) *kvCache {
	c := m.Config
	kv := &kvCache{cap: capacity}
	for range c.Layers {
		kv.k = append(kv.k, m.backend.Zeros(B*capacity, c.KVHeads*c.HeadDim))
		kv.v = append(kv.v, m.backend.Zeros(B*capacity, c.KVHeads*c.HeadDim))
	}
	return kv
}

// append writes T new positions of each sequence's keys and values for layer
// i and returns the whole cached tensors.
func (kv *kvCache) append(b compute.Backend, i int, k, v tensor, B, T int) (tensor, tensor) {
	compute.CopySeqRows(b, kv.k[i], k, B, T, kv.cap, kv.len)
	compute.CopySeqRows(b, kv.v[i], v, B, T, kv.cap, kv.len)
	return kv.k[i], kv.v[i]
}

// Sampling says how Generate picks each token. The zero value is greedy.
type Sampling struct {
	Temperature float64 // 0: greedy (argmax)
	TopK        int     // keep the K most likely tokens (0: all)
	TopP        float64 // keep the smallest set whose mass reaches P (0 or 1: all)
	Seed        uint64
}

// GenerateOptions configures Generate.
type GenerateOptions struct {
	MaxTokens int
	Sampling  Sampling
	// Stop ends generation after any of these tokens (it is included).
	Stop []int
	// Hooks apply at every step. What they cache and reduce is handed over
	// step by step (OnCache, OnReduced), or returned by GenerateSteps.
	Hooks *Hooks
	// OnToken, when set, is called with each new token as it is chosen.
	OnToken func(id int)
	// OnReduced, when set, receives each step's reductions (Hooks.Reduce)
	// before that step's token is chosen: step 0 reads the prompt, step t
	// the t-th generated token.
	OnReduced func(step int, reduced []*Reduced)
	// OnCache, when set, receives each step's cached activations
	// (Hooks.Cache), steps numbered as for OnReduced: step 0 holds the
	// prompt's positions ([1, len(prompt), ...]; patterns [1, H, T, T]),
	// step t the t-th generated token's one position ([1, 1, ...];
	// patterns [1, H, 1, keys so far]). Each step gets a map of its own.
	OnCache func(step int, cache map[string]*Activation)
	// PrefillChunk > 0 reads a prompt longer than it in pieces of that many
	// positions (chunked prefill, see Options.Chunk); step 0's reductions
	// are those of the whole prompt, put together.
	PrefillChunk int
	// MemoryLimit is as in Options: a prompt whose prefill and KV cache are
	// estimated to need more is refused before anything runs.
	MemoryLimit uint64
}

// Generation is what GenerateSteps returns: the new tokens and, for every
// forward step, what the hooks cached and reduced.
type Generation struct {
	Tokens []int
	// Steps[0] is the pass over the prompt, which chose Tokens[0]; Steps[t]
	// the pass over Tokens[t-1], which chose Tokens[t].
	Steps []GenerationStep
}

// GenerationStep is one forward step of a generation.
type GenerationStep struct {
	Token   int                    // the token this step chose
	Cache   map[string]*Activation // Hooks.Cache matches; nil without any
	Reduced []*Reduced             // Hooks.Reduce results
}

// GenerateSteps is Generate that also returns every step's cached
// activations and reductions. Each step's cache is kept, so cache only
// what is needed: a pattern hook keeps [H, T, T] of the prompt.
func (m *Model) GenerateSteps(ctx context.Context, prompt []int, opt GenerateOptions) (*Generation, error) {
	g := &Generation{}
	step := func(i int) *GenerationStep {
		for len(g.Steps) <= i {
			g.Steps = append(g.Steps, GenerationStep{Token: -1})
		}
		return &g.Steps[i]
	}
	onCache, onReduced, onToken := opt.OnCache, opt.OnReduced, opt.OnToken
	opt.OnCache = func(i int, c map[string]*Activation) {
		step(i).Cache = c
		if onCache != nil {
			onCache(i, c)
		}
	}
	opt.OnReduced = func(i int, r []*Reduced) {
		step(i).Reduced = r
		if onReduced != nil {
			onReduced(i, r)
		}
	}
	opt.OnToken = func(id int) {
		step(len(g.Tokens)).Token = id
		g.Tokens = append(g.Tokens, id)
		if onToken != nil {
			onToken(id)
		}
	}
	toks, err := m.Generate(ctx, prompt, opt)
	g.Tokens = toks
	return g, err
}

// Generate continues a prompt, keeping keys and values in a KV cache so each
// new token runs one position through the model. It returns the new tokens.
func (m *Model) Generate(ctx context.Context, prompt []int, opt GenerateOptions) ([]int, error) {
	if err := m.checkBatch([][]int{prompt}); err != nil {
		return nil, err
	}
	if opt.MaxTokens < 0 {
		return nil, fmt.Errorf("max tokens %d is negative", opt.MaxTokens)
	}
	total := len(prompt) + opt.MaxTokens
	if m.Config.MaxPos > 0 && total > m.Config.MaxPos {
		return nil, fmt.Errorf("prompt of %d tokens plus %d new ones exceeds the model's context of %d", len(prompt), opt.MaxTokens, m.Config.MaxPos)
	}
	hs, err := newHookSet(opt.Hooks)
	if err != nil {
		return nil, err
	}
	if err := m.checkMemory(hs, LogitsLast, opt.MemoryLimit, 1, len(prompt), 0, total, opt.PrefillChunk); err != nil {
		return nil, err
	}
	kv := newKVCache(m, 1, total)
	defer compute.Free(m.backend, append(kv.k, kv.v...)...)
	rng := rand.New(rand.NewPCG(opt.Sampling.Seed, 0x1009e))
	var out []int
	next := prompt
	for len(out) < opt.MaxTokens {
		T := len(next)
		pos := make([]int, T)
		for t := range pos {
			pos[t] = kv.len + t
		}
		var logits []float32
		if len(out) == 0 && opt.PrefillChunk > 0 && T > opt.PrefillChunk {
			logits, err = m.prefillChunks(ctx, hs, next, pos, nil, 1, T, opt.PrefillChunk, kv, LogitsLast)
			kv.len -= T // counted below, as for a single pass
		} else {
			p := &pass{m: m, b: m.backend, hooks: hs, B: 1, T: T, past: kv.len, pos: pos, kv: kv,
				mask: compute.AttnMask{Causal: true}}
			logits, err = p.run(ctx, next, LogitsLast)
		}
		if err != nil {
			return out, err
		}
		if hs != nil {
			if opt.OnReduced != nil {
				opt.OnReduced(len(out), hs.reduce)
			}
			if opt.OnCache != nil && len(hs.cache) > 0 {
				opt.OnCache(len(out), hs.cache)
			}
			hs.reduce = nil
			hs.cache = map[string]*Activation{}
		}
		kv.len += T
		id := sample(logits, opt.Sampling, rng)
		out = append(out, id)
		if opt.OnToken != nil {
			opt.OnToken(id)
		}
		if contains(opt.Stop, id) {
			break
		}
		next = []int{id}
	}
	return out, nil
}

func contains(s []int, x int) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

// sample picks a token from one row of logits: temperature, then top-k,
// then top-p (nucleus), in the order Hugging Face applies them.
func sample(logits []float32, s Sampling, rng *rand.Rand) int {
	if s.Temperature <= 0 {
		best := 0
		for i, v := range logits {
			if v > logits[best] {
				best = i
			}
		}
		return best
	}
	idx := make([]int, len(logits))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return logits[idx[a]] > logits[idx[b]] })
	if s.TopK > 0 && s.TopK < len(idx) {
		idx = idx[:s.TopK]
	}
	probs := make([]float64, len(idx))
	maxL := float64(logits[idx[0]]) / s.Temperature
	var sum float64
	for i, id := range idx {
		probs[i] = math.Exp(float64(logits[id])/s.Temperature - maxL)
		sum += probs[i]
	}
	if s.TopP > 0 && s.TopP < 1 {
		var acc float64
		for i := range probs {
			acc += probs[i] / sum
			if acc >= s.TopP {
				idx, probs = idx[:i+1], probs[:i+1]
				break
			}
		}
		sum = 0
		for _, p := range probs {
			sum += p
		}
	}
	u := rng.Float64() * sum
	for i, p := range probs {
		u -= p
		if u < 0 {
			return idx[i]
		}
	}
	return idx[len(idx)-1]
}
