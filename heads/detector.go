package heads

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"

	"github.com/loupe-dev/loupe/probe"
)

// ErrorMeasure is how TransformerLens's head detector compares a head's
// attention pattern A with a 0/1 detection pattern D (both T×T, lower
// triangular).
type ErrorMeasure string

const (
	// Mul is Σ A⊙D / Σ A: the share of the head's attention that falls on
	// the detection pattern (TransformerLens's default).
	Mul ErrorMeasure = "mul"
	// Abs is 1 − mean|A−D|·T = 1 − Σ|A−D|/T, in (−1, 1], 1 a perfect match.
	// (TransformerLens rounds the mean to 3 decimals; Loupe does not.)
	Abs ErrorMeasure = "abs"
)

// PreviousTokenPattern is the detection pattern of a previous-token head:
// D[q][q−1] = 1.
func PreviousTokenPattern(T int) []float32 {
	d := make([]float32, T*T)
	for q := 1; q < T; q++ {
		d[q*T+q-1] = 1
	}
	return d
}

// DuplicateTokenPattern marks, for each query, the earlier positions that
// hold the same token: D[q][k] = 1 when k < q and tokens[k] == tokens[q].
func DuplicateTokenPattern(tokens []int) []float32 {
	T := len(tokens)
	d := make([]float32, T*T)
	for q := 0; q < T; q++ {
		for k := 0; k < q; k++ {
			if tokens[k] == tokens[q] {
				d[q*T+k] = 1
			}
		}
	}
	return d
}

// InductionPattern is the duplicate-token pattern shifted one key to the
// right: D[q][k] = 1 when k ≥ 1, k−1 < q and tokens[k−1] == tokens[q] (the
// token after an earlier copy of the current one). As in TransformerLens,
// the shift keeps the pattern lower triangular, so the current position
// counts when the previous position duplicates it.
func InductionPattern(tokens []int) []float32 {
	T := len(tokens)
	dup := DuplicateTokenPattern(tokens)
	d := make([]float32, T*T)
	for q := 0; q < T; q++ {
		for k := 1; k <= q; k++ {
			d[q*T+k] = dup[q*T+k-1]
		}
	}
	return d
}

// DetectionScore compares one head's attention pattern a (T×T, row q is
// query q) with a detection pattern d, as TransformerLens's
// compute_head_attention_similarity_score does. excludeBOS drops key 0 and
// excludeCurrent the diagonal before comparing (under Mul they are zeroed
// in the attention, so the denominator shrinks too).
func DetectionScore(a, d []float32, T int, excludeBOS, excludeCurrent bool, measure ErrorMeasure) float64 {
	skip := func(q, k int) bool { return (excludeBOS && k == 0) || (excludeCurrent && q == k) }
	switch measure {
	case Abs:
		var s float64
		for q := 0; q < T; q++ {
			for k := 0; k < T; k++ {
				if !skip(q, k) {
					s += math.Abs(float64(a[q*T+k]) - float64(d[q*T+k]))
				}
			}
		}
		return 1 - s/float64(T)
	default:
		var num, den float64
		for q := 0; q < T; q++ {
			for k := 0; k < T; k++ {
				if skip(q, k) {
					continue
				}
				v := float64(a[q*T+k])
				num += v * float64(d[q*T+k])
				den += v
			}
		}
		return num / den
	}
}

// RepeatOptions configure the repeated-random-token task.
type RepeatOptions struct {
	// Len is the length n of the random half (default 50): each sequence
	// is prefix + r + r, r of n random tokens.
	Len int
	// Batch is the number of sequences (default 8).
	Batch int
	// Seed seeds the token draw.
	Seed uint64
	// Vocab lists the tokens to draw from; empty means ids [VocabLo, vocab).
	Vocab []int
	// VocabLo is the first id drawn when Vocab is empty (default: a tenth
	// of the vocabulary up to 1000, which skips the special and byte tokens
	// of common BPE vocabularies).
	VocabLo int
	// Prefix precedes every sequence, normally the BOS token
	// (TransformerLens's to_tokens prepends it). Nil uses the model's BOS
	// when it has one; an empty non-nil slice adds nothing.
	Prefix []int
}

func (o RepeatOptions) withDefaults(cfg probe.Config) RepeatOptions {
	if o.Len <= 0 {
		o.Len = 50
	}
	if o.Batch <= 0 {
		o.Batch = 8
	}
	if o.VocabLo <= 0 {
		o.VocabLo = min(cfg.Vocab/10, 1000)
	}
	if o.Prefix == nil {
		o.Prefix = []int{}
		if cfg.BOS >= 0 {
			o.Prefix = []int{cfg.BOS}
		}
	}
	return o
}

