package heads

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/loupe-dev/loupe/probe"
	"github.com/loupe-dev/loupe/probe/compute"
)

// TemporalFact is a fact that changes with time: Template holds "{year}"
// (and no subject); Answers[i] is the answer in Years[i].
type TemporalFact struct {
	Template string
	Years    []string
	Answers  []string
}

// ControlFact is a time-invariant fact in the same form: Template holds
// "{year}" and "{subject}"; the answer depends on the subject only.
type ControlFact struct {
	Template string
	Year     string
	Subjects []string
	Answers  []string
}

// DefaultTemporalFacts are well-known facts that changed between years.
var DefaultTemporalFacts = []TemporalFact{
	{"In {year}, the President of the United States was", []string{"1995", "2005", "2012", "2018"}, []string{" Bill", " George", " Barack", " Donald"}},
	{"In {year}, the Prime Minister of the United Kingdom was", []string{"1985", "1999", "2012"}, []string{" Margaret", " Tony", " David"}},
	{"In {year}, the CEO of Apple was", []string{"2005", "2015"}, []string{" Steve", " Tim"}},
	{"In {year}, the CEO of Microsoft was", []string{"1995", "2020"}, []string{" Bill", " Satya"}},
	{"In {year}, the Chancellor of Germany was", []string{"1995", "2010"}, []string{" Helmut", " Angela"}},
	{"In {year}, the Pope was", []string{"2000", "2010", "2020"}, []string{" John", " Benedict", " Francis"}},
}

// DefaultControlFacts are time-invariant facts with a year in the same
// place.
var DefaultControlFacts = []ControlFact{
	{"In {year}, the capital of {subject} was", "2005", []string{"France", "Italy", "Japan", "Spain"}, []string{" Paris", " Rome", " Tokyo", " Madrid"}},
	{"In {year}, the main language of {subject} was", "2012", []string{"France", "Italy", "Japan", "Spain"}, []string{" French", " Italian", " Japanese", " Spanish"}},
}

// FactPair is two prompts of the same length whose answers' first tokens
// differ; Span is where the year (temporal) or the subject (control) sits.
type FactPair struct {
	A, B       []int
	AnsA, AnsB int
	Span       [2]int
	Text       string
}

// fill tokenizes a template piece by piece: each placeholder's value,
// with the space before it, is tokenized alone, so its span is known.
// It returns the tokens and the span of each placeholder.
func fill(tok Tokenizer, tmpl string, vals map[string]string) ([]int, map[string][2]int, error) {
	var out []int
	spans := map[string][2]int{}
	rest := tmpl
	for rest != "" {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			i = len(rest)
		}
		lit := rest[:i]
		rest = rest[i:]
		key, val, sp := "", "", ""
		if rest != "" {
			j := strings.IndexByte(rest, '}')
			if j < 0 {
				return nil, nil, fmt.Errorf("template %q: unclosed {", tmpl)
			}
			key = rest[1:j]
			rest = rest[j+1:]
			v, ok := vals[key]
			if !ok {
				return nil, nil, fmt.Errorf("template %q: no value for {%s}", tmpl, key)
			}
			if strings.HasSuffix(lit, " ") {
				lit, sp = lit[:len(lit)-1], " "
			}
			val = sp + v
		}
		if lit != "" {
			ids, err := tok.Encode(lit, false)
			if err != nil {
				return nil, nil, err
			}
			out = append(out, ids...)
		}
		if key != "" {
			ids, err := tok.Encode(val, false)
			if err != nil {
				return nil, nil, err
			}
			spans[key] = [2]int{len(out), len(out) + len(ids)}
			out = append(out, ids...)
		}
	}
	return out, spans, nil
}

func firstToken(tok Tokenizer, s string) (int, error) {
	ids, err := tok.Encode(s, false)
	if err != nil {
		return 0, err
	}
	if len(ids) == 0 {
		return 0, fmt.Errorf("answer %q has no tokens", s)
	}
	return ids[0], nil
}

