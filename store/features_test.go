package store_test

import (
	"encoding/csv"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/loupe-dev/loupe/store"
)

func TestFeaturesRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "features.arrow")
	w, err := store.Create(path, store.RunInfo{ModelPath: "toy", Architecture: "llama"}, store.Options{MainTable: "features"})
	if err != nil {
		t.Fatal(err)
	}
	feats := []store.FeatureRow{
		{Latent: 0, Density: 0.25, MaxAct: 3.5, MeanAct: 1.25, HistCounts: []int32{4, 0, 1},
			TopIDs: []int32{7, 9}, TopTexts: []string{" cat", " dog"}, TopValues: []float32{2, 1.5},
			BottomIDs: []int32{3}, BottomTexts: []string{"the"}, BottomValues: []float32{-1}},
		{Latent: 1, HistCounts: []int32{}, TopIDs: []int32{}, TopTexts: []string{}, TopValues: []float32{},
			BottomIDs: []int32{}, BottomTexts: []string{}, BottomValues: []float32{}},
	}
	exs := []store.FeatureExample{
		{Latent: 0, Kind: "top", Rank: 0, Quantile: float32(math.NaN()), Context: 3, Position: 5, Activation: 3.5, WindowStart: 4,
			TokenIDs: []int32{1, 2, 3}, TokenTexts: []string{"a", "b", "c"}, Acts: []float32{0, 3.5, 0.1}},
		{Latent: 0, Kind: "quantile", Rank: 1, Quantile: 0.5, Context: 1, Position: 0, Activation: 1, WindowStart: 0,
			TokenIDs: []int32{4}, TokenTexts: []string{"d"}, Acts: []float32{1}},
	}
	acts := []store.FeatureActs{{PromptID: 0, Position: 0, TokenID: 5, TokenText: "Hi", Latents: []int32{3, 1}, Values: []float32{2, 1}},
		{PromptID: 1, Position: 0, TokenID: 6, TokenText: "Yo", Latents: []int32{}, Values: []float32{}}}
	if err := w.WriteFeatures(feats); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFeatureExamples(exs); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFeatureActs(acts); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFeatureExamples([]store.FeatureExample{{Kind: "best"}}); err == nil || !strings.Contains(err.Error(), "best") {
		t.Errorf("bad example kind: %v", err)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	tr, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	gotF, err := tr.ReadFeatures(ctx)
	if err != nil || !reflect.DeepEqual(gotF, feats) {
		t.Errorf("features: %v\n%+v\nwant\n%+v", err, gotF, feats)
	}
	gotE, err := tr.ReadFeatureExamples(ctx, 0)
	if err != nil || len(gotE) != 2 || gotE[0].Quantile == gotE[0].Quantile || gotE[1].Quantile != 0.5 || !reflect.DeepEqual(gotE[0].Acts, exs[0].Acts) || gotE[0].TokenTexts[2] != "c" {
		t.Errorf("examples: %v %+v", err, gotE)
	}
	if e, _ := tr.ReadFeatureExamples(ctx, 1); len(e) != 0 {
		t.Errorf("latent 1 has %d examples", len(e))
	}
	gotA, err := tr.ReadFeatureActs(ctx, 1)
	if err != nil || len(gotA) != 1 || !reflect.DeepEqual(gotA[0], acts[1]) {
		t.Errorf("feature acts: %v %+v", err, gotA)
	}
}

// TestCSVExportOfByteTokens: token texts with control characters (a
// byte-level BPE vocabulary has a token for every byte) export as valid
// JSON arrays: strconv.Quote's \x01 and \a are not JSON.
func TestCSVExportOfByteTokens(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f.arrow")
	w, err := store.Create(path, store.RunInfo{ModelPath: "toy"}, store.Options{MainTable: "features"})
	if err != nil {
		t.Fatal(err)
	}
	row := store.FeatureRow{Latent: 0, HistCounts: []int32{}, TopIDs: []int32{1, 2}, TopTexts: []string{"\x01\a\v", "a\"b\\"}, TopValues: []float32{1, 2},
		BottomIDs: []int32{}, BottomTexts: []string{}, BottomValues: []float32{}}
	if err := w.WriteFeatures([]store.FeatureRow{row}); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	files, err := store.Export(ctx, path, "", store.CSV)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(files[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil || len(recs) != 2 {
		t.Fatalf("csv: %v %v", recs, err)
	}
	col := slices.Index(recs[0], "top_token_texts")
	var texts []string
	if err := json.Unmarshal([]byte(recs[1][col]), &texts); err != nil || len(texts) != 2 || texts[0] != "\x01\a\v" || texts[1] != "a\"b\\" {
		t.Fatalf("top_token_texts %q: %v %q", recs[1][col], err, texts)
	}
}
