package store

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// tinyTrace writes a trace with a few rows of every table and returns the
// bytes of each of its files, by file name.
func tinyTrace(t testing.TB, opts Options) map[string][]byte {
	dir := t.TempDir()
	path := filepath.Join(dir, "f.arrow")
	opts.MaxBatchRows = 3
	w, err := Create(path, RunInfo{ModelPath: "m", Config: json.RawMessage(`{}`)}, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	check := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	for p := 0; p < 2; p++ {
		check(w.WriteTokens(Tokens{PromptID: p, IDs: []int{1, 2, 3, 4}, Texts: []string{"a", "b", "", "d"}}))
		check(w.WriteActivation(Activation{Hook: "blocks.0.hook_resid_post", PromptID: p, Head: -1, Shape: []int{2}, Values: []float32{1, 2, 3, 4, 5, 6, 7, 8}}))
		check(w.WriteActivation(Activation{Hook: "blocks.0.attn.hook_z", PromptID: p, Head: 1, Shape: []int{1, 2}, Values: []float32{1, 2, 3, 4}}))
		check(w.WriteAttention(Attention{PromptID: p, Queries: 2, Keys: 2, Causal: true, Weights: []float32{1, 0, 0.5, 0.5}}))
		check(w.WriteAttentionTopK(AttentionTopK{PromptID: p, K: 2, QueryPos: []int{0, 1}, KeyPos: []int32{0, -1, 1, 0}, Weight: []float32{1, 0, 0.7, 0.3}}))
		check(w.WriteFlow(FlowMatrix{PromptID: p, Method: "rollout", Head: HeadsAveraged, ToLayer: 1, Rows: 2, Cols: 2, Values: []float32{1, 0, 0.5, 0.5}}))
		check(w.WriteLogitLens(LogitLens{PromptID: p, K: 2, Positions: []int{0, 1}, TargetProb: []float32{0.5, float32(math.NaN())},
			TopIDs: []int32{1, 2, 3, -1}, TopProbs: []float32{0.5, 0.2, 0.9, 0}, TopTexts: []string{"x", "y", "z", ""}}))
	}
	check(w.WriteHeadScores([]HeadScore{{Layer: 0, Head: 1, Score: "s", Value: 1, Label: "l", Details: json.RawMessage(`{"a":1}`)}, {Score: "t"}}))
	check(w.Commit(context.Background()))
	out := map[string][]byte{}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = data
	}
	return out
}

// FuzzOpen feeds arbitrary bytes to the reader as one table file, reads
// every batch and decodes it with the typed reader of its kind. Any input
// must give a value or an error, never a panic or a runaway allocation.
func FuzzOpen(f *testing.F) {
	for _, opts := range []Options{{Compression: None}, {Compression: Zstd, ActivationDType: Float16}} {
		files := tinyTrace(f, opts)
		names := make([]string, 0, len(files))
		for n := range files {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			f.Add(files[n])
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if os.Getenv("LOUPE_FUZZ_WATCHDOG") != "" {
			dump := append([]byte(nil), data...)
			tm := time.AfterFunc(3*time.Second, func() {
				os.WriteFile(os.Getenv("LOUPE_FUZZ_WATCHDOG"), dump, 0o644)
				panic("fuzz input takes over 3s")
			})
			defer tm.Stop()
		}
		tb, err := OpenTableBytes("fuzz.arrow", data)
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.arrow") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		defer tb.Close()
		_ = readTableTyped(tb)
	})
}

// readTableTyped wraps one table in a trace of its own and decodes it.
func readTableTyped(tb *Table) error {
	ctx := context.Background()
	info := tb.Info()
	info.Batches = tb.NumBatches()
	tr := &Trace{path: tb.path, main: tb, infos: []TableInfo{info}, tables: map[string]*Table{info.Name: tb}}
	for i := 0; i < tb.NumBatches(); i++ {
		tr.entries = append(tr.entries, IndexEntry{Table: info.Name, Batch: i, PromptID: -1, Layer: -1, Head: -1})
	}
	var err error
	switch info.Kind {
	case KindTokens:
		_, err = tr.ReadTokens(ctx, Selector{})
	case KindActivations:
		_, err = tr.ReadActivations(ctx, Selector{})
	case KindAttention:
		_, err = tr.ReadAttention(ctx, Selector{})
	case KindAttentionTopK:
		_, err = tr.ReadAttentionTopK(ctx, Selector{})
	case KindHeadScores:
		_, err = tr.ReadHeadScores(ctx, Selector{})
	case KindFlow:
		_, err = tr.ReadFlow(ctx, Selector{})
	case KindLogitLens:
		_, err = tr.ReadLogitLens(ctx, Selector{})
	case KindIndex:
		_, err = readIndex(ctx, tb)
	}
	return err
}

// TestWriteFuzzSeeds regenerates the committed seed corpus of FuzzOpen
// (testdata/fuzz/FuzzOpen) when LOUPE_WRITE_FUZZ_SEEDS=1.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("LOUPE_WRITE_FUZZ_SEEDS") != "1" {
		t.Skip("set LOUPE_WRITE_FUZZ_SEEDS=1 to regenerate the seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzOpen")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []Compression{None, LZ4} {
		for name, data := range tinyTrace(t, Options{Compression: c}) {
			seed := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
			file := filepath.Join(dir, "seed-"+string(c)+"-"+strings.TrimSuffix(name, ".arrow"))
			if err := os.WriteFile(file, []byte(seed), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestFuzzSeedsDecode checks every seed (valid files) decodes cleanly.
func TestFuzzSeedsDecode(t *testing.T) {
	for name, data := range tinyTrace(t, Options{}) {
		tb, err := OpenTableBytes(name, data)
		if err != nil {
			t.Fatal(err)
		}
		if err := readTableTyped(tb); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		tb.Close()
	}
}
