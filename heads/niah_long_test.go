package heads

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// fortunesPath finds the real-text corpus that scripts/fetch-fortunes.sh
// caches ($LOUPE_FORTUNES, else the cache), or skips.
func fortunesPath(t *testing.T) string {
	if p := os.Getenv("LOUPE_FORTUNES"); p != "" {
		return p
	}
	home, _ := os.UserHomeDir()
	p := filepath.Join(home, ".cache", "loupe", "fortunes-1.99.1-7.3.jsonl")
	if _, err := os.Stat(p); err != nil {
		t.Skipf("fortunes corpus not at %s: run scripts/fetch-fortunes.sh (the test script does)", p)
	}
	return p
}

// TestNIAHLongCases builds needle-in-a-haystack prompts of 131072 SmolLM2
// tokens from the generated haystack and from real text (Debian's
// fortunes): every prompt fills its length to within a sentence, holds the
// answer's tokens where it says, sits at its depth and ends with the
// question.
func TestNIAHLongCases(t *testing.T) {
	m := smolLM2(t)
	hays := map[string]string{"generated": ""}
	if p := fortunesPath(t); p != "" {
		text, err := ReadHaystack(p)
		if err != nil {
			t.Fatal(err)
		}
		hays["fortunes"] = text
	}
	const L = 131072
	for name, hay := range hays {
		start := time.Now()
		cases, err := NIAHCases(m.Tokenizer, NIAHOptions{Lengths: []int{L}, Depths: []float64{0, 0.5, 1},
			Needles: DefaultNeedles[:1], Haystack: hay, Prefix: []int{m.Config.BOS}})
		if err != nil {
			t.Fatal(err)
		}
		q, _ := m.Tokenizer.Encode("Question: "+DefaultNeedles[0].Question, false)
		for _, c := range cases {
			n := len(c.Prompt)
			if n > L || n < L-1024 {
				t.Fatalf("%s depth %.1f: %d tokens for a length of %d", name, c.Depth, n, L)
			}
			if !slices.Equal(c.Prompt[c.AnswerStart:c.AnswerEnd], c.Answer) {
				t.Fatalf("%s depth %.1f: the answer span does not hold the answer", name, c.Depth)
			}
			if pos := float64(c.AnswerStart) / float64(n); pos < c.Depth-0.02 || pos > c.Depth+0.02 {
				t.Fatalf("%s depth %.1f: the answer starts at %.3f of the prompt", name, c.Depth, pos)
			}
			tail := m.Tokenizer.Decode(c.Prompt[n-64:], true)
			if !strings.Contains(tail, m.Tokenizer.Decode(q[len(q)-8:], true)) {
				t.Fatalf("%s: the prompt ends %q, not with the question", name, tail)
			}
		}
		t.Logf("%s haystack: %d cases of %d tokens in %v", name, len(cases), L, time.Since(start).Round(time.Millisecond))
	}
}
