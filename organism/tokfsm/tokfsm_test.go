package tokfsm

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestMachineAndSequences(t *testing.T) {
	f, err := New(100, 10, 10, 42)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Check(); err != nil {
		t.Fatal(err)
	}
	if f.Digits != 2 || f.Vocab() != 11 || f.BOS() != 10 {
		t.Fatalf("digits %d, vocab %d, bos %d", f.Digits, f.Vocab(), f.BOS())
	}
	g, _ := New(100, 10, 10, 42)
	if !reflect.DeepEqual(f, g) {
		t.Fatal("the same seed gave two machines")
	}
	if h, _ := New(100, 10, 10, 43); reflect.DeepEqual(f.Next, h.Next) {
		t.Fatal("two seeds gave the same machine")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	counts := make([]int, 10)
	for range 200 {
		traj := f.Trajectory(rng, 40)
		for i := 1; i < len(traj); i++ {
			if !f.Allowed(traj[i-1], traj[i]) {
				t.Fatalf("walk takes %d -> %d, not an edge", traj[i-1], traj[i])
			}
			for j, n := range f.Next[traj[i-1]] {
				if n == traj[i] {
					counts[j]++
				}
			}
		}
		seq := f.Sequence(traj, 64)
		state, digit := f.Label(64, traj)
		if len(seq) != 64 || len(state) != 64 || seq[0] != f.BOS() || state[0] != -1 {
			t.Fatalf("sequence of %d tokens, labels of %d", len(seq), len(state))
		}
		for p := 1; p < 64; p++ {
			if seq[p] != f.Tokens(state[p])[digit[p]] {
				t.Fatalf("position %d: token %d is not digit %d of state %d", p, seq[p], digit[p], state[p])
			}
		}
	}
	// Every out-edge is taken about equally often (1/10 each).
	total := 0
	for _, c := range counts {
		total += c
	}
	for j, c := range counts {
		if frac := float64(c) / float64(total); frac < 0.085 || frac > 0.115 {
			t.Errorf("edge slot %d taken %.3f of the time, want 0.1", j, frac)
		}
	}
	if f.String(7) != "07" {
		t.Fatalf("state 7 written %q", f.String(7))
	}
}

func TestSaveLoadAndBadFiles(t *testing.T) {
	dir := t.TempDir()
	f, _ := New(20, 3, 10, 1)
	path := filepath.Join(dir, "fsm.json")
	if err := f.Save(path); err != nil {
		t.Fatal(err)
	}
	g, err := Load(path)
	if err != nil || !reflect.DeepEqual(f, g) {
		t.Fatalf("round trip: %v", err)
	}
	data, _ := os.ReadFile(path)
	os.WriteFile(path, data[:len(data)/2], 0o644)
	if _, err := Load(path); err == nil {
		t.Fatal("a truncated fsm.json loaded")
	}
	f.Next[3] = []int{5, 5, 6}
	f.Save(path)
	if _, err := Load(path); err == nil {
		t.Fatal("a machine with a repeated neighbour loaded")
	}
	if _, err := New(10, 11, 10, 1); err == nil {
		t.Fatal("11 edges of 10 states accepted")
	}
}
