package store

import (
	"context"
	"path/filepath"
	"reflect"
	"testing"
)

func TestCodesRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "codes.arrow")
	w, err := Create(path, RunInfo{ModelPath: "m", Architecture: "gptneox"}, Options{Compression: Zstd})
	if err != nil {
		t.Fatal(err)
	}
	want := []Code{
		{Source: "codebook", Hook: "blocks.1.hook_mlp_out", Code: 7, Count: 12, Positions: 400,
			TopTokens: []int32{3, 9}, TopCounts: []int32{10, 2}, TopTexts: []string{"3", "9"},
			ContextPrompts: []int32{0, 4}, ContextPositions: []int32{5, 17}, Contexts: []string{"0«3»", "12«3»"},
			Label: "state 42", LabelPrecision: 0.75, LabelAP: 0.5},
		{Source: "codebook", Hook: "blocks.0.attn.hook_z", Group: 3, Code: 999, Count: 0, Positions: 400,
			TopTokens: []int32{}, TopCounts: []int32{}, TopTexts: []string{}, ContextPrompts: []int32{},
			ContextPositions: []int32{}, Contexts: []string{}},
	}
	if err := w.WriteCodes(want); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteCodes([]Code{{Hook: "x", TopTokens: []int32{1}}}); err == nil {
		t.Fatal("a code with top tokens but no counts was written")
	}
	if err := w.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	tr, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	got, err := tr.ReadCodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("read back\n%+v\nwant\n%+v", got, want)
	}
}
