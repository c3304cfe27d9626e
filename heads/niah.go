package heads

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"unicode"
)

// Needle is a fact hidden in a haystack, with the question that retrieves
// it. The needle's text is Prefix + Answer + Suffix; the answer is the span
// the model must copy out (the paper's "real needle").
type Needle struct {
	Prefix, Answer, Suffix string
	Question               string
}

// Text is the needle sentence as inserted.
func (n Needle) Text() string { return n.Prefix + n.Answer + n.Suffix }

// DefaultNeedles are the needles of the default task: the classic San
// Francisco needle of the needle-in-a-haystack test and two of Loupe's.
var DefaultNeedles = []Needle{
	{Prefix: "The best thing to do in San Francisco is", Answer: " eat a sandwich and sit in Dolores Park on a sunny day", Suffix: ".",
		Question: "What is the best thing to do in San Francisco?"},
	{Prefix: "The secret ingredient in Grandma Rosa's soup is", Answer: " a spoonful of smoked paprika from Valencia", Suffix: ".",
		Question: "What is the secret ingredient in Grandma Rosa's soup?"},
	{Prefix: "The password to the old lighthouse door is", Answer: " silver falcon seven", Suffix: ".",
		Question: "What is the password to the old lighthouse door?"},
}

// NIAHOptions configure the needle-in-a-haystack task.
type NIAHOptions struct {
	// Lengths are the context lengths in tokens (default 256, 512, 1024).
	Lengths []int
	// Depths place the needle, as fractions of the haystack (default 0,
	// 0.25, 0.5, 0.75, 1).
	Depths []float64
	// Needles (default DefaultNeedles).
	Needles []Needle
	// Haystack is the background text; empty generates one by code
	// (GenerateHaystack) from Seed.
	Haystack string
	Seed     uint64
	// Prefix precedes every prompt (for example the BOS token).
	Prefix []int
	// NoCue leaves the needle's prefix out of the answer prompt, so the
	// model must start the answer by itself. By default the prompt ends
	// with "Answer: " + the needle's prefix, which lets small models copy.
	NoCue bool
	// Before and After wrap the document and its question for an
	// instruction-tuned model: Before comes after Prefix, ahead of the
	// haystack (say a chat template's system and user turns), After
	// between the question and the answer cue (say the end of the user
	// turn and the start of the assistant's). Special tokens in them are
	// encoded as the tokenizer's added tokens.
	Before, After string
}

// SmolLM2Chat gives the Before and After of SmolLM2-Instruct's chat
// template (its default system prompt, one user turn, the assistant's
// turn opened), as its tokenizer's chat_template writes them.
func SmolLM2Chat() (before, after string) {
	return "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\n",
		"<|im_end|>\n<|im_start|>assistant\n"
}

// NIAHCase is one needle-in-a-haystack prompt.
type NIAHCase struct {
	Prompt []int
	// AnswerStart, AnswerEnd delimit the answer's tokens in Prompt.
	AnswerStart, AnswerEnd int
	Answer                 []int
	AnswerText             string
	Length                 int
	Depth                  float64
	Needle                 int
}

func (o NIAHOptions) withDefaults() NIAHOptions {
	if len(o.Lengths) == 0 {
		o.Lengths = []int{256, 512, 1024}
	}
	if len(o.Depths) == 0 {
		o.Depths = []float64{0, 0.25, 0.5, 0.75, 1}
	}
	if len(o.Needles) == 0 {
		o.Needles = DefaultNeedles
	}
	return o
}

var (
	hayAdj   = []string{"quiet", "old", "bright", "narrow", "wooden", "distant", "small", "busy", "cold", "green", "tall", "empty", "golden", "gentle", "heavy", "strange"}
	hayNoun  = []string{"river", "market", "garden", "bridge", "village", "teacher", "farmer", "library", "harbor", "mountain", "train", "window", "forest", "painter", "kitchen", "road", "school", "boat", "castle", "bakery"}
	hayVerb  = []string{"waited", "moved", "rested", "appeared", "changed", "stood", "grew", "opened", "turned", "returned", "listened", "worked"}
	hayPrep  = []string{"near", "behind", "beside", "past", "under", "across", "around", "beyond"}
	hayTime  = []string{"in the morning", "after the rain", "before dinner", "every spring", "at dusk", "during the festival", "on Sundays", "all winter"}
	hayPlace = []string{"the valley", "the old town", "the coast", "the northern hills", "the city", "the island", "the plain", "the lake"}
)

