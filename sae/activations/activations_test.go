package activations

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/loupe-dev/loupe/organism"
	"github.com/loupe-dev/loupe/probe"
	"github.com/loupe-dev/loupe/store"
)

func rows(n, w int) []float32 {
	x := make([]float32, n*w)
	for r := 0; r < n; r++ {
		for i := 0; i < w; i++ {
			x[r*w+i] = float32(r) // a row's values name the row
		}
	}
	return x
}

// TestPipelineShufflesEachRowOnce: every generation serves each of its rows
// exactly once (its tail beyond a whole batch aside), in shuffled order.
func TestPipelineShufflesEachRowOnce(t *testing.T) {
	src, err := NewSliceSource(rows(1000, 3), 3, nil, 0, 50, false)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPipeline(src, Config{BatchRows: 64, BufferRows: 400, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]int{}
	inOrder := 0
	prev := -1
	for {
		b, err := p.Next(context.Background())
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for r := 0; r < b.Rows; r++ {
			id := int(b.X[r*3])
			if b.X[r*3+2] != float32(id) {
				t.Fatal("a row was torn")
			}
			seen[id]++
			if id == prev+1 {
				inOrder++
			}
			prev = id
		}
	}
	// generations of 400, 400 and 200 rows: 384 + 384 + 192 served
	if len(seen) != 960 {
		t.Errorf("%d distinct rows served, want 960", len(seen))
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("row %d served %d times", id, c)
		}
	}
	if inOrder > 50 {
		t.Errorf("%d of 960 rows follow their predecessor: not shuffled", inOrder)
	}
}

// TestPipelineRestore: the batches after Restore(State()) are the ones that
// followed when the state was taken, at any point of a generation.
func TestPipelineRestore(t *testing.T) {
	mk := func() *Pipeline {
		src, _ := NewSliceSource(rows(700, 2), 2, nil, 0, 30, true)
		p, _ := NewPipeline(src, Config{BatchRows: 32, BufferRows: 200, Seed: 4})
		return p
	}
	ctx := context.Background()
	ref := mk()
	var all [][]float32
	for i := 0; i < 40; i++ {
		b, err := ref.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, slices.Clone(b.X))
	}
	for _, at := range []int{0, 1, 5, 6, 7, 19} {
		p := mk()
		for i := 0; i < at; i++ {
			p.Next(ctx)
		}
		st := p.State()
		q := mk()
		if err := q.Restore(ctx, st); err != nil {
			t.Fatal(err)
		}
		for i := at; i < at+10; i++ {
			b, err := q.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(b.X, all[i]) {
				t.Fatalf("restored at batch %d: batch %d differs", at, i)
			}
		}
	}
}

func TestReadCorpus(t *testing.T) {
	dir := t.TempDir()
	txt := filepath.Join(dir, "a.txt")
	os.WriteFile(txt, []byte("one\ntwo\n\n\nthree\n"), 0o644)
	docs, err := ReadCorpus(txt)
	if err != nil || !slices.Equal(docs, []string{"one\ntwo", "three"}) {
		t.Fatalf("text corpus: %q, %v", docs, err)
	}
	jl := filepath.Join(dir, "a.jsonl")
	os.WriteFile(jl, []byte(`{"text": "alpha"}`+"\n\n"+`{"text": "beta", "id": 3}`+"\n"), 0o644)
	docs, err = ReadCorpus(jl)
	if err != nil || !slices.Equal(docs, []string{"alpha", "beta"}) {
		t.Fatalf("jsonl corpus: %q, %v", docs, err)
	}
	empty := filepath.Join(dir, "empty.txt")
	os.WriteFile(empty, []byte("\n\n  \n"), 0o644)
	if _, err := ReadCorpus(empty); err == nil || !strings.Contains(err.Error(), "empty.txt") {
		t.Fatalf("empty corpus: %v", err)
	}
	bad := filepath.Join(dir, "bad.jsonl")
	os.WriteFile(bad, []byte(`{"txt": "x"}`+"\n"), 0o644)
	if _, err := ReadCorpus(bad); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("jsonl without text: %v", err)
	}
}

