package codebook

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/loupe-dev/loupe/probe"
	"github.com/loupe-dev/loupe/probe/tokenizer"
)

// The paper's TinyStories result (Tamkin, Taufeeque and Goodman 2023;
// the reference's tutorials/code_intervention.ipynb): codes that stand for
// a topic are activated at every position of a generation, and the
// fraction of generations that mention the topic rises ("dragon" from
// 2.5% to 65% of 40 samples). This file holds the two halves: finding a
// pattern's codes as the reference's code search does
// (code_search_utils.get_codes_from_pattern), and generating with codes
// activated as its generate_with_codes does, counted as its tutorial
// counts.

// CodeActs is the reference's code-search cache: token sequences, their
// text, and the ids every codebook chose at every position.
type CodeActs struct {
	Seqs [][]int
	// Text is each sequence's tokens' texts concatenated; Ends[s][p] is
	// the byte offset where token p's text ends (the reference's
	// token_byte_pos, a cumulative sum of the tokens' lengths).
	Text []string
	Ends [][]int
	// IDs[site][s] holds sequence s's ids, [T, G, k] flattened.
	IDs map[string][][]int32
	// Counts[site][g*C+id] is how many positions chose the code (the
	// reference's act_count_ft_tkns).
	Counts map[string][]int
}

// CollectCodeActs runs each sequence through the model with set's
// codebooks (every position, BOS included, as a model fine-tuned with its
// codebooks runs) and keeps the ids. tok gives the tokens' texts.
func CollectCodeActs(ctx context.Context, m *probe.Model, set *Set, tok *tokenizer.Tokenizer, seqs [][]int) (*CodeActs, error) {
	a := &CodeActs{Seqs: seqs, IDs: map[string][][]int32{}, Counts: map[string][]int{}}
	var cache []string
	for _, l := range set.Layers {
		cache = append(cache, IDsHook(l.Hook))
		a.Counts[l.Hook] = make([]int, l.Groups*l.NumCodes)
	}
	for i, seq := range seqs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		sp, err := NewSplice(set)
		if err != nil {
			return nil, err
		}
		r, err := m.Forward(ctx, [][]int{seq}, probe.Options{Logits: probe.LogitsNone,
			Hooks: &probe.Hooks{Edit: sp.Edits(), Cache: cache}})
		if err != nil {
			return nil, fmt.Errorf("code search: sequence %d: %w", i, err)
		}
		for _, l := range set.Layers {
			data := r.Cache[IDsHook(l.Hook)].Data
			ids := make([]int32, len(data))
			for j, v := range data {
				ids[j] = int32(v)
				if v >= 0 {
					a.Counts[l.Hook][(j/l.K)%l.Groups*l.NumCodes+int(v)]++
				}
			}
			a.IDs[l.Hook] = append(a.IDs[l.Hook], ids)
		}
		var b strings.Builder
		ends := make([]int, len(seq))
		for p, id := range seq {
			b.WriteString(tok.TokenText(id))
			ends[p] = b.Len()
		}
		a.Text = append(a.Text, b.String())
		a.Ends = append(a.Ends, ends)
	}
	return a, nil
}

// TokenPos is one position of one cached sequence.
type TokenPos struct{ Seq, Pos int }

// Matches are the positions of the tokens where a match of re starts
// (the reference's search_re then byte_id_to_token_pos_id: the token
// whose text holds the match's first byte; where re has a group, the
// first group's), each once, in order.
func (a *CodeActs) Matches(re *regexp.Regexp) []TokenPos {
	var out []TokenPos
	g := 0 // search_re wraps a pattern without "(" in a group: the whole match
	if re.NumSubexp() > 0 {
		g = 1
	}
	for s, text := range a.Text {
		for _, m := range re.FindAllStringSubmatchIndex(text, -1) {
			loc := m[2*g : 2*g+2]
			if loc[0] < 0 || loc[0] == loc[1] {
				continue // the reference drops empty matches
			}
			// searchsorted(ends, start, side="right"): tokens ending at or
			// before the match's start come before it.
			p := sort.Search(len(a.Ends[s]), func(i int) bool { return a.Ends[s][i] > loc[0] })
			if n := len(out); n > 0 && out[n-1] == (TokenPos{s, p}) {
				continue
			}
			out = append(out, TokenPos{s, p})
		}
	}
	return out
}

