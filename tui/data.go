package tui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/loupe-dev/loupe/store"
)

// FileError is a file the browser cannot read, and why. The error screen
// shows both.
type FileError struct {
	Path string
	Err  error
}

func (e *FileError) Error() string { return fmt.Sprintf("%s: %v", e.Path, e.Err) }
func (e *FileError) Unwrap() error { return e.Err }

// Source is what the browser shows: the traces named on the command line,
// merged. Opening reads each trace's index and its head scores (one row per
// (layer, head, score): small whatever the trace size); everything else is
// read on first use, one prompt or one head at a time, and cached. The
// store memory-maps every file, so reading one prompt touches only that
// prompt's record batches.
//
// Source is used from the bubbletea update loop only, so it needs no lock.
type Source struct {
	paths  []string
	traces []*store.Trace

	scores     []store.HeadScore
	scoreNames []string // map order: the well-known scores first
	labels     []string // distinct labels, sorted
	byHead     map[[2]int][]int
	layers     int
	heads      int
	prompts    []int
	// ablations are the ablation experiments of every trace (small: one
	// row per experiment), read at Open.
	ablations []store.Ablation

	tokens map[int]*store.Tokens
	attn   map[[3]int]*attnResult
	norms  map[int]*normsResult
	lens   map[int]*lensResult
	flow   map[int]*flowResult

	circuit []store.CircuitRow // circuit tables (loupe circuits find), read at Open
	graphs  []*circuitGraph    // circuit grouped by method, made on first use

	features  []store.FeatureRow // SAE latents (features.go)
	featTrace *store.Trace
	examples  map[int][]store.FeatureExample

	codes []store.Code // codebook codes (codes.go)
}

// knownScores fixes the order of the well-known scores in the head map, so
// that `s` walks them in the order the heads package documents them.
var knownScores = []string{"previous_token", "prev_token", "induction", "duplicate_token", "sink", "streaming",
	"retrieval", "successor", "temporal", "lookback"}

// Open opens every file and merges them. Any file of a trace opens the
// whole trace (a sibling table leads to its main file), and a trace named
// several times, as the shell's `out/*.arrow` names it once per table, is
// opened once, where it is first named. An error names the file.
func Open(paths ...string) (src *Source, err error) {
	if len(paths) == 0 {
		return nil, fmt.Errorf("no trace file given")
	}
	mains, err := mainFiles(paths)
	if err != nil {
		return nil, err
	}
	src = &Source{paths: mains, byHead: map[[2]int][]int{}, tokens: map[int]*store.Tokens{},
		attn: map[[3]int]*attnResult{}, norms: map[int]*normsResult{}, lens: map[int]*lensResult{}, flow: map[int]*flowResult{}}
	for _, p := range mains {
		var tr *store.Trace
		err := guard(func() error {
			var err error
			tr, err = store.Open(p)
			return err
		})
		if err != nil {
			src.Close()
			return nil, fileErr(p, err)
		}
		src.traces = append(src.traces, tr)
	}
	// Head scores: a later file overrides an earlier one's (layer, head,
	// score), so `loupe tui old.arrow new-heads.arrow` shows the new scores.
	seen := map[string]int{}
	for _, tr := range src.traces {
		var hs []store.HeadScore
		err := guard(func() error {
			var err error
			hs, err = tr.ReadHeadScores(context.Background(), store.Selector{})
			return err
		})
		if err != nil {
			src.Close()
			return nil, fileErr(tablePath(tr, string(store.KindHeadScores)), err)
		}
		cs, crows, err := circuitScores(tr)
		if err != nil {
			src.Close()
			return nil, fileErr(tablePath(tr, string(store.KindCircuit)), err)
		}
		src.circuit = append(src.circuit, crows...)
		hs = append(hs, cs...)
		for _, s := range hs {
			if s.Layer < 0 || s.Head < 0 || s.Layer > 1<<16 || s.Head > 1<<16 {
				continue // not a head; the map cannot place it
			}
			k := fmt.Sprintf("%d.%d.%s", s.Layer, s.Head, s.Score)
			if j, ok := seen[k]; ok {
				src.scores[j] = s
				continue
			}
			seen[k] = len(src.scores)
			src.scores = append(src.scores, s)
		}
	}
	for _, tr := range src.traces {
		var abl []store.Ablation
		err := guard(func() error {
			var err error
			abl, err = tr.ReadAblations(context.Background(), store.Selector{})
			return err
		})
		if err != nil {
			src.Close()
			return nil, fileErr(tablePath(tr, string(store.KindAblation)), err)
		}
		src.ablations = append(src.ablations, abl...)
		for _, a := range abl {
			for _, h := range a.Heads {
				src.layers, src.heads = max(src.layers, h.Layer+1), max(src.heads, h.Head+1)
			}
		}
	}
	names, labels := map[string]bool{}, map[string]bool{}
	for i, s := range src.scores {
		src.layers, src.heads = max(src.layers, s.Layer+1), max(src.heads, s.Head+1)
		names[s.Score] = true
		if s.Label != "" {
			labels[s.Label] = true
		}
		k := [2]int{s.Layer, s.Head}
		src.byHead[k] = append(src.byHead[k], i)
	}
	for _, n := range knownScores {
		if names[n] {
			src.scoreNames = append(src.scoreNames, n)
			delete(names, n)
		}
	}
	rest := make([]string, 0, len(names))
	for n := range names {
		rest = append(rest, n)
	}
	sort.Strings(rest)
	src.scoreNames = append(src.scoreNames, rest...)
	for l := range labels {
		src.labels = append(src.labels, l)
	}
	sort.Strings(src.labels)

	seenP := map[int]bool{}
	for _, tr := range src.traces {
		if l, h := configShape(tr.Run().Config); l > 0 {
			src.layers, src.heads = max(src.layers, l), max(src.heads, h)
		}
		for _, l := range tr.Layers() {
			src.layers = max(src.layers, l+1)
		}
		for _, p := range tr.Prompts() {
			if !seenP[p] {
				seenP[p] = true
				src.prompts = append(src.prompts, p)
			}
		}
	}
	sort.Ints(src.prompts)
	if err := src.loadFeatures(); err != nil {
		src.Close()
		return nil, err
	}
	if err := src.loadCodes(); err != nil {
		src.Close()
		return nil, err
	}
	if src.heads == 0 && len(src.prompts) > 0 && src.layers > 0 {
		// No scores and no config: count the heads of one attention batch.
		for _, tr := range src.traces {
			var as []store.Attention
			_ = guard(func() error {
				var err error
				as, err = tr.ReadAttention(context.Background(), store.Selector{Prompts: src.prompts[:1], Layers: []int{0}})
				return err
			})
			for _, a := range as {
				src.heads = max(src.heads, a.Head+1)
			}
		}
	}
	return src, nil
}