// TestModelSourceMatchesForwardCache: the rows a ModelSource gives are the
// activations a plain cached forward pass gives, for a residual hook, one
// head of hook_z, and a transcoder's (input, target) pair.
func TestModelSourceMatchesForwardCache(t *testing.T) {
	m, err := organism.Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	docs := []string{"The day after Monday is Tuesday.", "one two three four five six seven eight nine ten"}
	ctxs, _, err := Contexts(m.Tokenizer, docs, 12, 5, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(ctxs) != 5 || len(ctxs[0]) != 12 || int(ctxs[3][0]) != m.Tokenizer.BOS() {
		t.Fatalf("contexts: %d of %d tokens", len(ctxs), len(ctxs[0]))
	}
	batch := make([][]int, len(ctxs))
	for i, c := range ctxs {
		for _, id := range c {
			batch[i] = append(batch[i], int(id))
		}
	}
	// the reference runs the same batches of two contexts as the source
	// (a product's bits may depend on how many rows it has)
	var results []*probe.Result
	for lo := 0; lo < len(batch); lo += 2 {
		res, err := m.Forward(context.Background(), batch[lo:min(lo+2, len(batch))], probe.Options{Hooks: &probe.Hooks{Cache: []string{"blocks.1.hook_resid_post", "blocks.2.attn.hook_z", "blocks.2.attn.hook_result", "blocks.2.ln2.hook_normalized", "blocks.2.hook_mlp_out"}}, Logits: probe.LogitsNone})
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, res)
	}
	cfg := m.Config
	want := func(name string, b, pos, lo, hi int) []float32 {
		a := results[b/2].Cache[name]
		w := a.Shape[len(a.Shape)-1]
		if len(a.Shape) == 4 {
			w *= a.Shape[2]
		}
		b %= 2
		return a.Data[(b*12+pos)*w+lo : (b*12+pos)*w+hi]
	}
	check := func(src *ModelSource, name string, lo, hi int, target string) {
		t.Helper()
		got := 0
		for c := int64(0); c < src.Chunks(); c++ {
			ch, err := src.Next(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for r := 0; r < ch.Rows; r++ {
				b := int(c)*2 + r/11
				pos := r%11 + 1
				if !slices.Equal(ch.X[r*src.Width():(r+1)*src.Width()], want(name, b, pos, lo, hi)) {
					t.Fatalf("%s: chunk %d row %d differs from the forward cache", name, c, r)
				}
				if target != "" && !slices.Equal(ch.Y[r*src.TargetWidth():(r+1)*src.TargetWidth()], want(target, b, pos, 0, cfg.DModel)) {
					t.Fatalf("%s: chunk %d row %d target differs", target, c, r)
				}
				if ch.Tokens[r] != ctxs[b][pos] {
					t.Fatalf("chunk %d row %d: token %d, want %d", c, r, ch.Tokens[r], ctxs[b][pos])
				}
				got++
			}
		}
		if got != 5*11 {
			t.Fatalf("%s: %d rows, want 55", name, got)
		}
	}
	src, err := NewModelSource(m.Model, ModelConfig{Hook: HookPoint{"blocks.1.hook_resid_post", -1}, Contexts: ctxs, SeqsPerForward: 2, SkipFirst: true})
	if err != nil {
		t.Fatal(err)
	}
	check(src, "blocks.1.hook_resid_post", 0, cfg.DModel, "")
	src, err = NewModelSource(m.Model, ModelConfig{Hook: HookPoint{"blocks.2.attn.hook_z", 3}, Contexts: ctxs, SeqsPerForward: 2, SkipFirst: true})
	if err != nil {
		t.Fatal(err)
	}
	if src.Width() != cfg.HeadDim {
		t.Fatalf("hook_z head width %d, want %d", src.Width(), cfg.HeadDim)
	}
	check(src, "blocks.2.attn.hook_z", 3*cfg.HeadDim, 4*cfg.HeadDim, "")
	src, err = NewModelSource(m.Model, ModelConfig{Hook: HookPoint{"blocks.2.attn.hook_result", 5}, Contexts: ctxs, SeqsPerForward: 2, SkipFirst: true})
	if err != nil {
		t.Fatal(err)
	}
	if src.Width() != cfg.DModel {
		t.Fatalf("hook_result head width %d, want %d", src.Width(), cfg.DModel)
	}
	check(src, "blocks.2.attn.hook_result", 5*cfg.DModel, 6*cfg.DModel, "")
	tgt := HookPoint{"blocks.2.hook_mlp_out", -1}
	src, err = NewModelSource(m.Model, ModelConfig{Hook: HookPoint{"blocks.2.ln2.hook_normalized", -1}, Target: &tgt, Contexts: ctxs, SeqsPerForward: 2, SkipFirst: true})
	if err != nil {
		t.Fatal(err)
	}
	check(src, "blocks.2.ln2.hook_normalized", 0, cfg.DModel, "blocks.2.hook_mlp_out")

	// seeking back gives the same chunk
	src.Seek(context.Background(), 1)
	a, _ := src.Next(context.Background())
	src.Seek(context.Background(), 1)
	b, _ := src.Next(context.Background())
	if !slices.Equal(a.X, b.X) {
		t.Fatal("seek did not reproduce a chunk")
	}

	for _, bad := range []struct {
		h    HookPoint
		want string
	}{
		{HookPoint{"blocks.9.hook_resid_post", -1}, "no such hook"},
		{HookPoint{"blocks.1.attn.hook_pattern", -1}, "not per-position"},
		{HookPoint{"blocks.1.attn.hook_z", 99}, "out of range"},
		{HookPoint{"blocks.1.hook_resid_post", 2}, "has no heads"},
	} {
		if _, err := NewModelSource(m.Model, ModelConfig{Hook: bad.h, Contexts: ctxs}); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("hook %v: error %v, want %q", bad.h, err, bad.want)
		}
	}
	if _, err := NewModelSource(m.Model, ModelConfig{Hook: HookPoint{"blocks.1.hook_resid_post", -1}}); err == nil {
		t.Error("no contexts: no error")
	}
}