// RepeatedTokens makes the task's sequences: prefix + r + r with r drawn
// uniformly (with replacement) from the vocabulary. It returns the
// sequences and the length of the prefix.
func RepeatedTokens(cfg probe.Config, o RepeatOptions) ([][]int, int, error) {
	o = o.withDefaults(cfg)
	pool := o.Vocab
	if len(pool) == 0 {
		if o.VocabLo >= cfg.Vocab {
			return nil, 0, fmt.Errorf("repeated tokens: vocabulary start %d is past the vocabulary of %d", o.VocabLo, cfg.Vocab)
		}
		for id := o.VocabLo; id < cfg.Vocab; id++ {
			pool = append(pool, id)
		}
	}
	if n := len(o.Prefix) + 2*o.Len; cfg.MaxPos > 0 && n > cfg.MaxPos {
		return nil, 0, fmt.Errorf("repeated tokens: %d tokens exceed the model's context of %d", n, cfg.MaxPos)
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x5eed))
	out := make([][]int, o.Batch)
	for b := range out {
		r := make([]int, o.Len)
		for i := range r {
			r[i] = pool[rng.IntN(len(pool))]
		}
		s := append(append(append([]int{}, o.Prefix...), r...), r...)
		out[b] = s
	}
	return out, len(o.Prefix), nil
}

// DetectorOptions configure Detect.
type DetectorOptions struct {
	RepeatOptions
	// ExcludeBOS and ExcludeCurrent are TransformerLens's exclude_bos and
	// exclude_current_token (both false by default, as there).
	ExcludeBOS, ExcludeCurrent bool
	// Measure is the error measure (Mul by default, as there).
	Measure ErrorMeasure

	// materialise runs every layer through the scores → softmax → mix path
	// (tests compare it with the fused path).
	materialise bool
}

