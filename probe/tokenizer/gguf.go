package tokenizer

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/loupe-dev/loupe/probe/weights"
)

// GGUF token types (tokenizer.ggml.token_type).
const (
	ggufNormal      = 1
	ggufUnknown     = 2
	ggufControl     = 3
	ggufUserDefined = 4
	ggufUnused      = 5
	ggufByte        = 6
)

// ggufFamily is what a tokenizer.ggml.pre name stands for in Hugging Face
// terms: the pre-tokenizer (and normalizer, and BPE option) of the
// tokenizer.json the GGUF was converted from.
type ggufFamily struct {
	pre          []preStep
	normalizer   func(string) string
	ignoreMerges bool
}

// Pre-tokenizer patterns of the tokenizer.json files, as Hugging Face writes
// them (Oniguruma syntax).
const (
	llama3Split = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}` +
		`| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	qwen2Split = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}` +
		`| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

func mustSplit(pattern string) preStep {
	st, err := newSplit(component{Pattern: &patternJSON{Regex: &pattern}}, "Isolated", false)
	if err != nil {
		panic(err)
	}
	return st
}

// ggufPre maps tokenizer.ggml.pre, llama.cpp's name for the pre-tokenizer.
// llama.cpp writes the GPT-2 family as GPT-2's pattern and the digits family
// as "\p{N}" then GPT-2's pattern, which is Hugging Face's
// Sequence[Digits(individual_digits), ByteLevel]. The Llama 3 family sets
// ignore_merges as its tokenizer.json does (and llama.cpp); Qwen 2's
// tokenizer.json has an NFC normalizer, which llama.cpp leaves out but this
// package keeps, to give the ids of the tokenizer.json.
var ggufPre = func() map[string]ggufFamily {
	gpt2 := ggufFamily{pre: []preStep{byteLevel{useRegex: true}}}
	digitsGPT2 := ggufFamily{pre: []preStep{digits{individual: true}, byteLevel{useRegex: true}}}
	llama3 := ggufFamily{pre: []preStep{mustSplit(llama3Split), byteLevel{}}, ignoreMerges: true}
	qwen2 := ggufFamily{pre: []preStep{mustSplit(qwen2Split), byteLevel{}}, normalizer: nfc}
	m := map[string]ggufFamily{}
	for _, n := range []string{"gpt2", "gpt-2", "mpt", "olmo", "jais"} {
		m[n] = gpt2
	}
	for _, n := range []string{"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"} {
		m[n] = digitsGPT2
	}
	for _, n := range []string{"llama3", "llama-v3", "llama-bpe", "falcon3"} {
		m[n] = llama3
	}
	m["qwen2"] = qwen2
	return m
}()

// FromVocab builds the tokenizer a GGUF file carries in its tokenizer.ggml.*
// metadata. Only byte-level BPE vocabularies (tokenizer.ggml.model "gpt2")
// are supported, with the pre-tokenizers listed in ggufPre. Control tokens
// (type 3) become special added tokens and user-defined ones (type 4) plain
// added tokens, matched whole in the text as llama.cpp and transformers do.
// Encode's addSpecial adds BOS / EOS as add_bos_token / add_eos_token say.
func FromVocab(v *weights.Vocab) (*Tokenizer, error) {
	if v == nil {
		return nil, errors.New("tokenizer: GGUF vocab: nil")
	}
	src := "GGUF vocab (tokenizer.ggml.model " + v.Model + ", pre " + v.Pre + ")"
	t, err := fromVocab(v, src)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", src, err)
	}
	return t, nil
}

func fromVocab(v *weights.Vocab, src string) (*Tokenizer, error) {
	switch v.Model {
	case "gpt2":
	case "llama":
		if v.Arch == "gemma3" {
			return fromGemma(v, src)
		}
		return fromSentencePiece(v, src)
	default:
		return nil, fmt.Errorf("tokenizer model %q is not supported (only \"gpt2\", byte-level BPE, and \"llama\", SentencePiece BPE)", v.Model)
	}
	fam, ok := ggufPre[v.Pre]
	if !ok {
		var names []string
		for k := range ggufPre {
			names = append(names, k)
		}
		sort.Strings(names)
		return nil, fmt.Errorf("pre-tokenizer %q is not supported (supported: %s)", v.Pre, strings.Join(names, ", "))
	}
	if len(v.Tokens) == 0 {
		return nil, errors.New("no tokens")
	}
	if len(v.TokenTypes) != 0 && len(v.TokenTypes) != len(v.Tokens) {
		return nil, fmt.Errorf("%d token types for %d tokens", len(v.TokenTypes), len(v.Tokens))
	}
	vocab := make(map[string]int, len(v.Tokens))
	for id, s := range v.Tokens {
		if _, dup := vocab[s]; !dup {
			vocab[s] = id
		}
	}
	merges := make([][2]string, len(v.Merges))
	for i, m := range v.Merges {
		a, b, ok := strings.Cut(m, " ")
		if !ok || strings.Contains(b, " ") {
			return nil, fmt.Errorf("merge %d %q is not two tokens", i, m)
		}
		merges[i] = [2]string{a, b}
	}
	model, err := newBPE(vocab, merges, "", "", "")
	if err != nil {
		return nil, err
	}
	model.ignoreMerges = fam.ignoreMerges
	t := &Tokenizer{source: src, model: model, pre: fam.pre, normalizer: fam.normalizer,
		decoder: byteLevelDecoder{}, bos: -1, eos: -1}
	for id, ty := range v.TokenTypes {
		switch ty {
		case ggufControl:
			t.added = append(t.added, &addedToken{id: id, content: v.Tokens[id], special: true})
		case ggufUserDefined:
			t.added = append(t.added, &addedToken{id: id, content: v.Tokens[id]})
		}
	}
	return t, t.finishGGUF(v)
}

