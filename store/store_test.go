package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/float16"
	"github.com/loupe-dev/loupe/store"
	"github.com/loupe-dev/loupe/store/internal/sampletrace"
)

var ctx = context.Background()

// fixture is one of every kind of row, written by writeFixture.
type fixture struct {
	run    store.RunInfo
	tokens []store.Tokens
	acts   []store.Activation
	att    []store.Attention
	topk   []store.AttentionTopK
	scores []store.HeadScore
	flow   []store.FlowMatrix
	lens   []store.LogitLens
}

func newFixture(seed uint64) *fixture {
	rng := rand.New(rand.NewPCG(seed, 7))
	f := &fixture{run: store.RunInfo{
		ModelPath: "/models/tiny", ModelHash: "sha256:abc", Architecture: "llama",
		Config: json.RawMessage(`{"n_layers":2}`), LoupeVersion: "test",
		CommandLine: []string{"loupe", "trace", "--hooks", "blocks.*"}, CreatedAt: time.Date(2026, 5, 6, 7, 8, 9, 10, time.UTC),
	}}
	rnd := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	for p := 0; p < 3; p++ {
		T := 5 + p*3
		tk := store.Tokens{PromptID: p}
		for i := 0; i < T; i++ {
			tk.IDs = append(tk.IDs, rng.IntN(1000))
			tk.Texts = append(tk.Texts, fmt.Sprintf(" tok%d,\"q\"", i))
		}
		f.tokens = append(f.tokens, tk)
		for l := 0; l < 2; l++ {
			f.acts = append(f.acts, store.Activation{Hook: fmt.Sprintf("blocks.%d.hook_resid_post", l), Layer: l, Head: -1, PromptID: p,
				Shape: []int{8}, Values: rnd(T * 8)})
			for h := 0; h < 2; h++ {
				f.acts = append(f.acts, store.Activation{Hook: fmt.Sprintf("blocks.%d.attn.hook_z", l), Layer: l, Head: h, PromptID: p,
					Shape: []int{2, 3}, Values: rnd(T * 6)})
				w := make([]float32, T*T)
				for q := 0; q < T; q++ {
					copy(w[q*T:q*T+q+1], rnd(q+1))
				}
				f.att = append(f.att, store.Attention{PromptID: p, Layer: l, Head: h, Queries: T, Keys: T, Causal: true, Weights: w})
				tk := store.AttentionTopK{PromptID: p, Layer: l, Head: h, K: 2}
				for q := 0; q < T; q++ {
					tk.QueryPos = append(tk.QueryPos, q)
					if q == 0 {
						tk.KeyPos = append(tk.KeyPos, 0, -1)
						tk.Weight = append(tk.Weight, 1, 0)
					} else {
						tk.KeyPos = append(tk.KeyPos, int32(q), int32(q-1))
						tk.Weight = append(tk.Weight, 0.6, 0.4)
					}
				}
				f.topk = append(f.topk, tk)
				f.scores = append(f.scores, store.HeadScore{Layer: l, Head: h, Score: "induction", Value: rng.Float64()},
					store.HeadScore{Layer: l, Head: h, Score: "prev_token", Value: rng.Float64(), Label: "previous-token head",
						Details: json.RawMessage(`{"offset":-1}`)})
			}
			f.flow = append(f.flow, store.FlowMatrix{PromptID: p, Method: "rollout", Layer: l, Head: store.HeadsAveraged, ToLayer: l + 1,
				Outputs: positions(T), Rows: T, Cols: T, Values: rnd(T * T)})
			ll := store.LogitLens{PromptID: p, Layer: l, K: 2}
			for q := 0; q < T; q++ {
				ll.Positions = append(ll.Positions, q)
				if q == T-1 {
					ll.TargetProb = append(ll.TargetProb, float32(math.NaN()))
					ll.TopIDs = append(ll.TopIDs, 3, -1)
					ll.TopProbs = append(ll.TopProbs, 0.9, 0)
					ll.TopTexts = append(ll.TopTexts, " x", "")
				} else {
					ll.TargetProb = append(ll.TargetProb, 0.25)
					ll.TopIDs = append(ll.TopIDs, 3, 4)
					ll.TopProbs = append(ll.TopProbs, 0.5, 0.25)
					ll.TopTexts = append(ll.TopTexts, " x", " y")
				}
			}
			f.lens = append(f.lens, ll)
		}
		f.flow = append(f.flow, store.FlowMatrix{PromptID: p, Method: "flow", Layer: -1, Head: 1, FromLayer: 0, ToLayer: 2,
			Outputs: []int{T - 2, T - 1}, Rows: 2, Cols: T, Values: rnd(2 * T)})
	}
	return f
}

