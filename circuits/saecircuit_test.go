package circuits

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// The SAE method's scoring equals a numpy transcription of the paper's code
// on fixed codes (testdata/sae_scores.py).
func TestSAEScoringMatchesReference(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "sae_scores.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref struct {
		Examples, Heads, K int
		Codes              []int
		Node, Edge         []float64
		EdgeNode           []float64 `json:"edge_node"`
	}
	if err := json.Unmarshal(data, &ref); err != nil {
		t.Fatal(err)
	}
	pos := make([]bool, ref.Examples)
	for i := range pos {
		pos[i] = i < ref.Examples/2
	}
	node := SAENodeScores(ref.Codes, ref.Heads, pos)
	if !slices.Equal(node, ref.Node) {
		t.Errorf("node scores %v, numpy %v", node, ref.Node)
	}
	edge := SAEEdgeScores(ref.Codes, ref.Heads, pos)
	if !slices.Equal(edge, ref.Edge) {
		t.Errorf("edge scores differ from numpy:\n%v\n%v", edge, ref.Edge)
	}
	if en := SAEEdgeNodeScores(edge, ref.Heads, ref.K); !slices.Equal(en, ref.EdgeNode) {
		t.Errorf("edge-based node scores %v, numpy %v", en, ref.EdgeNode)
	}
	if slices.Max(node) == 0 || slices.Max(edge) == 0 {
		t.Errorf("degenerate reference: every score is zero")
	}
}
