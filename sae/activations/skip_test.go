package activations

import (
	"context"
	"slices"
	"testing"

	"github.com/loupe-dev/loupe/organism"
)

// TestModelSourceSkip: Skip drops each context's first positions, and the
// rows left are those of a BOS-only source at the same positions (the
// forward pass itself is unchanged: only rows are left out).
func TestModelSourceSkip(t *testing.T) {
	m, err := organism.Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	docs := []string{"The day after Monday is Tuesday.", "one two three four five six seven eight nine ten"}
	ctxs, _, err := Contexts(m.Tokenizer, docs, 12, 4, true)
	if err != nil {
		t.Fatal(err)
	}
	hook := HookPoint{"blocks.1.hook_resid_post", -1}
	bosOnly, err := NewModelSource(m.Model, ModelConfig{Hook: hook, Contexts: ctxs, SeqsPerForward: 2, SkipFirst: true})
	if err != nil {
		t.Fatal(err)
	}
	skip3, err := NewModelSource(m.Model, ModelConfig{Hook: hook, Contexts: ctxs, SeqsPerForward: 2, SkipFirst: true, Skip: 3})
	if err != nil {
		t.Fatal(err)
	}
	if bosOnly.FirstPosition() != 1 || bosOnly.RowsPerContext() != 11 || skip3.FirstPosition() != 3 || skip3.RowsPerContext() != 9 {
		t.Fatalf("first position / rows per context: %d/%d and %d/%d, want 1/11 and 3/9",
			bosOnly.FirstPosition(), bosOnly.RowsPerContext(), skip3.FirstPosition(), skip3.RowsPerContext())
	}
	w := bosOnly.Width()
	for c := 0; c < 2; c++ {
		a, err := bosOnly.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		b, err := skip3.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if b.Rows != 2*9 {
			t.Fatalf("chunk %d: %d rows, want 18", c, b.Rows)
		}
		for r := 0; r < b.Rows; r++ {
			seq, pos := r/9, r%9+3
			ar := seq*11 + pos - 1
			if !slices.Equal(b.X[r*w:(r+1)*w], a.X[ar*w:(ar+1)*w]) || b.Tokens[r] != ctxs[2*c+seq][pos] {
				t.Fatalf("chunk %d row %d (context %d position %d) differs from the BOS-only source's", c, r, 2*c+seq, pos)
			}
		}
	}
	for _, skip := range []int{12, -1} {
		if _, err := NewModelSource(m.Model, ModelConfig{Hook: hook, Contexts: ctxs, Skip: skip}); err == nil {
			t.Errorf("Skip %d on contexts of 12 tokens: no error", skip)
		}
	}
}