func (f *fixture) write(t testing.TB, path string, opts store.Options) {
	t.Helper()
	if err := f.writeErr(path, opts); err != nil {
		t.Fatal(err)
	}
}

// writeErr writes the fixture as a trace; safe to call from any goroutine.
func (f *fixture) writeErr(path string, opts store.Options) error {
	w, err := store.Create(path, f.run, opts)
	if err != nil {
		return err
	}
	defer w.Close()
	var errs []error
	for _, tk := range f.tokens {
		errs = append(errs, w.WriteTokens(tk))
	}
	for _, a := range f.acts {
		errs = append(errs, w.WriteActivation(a))
	}
	for _, a := range f.att {
		errs = append(errs, w.WriteAttention(a))
	}
	for _, a := range f.topk {
		errs = append(errs, w.WriteAttentionTopK(a))
	}
	errs = append(errs, w.WriteHeadScores(f.scores))
	for _, m := range f.flow {
		errs = append(errs, w.WriteFlow(m))
	}
	for _, l := range f.lens {
		errs = append(errs, w.WriteLogitLens(l))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return w.Commit(ctx)
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts store.Options
	}{
		{"zstd", store.Options{}},
		{"none-small-batches", store.Options{Compression: store.None, MaxBatchRows: 4}},
		{"lz4-float16", store.Options{Compression: store.LZ4, ActivationDType: store.Float16, MaxBatchBytes: 100}},
		{"main-activations", store.Options{MainTable: "activations.8"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(1)
			path := filepath.Join(t.TempDir(), "trace.arrow")
			f.write(t, path, tc.opts)
			tr, err := store.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			if got := tr.Run(); !reflect.DeepEqual(got, f.run) {
				t.Errorf("run info:\n got %+v\nwant %+v", got, f.run)
			}
			tokens, err := tr.ReadTokens(ctx, store.Selector{})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(tokens, f.tokens) {
				t.Errorf("tokens differ:\n got %+v\nwant %+v", tokens, f.tokens)
			}
			acts, err := tr.ReadActivations(ctx, store.Selector{})
			if err != nil {
				t.Fatal(err)
			}
			want := sortedActs(f.acts, tc.opts.ActivationDType == store.Float16)
			if !reflect.DeepEqual(sortedActs(acts, false), want) {
				t.Errorf("activations differ: got %d, want %d", len(acts), len(want))
			}
			att, err := tr.ReadAttention(ctx, store.Selector{})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(att, f.att) {
				t.Errorf("attention differs")
			}
			topk, err := tr.ReadAttentionTopK(ctx, store.Selector{})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(topk, f.topk) {
				t.Errorf("top-k attention differs:\n got %+v\nwant %+v", topk[0], f.topk[0])
			}
			scores, err := tr.ReadHeadScores(ctx, store.Selector{})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(scores, f.scores) {
				t.Errorf("head scores differ:\n got %+v\nwant %+v", scores, f.scores)
			}
			flow, err := tr.ReadFlow(ctx, store.Selector{})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(sortedFlow(flow), sortedFlow(f.flow)) {
				t.Errorf("flow differs")
			}
			lens, err := tr.ReadLogitLens(ctx, store.Selector{})
			if err != nil {
				t.Fatal(err)
			}
			if len(lens) != len(f.lens) {
				t.Fatalf("logit lens: %d, want %d", len(lens), len(f.lens))
			}
			for i := range lens {
				g, w := lens[i], f.lens[i]
				if !reflect.DeepEqual(g.TopIDs, w.TopIDs) || !reflect.DeepEqual(g.TopTexts, w.TopTexts) || !reflect.DeepEqual(g.Positions, w.Positions) ||
					!sameFloats(g.TargetProb, w.TargetProb) || !reflect.DeepEqual(g.TopProbs, w.TopProbs) {
					t.Errorf("logit lens %d differs:\n got %+v\nwant %+v", i, g, w)
				}
			}
			// Every file carries the run, the schema version and the trace id.
			for _, in := range tr.Tables() {
				tb, err := tr.Table(in.Name)
				if err != nil {
					t.Fatal(err)
				}
				md := tb.Metadata()
				if md[store.MetaSchema] != strconv.Itoa(store.SchemaVersion) || md[store.MetaTraceID] != tr.TraceID() || md[store.MetaKind] != string(in.Kind) {
					t.Errorf("%s: metadata %v", in.Name, md)
				}
				if tb.Run().ModelHash != "sha256:abc" {
					t.Errorf("%s: run not stamped", in.Name)
				}
			}
		})
	}
}

