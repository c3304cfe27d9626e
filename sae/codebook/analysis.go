package codebook

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/loupe-dev/loupe/probe"
	"github.com/loupe-dev/loupe/store"
)

// AnalyzeOptions says how much Analyze keeps per code.
type AnalyzeOptions struct {
	TopTokens int // tokens kept per code (default 10)
	Contexts  int // example firings kept per code (default 5)
	Window    int // tokens shown before a firing (default 8; 2 after)
	Batch     int // prompts per forward (default 16)
	// Text renders a token id; nil writes ids.
	Text func(id int) string
	// Labels, when not nil, gives a label per prompt position (-1: none),
	// for instance the TokFSM state; each code is then labelled by its most
	// frequent label, with that label's precision and average precision.
	Labels [][]int
	// LabelName renders a label (default "state N").
	LabelName func(label int) string
	// KeepFrom: positions before it are neither spliced nor counted (1 for
	// codebooks trained without the BOS position).
	KeepFrom int
}

func (o *AnalyzeOptions) fill() {
	if o.TopTokens <= 0 {
		o.TopTokens = 10
	}
	if o.Contexts <= 0 {
		o.Contexts = 5
	}
	if o.Window <= 0 {
		o.Window = 8
	}
	if o.Batch <= 0 {
		o.Batch = 16
	}
	if o.Text == nil {
		o.Text = func(id int) string { return fmt.Sprintf("<%d>", id) }
	}
	if o.LabelName == nil {
		o.LabelName = func(l int) string { return fmt.Sprintf("state %d", l) }
	}
}

type codeAcc struct {
	count    int64
	tokens   map[int]int32
	labels   map[int]int
	contexts [][2]int32
}

// Analyze runs prompts through m with the codebooks of set spliced in and
// summarises every code of every layer: how often it fires, on which
// tokens, example contexts, and (with Labels) what it stands for. Rows come
// in layer order, then group, then code id.
func Analyze(ctx context.Context, m *probe.Model, set *Set, prompts [][]int, opt AnalyzeOptions) ([]store.Code, error) {
	opt.fill()
	if err := set.CheckModel(m.Config); err != nil {
		return nil, err
	}
	if opt.Labels != nil && len(opt.Labels) != len(prompts) {
		return nil, fmt.Errorf("analyze: %d label rows for %d prompts", len(opt.Labels), len(prompts))
	}
	acc := map[string][]codeAcc{}
	for _, l := range set.Layers {
		acc[l.Hook] = make([]codeAcc, l.Groups*l.NumCodes)
	}
	positions := int64(0)
	labelTotal := map[int]int{}
	labelled := 0
	for lo := 0; lo < len(prompts); lo += opt.Batch {
		hi := min(lo+opt.Batch, len(prompts))
		sp, err := NewSplice(set)
		if err != nil {
			return nil, err
		}
		sp.KeepFrom = opt.KeepFrom
		r, err := m.Forward(ctx, prompts[lo:hi], probe.Options{Logits: probe.LogitsNone,
			Hooks: &probe.Hooks{Edit: sp.Edits(), Cache: []string{"*" + IDsSuffix}}})
		if err != nil {
			return nil, err
		}
		for b := lo; b < hi; b++ {
			for p := opt.KeepFrom; p < len(prompts[b]); p++ {
				positions++
				row := (b-lo)*r.Len + r.Pad[b-lo] + p
				label := -1
				if opt.Labels != nil && p < len(opt.Labels[b]) {
					label = opt.Labels[b][p]
				}
				if label >= 0 {
					labelTotal[label]++
					labelled++
				}
				for _, l := range set.Layers {
					ids := r.Cache[IDsHook(l.Hook)].Data[row*l.Groups*l.K : (row+1)*l.Groups*l.K]
					codes := acc[l.Hook]
					for i, v := range ids {
						if v < 0 {
							continue
						}
						a := &codes[i/l.K*l.NumCodes+int(v)]
						a.count++
						if a.tokens == nil {
							a.tokens, a.labels = map[int]int32{}, map[int]int{}
						}
						a.tokens[prompts[b][p]]++
						if label >= 0 {
							a.labels[label]++
						}
						if len(a.contexts) < opt.Contexts {
							a.contexts = append(a.contexts, [2]int32{int32(b), int32(p)})
						}
					}
				}
			}
		}
	}
	var out []store.Code
	for _, l := range set.Layers {
		for c, a := range acc[l.Hook] {
			f := store.Code{Source: "codebook", Hook: l.Hook, Group: c / l.NumCodes, Code: c % l.NumCodes,
				Count: a.count, Positions: positions,
				TopTokens: []int32{}, TopCounts: []int32{}, TopTexts: []string{},
				ContextPrompts: []int32{}, ContextPositions: []int32{}, Contexts: []string{}}
			type tc struct {
				tok int
				n   int32
			}
			var toks []tc
			for t, n := range a.tokens {
				toks = append(toks, tc{t, n})
			}
			sort.Slice(toks, func(i, j int) bool {
				return toks[i].n > toks[j].n || toks[i].n == toks[j].n && toks[i].tok < toks[j].tok
			})
			for _, t := range toks[:min(len(toks), opt.TopTokens)] {
				f.TopTokens = append(f.TopTokens, int32(t.tok))
				f.TopCounts = append(f.TopCounts, t.n)
				f.TopTexts = append(f.TopTexts, opt.Text(t.tok))
			}
			for _, cx := range a.contexts {
				f.ContextPrompts = append(f.ContextPrompts, cx[0])
				f.ContextPositions = append(f.ContextPositions, cx[1])
				f.Contexts = append(f.Contexts, renderContext(prompts[cx[0]], int(cx[1]), opt))
			}
			best, bestN := -1, 0
			for lab, n := range a.labels {
				if n > bestN || n == bestN && lab < best {
					best, bestN = lab, n
				}
			}
			if best >= 0 {
				fired := 0
				for _, n := range a.labels {
					fired += n
				}
				f.Label = opt.LabelName(best)
				f.LabelPrecision = float32(bestN) / float32(fired)
				f.LabelAP = float32(BinaryAveragePrecision(fired, bestN, labelTotal[best], labelled))
			}
			out = append(out, f)
		}
	}
	return out, nil
}

func renderContext(prompt []int, pos int, opt AnalyzeOptions) string {
	var b strings.Builder
	for i := max(0, pos-opt.Window); i < min(len(prompt), pos+3); i++ {
		if i == pos {
			b.WriteString("«" + opt.Text(prompt[i]) + "»")
		} else {
			b.WriteString(opt.Text(prompt[i]))
		}
	}
	return b.String()
}