// TestTraceSourceReadsWhatWasTraced: activations written to an Arrow trace
// (two shards) come back from a TraceSource row for row, BOS skipped.
func TestTraceSourceReadsWhatWasTraced(t *testing.T) {
	m, err := organism.Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	hook := "blocks.1.hook_resid_post"
	prompts := []string{"The day after Monday is Tuesday.", "one two three four", "red green blue"}
	dir := t.TempDir()
	var want [][]float32
	var paths []string
	for shard := 0; shard < 2; shard++ {
		path := filepath.Join(dir, fmt.Sprintf("shard%d.arrow", shard))
		w, err := store.Create(path, store.RunInfo{ModelPath: "organism"}, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		for p, text := range prompts[shard:] {
			ids, _ := m.Tokenizer.Encode(text, true)
			res, err := m.Forward(context.Background(), [][]int{ids}, probe.Options{Hooks: &probe.Hooks{Cache: []string{hook}}, Logits: probe.LogitsNone})
			if err != nil {
				t.Fatal(err)
			}
			a := res.Cache[hook]
			d := a.Shape[2]
			if err := w.WriteActivation(store.Activation{Hook: hook, Layer: 1, Head: -1, PromptID: p, Shape: []int{d}, Values: a.Data}); err != nil {
				t.Fatal(err)
			}
			for pos := 1; pos < len(ids); pos++ {
				want = append(want, a.Data[pos*d:(pos+1)*d])
			}
		}
		if err := w.Commit(context.Background()); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, path)
	}
	src, err := OpenTraces(paths, HookPoint{Name: hook, Head: -1}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if src.Width() != m.Config.DModel || src.Chunks() != 5 {
		t.Fatalf("width %d, %d chunks", src.Width(), src.Chunks())
	}
	var got [][]float32
	for c := 0; c < 5; c++ {
		ch, err := src.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for r := 0; r < ch.Rows; r++ {
			got = append(got, ch.X[r*src.Width():(r+1)*src.Width()])
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d rows, want %d", len(got), len(want))
	}
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Fatalf("row %d differs", i)
		}
	}
	if _, err := OpenTraces(paths, HookPoint{Name: "blocks.0.hook_resid_post", Head: -1}, true); err == nil || !strings.Contains(err.Error(), "no activations of hook") {
		t.Errorf("a hook the trace lacks: %v", err)
	}
}
