package probe

import (
	"context"
	"fmt"
	"math/rand/v2"

	"github.com/loupe-dev/loupe/probe/compute"
)

// GenerateBatch continues several prompts at once with one KV cache of
// len(prompts) sequences on the model's backend, so each step runs one
// position of every sequence through the model in one pass. Prompts of
// different lengths are left-padded as Forward pads them (padded keys are
// masked, positions count from each sequence's first real token).
// Sequence b samples with opt.Sampling seeded Seed+b, so a batch of one
// gives what Generate gives. A sequence that emits a Stop token (which is
// included) or reaches MaxTokens is done; the batch runs until all are.
// Hooks apply at every step (a cached activation holds the last step);
// OnToken and OnReduced are not used (they have no sequence argument).
func (m *Model) GenerateBatch(ctx context.Context, prompts [][]int, opt GenerateOptions) ([][]int, error) {
	if err := m.checkBatch(prompts); err != nil {
		return nil, err
	}
	if opt.MaxTokens < 0 {
		return nil, fmt.Errorf("max tokens %d is negative", opt.MaxTokens)
	}
	B, T0 := len(prompts), 0
	for _, s := range prompts {
		T0 = max(T0, len(s))
	}
	if m.Config.MaxPos > 0 && T0+opt.MaxTokens > m.Config.MaxPos {
		return nil, fmt.Errorf("prompts of up to %d tokens plus %d new ones exceed the model's context of %d", T0, opt.MaxTokens, m.Config.MaxPos)
	}
	hs, err := newHookSet(opt.Hooks)
	if err != nil {
		return nil, err
	}
	kv := newKVCache(m, B, T0+opt.MaxTokens)
	defer compute.Free(m.backend, append(kv.k, kv.v...)...)
	pads := make([]int, B)
	rngs := make([]*rand.Rand, B)
	for b, s := range prompts {
		pads[b] = T0 - len(s)
		rngs[b] = rand.New(rand.NewPCG(opt.Sampling.Seed+uint64(b), 0x1009e))
	}
	// The first step runs the padded prompts; each later one a token each.
	ids := make([]int, 0, B*T0)
	for b, s := range prompts {
		ids = append(ids, make([]int, pads[b])...)
		ids = append(ids, s...)
	}
	out := make([][]int, B)
	done := make([]bool, B)
	T := T0
	for step := 0; step < opt.MaxTokens; step++ {
		Tk := kv.len + T
		pos := make([]int, B*T)
		valid := make([]bool, B*Tk)
		for b := 0; b < B; b++ {
			for t := 0; t < T; t++ {
				if p := kv.len + t - pads[b]; p >= 0 {
					pos[b*T+t] = p
				} else {
					pos[b*T+t] = 1 // as Forward (and HF's masked_fill) place padding
				}
			}
			for j := pads[b]; j < Tk; j++ {
				valid[b*Tk+j] = true
			}
		}
		mask := compute.AttnMask{Causal: true}
		for _, pad := range pads {
			if pad > 0 {
				mask.KeyValid = valid
				break
			}
		}
		// Greedy steps take each sequence's argmax where the logits are
		// (B integers back instead of B × vocab floats).
		greedy := opt.Sampling.Temperature <= 0
		p := &pass{m: m, b: m.backend, hooks: hs, B: B, T: T, past: kv.len, pos: pos, kv: kv, mask: mask, greedy: greedy}
		logits, err := p.run(ctx, ids, LogitsLast)
		if err != nil {
			return out, err
		}
		if hs != nil {
			hs.reduce = nil
		}
		kv.len += T
		V := m.Config.Vocab
		ids = ids[:0]
		all := true
		for b := 0; b < B; b++ {
			var id int
			if greedy {
				id = p.argmax[b]
			} else {
				id = sample(logits[b*V:(b+1)*V], opt.Sampling, rngs[b])
			}
			ids = append(ids, id)
			if !done[b] {
				out[b] = append(out[b], id)
				done[b] = contains(opt.Stop, id)
			}
			all = all && done[b]
		}
		if all {
			break
		}
		T = 1
	}
	return out, nil
}