// finishGGUF completes a tokenizer built from a GGUF vocabulary: ids, BOS,
// EOS, and what addSpecial adds.
func (t *Tokenizer) finishGGUF(v *weights.Vocab) error {
	t.finish()
	valid := func(id int) bool { return id >= 0 && id < len(v.Tokens) }
	if valid(v.BOS) {
		t.bos = v.BOS
	}
	if valid(v.EOS) {
		t.eos = v.EOS
	}
	if v.AddBOS {
		if t.bos < 0 {
			return errors.New("add_bos_token is set but there is no BOS token")
		}
		t.prefix = []int{t.bos}
	}
	if v.AddEOS {
		if t.eos < 0 {
			return errors.New("add_eos_token is set but there is no EOS token")
		}
		t.suffix = []int{t.eos}
	}
	return nil
}

// fromSentencePiece builds the tokenizer of a SentencePiece BPE vocabulary
// (tokenizer.ggml.model "llama": Llama 2, Mistral, TinyLlama, ...) as
// transformers converts one (convert_gguf_tokenizer, LlamaTokenizer): BPE
// with byte fallback over the pieces, merges from the file or, when it has
// none, regenerated from the scores (generateMerges); spaces written as '▁'
// by a Metaspace pre-tokenizer that prepends one at the start of the text
// (prepend_scheme "first"); the decoder undoing both. Control and unknown
// tokens are special added tokens, user-defined ones plain added tokens.
// tokenizer.ggml.add_space_prefix is taken to be true (weights.Vocab does
// not carry it).
func fromSentencePiece(v *weights.Vocab, src string) (*Tokenizer, error) {
	if len(v.Tokens) == 0 {
		return nil, errors.New("no tokens")
	}
	if len(v.TokenTypes) != 0 && len(v.TokenTypes) != len(v.Tokens) {
		return nil, fmt.Errorf("%d token types for %d tokens", len(v.TokenTypes), len(v.Tokens))
	}
	vocab := make(map[string]int, len(v.Tokens))
	for id, s := range v.Tokens {
		vocab[s] = id // the last of duplicates, as a Python dict
	}
	var merges [][2]string
	if len(v.Merges) > 0 {
		for i, m := range v.Merges {
			a, b, ok := strings.Cut(m, " ")
			if !ok || strings.Contains(b, " ") {
				return nil, fmt.Errorf("merge %d %q is not two tokens", i, m)
			}
			merges = append(merges, [2]string{a, b})
		}
	} else {
		if len(v.Scores) != len(v.Tokens) {
			return nil, fmt.Errorf("no merges, and %d scores for %d tokens", len(v.Scores), len(v.Tokens))
		}
		merges = generateMerges(v.Tokens, v.Scores, vocab)
	}
	model, err := newBPE(vocab, merges, "", "", "")
	if err != nil {
		return nil, err
	}
	model.byteFallback, model.fuseUnk = true, true
	const sp = "\u2581"
	t := &Tokenizer{source: src, model: model, bos: -1, eos: -1,
		pre: []preStep{metaspace{replacement: sp, prepend: "first"}},
		decoder: sequenceDecoder{
			replaceDecoder{func(s string) string { return strings.ReplaceAll(s, sp, " ") }},
			byteFallbackDecoder{}, fuseDecoder{}, stripDecoder{content: " ", start: 1},
		},
	}
	for id, ty := range v.TokenTypes {
		switch {
		case ty == ggufControl || ty == ggufUnknown || id == v.UNK:
			t.added = append(t.added, &addedToken{id: id, content: v.Tokens[id], special: true})
		case ty == ggufUserDefined:
			t.added = append(t.added, &addedToken{id: id, content: v.Tokens[id]})
		}
	}
	return t, t.finishGGUF(v)
}