// circuitScores shows a circuit table (loupe circuits find) on the head
// map: each method's head scores become the score "circuit_METHOD", and
// the heads in its circuit carry the label "circuit (METHOD)", so the map's
// label filter picks the circuit out.
// It also returns the rows, for the circuit view.
func circuitScores(tr *store.Trace) ([]store.HeadScore, []store.CircuitRow, error) {
	var rows []store.CircuitRow
	err := guard(func() error {
		var err error
		rows, err = tr.ReadCircuit(context.Background())
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	var out []store.HeadScore
	for _, r := range rows {
		if r.Kind != store.CircuitNode || r.Head < 0 || r.Layer < 0 {
			continue
		}
		s := store.HeadScore{Layer: r.Layer, Head: r.Head, Score: "circuit_" + r.Method, Value: r.Score}
		if r.InCircuit {
			s.Label = "circuit (" + r.Method + ")"
		}
		d, _ := json.Marshal(map[string]any{"task": r.Task, "method": r.Method, "in_circuit": r.InCircuit})
		s.Details = d
		out = append(out, s)
	}
	return out, rows, nil
}

// circuitGraphs is the circuit tables' rows grouped by method.
func (s *Source) circuitGraphs() []*circuitGraph {
	if s.graphs == nil && len(s.circuit) > 0 {
		s.graphs = circuitGraphs(s.circuit)
	}
	return s.graphs
}

// mainFiles maps each path to the main file of its trace and drops the
// repeats, keeping the order in which traces are first named.
func mainFiles(paths []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, p := range paths {
		var main string
		err := guard(func() error {
			var err error
			main, err = store.MainPath(p)
			return err
		})
		if err != nil {
			return nil, fileErr(p, err)
		}
		key := main
		if abs, err := filepath.Abs(main); err == nil {
			key = abs
		}
		if real, err := filepath.EvalSymlinks(key); err == nil {
			key = real
		}
		if !seen[key] {
			seen[key] = true
			out = append(out, main)
		}
	}
	return out, nil
}

// guard runs f and turns a panic into an error: whatever a damaged file
// does to a reader, the browser shows an error instead of dying.
func guard(f func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("internal error while reading: %v", p)
		}
	}()
	return f()
}

// readFirst reads the table of kind from the first open trace that has one
// (guarded, the error naming the table's file). It gives nil rows and a nil
// trace when no trace has the table.
func readFirst[T any](s *Source, kind store.Kind, read func(*store.Trace, context.Context) ([]T, error)) ([]T, *store.Trace, error) {
	for _, tr := range s.traces {
		if _, ok := tr.TableInfo(string(kind)); !ok {
			continue
		}
		var rows []T
		err := guard(func() error {
			var err error
			rows, err = read(tr, context.Background())
			return err
		})
		if err != nil {
			return nil, nil, fileErr(tablePath(tr, string(kind)), err)
		}
		return rows, tr, nil
	}
	return nil, nil, nil
}

// tablePath is the file that holds a table of a trace.
func tablePath(tr *store.Trace, name string) string {
	if tr.MainTable() == name {
		return tr.Path()
	}
	return store.SiblingPath(tr.Path(), name)
}

