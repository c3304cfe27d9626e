package flowstore

import (
	"context"
	"testing"

	"github.com/loupe-dev/loupe/circuits"
	"github.com/loupe-dev/loupe/store"
)

func TestMatrix(t *testing.T) {
	T := 4
	// Layer 0: attend to self; layer 1: uniform causal.
	att := make([][][]float32, 2)
	att[0] = [][]float32{make([]float32, T*T)}
	att[1] = [][]float32{make([]float32, T*T)}
	for r := range T {
		att[0][0][r*T+r] = 1
		for c := 0; c <= r; c++ {
			att[1][0][r*T+c] = 1 / float32(r+1)
		}
	}
	res, err := circuits.Flow(context.Background(), att, T, circuits.Options{Head: circuits.OneHead(0), FromLayer: 1})
	if err != nil {
		t.Fatal(err)
	}
	m, err := Matrix(res, 7, 2)
	if err != nil {
		t.Fatal(err)
	}
	if m.PromptID != 7 || m.Layer != 1 || m.Rows != 1 || m.Cols != T || m.Method != "flow" ||
		m.Head != 0 || m.FromLayer != 1 || m.ToLayer != 2 || len(m.Outputs) != 1 || m.Outputs[0] != T-1 {
		t.Fatalf("matrix header %+v", m)
	}
	for i := range T {
		if got, want := m.Values[i], float32(res.Values[i]); got != want {
			t.Fatalf("last position [%d] = %g, want %g", i, got, want)
		}
	}
	all, _ := circuits.Rollout(context.Background(), att, T, circuits.Options{Outputs: circuits.AllPositions})
	m, _ = Matrix(all, 0, 2)
	if m.Layer != -1 || m.Method != "rollout" || m.Head != store.HeadsAveraged || m.Rows != T || m.OutputPos(T-1) != T-1 {
		t.Fatalf("whole-model rollout: %+v", m)
	}
}