func sameFloats(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] && !(a[i] != a[i] && b[i] != b[i]) {
			return false
		}
	}
	return true
}

// sortedActs orders activations by table (shape) then write order, as the
// reader returns them, fills Positions, and optionally rounds to float16.
func sortedActs(in []store.Activation, f16 bool) []store.Activation {
	var out []store.Activation
	for _, shape := range [][]int{{2, 3}, {8}} {
		for _, a := range in {
			if !reflect.DeepEqual(a.Shape, shape) {
				continue
			}
			a.Positions = nil
			for i := 0; i < a.Rows(); i++ {
				a.Positions = append(a.Positions, a.Start+i)
			}
			if f16 {
				v := make([]float32, len(a.Values))
				for i, x := range a.Values {
					v[i] = float16.New(x).Float32()
				}
				a.Values = v
			}
			out = append(out, a)
		}
	}
	return out
}

func positions(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

func sortedFlow(in []store.FlowMatrix) map[string]store.FlowMatrix {
	out := map[string]store.FlowMatrix{}
	for _, m := range in {
		out[fmt.Sprint(m.PromptID, m.Method, m.Layer)] = m
	}
	return out
}

func TestLayoutAndIndex(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "traces.arrow")
	newFixture(2).write(t, path, store.Options{MaxBatchRows: 3})
	var names []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		names = append(names, e.Name())
	}
	want := []string{"traces.activations.2x3.arrow", "traces.activations.8.arrow", "traces.arrow", "traces.attention.arrow",
		"traces.attention_topk.arrow", "traces.flow.arrow", "traces.head_scores.arrow", "traces.index.arrow", "traces.logit_lens.arrow"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("files %v\nwant %v", names, want)
	}
	tr, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if got := tr.Prompts(); !reflect.DeepEqual(got, []int{0, 1, 2}) {
		t.Errorf("prompts %v", got)
	}
	if got := tr.Hooks(); len(got) != 4 {
		t.Errorf("hooks %v", got)
	}
	// Batches of a selection are exactly the indexed ones, and hold only
	// the selected key.
	sel := store.Selector{Prompts: []int{1}, Hooks: []string{"blocks.1.hook_resid_post"}}
	n := 0
	for rec, err := range tr.Batches(ctx, "activations.8", sel) {
		if err != nil {
			t.Fatal(err)
		}
		n++
		if rec.NumRows() > 3 {
			t.Errorf("batch of %d rows, limit 3", rec.NumRows())
		}
	}
	if n != 3 { // 8 positions in batches of at most 3
		t.Errorf("%d batches for prompt 1 / layer 1, want 3", n)
	}
	acts, err := tr.ReadActivations(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	if len(acts) != 1 || acts[0].Rows() != 8 || acts[0].Hook != "blocks.1.hook_resid_post" || acts[0].PromptID != 1 {
		t.Errorf("selected activations: %+v", acts)
	}
	heads, err := tr.ReadActivations(ctx, store.Selector{Heads: []int{1}, Layers: []int{0}, Prompts: []int{2}})
	if err != nil {
		t.Fatal(err)
	}
	if len(heads) != 1 || heads[0].Head != 1 || heads[0].Layer != 0 || !reflect.DeepEqual(heads[0].Shape, []int{2, 3}) {
		t.Errorf("per-head selection: %+v", heads)
	}
	// A sibling can be opened on its own, but is not a trace.
	if _, err := store.Open(filepath.Join(dir, "traces.flow.arrow")); err == nil || !strings.Contains(err.Error(), "open "+filepath.Join(dir, "traces.arrow")+" instead") {
		t.Errorf("opening a sibling as a trace: %v", err)
	}
	tb, err := store.OpenTable(filepath.Join(dir, "traces.flow.arrow"))
	if err != nil {
		t.Fatal(err)
	}
	tb.Close()
}