// PatternCode is a code found for a pattern, with the reference's
// measures: Precision = its firings on the pattern's positions over all
// its firings; Recall = those firings over the pattern's positions.
type PatternCode struct {
	Hook      string  `json:"hook"`
	Group     int     `json:"group"`
	Code      int     `json:"code"`
	Precision float64 `json:"precision"`
	Recall    float64 `json:"recall"`
	Acts      int     `json:"acts"`
}

// String is HOOK[G]:ID (HOOK:ID for a single group), as --code takes it.
func (c PatternCode) String() string {
	if strings.HasSuffix(c.Hook, "attn.hook_z") {
		return fmt.Sprintf("%s[%d]:%d", c.Hook, c.Group, c.Code)
	}
	return fmt.Sprintf("%s:%d", c.Hook, c.Code)
}

// CodePrecisionRecall is the reference's get_code_precision_and_recall for
// one codebook group: the codes chosen (in any of the k slots) at the
// positions pos, those of recall above 1%, sorted by precision, highest
// first (ties by code id).
func (a *CodeActs) CodePrecisionRecall(set *Set, hook string, group int, pos []TokenPos) []PatternCode {
	l := set.Layer(hook)
	if l == nil || len(pos) == 0 {
		return nil
	}
	hits := map[int]int{}
	for _, tp := range pos {
		ids := a.IDs[hook][tp.Seq]
		base := (tp.Pos*l.Groups + group) * l.K
		for _, id := range ids[base : base+l.K] {
			if id >= 0 {
				hits[int(id)]++
			}
		}
	}
	var out []PatternCode
	for code, n := range hits {
		rec := float64(n) / float64(len(pos))
		if rec <= 0.01 {
			continue
		}
		acts := a.Counts[hook][group*l.NumCodes+code]
		out = append(out, PatternCode{Hook: hook, Group: group, Code: code, Recall: rec, Acts: acts,
			Precision: float64(n) / float64(acts)})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Precision != out[j].Precision {
			return out[i].Precision > out[j].Precision
		}
		return out[i].Code < out[j].Code
	})
	return out
}

// After are, in every sequence where re matches, the positions from the
// token of its first match to the sequence's end: where a passage is about
// the topic. Codes precise there are topic codes in the tutorial's sense
// ("codes that activate many different times on passages that describe a
// particular topic", its webapp's Topic Code page), found over the whole
// corpus rather than one example at a time.
func (a *CodeActs) After(re *regexp.Regexp) []TokenPos {
	var out []TokenPos
	first := -1
	for _, tp := range a.Matches(re) {
		if tp.Seq == first {
			continue
		}
		first = tp.Seq
		for p := tp.Pos; p < len(a.Seqs[tp.Seq]); p++ {
			out = append(out, TokenPos{tp.Seq, p})
		}
	}
	return out
}

// PatternCodes is the reference's get_codes_from_pattern: per codebook
// group, of the topk most precise codes on the pattern's positions those
// of precision above minPrecision (its defaults: 5 and 0.5). It returns
// them and the number of matched positions.
func (a *CodeActs) PatternCodes(set *Set, re *regexp.Regexp, topk int, minPrecision float64) ([]PatternCode, int) {
	pos := a.Matches(re)
	return a.CodesAt(set, pos, topk, minPrecision), len(pos)
}

// CodesAt is PatternCodes' selection on given positions.
func (a *CodeActs) CodesAt(set *Set, pos []TokenPos, topk int, minPrecision float64) []PatternCode {
	var out []PatternCode
	for _, l := range set.Layers {
		for g := range l.Groups {
			codes := a.CodePrecisionRecall(set, l.Hook, g, pos)
			for i, c := range codes {
				if i >= topk {
					break
				}
				if c.Precision > minPrecision {
					out = append(out, c)
				}
			}
		}
	}
	return out
}

