package store

import (
	"context"
	"path/filepath"
	"reflect"
	"testing"
)

func TestFeaturesRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "codes.arrow")
	w, err := Create(path, RunInfo{ModelPath: "m", Architecture: "gptneox"}, Options{Compression: Zstd})
	if err != nil {
		t.Fatal(err)
	}
	want := []Feature{
		{Source: "codebook", Hook: "blocks.1.hook_mlp_out", Feature: 7, Count: 12, Positions: 400,
			TopTokens: []int32{3, 9}, TopCounts: []int32{10, 2}, TopTexts: []string{"3", "9"},
			ContextPrompts: []int32{0, 4}, ContextPositions: []int32{5, 17}, Contexts: []string{"0«3»", "12«3»"},
			Label: "state 42", LabelPrecision: 0.75, LabelAP: 0.5},
		{Source: "codebook", Hook: "blocks.0.attn.hook_z", Group: 3, Feature: 999, Count: 0, Positions: 400,
			TopTokens: []int32{}, TopCounts: []int32{}, TopTexts: []string{}, ContextPrompts: []int32{},
			ContextPositions: []int32{}, Contexts: []string{}},
	}
	if err := w.WriteFeatures(want); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFeatures([]Feature{{Hook: "x", TopTokens: []int32{1}}}); err == nil {
		t.Fatal("a feature with top tokens but no counts was written")
	}
	if err := w.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	tr, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	got, err := tr.ReadFeatures(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("read back\n%+v\nwant\n%+v", got, want)
	}
}
