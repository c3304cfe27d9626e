package main

import (
	"context"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loupe-dev/loupe/organism"
	"github.com/loupe-dev/loupe/store"
)

func TestFlowCommand(t *testing.T) {
	dir, err := organism.Dir()
	if err != nil {
		t.Fatal(err)
	}
	prompt := "The secret code of white is 53. What is the secret code of white?"
	for _, method := range []string{"rollout", "flow"} {
		out := filepath.Join(t.TempDir(), method+".arrow")
		code, stdout, stderr := runCLI(t, "flow", "--model", dir, "--prompt", prompt, "--method", method, "--outputs", "all", "--out", out)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", method, code, stderr)
		}
		if !strings.Contains(stdout, method+" into position") {
			t.Errorf("%s: stdout %q", method, stdout)
		}
		tr, err := store.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		ms, err := tr.ReadFlow(context.Background(), store.Selector{})
		tr.Close()
		if err != nil || len(ms) != 1 {
			t.Fatalf("%s: %d matrices, %v", method, len(ms), err)
		}
		m := ms[0]
		T := m.Rows
		for j := 0; j < T; j++ {
			row := m.Values[j*T : (j+1)*T]
			var sum float64
			for i, v := range row {
				if i > j && v != 0 {
					t.Fatalf("%s: position %d receives %g from later token %d", method, j, v, i)
				}
				sum += float64(v)
			}
			// Rollout rows are distributions over the input tokens (every
			// augmented attention matrix is row-stochastic). A flow row is a
			// maximum flow per input, each bounded by the unit capacity
			// into the output node.
			if method == "rollout" && math.Abs(sum-1) > 1e-4 {
				t.Errorf("rollout row %d sums to %g", j, sum)
			}
			for i, v := range row[:j+1] {
				if method == "flow" && (v < 0 || v > 1+1e-6) {
					t.Errorf("flow %d -> %d is %g, outside [0, 1]", i, j, v)
				}
			}
		}
	}
	for _, args := range [][]string{
		{"flow", "--model", dir, "--prompt", prompt, "--method", "maxflow"},
		{"flow", "--model", dir, "--prompt", prompt, "--head", "99"},
		{"flow", "--model", dir, "--prompt", prompt, "--to-layer", "2", "--from-layer", "2"},
	} {
		if code, _, _ := runCLI(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

// TestFlowColumns: one head's flow between two inner layers, into the last
// position, lands in the flow table's head, from_layer, to_layer and
// output_pos columns (schema v2), not in the method string.
func TestFlowColumns(t *testing.T) {
	t.Setenv("LOUPE_CACHE", t.TempDir())
	out := filepath.Join(t.TempDir(), "f.arrow")
	code, _, stderr := runCLI(t, "flow", "--prompt", "The day after Monday is", "--head", "3", "--from-layer", "1", "--to-layer", "3", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	tr, err := store.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	ms, err := tr.ReadFlow(context.Background(), store.Selector{Heads: []int{3}})
	if err != nil || len(ms) != 1 {
		t.Fatalf("%d matrices for head 3, %v", len(ms), err)
	}
	m := ms[0]
	if m.Method != "flow" || m.Head != 3 || m.FromLayer != 1 || m.ToLayer != 3 || m.Layer != 2 ||
		m.Rows != 1 || len(m.Outputs) != 1 || m.Outputs[0] != m.Cols-1 {
		t.Errorf("flow matrix %+v", m)
	}
}
