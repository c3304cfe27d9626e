package tokenizer

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"unicode/utf8"
)

// unigramModel is Hugging Face's Unigram model (Kudo 2018, as
// tokenizers/src/models/unigram implements it): every piece of the
// vocabulary has a log-probability score, and a word is split into the
// pieces whose scores sum highest (Viterbi over the lattice of matching
// pieces). A character no piece covers becomes an unknown node scored
// min_score - 10; consecutive unknowns fuse into one, which byte fallback
// then writes as <0xXX> byte pieces.
type unigramModel struct {
	vocab  map[string]int // piece -> id (the last of duplicates, as tokenizers)
	scores []float64      // by id
	// sorted holds every piece once, in byte order, for prefix search.
	sorted       []string
	unk          int // -1: none
	unkScore     float64
	byteFallback bool
}

// unkPenalty is tokenizers' K_UNK_PENALTY.
const unkPenalty = 10.0

func newUnigram(pieces []string, scores []float64, unk int, byteFallback bool) (*unigramModel, error) {
	if len(pieces) != len(scores) {
		return nil, fmt.Errorf("%d scores for %d pieces", len(scores), len(pieces))
	}
	if unk >= len(pieces) {
		return nil, fmt.Errorf("unknown token id %d outside the %d pieces", unk, len(pieces))
	}
	m := &unigramModel{vocab: make(map[string]int, len(pieces)), scores: scores, unk: unk, byteFallback: byteFallback}
	minScore := math.Inf(1)
	for id, p := range pieces {
		m.vocab[p] = id
		minScore = min(minScore, scores[id])
	}
	m.unkScore = minScore - unkPenalty
	for p := range m.vocab {
		if p != "" {
			m.sorted = append(m.sorted, p)
		}
	}
	sort.Strings(m.sorted)
	return m, nil
}

// prefixes calls f with the length of every piece that s starts with,
// shortest first (the order of tokenizers' trie search).
func (m *unigramModel) prefixes(s string, f func(n int)) {
	lo, hi := 0, len(m.sorted)
	for n := 1; n <= len(s) && lo < hi; n++ {
		p := s[:n]
		// Narrow [lo, hi) to the pieces starting with p.
		lo += sort.Search(hi-lo, func(i int) bool { return m.sorted[lo+i] >= p })
		hi = lo + sort.Search(hi-lo, func(i int) bool { return !strings.HasPrefix(m.sorted[lo+i], p) })
		if lo < hi && m.sorted[lo] == p {
			f(n)
		}
	}
}

// encodeWord appends the ids of w's best segmentation to out.
func (m *unigramModel) encodeWord(w string, out []int) []int {
	if w == "" {
		return out
	}
	type node struct {
		score   float64
		start   int // -1: not reached
		id      int
		reached bool
	}
	nodes := make([]node, len(w)+1)
	nodes[0].reached = true
	for start := 0; start < len(w); {
		_, charLen := utf8.DecodeRuneInString(w[start:])
		if !nodes[start].reached {
			start += charLen
			continue
		}
		here := nodes[start].score
		single := false
		m.prefixes(w[start:], func(n int) {
			id := m.vocab[w[start:start+n]]
			cand := here + m.scores[id]
			t := &nodes[start+n]
			if !t.reached || cand > t.score {
				*t = node{score: cand, start: start, id: id, reached: true}
			}
			if n == charLen {
				single = true
			}
		})
		if !single {
			t := &nodes[start+charLen]
			cand := here + m.unkScore
			if !t.reached || cand > t.score {
				*t = node{score: cand, start: start, id: m.unk, reached: true}
			}
		}
		start += charLen
	}
	// Walk back from the end; unknown runs fuse into one string.
	var pieces []string
	unkRun := ""
	for end := len(w); end > 0; {
		n := nodes[end]
		if m.unk >= 0 && n.id == m.unk {
			unkRun = w[n.start:end] + unkRun
		} else {
			if unkRun != "" {
				pieces = append(pieces, unkRun)
				unkRun = ""
			}
			pieces = append(pieces, w[n.start:end])
		}
		end = n.start
	}
	if unkRun != "" {
		pieces = append(pieces, unkRun)
	}
	for i := len(pieces) - 1; i >= 0; i-- {
		p := pieces[i]
		if id, ok := m.vocab[p]; ok {
			out = append(out, id)
			continue
		}
		if m.byteFallback {
			if ids, ok := m.bytePieces(p); ok {
				out = append(out, ids...)
				continue
			}
		}
		if m.unk >= 0 {
			out = append(out, m.unk)
		}
	}
	return out
}

// bytePieces spells s as <0xXX> pieces, false if one is missing.
func (m *unigramModel) bytePieces(s string) ([]int, bool) {
	ids := make([]int, 0, len(s))
	for i := 0; i < len(s); i++ {
		id, ok := m.vocab[fmt.Sprintf("<0x%02X>", s[i])]
		if !ok {
			return nil, false
		}
		ids = append(ids, id)
	}
	return ids, true
}