// fileErr makes the error about one file: the store's own errors start
// with "store: open PATH: " (or "read PATH ..."), which the error screen's
// "File:" line already says, so that prefix goes.
func fileErr(path string, err error) *FileError {
	msg := strings.TrimPrefix(err.Error(), "store: ")
	for _, pre := range []string{"open " + path + ": ", "read " + path + ": ", "read " + path + " "} {
		if strings.HasPrefix(msg, pre) {
			return &FileError{Path: path, Err: errors.New(strings.TrimPrefix(msg, pre))}
		}
	}
	if msg != err.Error() {
		return &FileError{Path: path, Err: errors.New(msg)}
	}
	return &FileError{Path: path, Err: err}
}

// configShape reads n_layers and n_heads out of a run's model config, under
// the names the common config formats use.
func configShape(raw json.RawMessage) (layers, heads int) {
	if len(raw) == 0 {
		return 0, 0
	}
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil {
		return 0, 0
	}
	num := func(keys ...string) int {
		for _, k := range keys {
			if v, ok := m[k].(float64); ok && v > 0 && v < 1<<16 {
				return int(v)
			}
		}
		return 0
	}
	return num("n_layers", "num_hidden_layers", "Layers", "layers"), num("n_heads", "num_attention_heads", "Heads", "heads")
}

// Close unmaps every file.
func (s *Source) Close() error {
	var errs []error
	for _, tr := range s.traces {
		errs = append(errs, tr.Close())
	}
	return errors.Join(errs...)
}

// Name is what the header calls the source: the files' base names.
func (s *Source) Name() string {
	names := make([]string, len(s.paths))
	for i, p := range s.paths {
		names[i] = filepath.Base(p)
	}
	return strings.Join(names, " + ")
}

// Layers and Heads give the head map's shape.
func (s *Source) Layers() int { return s.layers }
func (s *Source) Heads() int  { return s.heads }

// ScoreNames lists the scores, in map order.
func (s *Source) ScoreNames() []string { return s.scoreNames }

// Labels lists the distinct head labels.
func (s *Source) Labels() []string { return s.labels }

// Prompts lists the prompt ids found in the traces.
func (s *Source) Prompts() []int { return s.prompts }

// Score returns one head's score; ok is false when it is missing or NaN.
func (s *Source) Score(layer, head int, name string) (store.HeadScore, bool) {
	for _, i := range s.byHead[[2]int{layer, head}] {
		if sc := s.scores[i]; sc.Score == name {
			return sc, !math.IsNaN(sc.Value) && !math.IsInf(sc.Value, 0)
		}
	}
	return store.HeadScore{}, false
}

// HeadScores returns every score of one head, in map order.
func (s *Source) HeadScores(layer, head int) []store.HeadScore {
	var out []store.HeadScore
	for _, i := range s.byHead[[2]int{layer, head}] {
		out = append(out, s.scores[i])
	}
	sort.SliceStable(out, func(a, b int) bool {
		return slices.Index(s.scoreNames, out[a].Score) < slices.Index(s.scoreNames, out[b].Score)
	})
	return out
}

// Ablations returns the ablation experiments that knock out the head, in
// file order.
func (s *Source) Ablations(layer, head int) []store.Ablation {
	var out []store.Ablation
	for _, a := range s.ablations {
		if slices.Contains(a.Heads, store.HeadRef{Layer: layer, Head: head}) {
			out = append(out, a)
		}
	}
	return out
}

// HasLabel reports whether any score labels the head with label.
func (s *Source) HasLabel(layer, head int, label string) bool {
	for _, i := range s.byHead[[2]int{layer, head}] {
		if s.scores[i].Label == label {
			return true
		}
	}
	return false
}

// ranked is a head and its value under one score.
type ranked struct {
	Layer, Head int
	Value       float64
	Label       string
}

// Top returns the heads ranked by one score, best first (ties: lower layer,
// then lower head, so the order is stable).
func (s *Source) Top(name string) []ranked {
	var out []ranked
	for _, sc := range s.scores {
		if sc.Score == name && !math.IsNaN(sc.Value) && !math.IsInf(sc.Value, 0) {
			out = append(out, ranked{sc.Layer, sc.Head, sc.Value, sc.Label})
		}
	}
	sort.SliceStable(out, func(a, b int) bool {
		if out[a].Value != out[b].Value {
			return out[a].Value > out[b].Value
		}
		if out[a].Layer != out[b].Layer {
			return out[a].Layer < out[b].Layer
		}
		return out[a].Head < out[b].Head
	})
	return out
}

// Range returns the smallest and largest finite value of a score.
func (s *Source) Range(name string) (lo, hi float64, ok bool) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, sc := range s.scores {
		if sc.Score == name && !math.IsNaN(sc.Value) && !math.IsInf(sc.Value, 0) {
			lo, hi = min(lo, sc.Value), max(hi, sc.Value)
		}
	}
	return lo, hi, !math.IsInf(lo, 0)
}
