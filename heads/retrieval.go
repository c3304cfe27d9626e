package heads

import (
	"context"
	"fmt"
	"strconv"

	"github.com/loupe-dev/loupe/probe"
)

// CopyHit is Wu et al.'s test for one head at one decoding step: the step
// produced token w, the head's most-attended position (from the query that
// produced w) is top1, and the head copies when top1 lies in the needle's
// answer span [start, end) and holds w.
func CopyHit(top1, w int, prompt []int, start, end int) bool {
	return top1 >= start && top1 < end && top1 < len(prompt) && prompt[top1] == w
}

// RetrievalOptions configure Retrieval.
type RetrievalOptions struct {
	// MaxTokens caps each answer (default: the answer's length plus 8;
	// the paper decodes up to 50 tokens).
	MaxTokens int
	// Stop ends an answer early (the paper stops at a newline).
	Stop []int
	// Decode turns tokens into text for the ROUGE check; nil compares
	// token ids instead of words.
	Decode func([]int) string
	// MinRecall: a case counts toward the score when its answer's ROUGE-1
	// recall exceeds it (the paper's 50, here 0.5). A negative value counts
	// every case.
	MinRecall float64
	// Ablate zero-ablates these heads while decoding (for the causal check).
	Ablate []Head
	// Progress, when set, is called after each case.
	Progress func(done, total int)

	// materialise runs every layer through the scores → softmax → mix path
	// (tests compare it with the fused path).
	materialise bool
}

// NIAHResult is one case's outcome.
type NIAHResult struct {
	Generated []int
	Recall    float64 // ROUGE-1 recall against the answer
	Counted   bool    // recall passed MinRecall, so the case entered the score
}

// Retrieval runs the needle-in-a-haystack cases and scores every head's
// retrieval score (Wu et al. 2024): per case the number of decoding steps at
// which the head copies the generated token from the needle's answer, over
// the answer's length; averaged over the cases the model answered
// (ROUGE-1 recall > MinRecall). Each step's attention is reduced to the
// top-1 position per head on the device. The details hold "all_cases", the
// mean over every case regardless of the answer, and "length_N", the score
// over the answered cases of context length N. It also returns each case's
// outcome.
//
// Memory grows linearly in the context: the top-1 keys come from the
// fused attention's reductions, and no layer builds its pattern.
func Retrieval(ctx context.Context, m *probe.Model, cases []NIAHCase, o RetrievalOptions) (*Score, []NIAHResult, error) {
	if len(cases) == 0 {
		return nil, nil, fmt.Errorf("retrieval: no cases")
	}
	if o.MinRecall == 0 {
		o.MinRecall = 0.5
	}
	cfg := m.Config
	if err := CheckHeads(cfg, o.Ablate); err != nil {
		return nil, nil, fmt.Errorf("retrieval: %w", err)
	}
	L, H := cfg.Layers, cfg.Heads
	sc := &Score{Name: ScoreRetrieval, Values: NewMap(L, H), Threshold: 0.1,
		Source: "Wu et al. 2024 retrieval score (top-1 copy from the needle, NIAH); threshold 0.1 (the paper's)"}
	all := sc.detail("all_cases")
	results := make([]NIAHResult, len(cases))
	counted := 0
	perLen := map[int]int{} // answered cases per context length
	for ci, c := range cases {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		top := make([]int32, L*H) // this step's top-1 key per head
		hits := NewMap(L, H)
		onReduced := func(_ int, reds []*probe.Reduced) {
			for _, r := range reds {
				if l, err := layerOf(r.Hook); err == nil {
					copy(top[l*H:(l+1)*H], r.Index[:H])
				}
			}
		}
		onToken := func(w int) {
			for i, k := range top {
				if CopyHit(int(k), w, c.Prompt, c.AnswerStart, c.AnswerEnd) {
					hits.Values[i]++
				}
			}
		}
		maxTok := o.MaxTokens
		if maxTok <= 0 {
			maxTok = len(c.Answer) + 8
		}
		if lim := cfg.MaxPos - len(c.Prompt); cfg.MaxPos > 0 && maxTok > lim {
			maxTok = lim
		}
		// The last query's top-1 key of every head, from the fused
		// attention: no pattern is built.
		hooks := &probe.Hooks{Edit: ablation(cfg, o.Ablate),
			Reduce: []probe.Reduction{{Hook: patternHook, Op: probe.TopK, K: 1, Rows: []int{-1}}}}
		if o.materialise {
			hooks.Edit = append(hooks.Edit, identityPatternEdit())
		}
		gen, err := m.Generate(ctx, c.Prompt, probe.GenerateOptions{MaxTokens: maxTok, Stop: o.Stop, Hooks: hooks,
			PrefillChunk: prefillChunk(o.materialise),
			OnToken:      onToken, OnReduced: onReduced})
		if err != nil {
			return nil, nil, fmt.Errorf("retrieval: case %d (length %d, depth %.2f): %w", ci, c.Length, c.Depth, err)
		}
		r := NIAHResult{Generated: gen, Recall: answerRecall(c, gen, o.Decode)}
		r.Counted = r.Recall > o.MinRecall || o.MinRecall < 0
		results[ci] = r
		n := float64(c.AnswerEnd - c.AnswerStart)
		for i, v := range hits.Values {
			all.Values[i] += v / n / float64(len(cases))
			if r.Counted {
				sc.Values.Values[i] += v / n
			}
		}
		if r.Counted {
			counted++
			perLen[c.Length]++
			d := sc.detail("length_" + strconv.Itoa(c.Length))
			for i, v := range hits.Values {
				d.Values[i] += v / n
			}
		}
		if o.Progress != nil {
			o.Progress(ci+1, len(cases))
		}
	}
	if counted > 0 {
		sc.Values.Scale(1 / float64(counted))
	}
	for l, k := range perLen {
		sc.Details["length_"+strconv.Itoa(l)].Scale(1 / float64(k))
		sc.setInfo("answered_"+strconv.Itoa(l), strconv.Itoa(k))
	}
	sc.setInfo("cases", strconv.Itoa(len(cases)))
	sc.setInfo("answered", strconv.Itoa(counted))
	return sc, results, nil
}

// answerRecall is ROUGE-1 recall of the generated tokens against the
// case's answer, on words when decode is given, else on token ids.
func answerRecall(c NIAHCase, gen []int, decode func([]int) string) float64 {
	if decode != nil {
		return Rouge1Recall(decode(c.Answer), decode(gen))
	}
	return multisetRecall(c.Answer, gen)
}