// GenerateHaystack writes about n words of plain, factless English by code:
// sentences drawn from fixed word lists with a seeded generator, so the task
// needs no download and is the same on every machine.
func GenerateHaystack(seed uint64, words int) string {
	rng := rand.New(rand.NewPCG(seed, 0x4a7))
	pick := func(ws []string) string { return ws[rng.IntN(len(ws))] }
	var b strings.Builder
	count := 0
	for count < words {
		var s string
		switch rng.IntN(4) {
		case 0:
			s = fmt.Sprintf("The %s %s %s %s the %s %s.", pick(hayAdj), pick(hayNoun), pick(hayVerb), pick(hayPrep), pick(hayNoun), pick(hayTime))
		case 1:
			s = fmt.Sprintf("In %s, a %s %s %s %s.", pick(hayPlace), pick(hayAdj), pick(hayNoun), pick(hayVerb), pick(hayTime))
		case 2:
			s = fmt.Sprintf("Nobody remembered why the %s %s so %s.", pick(hayNoun), pick(hayVerb), pick(hayTime))
		default:
			s = fmt.Sprintf("A %s %s and a %s %s %s %s %s.", pick(hayAdj), pick(hayNoun), pick(hayAdj), pick(hayNoun), pick(hayVerb), pick(hayPrep), pick(hayPlace))
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(s)
		count += len(strings.Fields(s))
	}
	return b.String()
}

// splitSentences cuts text after each '.', '!' or '?' that ends a sentence.
func splitSentences(text string) []string {
	var out []string
	start := 0
	for i, r := range text {
		if (r == '.' || r == '!' || r == '?') && (i+1 == len(text) || text[i+1] == ' ' || text[i+1] == '\n') {
			out = append(out, text[start:i+1])
			start = i + 1
		}
	}
	if strings.TrimSpace(text[start:]) != "" {
		out = append(out, text[start:])
	}
	return out
}

// NIAHCases builds the task: for every length, depth and needle, a haystack
// cut to fit the length, the needle inserted at the sentence boundary at or
// before the depth (as the paper's code backs off to a period), then the
// question. Pieces are tokenized separately and concatenated, so the
// answer's token span is known exactly.
func NIAHCases(tok Tokenizer, o NIAHOptions) ([]NIAHCase, error) {
	o = o.withDefaults()
	hay := o.Haystack
	maxLen := 0
	for _, l := range o.Lengths {
		maxLen = max(maxLen, l)
	}
	if hay == "" {
		hay = GenerateHaystack(o.Seed, maxLen) // a word is at least one token
	}
	// Sentences are tokenized until they fill the longest case: a corpus
	// of millions of tokens costs no more than the haystack it gives.
	var sents [][]int
	total := 0
	for _, s := range splitSentences(hay) {
		if total >= maxLen {
			break
		}
		ids, err := tok.Encode(s, false)
		if err != nil {
			return nil, fmt.Errorf("niah: haystack: %w", err)
		}
		if len(ids) > 0 {
			sents = append(sents, ids)
			total += len(ids)
		}
	}
	if len(sents) == 0 {
		return nil, fmt.Errorf("niah: the haystack has no text")
	}
	enc := func(s string) ([]int, error) {
		ids, err := tok.Encode(s, false)
		if err != nil {
			return nil, fmt.Errorf("niah: %q: %w", s, err)
		}
		return ids, nil
	}
	var cases []NIAHCase
	for ni, nd := range o.Needles {
		pre, err := enc(" " + nd.Prefix)
		if err != nil {
			return nil, err
		}
		ans, err := enc(nd.Answer)
		if err != nil {
			return nil, err
		}
		suf, err := enc(nd.Suffix)
		if err != nil {
			return nil, err
		}
		qtext := "\n\nBased on the content of the text above, answer the question.\nQuestion: " + nd.Question + "\nAnswer:"
		if o.After != "" {
			qtext += o.After
			if !o.NoCue {
				qtext += nd.Prefix
			}
		} else if !o.NoCue {
			qtext += " " + nd.Prefix
		}
		q, err := enc(qtext)
		if err != nil {
			return nil, err
		}
		var before []int
		if o.Before != "" {
			if before, err = enc(o.Before); err != nil {
				return nil, err
			}
		}
		needleLen := len(pre) + len(ans) + len(suf)
		for _, L := range o.Lengths {
			budget := L - len(o.Prefix) - len(before) - needleLen - len(q)
			if budget <= 0 {
				return nil, fmt.Errorf("niah: length %d leaves no room for a haystack (needle, question and wrapping take %d tokens)", L, needleLen+len(q)+len(before))
			}
			// Whole sentences up to the budget.
			var hs [][]int
			n := 0
			for i := 0; n < budget; i++ {
				s := sents[i%len(sents)]
				if n+len(s) > budget {
					break
				}
				hs = append(hs, s)
				n += len(s)
			}
			for _, d := range o.Depths {
				if d < 0 || d > 1 {
					return nil, fmt.Errorf("niah: depth %v outside [0, 1]", d)
				}
				// The sentence boundary at or before depth·n tokens.
				target := int(math.Floor(d * float64(n)))
				cut, acc := 0, 0
				for cut < len(hs) && acc+len(hs[cut]) <= target {
					acc += len(hs[cut])
					cut++
				}
				p := append(append([]int{}, o.Prefix...), before...)
				for _, s := range hs[:cut] {
					p = append(p, s...)
				}
				p = append(p, pre...)
				start := len(p)
				p = append(p, ans...)
				end := len(p)
				p = append(p, suf...)
				for _, s := range hs[cut:] {
					p = append(p, s...)
				}
				p = append(p, q...)
				cases = append(cases, NIAHCase{Prompt: p, AnswerStart: start, AnswerEnd: end, Answer: ans,
					AnswerText: nd.Answer, Length: L, Depth: d, Needle: ni})
			}
		}
	}
	return cases, nil
}

// words splits text into lowercase alphanumeric words, as ROUGE's default
// tokenizer does (without its Porter stemming).
func words(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
}

// Rouge1Recall is ROUGE-1 recall of a response against a reference: the
// share of the reference's words (with multiplicity) that the response
// contains.
func Rouge1Recall(reference, response string) float64 {
	return multisetRecall(words(reference), words(response))
}

func multisetRecall[T comparable](ref, got []T) float64 {
	if len(ref) == 0 {
		return 0
	}
	have := map[T]int{}
	for _, w := range got {
		have[w]++
	}
	hit := 0
	for _, w := range ref {
		if have[w] > 0 {
			have[w]--
			hit++
		}
	}
	return float64(hit) / float64(len(ref))
}

// ReadHaystack reads a haystack file: plain text, or JSON lines (a name
// ending in .jsonl) whose "text" fields are joined by blank lines, the
// form scripts/fetch-fortunes.sh writes its real-text corpus in (the
// quotations of Debian's fortunes package). Each piece is made to end a
// sentence, so that a needle never lands inside an unfinished one.
func ReadHaystack(path string) (string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("haystack: %w", err)
	}
	if !strings.HasSuffix(path, ".jsonl") {
		return string(raw), nil
	}
	var b strings.Builder
	for i, line := range bytes.Split(raw, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var doc struct {
			Text *string `json:"text"`
		}
		if err := json.Unmarshal(line, &doc); err != nil || doc.Text == nil {
			return "", fmt.Errorf("haystack: %s line %d: want a JSON object with a \"text\" string", path, i+1)
		}
		t := strings.TrimSpace(*doc.Text)
		if t == "" {
			continue
		}
		if !strings.ContainsRune(".!?", rune(t[len(t)-1])) {
			t += "."
		}
		if b.Len() > 0 {
			b.WriteString("\n\n")
		}
		b.WriteString(t)
	}
	return b.String(), nil
}
