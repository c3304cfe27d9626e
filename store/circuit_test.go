package store_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/loupe-dev/loupe/store"
)

func TestCircuitRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "circuit.arrow")
	w, err := store.Create(path, store.RunInfo{ModelPath: "toy", Architecture: "gpt2"}, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rows := []store.CircuitRow{
		{Method: "acdc", Task: "ioi", Kind: store.CircuitNode, Node: "2.3", Layer: 2, Head: 3, Score: 0.5, InCircuit: true},
		{Method: "acdc", Task: "ioi", Kind: store.CircuitNode, Node: "mlp1", Layer: 1, Head: -1, Score: 0},
		{Method: "acdc", Task: "ioi", Kind: store.CircuitEdge, Node: "0.1", To: "2.3", Layer: -1, Head: -1, Score: 0.25, InCircuit: true, Details: json.RawMessage(`{"threshold":0.1}`)},
		{Method: "acdc", Task: "ioi", Kind: store.CircuitFigure, Node: "node_auc", Layer: -1, Head: -1, Score: 0.93},
	}
	if err := w.WriteCircuit(rows); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteCircuit([]store.CircuitRow{{Method: "x", Node: "a", Kind: "bogus"}}); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("a bad row kind gave %v", err)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	tr, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	got, err := tr.ReadCircuit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, rows) {
		t.Errorf("read back\n%+v\nwrote\n%+v", got, rows)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
}
