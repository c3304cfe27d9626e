package tui

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/ansi"

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

// The circuit view: `loupe tui` on a circuit file opens on it; the grid
// shows heads and MLPs by layer, the list the circuit's edges; ↓ selects the
// next edge and marks its ends, a lists every scored edge, s the next
// method, esc goes to the head map and c comes back; ? lists its keys.
func TestCircuitView(t *testing.T) {
	path := filepath.Join(t.TempDir(), "circuit.arrow")
	w, err := store.Create(path, store.RunInfo{ModelPath: "toy"}, store.Options{MainTable: string(store.KindCircuit)})
	if err != nil {
		t.Fatal(err)
	}
	var rows []store.CircuitRow
	for _, method := range []string{"acdc", "sae"} {
		for l := 0; l < 2; l++ {
			for h := 0; h < 3; h++ {
				rows = append(rows, store.CircuitRow{Method: method, Task: "ioi", Kind: store.CircuitNode, Node: fmt.Sprintf("%d.%d", l, h),
					Layer: l, Head: h, Score: float64(l*3 + h), InCircuit: l == 1 && h == 2 || l == 0 && h == 1})
			}
			rows = append(rows, store.CircuitRow{Method: method, Task: "ioi", Kind: store.CircuitNode, Node: fmt.Sprintf("mlp%d", l), Layer: l, Head: -1, Score: 0.5})
		}
	}
	rows = append(rows,
		store.CircuitRow{Method: "acdc", Task: "ioi", Kind: store.CircuitEdge, Node: "0.1", To: "1.2", Layer: -1, Head: -1, Score: 0.3, InCircuit: true},
		store.CircuitRow{Method: "acdc", Task: "ioi", Kind: store.CircuitEdge, Node: "1.2", To: "logits", Layer: -1, Head: -1, Score: 0.5, InCircuit: true},
		store.CircuitRow{Method: "acdc", Task: "ioi", Kind: store.CircuitEdge, Node: "embed", To: "0.0", Layer: -1, Head: -1, Score: 0.01},
		store.CircuitRow{Method: "acdc", Task: "ioi", Kind: store.CircuitFigure, Node: "edge_auc", Layer: -1, Head: -1, Score: 0.875},
		store.CircuitRow{Method: "acdc", Task: "ioi", Kind: store.CircuitFigure, Node: "partial", Layer: -1, Head: -1, Score: 1})
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
	var m tea.Model = New(src)
	send := func(k ...string) {
		for _, msg := range keys(k...) {
			m, _ = m.Update(msg)
		}
	}
	m, _ = m.Update(tea.WindowSizeMsg{Width: 100, Height: 30})
	if cur := m.(Model).Current(); cur != "circuit" {
		t.Fatalf("opens on %q, want the circuit view", cur)
	}
	view := ansi.Strip(m.View())
	for _, want := range []string{"Circuit: acdc on ioi", "edge auc 0.875", "partial (ACDC stopped", "L0", "L1", "mlp", "embed", "logits", "circuit edges", "1.2      → logits", "0.1      → 1.2"} {
		if !strings.Contains(view, want) {
			t.Errorf("view lacks %q:\n%s", want, view)
		}
	}
	if strings.Contains(view, "embed    → 0.0") {
		t.Errorf("an edge outside the circuit is listed before a lists them all:\n%s", view)
	}
	// Best first: 1.2 → logits (0.5) is selected, then 0.1 → 1.2.
	if cv := m.(Model).screens[screenCircuit].(*circuitView); cv.edges()[cv.sel].Node != "1.2" {
		t.Errorf("first selected edge %+v", cv.edges()[cv.sel])
	}
	send("down")
	if cv := m.(Model).screens[screenCircuit].(*circuitView); cv.edges()[cv.sel].Node != "0.1" || cv.edges()[cv.sel].To != "1.2" {
		t.Errorf("after ↓ the selected edge is %+v", cv.edges()[cv.sel])
	}
	send("a")
	if view := ansi.Strip(m.View()); !strings.Contains(view, "embed    → 0.0") || !strings.Contains(view, "every scored edge") {
		t.Errorf("a does not list every edge:\n%s", view)
	}
	send("s")
	if view := ansi.Strip(m.View()); !strings.Contains(view, "Circuit: sae on ioi") {
		t.Errorf("s does not show the next method:\n%s", view)
	}
	send("esc")
	if cur := m.(Model).Current(); cur != "head map" {
		t.Errorf("esc goes to %q", cur)
	}
	send("c")
	if cur := m.(Model).Current(); cur != "circuit" {
		t.Errorf("c goes to %q", cur)
	}
	send("?")
	if view := ansi.Strip(m.View()); !strings.Contains(view, "next edge") || !strings.Contains(view, "circuit/all edges") {
		t.Errorf("help lacks the circuit keys:\n%s", view)
	}
}

// A 30-layer circuit on a 24-line terminal: the grid keeps the layers with
// circuit nodes, says how many it hides, and the edge list still shows.
func TestCircuitViewTallModel(t *testing.T) {
	var rows []store.CircuitRow
	for l := 0; l < 30; l++ {
		for h := 0; h < 9; h++ {
			rows = append(rows, store.CircuitRow{Method: "acdc", Task: "ioi", Kind: store.CircuitNode, Node: fmt.Sprintf("%d.%d", l, h),
				Layer: l, Head: h, Score: 0.01, InCircuit: l == 20 && h == 7})
		}
	}
	rows = append(rows, store.CircuitRow{Method: "acdc", Task: "ioi", Kind: store.CircuitEdge, Node: "20.7", To: "logits", Layer: -1, Head: -1, Score: 0.5, InCircuit: true})
	st := &state{src: &Source{circuit: rows}, keys: newKeyMap(), width: 80, height: 24}
	view := ansi.Strip((&circuitView{st: st}).View())
	if !strings.Contains(view, "L20") || strings.Contains(view, "L3 ") || !strings.Contains(view, "29 layers without a circuit node not shown") || !strings.Contains(view, "20.7     → logits") {
		t.Errorf("tall view:\n%s", view)
	}
}
