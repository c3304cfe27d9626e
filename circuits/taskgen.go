package circuits

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/loupe-dev/loupe/probe/tokenizer"
)

// Task generators. Each writes text pairs (ids only where the task is made
// of raw tokens); Tokenize checks that the model's tokenizer keeps a clean
// prompt and its corruption equally long and every answer one token.

// IOINames are first names that are one token in GPT-2-style and SmolLM2's
// tokenizers (with a leading space).
var IOINames = []string{"Mary", "John", "Tom", "James", "Dan", "Sid", "Martin", "Amy", "Kate", "Alice",
	"Paul", "Mark", "Anna", "Sarah", "Rose", "Jack", "Lisa", "Emma", "David", "Michael"}

// IOITemplates are sentences in the form of Wang et al.'s IOI dataset: [A]
// and [B] introduce the names, [S] repeats the subject, [PLACE] and
// [OBJECT] fill the scene. The indirect object is the name [S] is not.
var IOITemplates = []string{
	"When [A] and [B] went to the [PLACE], [S] gave a [OBJECT] to",
	"When [A] and [B] got a [OBJECT] at the [PLACE], [S] decided to give it to",
	"Then, [A] and [B] were working at the [PLACE]. [S] decided to give a [OBJECT] to",
	"After [A] and [B] went to the [PLACE], [S] gave a [OBJECT] to",
	"While [A] and [B] were commuting to the [PLACE], [S] gave a [OBJECT] to",
}

var ioiPlaces = []string{"store", "garden", "restaurant", "school", "hospital", "office", "house", "station"}
var ioiObjects = []string{"ring", "kiss", "bone", "basketball", "computer", "necklace", "drink", "snack"}

// IOI makes n indirect-object-identification pairs, half ABBA ("When Mary
// and John ..., John gave ... to" → Mary) and half BABA ("When John and
// Mary ..."). The corruption is the ABC form: three names, all distinct
// and none of the clean ones, in the same template, so nothing in it points
// to an answer; these are also the SAE method's negatives. names must hold
// at least five names.
func IOI(n int, names []string, seed uint64) ([]Pair, error) {
	if len(names) < 5 {
		return nil, fmt.Errorf("ioi: %d names, need at least 5 (two for the prompt, three for its corruption)", len(names))
	}
	rng := rand.New(rand.NewPCG(seed, 0x101))
	out := make([]Pair, 0, n)
	for i := 0; i < n; i++ {
		tpl := IOITemplates[(i/2)%len(IOITemplates)]
		perm := rng.Perm(len(names))
		io, s, x, y, z := names[perm[0]], names[perm[1]], names[perm[2]], names[perm[3]], names[perm[4]]
		place, object := ioiPlaces[rng.IntN(len(ioiPlaces))], ioiObjects[rng.IntN(len(ioiObjects))]
		a, b, order := io, s, "ABBA"
		if i%2 == 1 {
			a, b, order = s, io, "BABA"
		}
		fill := func(a, b, s string) string {
			r := strings.NewReplacer("[A]", a, "[B]", b, "[S]", s, "[PLACE]", place, "[OBJECT]", object)
			return r.Replace(tpl)
		}
		out = append(out, Pair{Clean: fill(a, b, s), Corrupt: fill(x, y, z),
			Answers: []string{" " + io}, Wrongs: []string{" " + s}, Meta: order})
	}
	return out, nil
}

// greaterThanNouns are Hanna et al.'s event nouns (a subset).
var greaterThanNouns = []string{"war", "expedition", "contract", "project", "voyage", "trial", "strike", "reign"}

// GreaterThan makes n pairs of Hanna et al.'s task: "The war lasted from
// the year 1732 to the year 17" is continued by a year after 32. The
// corruption puts 01 in place of the start year's last two digits (the
// XX01 form), after which every year is as likely. digitsSplit is for
// tokenizers that write each digit as a token (SmolLM2, Llama-3): the
// prompt then ends one digit into the end year ("... to the year 17") and
// the answers are the tens digits above the start year's (its own tens
// digit is neither right nor wrong, so it is left out of both); otherwise
// the answers are the two-digit tokens YY'>YY and the wrongs YY' ≤ YY, as
// in the paper with GPT-2's tokenizer.
func GreaterThan(n int, digitsSplit bool, seed uint64) []Pair {
	rng := rand.New(rand.NewPCG(seed, 0x6e))
	out := make([]Pair, 0, n)
	for i := 0; i < n; i++ {
		century := 11 + rng.IntN(8) // 11xx .. 18xx
		yy := 2 + rng.IntN(97)      // 02 .. 98: at least one year on each side
		if digitsSplit {
			yy = 10 + rng.IntN(80) // tens digit 1..8
		}
		noun := greaterThanNouns[rng.IntN(len(greaterThanNouns))]
		c := strconv.Itoa(century)
		form := "The " + noun + " lasted from the year " + c + "%02d to the year " + c
		p := Pair{Clean: fmt.Sprintf(form, yy), Corrupt: fmt.Sprintf(form, 1), Meta: strconv.Itoa(yy)}
		if digitsSplit {
			for d := 0; d <= 9; d++ {
				switch {
				case d > yy/10:
					p.Answers = append(p.Answers, strconv.Itoa(d))
				case d < yy/10:
					p.Wrongs = append(p.Wrongs, strconv.Itoa(d))
				}
			}
		} else {
			for y := 0; y <= 99; y++ {
				if y > yy {
					p.Answers = append(p.Answers, fmt.Sprintf("%02d", y))
				} else {
					p.Wrongs = append(p.Wrongs, fmt.Sprintf("%02d", y))
				}
			}
		}
		out = append(out, p)
	}
	return out
}

