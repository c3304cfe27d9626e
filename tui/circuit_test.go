package tui

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"github.com/loupe-dev/loupe/store"
)

// A circuit table (loupe circuits find) shows on the head map: the method's
// head scores as a score, the circuit's heads under a label.
func TestOpenCircuitTable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "circuit.arrow")
	w, err := store.Create(path, store.RunInfo{ModelPath: "toy"}, store.Options{MainTable: string(store.KindCircuit)})
	if err != nil {
		t.Fatal(err)
	}
	rows := []store.CircuitRow{
		{Method: "acdc", Task: "ioi", Kind: store.CircuitNode, Node: "1.2", Layer: 1, Head: 2, Score: 0.3, InCircuit: true},
		{Method: "acdc", Task: "ioi", Kind: store.CircuitNode, Node: "0.1", Layer: 0, Head: 1, Score: 0},
		{Method: "acdc", Task: "ioi", Kind: store.CircuitNode, Node: "mlp0", Layer: 0, Head: -1, Score: 0.1, InCircuit: true},
		{Method: "acdc", Task: "ioi", Kind: store.CircuitEdge, Node: "0.1", To: "1.2", Layer: -1, Head: -1, Score: 0.3, InCircuit: true},
	}
	if err := w.WriteCircuit(rows); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	src, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if !slices.Contains(src.ScoreNames(), "circuit_acdc") || src.Layers() != 2 || src.Heads() != 3 {
		t.Fatalf("scores %v, %d x %d heads", src.ScoreNames(), src.Layers(), src.Heads())
	}
	if s, ok := src.Score(1, 2, "circuit_acdc"); !ok || s.Value != 0.3 || !src.HasLabel(1, 2, "circuit (acdc)") {
		t.Errorf("head 1.2: %+v %v, in-circuit label %v", s, ok, src.HasLabel(1, 2, "circuit (acdc)"))
	}
	if src.HasLabel(0, 1, "circuit (acdc)") {
		t.Errorf("head 0.1 is not in the circuit but carries its label")
	}
}