// TestMainPath: every file of a trace leads to its main file; a sibling
// renamed, or whose main file is gone or from another write, is an error
// naming the file.
func TestMainPath(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "t.arrow")
	writeSmall := func() {
		w, err := store.Create(path, store.RunInfo{ModelPath: "m"}, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WriteTokens(store.Tokens{PromptID: 0, IDs: []int{1, 2}, Texts: []string{"a", "b"}}); err != nil {
			t.Fatal(err)
		}
		if err := w.WriteAttention(store.Attention{PromptID: 0, Layer: 0, Head: 0, Queries: 2, Keys: 2, Causal: true, Weights: []float32{1, 0, 0.5, 0.5}}); err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	writeSmall()
	for _, p := range []string{path, filepath.Join(dir, "t.attention.arrow"), filepath.Join(dir, "t.index.arrow")} {
		got, err := store.MainPath(p)
		if err != nil || got != path {
			t.Errorf("MainPath(%s) = %q, %v; want %s", p, got, err, path)
		}
	}
	att, _ := os.ReadFile(filepath.Join(dir, "t.attention.arrow"))
	renamed := filepath.Join(dir, "copy.arrow")
	writeFile(t, renamed, att)
	if _, err := store.MainPath(renamed); err == nil || !strings.Contains(err.Error(), "copy.arrow") || !strings.Contains(err.Error(), `does not end in ".attention.arrow"`) {
		t.Errorf("renamed sibling: %v", err)
	}
	orphan := filepath.Join(dir, "gone.attention.arrow")
	writeFile(t, orphan, att)
	if _, err := store.MainPath(orphan); err == nil || !strings.Contains(err.Error(), "gone.arrow") {
		t.Errorf("sibling without its main file: %v", err)
	}
	stale := filepath.Join(dir, "stale.attention.arrow")
	writeFile(t, stale, att)
	writeSmall() // a new write: new trace id
	main, _ := os.ReadFile(path)
	writeFile(t, filepath.Join(dir, "stale.arrow"), main)
	if _, err := store.MainPath(stale); err == nil || !strings.Contains(err.Error(), "another write") {
		t.Errorf("sibling of an older write: %v", err)
	}
}

func TestRewriteRemovesStaleSiblings(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "t.arrow")
	newFixture(1).write(t, path, store.Options{})
	w, err := store.Create(path, store.RunInfo{}, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteTokens(store.Tokens{PromptID: 9, IDs: []int{1, 2}}); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("after rewrite: %d files, want t.arrow and t.index.arrow", len(entries))
	}
}

func TestAbortLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	f := newFixture(3)
	w, err := store.Create(filepath.Join(dir, "t.arrow"), f.run, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range f.acts {
		if err := w.WriteActivation(a); err != nil {
			t.Fatal(err)
		}
	}
	// Until Commit only hidden temporary files exist, none under a final
	// name, and none is a complete Arrow file.
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") || !strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("before commit: %s", e.Name())
		}
		if _, err := store.OpenTable(filepath.Join(dir, e.Name())); err == nil {
			t.Errorf("temporary file %s opens as complete", e.Name())
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := w.Commit(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("commit with a cancelled context: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("after a cancelled commit: %d files left", len(entries))
	}
	if err := w.WriteTokens(store.Tokens{}); err == nil {
		t.Error("write after commit succeeded")
	}
}

func TestTruncated(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "t.arrow")
	newFixture(4).write(t, path, store.Options{MaxBatchRows: 4})
	rng := rand.New(rand.NewPCG(42, 42))
	for _, name := range []string{"t.arrow", "t.activations.8.arrow", "t.index.arrow"} {
		full, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 10; i++ {
			cut := rng.IntN(len(full))
			func() {
				tdir := t.TempDir()
				for _, e := range must(os.ReadDir(dir)) {
					data := must(os.ReadFile(filepath.Join(dir, e.Name())))
					if e.Name() == name {
						data = data[:cut]
					}
					if err := os.WriteFile(filepath.Join(tdir, e.Name()), data, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				err := readEverything(filepath.Join(tdir, "t.arrow"))
				if err == nil {
					t.Fatalf("%s cut at %d of %d: no error", name, cut, len(full))
				}
				if !strings.Contains(err.Error(), name) || !errors.Is(err, store.ErrIncomplete) {
					t.Errorf("%s cut at %d: error does not name the file or say why: %v", name, cut, err)
				}
			}()
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// readEverything opens a trace and reads every table through the typed
// readers.
func readEverything(path string) error {
	tr, err := store.Open(path)
	if err != nil {
		return err
	}
	defer tr.Close()
	for _, in := range tr.Tables() {
		tb, err := tr.Table(in.Name)
		if err != nil {
			return err
		}
		for _, err := range tb.All(ctx) {
			if err != nil {
				return err
			}
		}
	}
	if _, err := tr.ReadTokens(ctx, store.Selector{}); err != nil {
		return err
	}
	if _, err := tr.ReadActivations(ctx, store.Selector{}); err != nil {
		return err
	}
	if _, err := tr.ReadAttention(ctx, store.Selector{}); err != nil {
		return err
	}
	if _, err := tr.ReadHeadScores(ctx, store.Selector{}); err != nil {
		return err
	}
	return nil
}

func TestConcurrentWriters(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "t.arrow")
	for round := 0; round < 5; round++ {
		fs := []*fixture{newFixture(uint64(10 + round)), newFixture(uint64(20 + round))}
		fs[1].run.ModelPath = "/models/other"
		fs[1].acts = fs[1].acts[:3] // the second writer has fewer tables
		fs[1].att, fs[1].flow = nil, nil
		var wg sync.WaitGroup
		for _, f := range fs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := f.writeErr(path, store.Options{MaxBatchRows: 2}); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		tr, err := store.Open(path)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		winner := fs[0]
		if tr.Run().ModelPath == "/models/other" {
			winner = fs[1]
		}
		if err := readEverything(path); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		acts := must(tr.ReadActivations(ctx, store.Selector{}))
		if !reflect.DeepEqual(sortedActs(acts, false), sortedActs(winner.acts, false)) {
			t.Errorf("round %d: activations are not the winning writer's", round)
		}
		if _, ok := tr.TableInfo("attention"); ok != (winner.att != nil) {
			t.Errorf("round %d: attention table present=%v", round, ok)
		}
		tr.Close()
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if strings.Contains(e.Name(), ".tmp-") {
				t.Errorf("round %d: temporary file %s left", round, e.Name())
			}
		}
	}
}

// TestMemoryFlat writes 256 MiB of activations and checks the heap does
// not grow with the trace.
func TestMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 256 MiB")
	}
	dir := t.TempDir()
	w, err := store.Create(filepath.Join(dir, "big.arrow"), store.RunInfo{}, store.Options{Compression: store.None, MaxBatchBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	const d = 1024
	vals := make([]float32, 256*d) // 1 MiB per call
	for i := range vals {
		vals[i] = float32(i)
	}
	var peak, base uint64
	var ms runtime.MemStats
	for i := 0; i < 256; i++ {
		if err := w.WriteActivation(store.Activation{Hook: "blocks.0.hook_resid_post", PromptID: i / 8, Start: (i % 8) * 256, Shape: []int{d}, Values: vals}); err != nil {
			t.Fatal(err)
		}
		if i%32 == 31 {
			runtime.GC()
			runtime.ReadMemStats(&ms)
			if base == 0 {
				base = ms.HeapAlloc
			}
			peak = max(peak, ms.HeapAlloc)
		}
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("heap after first 32 MiB: %d MiB, peak: %d MiB", base>>20, peak>>20)
	if peak > base+16<<20 {
		t.Errorf("heap grew from %d MiB to %d MiB while writing 256 MiB", base>>20, peak>>20)
	}
	st, _ := os.Stat(filepath.Join(dir, "big.activations.1024.arrow"))
	if st.Size() < 256<<20 {
		t.Errorf("file is %d bytes", st.Size())
	}
}

func TestSampleTrace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sample.arrow")
	if err := sampletrace.Write(ctx, path, sampletrace.Config{}); err != nil {
		t.Fatal(err)
	}
	if err := readEverything(path); err != nil {
		t.Fatal(err)
	}
	tr := must(store.Open(path))
	defer tr.Close()
	scores := must(tr.ReadHeadScores(ctx, store.Selector{}))
	best := map[string]store.HeadScore{}
	for _, s := range scores {
		if s.Value > best[s.Score].Value {
			best[s.Score] = s
		}
	}
	if b := best["prev_token"]; b.Layer != 1 || b.Head != 2 {
		t.Errorf("planted previous-token head not first: %+v", b)
	}
	if b := best["induction"]; b.Layer != 2 || b.Head != 1 {
		t.Errorf("planted induction head not first: %+v", b)
	}
}

func TestExport(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "t.arrow")
	newFixture(5).write(t, path, store.Options{ActivationDType: store.Float16, MaxBatchRows: 4})
	for _, format := range []store.Format{store.Parquet, store.CSV} {
		files, err := store.Export(ctx, path, "", format)
		if err != nil {
			t.Fatal(err)
		}
		if len(files) != 9 || files[0] != filepath.Join(dir, "t.activations.2x3."+string(format)) {
			t.Errorf("%s: files %v", format, files)
		}
	}
	csvText := string(must(os.ReadFile(filepath.Join(dir, "t.activations.8.csv"))))
	lines := strings.Split(strings.TrimSpace(csvText), "\n")
	if lines[0] != "hook,layer,head,prompt_id,position,values" || len(lines) != 1+(5+8+11)*2 {
		t.Errorf("activations csv: header %q, %d lines", lines[0], len(lines))
	}
	if !strings.Contains(lines[1], `"[`) {
		t.Errorf("values not a JSON array: %s", lines[1])
	}
	tokens := string(must(os.ReadFile(filepath.Join(dir, "t.csv"))))
	if !strings.HasPrefix(tokens, "prompt_id,position,token_id,token_text\n0,0,") {
		t.Errorf("tokens csv: %.80s", tokens)
	}
	if _, err := store.Export(ctx, path, "", "xlsx"); err == nil {
		t.Error("unknown format accepted")
	}
}

func TestBadInputIsRefusedNotSticky(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.arrow")
	w := must(store.Create(path, store.RunInfo{}, store.Options{}))
	defer w.Close()
	bad := []error{
		w.WriteActivation(store.Activation{Hook: "h", Shape: []int{3}, Values: make([]float32, 4)}),
		w.WriteActivation(store.Activation{Hook: "", Shape: []int{2}, Values: make([]float32, 4)}),
		w.WriteAttention(store.Attention{Queries: 2, Keys: 2, Weights: make([]float32, 3)}),
		w.WriteHeadScores([]store.HeadScore{{Score: "ok"}, {Score: "x", Details: []byte("{")}}),
		w.WriteFlow(store.FlowMatrix{Method: "rollout", Rows: 2, Cols: 2}),
		w.WriteTokens(store.Tokens{IDs: []int{1}, Texts: []string{"a", "b"}}),
	}
	for i, err := range bad {
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("bad input %d: %v", i, err)
		}
	}
	if err := w.WriteTokens(store.Tokens{IDs: []int{1, 2}}); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	tr := must(store.Open(path))
	defer tr.Close()
	if _, ok := tr.TableInfo("head_scores"); ok {
		t.Error("a refused batch of head scores left rows")
	}
}

// TestFileShrunkWhileMapped: a file cut short under the reader's memory map
// (never done by Loupe's writers, which rename) gives an error, not SIGBUS.
func TestFileShrunkWhileMapped(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "t.arrow")
	newFixture(6).write(t, path, store.Options{Compression: store.None})
	tr := must(store.Open(path))
	defer tr.Close()
	tb := must(tr.Table("activations.8"))
	if err := os.Truncate(tb.Path(), 64); err != nil {
		t.Fatal(err)
	}
	_, err := tr.ReadActivations(ctx, store.Selector{})
	if !errors.Is(err, store.ErrIncomplete) {
		t.Fatalf("reading a file shrunk under its map: %v", err)
	}
	t.Log(err)
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestReadSchemaV1Flow reads flow files written by schema version 1 (see
// testdata/v1/README.md): the head and input layer come out of the method
// string, the uncomputed NaN rows are dropped, rows get their output
// positions, and selecting by method and head works as on v2 files.
func TestReadSchemaV1Flow(t *testing.T) {
	tr, err := store.Open(filepath.Join("testdata", "v1", "flow.arrow"))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if tr.SchemaVersion() != 1 {
		t.Fatalf("schema version %d, want 1", tr.SchemaVersion())
	}
	ctx := context.Background()
	got, err := tr.ReadFlow(ctx, store.Selector{})
	if err != nil {
		t.Fatal(err)
	}
	want := []store.FlowMatrix{
		{PromptID: 0, Method: "rollout", Layer: -1, Head: store.HeadsAveraged, FromLayer: 0, ToLayer: 4,
			Outputs: []int{0, 1, 2, 3}, Rows: 4, Cols: 4,
			Values: []float32{1, 0, 0, 0, 0.5, 0.5, 0, 0, 0.25, 0.25, 0.5, 0, 0.125, 0.125, 0.25, 0.5}},
		{PromptID: 0, Method: "flow", Layer: 3, Head: 3, FromLayer: 2, ToLayer: 4,
			Outputs: []int{3}, Rows: 1, Cols: 4, Values: []float32{0.1, 0.2, 0.3, 0.4}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("v1 flow read as\n%+v\nwant\n%+v", got, want)
	}
	for _, sel := range []store.Selector{{Methods: []string{"flow"}}, {Heads: []int{3}}} {
		got, err := tr.ReadFlow(ctx, sel)
		if err != nil || len(got) != 1 || got[0].Method != "flow" || got[0].Head != 3 {
			t.Errorf("select %+v from a v1 flow table: %+v, %v", sel, got, err)
		}
	}
	toks, err := tr.ReadTokens(ctx, store.Selector{})
	if err != nil || len(toks) != 1 || len(toks[0].IDs) != 4 {
		t.Errorf("v1 tokens: %+v, %v", toks, err)
	}
}