// ActivateCodes turns codes into interventions as the reference's
// parse_topic_codes_string and patch_in_codes do with pos=None: at every
// position, a group's codes take its last slots (the first code the k-th
// slot, the next the one before: the least similar chosen codes give way).
// A group given more codes than k keeps its first k.
func ActivateCodes(set *Set, codes []PatternCode) ([]Intervention, error) {
	var out []Intervention
	idx := map[[2]int]int{}
	for _, c := range codes {
		l := set.Layer(c.Hook)
		if l == nil {
			return nil, fmt.Errorf("activate %s: no codebook at %s", c, c.Hook)
		}
		li := slices.Index(set.Layers, l)
		key := [2]int{li, c.Group}
		i, ok := idx[key]
		if !ok {
			i = len(out)
			idx[key] = i
			out = append(out, Intervention{Hook: c.Hook, Group: c.Group, AtEnd: true})
		}
		if len(out[i].Force) < l.K {
			out[i].Force = append(out[i].Force, int32(c.Code))
		}
	}
	return out, nil
}

// TopicRun is the tutorial's measure for one set of activated codes.
type TopicRun struct {
	Pattern string `json:"pattern"`
	// Codes activated (none: the unsteered baseline).
	Codes []PatternCode `json:"codes"`
	// PerPrompt[i] is the fraction of prompt i's samples that match.
	PerPrompt []float64 `json:"per_prompt"`
	// Fraction is their mean (the tutorial's "Avg Steering (%)" / 100).
	Fraction float64 `json:"fraction"`
	// Samples holds the generations, prompt by prompt.
	Samples [][]string `json:"samples,omitempty"`
}

// TopicOptions is how generations are sampled. The tutorial's: the four
// prompts of TutorialPrompts, 10 samples each, 200 new tokens, temperature
// 1, no top-k or top-p, stopping at the end-of-text token.
type TopicOptions struct {
	Prompts     []string
	Samples     int
	MaxTokens   int
	Temperature float64
	Seed        uint64
}

// TutorialPrompts are the reference tutorial's prompts ("" is BOS alone).
var TutorialPrompts = []string{"", "Once upon a time,", "Once there was a", "A long time ago,"}

// Generate samples opt.Samples continuations of every prompt with ivs in
// force (nil: none), each as the tutorial decodes it (the prompt and the
// new tokens, BOS dropped). bos starts every prompt and stops a
// generation.
func Generate(ctx context.Context, m *probe.Model, set *Set, tok *tokenizer.Tokenizer, bos int, ivs []Intervention, opt TopicOptions) ([][]string, error) {
	out := make([][]string, len(opt.Prompts))
	for i, prompt := range opt.Prompts {
		ids := []int{bos}
		if prompt != "" {
			enc, err := tok.Encode(prompt, false)
			if err != nil {
				return nil, fmt.Errorf("prompt %q: %w", prompt, err)
			}
			ids = append(ids, enc...)
		}
		for s := range opt.Samples {
			sp, err := NewSplice(set, ivs...)
			if err != nil {
				return nil, err
			}
			gen, err := m.Generate(ctx, ids, probe.GenerateOptions{MaxTokens: opt.MaxTokens, Stop: []int{bos},
				Sampling: probe.Sampling{Temperature: opt.Temperature, Seed: opt.Seed + uint64(i*opt.Samples+s)},
				Hooks:    &probe.Hooks{Edit: sp.Edits()}})
			if err != nil {
				return nil, fmt.Errorf("prompt %q, sample %d: %w", prompt, s, err)
			}
			out[i] = append(out[i], tok.Decode(append(slices.Clone(ids[1:]), gen...), false))
		}
	}
	return out, nil
}

// TopicFraction is the tutorial's count: per prompt, the fraction of
// samples in which re finds a match in the lower-cased text; and their
// mean over prompts.
func TopicFraction(samples [][]string, re *regexp.Regexp) (perPrompt []float64, mean float64) {
	for _, ss := range samples {
		n := 0
		for _, s := range ss {
			if re.MatchString(strings.ToLower(s)) {
				n++
			}
		}
		f := float64(n) / float64(max(len(ss), 1))
		perPrompt = append(perPrompt, f)
		mean += f / float64(len(samples))
	}
	return perPrompt, mean
}
