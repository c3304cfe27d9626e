package tui

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
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
