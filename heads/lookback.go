package heads

import (
	"context"
	"fmt"
	"math"
	"strconv"

	"github.com/loupe-dev/loupe/probe"
)

// LookbackRatio is Lookback Lens's ratio for one head at one decoding step
// (Chuang et al. 2024, "Lookback Lens: Detecting and Mitigating Contextual
// Hallucinations in Large Language Models Using Only Attention Maps"):
//
//	LR = A_ctx / (A_ctx + A_new),  A_ctx = ctxMass / N,  A_new = newMass / t
//
// where ctxMass is the attention on the N context tokens and newMass the
// attention on the t tokens generated so far: the ratio compares the mean
// attention per context token with the mean per generated token. It is
// NaN when there are no generated tokens yet or no attention on either.
func LookbackRatio(ctxMass, newMass float64, N, t int) float64 {
	if N <= 0 || t <= 0 {
		return math.NaN()
	}
	a, b := ctxMass/float64(N), newMass/float64(t)
	if a+b == 0 {
		return math.NaN()
	}
	return a / (a + b)
}

// LookbackOptions configure Lookback.
type LookbackOptions struct {
	// MaxTokens is the number of tokens generated per prompt (default 32).
	MaxTokens int
	// Stop ends a generation early (for example the EOS token).
	Stop []int

	// materialise runs every layer through the scores → softmax → mix path
	// (tests compare it with the fused path).
	materialise bool
}

// Lookback scores every head by its mean lookback ratio while the model
// greedily continues each prompt (the prompt is the context): the mean over
// decoding steps t ≥ 1 and prompts of LookbackRatio. Step 0, which reads the
// prompt alone, has no generated tokens and is skipped, as in the paper.
// Each step's attention is reduced by the fused attention (two span masses
// per head), so no pattern is built. Lookback Lens feeds these ratios to a classifier and
// defines no per-head threshold, so the score labels no head.
func Lookback(ctx context.Context, m *probe.Model, prompts [][]int, o LookbackOptions) (*Score, error) {
	if o.MaxTokens <= 0 {
		o.MaxTokens = 32
	}
	if len(prompts) == 0 {
		return nil, fmt.Errorf("lookback: no prompts")
	}
	L, H := m.Config.Layers, m.Config.Heads
	sc := &Score{Name: ScoreLookback, Values: NewMap(L, H), Threshold: math.NaN(),
		Source: "Lookback Lens (Chuang et al. 2024): mean over steps of A_ctx/(A_ctx+A_new), mean attentions; no threshold"}
	sum := NewMap(L, H)
	count := NewMap(L, H)
	steps := 0
	for _, p := range prompts {
		N := len(p)
		// Two span masses of the last query per head, from the fused
		// attention: context keys [0, N) and generated keys [N, end).
		hooks := &probe.Hooks{Reduce: []probe.Reduction{
			{Hook: patternHook, Op: probe.SpanMass, Lo: 0, Hi: N, Rows: []int{-1}},
			{Hook: patternHook, Op: probe.SpanMass, Lo: N, Rows: []int{-1}},
		}}
		if o.materialise {
			hooks.Edit = []probe.Edit{identityPatternEdit()}
		}
		// Each step reports the two masses of every layer in turn.
		var failed error
		onReduced := func(_ int, reds []*probe.Reduced) {
			for i := 0; i+1 < len(reds); i += 2 {
				cm, nm := reds[i], reds[i+1]
				l, err := layerOf(cm.Hook)
				if err != nil {
					failed = err
					return
				}
				gen := cm.KeysLen - N
				if gen <= 0 {
					return // the prompt itself: no generated tokens yet
				}
				if l == 0 {
					steps++
				}
				for h := 0; h < H; h++ {
					if r := LookbackRatio(float64(cm.Values[h]), float64(nm.Values[h]), N, gen); !math.IsNaN(r) {
						sum.Add(l, h, r)
						count.Add(l, h, 1)
					}
				}
			}
		}
		_, err := m.Generate(ctx, p, probe.GenerateOptions{MaxTokens: o.MaxTokens, Stop: o.Stop,
			PrefillChunk: prefillChunk(o.materialise),
			Hooks:        hooks, OnReduced: onReduced})
		if err == nil {
			err = failed
		}
		if err != nil {
			return nil, fmt.Errorf("lookback: %w", err)
		}
	}
	if steps == 0 {
		return nil, fmt.Errorf("lookback: no decoding step after the prompts (every generation stopped at once)")
	}
	for i := range sc.Values.Values {
		sc.Values.Values[i] = sum.Values[i] / count.Values[i]
	}
	sc.setInfo("prompts", strconv.Itoa(len(prompts)))
	sc.setInfo("max_tokens", strconv.Itoa(o.MaxTokens))
	sc.setInfo("steps", strconv.Itoa(steps))
	return sc, nil
}
