package tokenizer

import (
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Tokenizer turns text into token ids and back. It is safe for concurrent
// use.
type Tokenizer struct {
	source string // the file or vocabulary it was built from, for messages

	model *bpeModel
	// idToken[id] is the token string of every id (model vocabulary and
	// added tokens); "" where an id has none.
	idToken []string

	added      []*addedToken // all added tokens, by id
	addedByID  map[int]*addedToken
	raw        *matcher // added tokens matched before normalization
	normalized *matcher // added tokens matched in the normalized text

	normalizer func(string) string // nil: none
	pre        []preStep
	// lastByteLevel is set when the last pre-tokenizer is ByteLevel and the
	// model can take raw bytes (bpeModel.encodeBytes): the common case,
	// which then skips spelling words in the byte-level alphabet.
	lastByteLevel *byteLevel
	decoder       decoder // nil: tokens joined with spaces
	// Ids put around an encoding when addSpecial is set.
	prefix, suffix []int

	bos, eos int
}

// Encode returns the token ids of text. With addSpecial it adds what the
// tokenizer's post-processor adds (for a GGUF vocabulary: BOS and/or EOS as
// tokenizer.ggml.add_bos_token / add_eos_token say). Added tokens written in
// the text, such as "<|im_start|>", are always recognised, whatever
// addSpecial says, as in Hugging Face's tokenizers. Invalid UTF-8 in text is
// read as U+FFFD (one per maximal invalid sequence), since Hugging Face only
// ever sees valid strings.
//
// The error is reserved for failures of the model; with the tokenizers this
// package builds today Encode never returns one.
func (t *Tokenizer) Encode(text string, addSpecial bool) ([]int, error) {
	text = validUTF8(text)
	var ids []int
	if addSpecial {
		ids = append(ids, t.prefix...)
	}
	var segs []segment
	segs = t.raw.split(text, segs)
	var pieces []string
	for k, sg := range segs {
		if sg.tok != nil {
			ids = append(ids, sg.tok.id)
			continue
		}
		s := sg.text
		if t.normalizer != nil {
			s = t.normalizer(s)
		}
		for j, ns := range t.normalized.split(s, nil) {
			atStart := k == 0 && j == 0
			if ns.tok != nil {
				ids = append(ids, ns.tok.id)
				continue
			}
			if ns.text == "" {
				continue
			}
			if bl := t.lastByteLevel; bl != nil {
				pieces = runPre(t.pre[:len(t.pre)-1], ns.text, atStart)
				for _, p := range pieces {
					ids = bl.encode(t.model, p, ids)
				}
				continue
			}
			pieces = runPre(t.pre, ns.text, atStart)
			for _, p := range pieces {
				ids = t.model.encodeWord(p, ids)
			}
		}
	}
	if addSpecial {
		ids = append(ids, t.suffix...)
	}
	return ids, nil
}

// Decode turns ids back into text, as Hugging Face's decode: ids outside the
// vocabulary are skipped, special tokens too when skipSpecial, and the
// decoder (for byte-level BPE: bytes, read as UTF-8 with U+FFFD for invalid
// sequences) is applied to the rest.
func (t *Tokenizer) Decode(ids []int, skipSpecial bool) string {
	toks := make([]string, 0, len(ids))
	for _, id := range ids {
		if id < 0 || id >= len(t.idToken) {
			continue
		}
		if a, ok := t.addedByID[id]; ok {
			if skipSpecial && a.special {
				continue
			}
			toks = append(toks, a.text)
			continue
		}
		if s := t.idToken[id]; s != "" {
			toks = append(toks, s)
		}
	}
	if t.decoder == nil {
		return strings.Join(toks, " ")
	}
	return strings.Join(t.decoder.decodeChain(toks), "")
}

// TokenText is the text of one token as a person should read it: the
// byte-level alphabet decoded ("Ġthe" -> " the"), an added token as
// written. It is Decode([]int{id}, false), so a token holding part of a
// multi-byte character reads as U+FFFD. An unknown id gives "".
func (t *Tokenizer) TokenText(id int) string { return t.Decode([]int{id}, false) }

// Token is the raw vocabulary string of id ("Ġthe"), "" when none.
func (t *Tokenizer) Token(id int) string {
	if id < 0 || id >= len(t.idToken) {
		return ""
	}
	return t.idToken[id]
}

// VocabSize is the number of ids: the model's vocabulary and the added
// tokens that are not in it (Hugging Face's get_vocab_size(true)).
func (t *Tokenizer) VocabSize() int { return len(t.idToken) }

// BOS is the beginning-of-sequence token id, -1 if none is known.
func (t *Tokenizer) BOS() int { return t.bos }

// EOS is the end-of-sequence token id, -1 if none is known.
func (t *Tokenizer) EOS() int { return t.eos }

// SpecialID returns the id of the added token whose text is s, e.g.
// "<|im_end|>".
func (t *Tokenizer) SpecialID(s string) (int, bool) {
	for _, a := range t.added {
		if a.content == s || a.text == s {
			return a.id, true
		}
	}
	return -1, false
}

// SpecialTokens lists the added tokens marked special, by id.
func (t *Tokenizer) SpecialTokens() []string {
	var out []string
	for _, a := range t.added {
		if a.special {
			out = append(out, a.content)
		}
	}
	return out
}

// Source names what the tokenizer was built from.
func (t *Tokenizer) Source() string { return t.source }

// finish fills the id table and the matchers once model, added tokens and
// pipeline are set.
func (t *Tokenizer) finish() {
	n := 0
	for _, id := range t.model.vocab {
		n = max(n, id+1)
	}
	for _, a := range t.added {
		n = max(n, a.id+1)
	}
	t.idToken = make([]string, n)
	for s, id := range t.model.vocab {
		t.idToken[id] = s
	}
	sort.SliceStable(t.added, func(i, j int) bool { return t.added[i].id < t.added[j].id })
	t.addedByID = make(map[int]*addedToken, len(t.added))
	var raw, normd []*addedToken
	for _, a := range t.added {
		// Hugging Face gives a normalized added token back as the
		// normalizer writes it ("\ufb01sh" under NFKC decodes as "fish").
		a.text = a.content
		if a.normalized && t.normalizer != nil {
			a.text = t.normalizer(a.content)
		}
		t.idToken[a.id] = a.text
		t.addedByID[a.id] = a
		if a.normalized && t.normalizer != nil {
			normd = append(normd, a)
		} else {
			raw = append(raw, a)
		}
	}
	t.raw = newMatcher(raw, nil)
	t.normalized = newMatcher(normd, t.normalizer)
	t.lastByteLevel = nil
	if n := len(t.pre); n > 0 && t.model.byteFast() {
		if bl, ok := t.pre[n-1].(byteLevel); ok {
			t.lastByteLevel = &bl
		}
	}
}

// Normalizers.

var (
	nfc  = normalizeAs(norm.NFC, nil)
	nfd  = normalizeAs(norm.NFD, olderNFD)
	nfkc = normalizeAs(norm.NFKC, olderNFK)
	nfkd = normalizeAs(norm.NFKD, olderNFK)
)

// normalizeAs is Unicode normalization form f as Hugging Face does it. Its
// tables (Rust's unicode-normalization-alignments) are older than Go's: the
// characters in keep have no decomposition there, so they are kept as they
// are and the text between them normalized on its own.
func normalizeAs(f norm.Form, keep map[rune]bool) func(string) string {
	return func(s string) string {
		ascii := true
		frozen := false
		for _, r := range s {
			if r >= utf8.RuneSelf {
				ascii = false
				if keep[r] {
					frozen = true
					break
				}
			}
		}
		switch {
		case ascii:
			return s
		case !frozen:
			return f.String(s)
		}
		var sb strings.Builder
		start := 0
		for i, r := range s {
			if keep[r] {
				sb.WriteString(f.String(s[start:i]))
				sb.WriteRune(r)
				start = i + utf8.RuneLen(r)
			}
		}
		sb.WriteString(f.String(s[start:]))
		return sb.String()
	}
}

// lowercase is Hugging Face's Lowercase normalizer: Rust's
// char::to_lowercase on every character. Go's unicode.ToLower differs where
// newerLower says (full mappings such as 'İ' -> "i\u0307", case pairs newer
// than Go's Unicode tables). Like Hugging Face, and unlike Rust's
// str::to_lowercase, a word-final 'Σ' becomes 'σ', not 'ς'.
func lowercase(s string) string {
	special := false
	for _, r := range s {
		if _, ok := newerLower[r]; ok {
			special = true
			break
		}
	}
	if !special {
		return strings.ToLower(s)
	}
	var sb strings.Builder
	for _, r := range s {
		if l, ok := newerLower[r]; ok {
			sb.WriteString(l)
		} else {
			sb.WriteRune(unicode.ToLower(r))
		}
	}
	return sb.String()
}

func chain(fs []func(string) string) func(string) string {
	return func(s string) string {
		for _, f := range fs {
			s = f(s)
		}
		return s
	}
}

func stripSpace(left, right bool) func(string) string {
	return func(s string) string {
		if left {
			s = strings.TrimLeftFunc(s, unicode.IsSpace)
		}
		if right {
			s = strings.TrimRightFunc(s, unicode.IsSpace)
		}
		return s
	}
}