// docstringWords fill Heimersheim and Janiak's docstring prompts.
var docstringWords = []string{"load", "size", "files", "last", "image", "data", "name", "user", "file", "line",
	"value", "path", "text", "count", "page", "state", "key", "mode", "node", "item", "port", "color", "model", "query"}

// Docstring makes n pairs of Heimersheim and Janiak's docstring task: a
// function of four arguments whose docstring has described the first two;
// the next ":param" names the third argument. The corruption renames every
// argument in the signature (their random_random form) so the docstring's
// names no longer point at it. The wrongs are the other arguments.
func Docstring(n int, seed uint64) []Pair {
	rng := rand.New(rand.NewPCG(seed, 0xd0c))
	out := make([]Pair, 0, n)
	for i := 0; i < n; i++ {
		perm := rng.Perm(len(docstringWords))
		w := func(k int) string { return docstringWords[perm[k]] }
		args, fake := []string{w(0), w(1), w(2), w(3)}, []string{w(4), w(5), w(6), w(7)}
		desc := []string{w(8), w(9), w(10), w(11)}
		body := func(sig []string) string {
			return "def " + w(12) + "(self, " + strings.Join(sig, ", ") + "):\n    \"\"\"" + w(13) + " " + w(14) + "\n\n" +
				"    :param " + args[0] + ": " + desc[0] + " " + desc[1] + "\n" +
				"    :param " + args[1] + ": " + desc[2] + " " + desc[3] + "\n" +
				"    :param"
		}
		out = append(out, Pair{Clean: body(args), Corrupt: body(fake),
			Answers: []string{" " + args[2]}, Wrongs: []string{" " + args[0], " " + args[1], " " + args[3]}})
	}
	return out
}

// Induction makes n pairs of the induction task in token ids: prefix, a
// random span of span tokens drawn from pool, then its first k tokens again
// (k drawn in [span/2, span-1]); the answer is the span's next token. The
// corruption draws the first span afresh, so the repeat has nothing to
// copy from. Token texts are decoded with tok when it is not nil.
func Induction(n, span int, pool, prefix []int, tok *tokenizer.Tokenizer, seed uint64) ([]Pair, error) {
	if span < 4 || len(pool) < 2*span {
		return nil, fmt.Errorf("induction: span %d from a pool of %d tokens (need span >= 4 and twice span tokens)", span, len(pool))
	}
	rng := rand.New(rand.NewPCG(seed, 0x1d))
	out := make([]Pair, 0, n)
	for i := 0; i < n; i++ {
		perm := rng.Perm(len(pool))
		first, other := make([]int, span), make([]int, span)
		for j := range first {
			first[j], other[j] = pool[perm[j]], pool[perm[span+j]]
		}
		k := span/2 + rng.IntN(span-span/2)
		clean := append(append(append([]int{}, prefix...), first...), first[:k]...)
		corrupt := append(append(append([]int{}, prefix...), other...), first[:k]...)
		p := Pair{CleanIDs: clean, CorruptIDs: corrupt, AnswerIDs: []int{first[k]}}
		if tok != nil {
			p.Clean, p.Corrupt = tok.Decode(clean, false), tok.Decode(corrupt, false)
			p.Answers = []string{tok.Decode([]int{first[k]}, false)}
		}
		out = append(out, p)
	}
	return out, nil
}

// WordTokens lists the ids of tok's tokens that are a space and a lowercase
// word of at least minLen letters: a pool of ordinary tokens for Induction.
func WordTokens(tok *tokenizer.Tokenizer, minLen int) []int {
	var ids []int
	for id := 0; id < tok.VocabSize(); id++ {
		s := tok.Decode([]int{id}, false)
		if len(s) < minLen+1 || s[0] != ' ' {
			continue
		}
		ok := true
		for _, c := range s[1:] {
			ok = ok && c >= 'a' && c <= 'z'
		}
		if ok {
			ids = append(ids, id)
		}
	}
	return ids
}

// SingleTokenWords keeps the words that prefix+word encodes to one token.
func SingleTokenWords(tok *tokenizer.Tokenizer, words []string, prefix string) []string {
	var out []string
	for _, w := range words {
		if ids, err := tok.Encode(prefix+w, false); err == nil && len(ids) == 1 {
			out = append(out, w)
		}
	}
	return out
}

// SplitsDigits says whether tok writes "1732" as more than two tokens
// (one per digit, as SmolLM2 and Llama-3 do), which GreaterThan needs to
// know.
func SplitsDigits(tok *tokenizer.Tokenizer) bool {
	ids, err := tok.Encode(" 1732", false)
	return err == nil && len(ids) > 2
}