// Detect scores every head as a previous-token, duplicate-token and
// induction head with TransformerLens's head detector on repeated random
// token sequences, averaging the per-sequence scores as detect_head does
// for a list of sequences. It returns the three scores in that order.
//
// The values are TransformerLens's scores. Under Mul a perfect duplicate or
// induction head scores only n/T ≈ 0.5 (the first half has nothing to
// match), so the detail "second_half" gives the mean attention that a query
// of the repeated half puts on the pattern, and the labels ask for 0.4 of
// it (ARENA's detector threshold), a threshold of 0.4·n/T on the score.
// Previous-token heads are labelled at 0.4. Abs scores carry no labels.
func Detect(ctx context.Context, m *probe.Model, o DetectorOptions) ([]*Score, error) {
	cfg := m.Config
	o.RepeatOptions = o.RepeatOptions.withDefaults(cfg)
	if o.Measure == "" {
		o.Measure = Mul
	}
	if o.Measure != Mul && o.Measure != Abs {
		return nil, fmt.Errorf("detector: error measure %q (want mul or abs)", o.Measure)
	}
	seqs, pre, err := RepeatedTokens(cfg, o.RepeatOptions)
	if err != nil {
		return nil, err
	}
	T := len(seqs[0])
	n := o.Len
	L, H := cfg.Layers, cfg.Heads
	mk := func(name string, thr float64, src string) *Score {
		return &Score{Name: name, Values: NewMap(L, H), Threshold: thr, Source: src}
	}
	prev := mk(ScorePreviousToken, 0.4, "TransformerLens head_detector previous_token_head ("+string(o.Measure)+"); threshold 0.4 (ARENA's detectors)")
	dup := mk(ScoreDuplicate, 0.4, "TransformerLens head_detector duplicate_token_head ("+string(o.Measure)+"); label: second_half ≥ 0.4 (ARENA)")
	ind := mk(ScoreInduction, 0.4, "TransformerLens head_detector induction_head ("+string(o.Measure)+"); label: second_half ≥ 0.4 (ARENA)")
	// Each score is a sum of attention over cells of the T×T pattern, so the
	// fused attention computes it per head as key masses (Reduction.KeyMass)
	// without building the pattern. For query q of sequence b the cells are
	// those of PreviousTokenPattern, DuplicateTokenPattern and
	// InductionPattern in row q.
	occ := make([][][]int, len(seqs)) // earlier positions of each position's token
	for b, s := range seqs {
		seen := map[int][]int{}
		occ[b] = make([][]int, T)
		for q, tok := range s {
			occ[b][q] = slices.Clone(seen[tok])
			seen[tok] = append(seen[tok], q)
		}
	}
	skip := func(q, k int) bool { return (o.ExcludeBOS && k == 0) || (o.ExcludeCurrent && q == k) }
	cells := [3]func(b, q int) []int{
		func(b, q int) []int {
			if q < 1 {
				return nil
			}
			return []int{q - 1}
		},
		func(b, q int) []int { return occ[b][q] },
		func(b, q int) []int {
			ks := make([]int, len(occ[b][q]))
			for i, j := range occ[b][q] {
				ks[i] = j + 1
			}
			return ks
		},
	}
	kept := func(cell func(b, q int) []int) func(b, q int) []int {
		return func(b, q int) []int {
			var ks []int
			for _, k := range cell(b, q) {
				if !skip(q, k) {
					ks = append(ks, k)
				}
			}
			return ks
		}
	}
	// The denominator Σ A over the cells kept is the mass on keys [lo, q]
	// (or [lo, q) without the current token), summed directly rather than
	// as T minus the skipped mass, which would cancel on heads that put
	// nearly everything on BOS.
	kept0 := probe.Reduction{Hook: patternHook, Op: probe.SpanMass, Hi: 1, HiRelative: true, SumRows: true}
	if o.ExcludeBOS {
		kept0.Lo = 1
	}
	if o.ExcludeCurrent {
		kept0.Hi = 0
	}
	var half []int
	for q := pre + n; q < T; q++ {
		half = append(half, q)
	}
	mass := func(keys func(b, q int) []int, rows []int) probe.Reduction {
		return probe.Reduction{Hook: patternHook, Op: probe.KeyMass, Keys: keys, Rows: rows, SumRows: true}
	}
	reds := []probe.Reduction{
		mass(kept(cells[0]), nil), mass(kept(cells[1]), nil), mass(kept(cells[2]), nil),
		kept0, mass(cells[1], half), mass(cells[2], half),
	}
	// nCells[b][i] counts pattern i's cells that are not skipped (the Abs
	// measure needs Σ D).
	nCells := make([][3]float64, len(seqs))
	for b := range seqs {
		for i, c := range cells {
			for q := 0; q < T; q++ {
				nCells[b][i] += float64(len(kept(c)(b, q)))
			}
		}
	}
	hooks := &probe.Hooks{Reduce: reds}
	if o.materialise {
		hooks.Edit = []probe.Edit{identityPatternEdit()}
	}
	r, err := m.Forward(ctx, seqs, probe.Options{Hooks: hooks, Logits: probe.LogitsNone})
	if err != nil {
		return nil, fmt.Errorf("detector: %w", err)
	}
	nb := float64(len(seqs))
	for i := 0; i+len(reds) <= len(r.Reduced); i += len(reds) {
		l, err := layerOf(r.Reduced[i].Hook)
		if err != nil {
			return nil, fmt.Errorf("detector: %w", err)
		}
		v := func(j, bh int) float64 { return float64(r.Reduced[i+j].Values[bh]) }
		for b := range seqs {
			for h := 0; h < H; h++ {
				bh := b*H + h
				den := v(3, bh)
				for j, sc := range []*Score{prev, dup, ind} {
					num := v(j, bh)
					var score float64
					if o.Measure == Abs {
						// Σ|A−D| = Σ_{D=0} A + Σ_{D=1} (1−A), as A ≤ 1.
						score = 1 - (den+nCells[b][j]-2*num)/float64(T)
					} else {
						score = num / den
					}
					sc.Values.Add(l, h, score/nb)
				}
				norm := float64(n) * nb
				dup.detail("second_half").Add(l, h, v(4, bh)/norm)
				ind.detail("second_half").Add(l, h, v(5, bh)/norm)
			}
		}
	}
	for _, sc := range []*Score{prev, dup, ind} {
		sc.setInfo("sequences", strconv.Itoa(len(seqs)))
		sc.setInfo("random_len", strconv.Itoa(n))
		sc.setInfo("prefix_len", strconv.Itoa(pre))
		sc.setInfo("measure", string(o.Measure))
	}
	// A perfect duplicate or induction head scores n/T under Mul; the
	// labels ask for 0.4 of the repeated half's attention, 0.4·n/T.
	dup.Threshold, ind.Threshold = 0.4*float64(n)/float64(T), 0.4*float64(n)/float64(T)
	if o.Measure == Abs {
		for _, sc := range []*Score{prev, dup, ind} {
			sc.Threshold = math.NaN()
		}
	}
	return []*Score{prev, dup, ind}, nil
}