// TemporalPairs tokenizes the facts into pairs: every two years of a
// temporal fact, every two subjects of a control fact, in both orders,
// whose prompts have equal length and whose answers' first tokens differ.
func TemporalPairs(tok Tokenizer, temporal []TemporalFact, control []ControlFact) (tp, cp []FactPair, err error) {
	for _, f := range temporal {
		if len(f.Years) != len(f.Answers) {
			return nil, nil, fmt.Errorf("temporal fact %q: %d years, %d answers", f.Template, len(f.Years), len(f.Answers))
		}
		for i := range f.Years {
			for j := range f.Years {
				if i == j {
					continue
				}
				p, err := makePair(tok, f.Template, "year", map[string]string{"year": f.Years[i]}, map[string]string{"year": f.Years[j]}, f.Answers[i], f.Answers[j])
				if err != nil {
					return nil, nil, err
				}
				if p != nil {
					tp = append(tp, *p)
				}
			}
		}
	}
	for _, f := range control {
		if len(f.Subjects) != len(f.Answers) {
			return nil, nil, fmt.Errorf("control fact %q: %d subjects, %d answers", f.Template, len(f.Subjects), len(f.Answers))
		}
		for i := range f.Subjects {
			for j := range f.Subjects {
				if i == j {
					continue
				}
				p, err := makePair(tok, f.Template, "subject", map[string]string{"year": f.Year, "subject": f.Subjects[i]},
					map[string]string{"year": f.Year, "subject": f.Subjects[j]}, f.Answers[i], f.Answers[j])
				if err != nil {
					return nil, nil, err
				}
				if p != nil {
					cp = append(cp, *p)
				}
			}
		}
	}
	return tp, cp, nil
}

func makePair(tok Tokenizer, tmpl, key string, va, vb map[string]string, ansA, ansB string) (*FactPair, error) {
	a, spans, err := fill(tok, tmpl, va)
	if err != nil {
		return nil, err
	}
	b, _, err := fill(tok, tmpl, vb)
	if err != nil {
		return nil, err
	}
	x, err := firstToken(tok, ansA)
	if err != nil {
		return nil, err
	}
	y, err := firstToken(tok, ansB)
	if err != nil {
		return nil, err
	}
	if len(a) != len(b) || x == y {
		return nil, nil
	}
	return &FactPair{A: a, B: b, AnsA: x, AnsB: y, Span: spans[key], Text: tok.Decode(a, false) + " →" + ansA}, nil
}

// TemporalOptions configure Temporal.
type TemporalOptions struct {
	// MinGap drops pairs whose clean logit differences LD(A) − LD(B) are
	// smaller than this (default 1): a pair the model cannot tell apart
	// has no effect to patch.
	MinGap float64
	// MaxPairs caps the pairs of each kind used (0: all).
	MaxPairs int
	// Batch is the number of patched copies per forward pass (default 32).
	Batch int
	// Progress, when set, is called after each forward pass.
	Progress func(done, total int)
}

// PatchEffect is the normalised effect of a patch on a logit difference:
// (clean − patched) / (clean − corrupt), 1 when the patch moves the logit
// difference all the way to the other prompt's.
func PatchEffect(clean, patched, corrupt float64) float64 {
	return (clean - patched) / (clean - corrupt)
}

