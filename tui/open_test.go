package tui

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/muesli/termenv"

	"github.com/loupe-dev/loupe/store"
)

// TestOpenGlob opens what the shell's `dir/*.arrow` names: every file of
// two traces, main files and siblings in name order. Each trace opens once,
// in the order it is first named, with its head scores not doubled; a
// sibling alone opens its trace.
func TestOpenGlob(t *testing.T) {
	dir := t.TempDir()
	trace, heads := writeSample(t, dir)
	files, err := filepath.Glob(filepath.Join(dir, "*.arrow"))
	if err != nil || len(files) < 4 {
		t.Fatalf("glob: %v, %v", files, err)
	}
	one, err := Open(trace, heads)
	if err != nil {
		t.Fatal(err)
	}
	want := len(one.scores)
	one.Close()

	src, err := Open(files...)
	if err != nil {
		t.Fatalf("Open(%v): %v", files, err)
	}
	defer src.Close()
	mains := []string{trace, heads} // in the order the glob first names them
	if strings.Index(strings.Join(files, "\n"), heads) < strings.Index(strings.Join(files, "\n"), trace) {
		mains = []string{heads, trace}
	}
	if !slices.Equal(src.paths, mains) || len(src.traces) != 2 {
		t.Errorf("opened %v (%d traces), want %v", src.paths, len(src.traces), mains)
	}
	if len(src.scores) != want {
		t.Errorf("%d head scores, want %d as from the two main files", len(src.scores), want)
	}

	sib := strings.TrimSuffix(trace, ".arrow") + ".attention.arrow"
	src2, err := Open(sib, trace, dir+string(filepath.Separator)+"."+string(filepath.Separator)+filepath.Base(trace))
	if err != nil {
		t.Fatalf("Open(sibling): %v", err)
	}
	defer src2.Close()
	if len(src2.traces) != 1 || src2.paths[0] != trace {
		t.Errorf("a sibling, its main file and the main file again opened %v", src2.paths)
	}
}

// TestAblationInHeadView: the head view of a head that an ablation
// experiment knocked out shows the task, the accuracy before and after,
// and the random-head control; other heads do not list it.
func TestAblationInHeadView(t *testing.T) {
	withProfile(t, termenv.Ascii)
	dir := t.TempDir()
	trace, heads := writeSample(t, dir)
	abl := filepath.Join(dir, "ablation.arrow")
	w, err := store.Create(abl, store.RunInfo{ModelPath: "sample"}, store.Options{MainTable: string(store.KindAblation)})
	must(t, err)
	must(t, w.WriteAblation(store.Ablation{Task: "induction", Method: "zero", Heads: []store.HeadRef{{Layer: 0, Head: 0}, {Layer: 5, Head: 1}},
		Baseline: 0.9, Accuracy: 0.125, RandomAccuracy: []float64{0.8, 0.9}, RandomHeads: [][]store.HeadRef{{{Layer: 1, Head: 1}, {Layer: 2, Head: 2}}, {{Layer: 3, Head: 3}, {Layer: 4, Head: 4}}}}))
	must(t, w.Commit(context.Background()))

	src, err := Open(trace, heads, abl)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	frame := flat(runFrame(t, New(src), 120, 60, keys("enter")))
	for _, want := range []string{"Head L0.H0", "Ablation", "induction 0.900 → 0.125 random 0.850 ± 0.050",
		"zero-ablated with L0.0 L5.1; control: 2 random heads, 2 draws"} {
		if !strings.Contains(frame, want) {
			t.Errorf("head view of L0.H0 lacks %q:\n%s", want, frame)
		}
	}
	if got := src.Ablations(1, 1); len(got) != 0 {
		t.Errorf("head 1.1 (only in a random draw) lists %d experiments", len(got))
	}
	if got := src.Ablations(5, 1); len(got) != 1 {
		t.Errorf("head 5.1 lists %d experiments, want 1", len(got))
	}
}