// generateMerges rebuilds BPE merges from SentencePiece scores as
// transformers' generate_merges does: every split of every piece into two
// pieces of the vocabulary is a merge, ranked by the score of the piece it
// makes (highest first), then by the lengths of its two parts (longest
// first); ties keep vocabulary order.
func generateMerges(tokens []string, scores []float32, vocab map[string]int) [][2]string {
	type cand struct {
		l, r   string
		score  float32
		nl, nr int // lengths in characters
	}
	var all []cand
	seen := make(map[string]bool, len(tokens))
	score := make(map[string]float32, len(tokens))
	for i, t := range tokens {
		score[t] = scores[i] // the last of duplicates, as a Python dict
	}
	for _, t := range tokens {
		if seen[t] {
			continue
		}
		seen[t] = true
		var local []cand
		n := utf8.RuneCountInString(t)
		k := 0
		for i := range t {
			if i == 0 {
				continue
			}
			k++
			l, r := t[:i], t[i:]
			if _, ok := vocab[l]; !ok {
				continue
			}
			if _, ok := vocab[r]; !ok {
				continue
			}
			local = append(local, cand{l, r, score[t], k, n - k})
		}
		sort.SliceStable(local, func(a, b int) bool {
			if vocab[local[a].l] != vocab[local[b].l] {
				return vocab[local[a].l] < vocab[local[b].l]
			}
			return vocab[local[a].r] < vocab[local[b].r]
		})
		all = append(all, local...)
	}
	sort.SliceStable(all, func(a, b int) bool {
		x, y := all[a], all[b]
		if x.score != y.score {
			return x.score > y.score
		}
		if x.nl != y.nl {
			return x.nl > y.nl
		}
		return x.nr > y.nr
	})
	out := make([][2]string, len(all))
	for i, c := range all {
		out[i] = [2]string{c.l, c.r}
	}
	return out
}

// fromGemma builds Gemma's tokenizer from its GGUF vocabulary as
// transformers' GemmaConverter builds Gemma's tokenizer.json from the
// SentencePiece model: BPE with byte fallback and fuse_unk over the pieces,
// its merges regenerated from the scores (generateMerges, with <pad>,
// <eos>, <bos> scored 0); spaces written as '▁' by a normalizer, no prefix
// space; the decoder undoing it (Replace, ByteFallback, Fuse). llama.cpp's
// converter writes the pieces of spaces only as spaces, and they are turned
// back into '▁' runs, as transformers' GGUF reader does. Control tokens
// are special added tokens; user-defined ones (runs of newlines, of
// spaces) plain added tokens matched in the normalized text; BOS is
// prepended as add_bos_token says.
//
// transformers' own GGUF path (GGUFGemmaConverter) builds a Unigram model
// over these scores instead. Gemma's pieces are scored by BPE merge rank,
// not log-probability, so that splits words far more finely than Gemma's
// tokenizer does (30 tokens for a 16-token sentence); Loupe follows
// Gemma's tokenizer.
func fromGemma(v *weights.Vocab, src string) (*Tokenizer, error) {
	if len(v.Tokens) == 0 {
		return nil, errors.New("no tokens")
	}
	if len(v.Scores) != len(v.Tokens) {
		return nil, fmt.Errorf("%d scores for %d tokens", len(v.Scores), len(v.Tokens))
	}
	if len(v.TokenTypes) != 0 && len(v.TokenTypes) != len(v.Tokens) {
		return nil, fmt.Errorf("%d token types for %d tokens", len(v.TokenTypes), len(v.Tokens))
	}
	const sp = "\u2581"
	pieces := append([]string(nil), v.Tokens...)
	scores := append([]float32(nil), v.Scores...)
	for i, t := range pieces {
		if strings.Contains(t, " ") && strings.TrimSpace(t) == "" {
			pieces[i] = strings.Repeat(sp, utf8.RuneCountInString(t))
		}
	}
	for i := 0; i < 3 && i < len(scores); i++ {
		scores[i] = 0 // GemmaConverter.vocab: <pad>, <eos>, <bos>
	}
	// Membership for the merges: every piece, and "\t" as <0x09> when
	// the vocabulary has no tab (older Gemma vocabularies).
	member := make(map[string]int, len(pieces)+1)
	for id, p := range pieces {
		member[p] = id
	}
	vocab := member
	if _, ok := member["\t"]; !ok {
		if id, ok := member["<0x09>"]; ok {
			member["\t"] = id
			vocab = make(map[string]int, len(pieces))
			for id, p := range pieces {
				vocab[p] = id
			}
			delete(vocab, "<0x09>")
			vocab["\t"] = id
			pieces[id], scores[id] = "\t", 0
		}
	}
	merges := generateMerges(pieces, scores, member)
	unk := ""
	if v.UNK >= 0 && v.UNK < len(pieces) {
		unk = pieces[v.UNK]
	}
	model, err := newBPE(vocab, merges, unk, "", "")
	if err != nil {
		return nil, err
	}
	model.byteFallback, model.fuseUnk = true, true
	t := &Tokenizer{source: src, model: model, bos: -1, eos: -1,
		normalizer: func(s string) string { return strings.ReplaceAll(s, " ", sp) },
		decoder: sequenceDecoder{
			replaceDecoder{func(s string) string { return strings.ReplaceAll(s, sp, " ") }},
			byteFallbackDecoder{}, fuseDecoder{},
		},
	}
	for id, ty := range v.TokenTypes {
		switch {
		case ty == ggufControl || ty == ggufUnknown || id == v.UNK:
			t.added = append(t.added, &addedToken{id: id, content: v.Tokens[id], special: true})
		case ty == ggufUserDefined:
			t.added = append(t.added, &addedToken{id: id, content: pieces[id], normalized: true})
		}
	}
	return t, t.finishGGUF(v)
}