// Temporal scores temporal heads (Park et al. 2025; definition in the
// package doc). Per pair it runs both prompts once (caching hook_z and
// reducing the answer position's attention to the span) and then the
// first prompt once per head with that head's hook_z patched from the
// second, batched.
func Temporal(ctx context.Context, m *probe.Model, temporal, control []FactPair, o TemporalOptions) (*Score, error) {
	if o.MinGap == 0 {
		o.MinGap = 1
	}
	if o.Batch <= 0 {
		o.Batch = 32
	}
	cfg := m.Config
	L, H := cfg.Layers, cfg.Heads
	sc := &Score{Name: ScoreTemporal, Values: NewMap(L, H), Threshold: 0.1,
		Source: "Park et al. 2025 temporal heads: per-head patching effect on the year's logit difference minus the effect on time-invariant controls; threshold 0.1 (Loupe)"}
	var all []Head
	for l := 0; l < L; l++ {
		for h := 0; h < H; h++ {
			all = append(all, Head{l, h})
		}
	}
	attempts := func(pairs []FactPair) int {
		if o.MaxPairs > 0 {
			return min(len(pairs), o.MaxPairs)
		}
		return len(pairs)
	}
	total, done := attempts(temporal)+attempts(control), 0
	run := func(pairs []FactPair, effect, attn Map) (int, error) {
		used := 0
		for _, p := range pairs {
			if o.MaxPairs > 0 && used >= o.MaxPairs {
				break
			}
			if err := CheckTokens(cfg, p.A, p.B); err != nil {
				return used, fmt.Errorf("temporal: %w", err)
			}
			hooks := &probe.Hooks{Cache: []string{"blocks.*.attn.hook_z"},
				Reduce: []probe.Reduction{{Hook: patternHook, Op: probe.SpanMass, Lo: p.Span[0], Hi: p.Span[1], Rows: []int{-1}}}}
			r, err := m.Forward(ctx, [][]int{p.A, p.B}, probe.Options{Hooks: hooks, Logits: probe.LogitsLast})
			if err != nil {
				return used, fmt.Errorf("temporal: %w", err)
			}
			ld := func(b int) float64 {
				lg := r.LogitsAt(b, -1)
				return float64(lg[p.AnsA]) - float64(lg[p.AnsB])
			}
			ldA, ldB := ld(0), ld(1)
			if ldA-ldB < o.MinGap {
				continue
			}
			used++
			for _, red := range r.Reduced {
				l, err := layerOf(red.Hook)
				if err != nil {
					return used, err
				}
				for h := 0; h < H; h++ {
					attn.Add(l, h, float64(red.Values[h])) // sequence A's last query
				}
			}
			// z of B per layer, [T, H*Dh] (batch index 1).
			zb := make([][]float32, L)
			for l := 0; l < L; l++ {
				a := r.Cache["blocks."+strconv.Itoa(l)+".attn.hook_z"]
				zb[l] = a.Data[len(a.Data)/2:]
			}
			for start := 0; start < len(all); start += o.Batch {
				part := all[start:min(start+o.Batch, len(all))]
				batch := make([][]int, len(part))
				for i := range batch {
					batch[i] = p.A
				}
				edit := headPatch(cfg, part, zb, len(p.A))
				pr, err := m.Forward(ctx, batch, probe.Options{Hooks: &probe.Hooks{Edit: []probe.Edit{edit}}, Logits: probe.LogitsLast})
				if err != nil {
					return used, fmt.Errorf("temporal: %w", err)
				}
				for i, hd := range part {
					lg := pr.LogitsAt(i, -1)
					patched := float64(lg[p.AnsA]) - float64(lg[p.AnsB])
					effect.Add(hd.Layer, hd.Head, PatchEffect(ldA, patched, ldB))
				}
			}
			done++
			if o.Progress != nil {
				o.Progress(min(done, total), total)
			}
		}
		if used > 0 {
			effect.Scale(1 / float64(used))
			attn.Scale(1 / float64(used))
		}
		return used, nil
	}
	tEff, tAttn := sc.detail("temporal_effect"), sc.detail("time_attention")
	nt, err := run(temporal, tEff, tAttn)
	if err != nil {
		return nil, err
	}
	if nt == 0 {
		return nil, fmt.Errorf("temporal: the model separates none of the %d temporal pairs by a logit difference of %.2f", len(temporal), o.MinGap)
	}
	cEff, cAttn := sc.detail("control_effect"), NewMap(L, H)
	nc, err := run(control, cEff, cAttn)
	if err != nil {
		return nil, err
	}
	for i := range sc.Values.Values {
		sc.Values.Values[i] = tEff.Values[i] - math.Max(0, cEff.Values[i])
	}
	sc.setInfo("temporal_pairs", strconv.Itoa(nt)+"/"+strconv.Itoa(len(temporal)))
	sc.setInfo("control_pairs", strconv.Itoa(nc)+"/"+strconv.Itoa(len(control)))
	return sc, nil
}

// headPatch is an edit on every layer's hook_z: batch row i gets head
// heads[i]'s z replaced, at every position, by src[layer] ([T, H*Dh]).
func headPatch(cfg probe.Config, heads []Head, src [][]float32, T int) probe.Edit {
	W := cfg.Heads * cfg.HeadDim
	return probe.Edit{
		Hook: "blocks.*.attn.hook_z",
		Fn: func(b compute.Backend, name string, t compute.Tensor, shape []int) (compute.Tensor, error) {
			l, err := layerOf(name)
			if err != nil {
				return nil, err
			}
			touched := false
			for _, hd := range heads {
				touched = touched || hd.Layer == l
			}
			if !touched {
				return t, nil
			}
			if shape[1] != T {
				return nil, fmt.Errorf("patch %s: %d positions, the source has %d", name, shape[1], T)
			}
			data := b.ToHost(t)
			for i, hd := range heads {
				if hd.Layer != l {
					continue
				}
				off := hd.Head * cfg.HeadDim
				for pos := 0; pos < T; pos++ {
					row := (i*T + pos) * W
					copy(data[row+off:row+off+cfg.HeadDim], src[l][pos*W+off:pos*W+off+cfg.HeadDim])
				}
			}
			return b.FromHost(data, t.Shape()...), nil
		},
	}
}

// CheckTokens says whether every prompt fits the model.
func CheckTokens(cfg probe.Config, prompts ...[]int) error {
	for _, p := range prompts {
		for _, id := range p {
			if id < 0 || id >= cfg.Vocab {
				return fmt.Errorf("token %d outside the vocabulary of %d", id, cfg.Vocab)
			}
		}
	}
	return nil
}
