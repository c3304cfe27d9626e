package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loupe-dev/loupe/store"
)

// On the embedded organism: write an induction task, find its circuit by
// patching with the known heads as truth, read the table back, and check
// the pictures.
func TestCircuitsCommand(t *testing.T) {
	dir := t.TempDir()
	task := filepath.Join(dir, "induction.jsonl")
	code, stdout, stderr := runCLI(t, "circuits", "task", "induction", "--n", "12", "--out", task)
	if code != 0 || !strings.Contains(stdout, "wrote 12 induction pairs") {
		t.Fatalf("task: exit %d: %s %s", code, stdout, stderr)
	}
	out := filepath.Join(dir, "circuit.arrow")
	code, stdout, stderr = runCLI(t, "circuits", "find", "--method", "patching", "--task", task,
		"--truth", "1.0,1.1,2.1,2.2,2.3,2.6,2.7", "--out", out, "--dot", filepath.Join(dir, "c.dot"), "--svg", filepath.Join(dir, "c.svg"))
	if code != 0 {
		t.Fatalf("find: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "node ROC AUC") {
		t.Errorf("stdout %q", stdout)
	}
	rows := readCircuitFile(t, out)
	nodes, auc := 0, -1.0
	for _, r := range rows {
		if r.Kind == store.CircuitNode {
			nodes++
		}
		if r.Kind == store.CircuitFigure && r.Node == "node_auc" {
			auc = r.Score
		}
	}
	if nodes != 4*8+4 || auc < 0.9 {
		t.Errorf("%d node rows (want 36), node AUC %.3f (want >= 0.9)", nodes, auc)
	}
	out2 := filepath.Join(dir, "sae.arrow")
	if code, _, stderr := runCLI(t, "circuits", "find", "--method", "sae", "--task", task, "--out", out2); code != 0 {
		t.Fatalf("find --method sae: exit %d: %s", code, stderr)
	}
	code, stdout, stderr = runCLI(t, "circuits", "compare", out, out2, "--top", "7")
	if code != 0 || !strings.Contains(stdout, "Spearman") || !strings.Contains(stdout, "patching on induction") {
		t.Errorf("compare: exit %d: %s %s", code, stdout, stderr)
	}
	for _, f := range []string{"c.dot", "c.svg"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil || !strings.Contains(string(b), "1.1") {
			t.Errorf("%s: %v, no head 1.1 in it", f, err)
		}
	}
}

// --sae-null runs the SAE method's null control beside it (negatives that
// are other clean prompts) and writes its agreement with the real ranking
// and its AUC against the given heads.
func TestCircuitsFindSAENull(t *testing.T) {
	model := filepath.Join("..", "..", "circuits", "testdata", "mixmodel")
	out := filepath.Join(t.TempDir(), "sae.arrow")
	code, stdout, stderr := runCLI(t, "circuits", "find", "--method", "sae", "--model", model, "--device", "cpu",
		"--task", filepath.Join(model, "task.jsonl"), "--pairs", "48", "--sae-null", "--truth", "0.2,0.3", "--out", out)
	if code != 0 {
		t.Fatalf("find: exit %d: %s %s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "null control (negatives: 48 other clean prompts)") {
		t.Errorf("stdout %q", stdout)
	}
	figs := map[string]float64{}
	for _, r := range readCircuitFile(t, out) {
		if r.Kind == store.CircuitFigure {
			figs[r.Node] = r.Score
		}
	}
	for _, name := range []string{"null_spearman", "null_top10_overlap", "null_node_auc", "node_auc"} {
		if _, ok := figs[name]; !ok {
			t.Errorf("no %s figure in %v", name, figs)
		}
	}
	if a := figs["null_node_auc"]; a <= 0 || a > 1 {
		t.Errorf("null_node_auc %v", a)
	}
}

// ACDC stopped by --acdc-stop-after writes the circuit as it stands,
// marked partial, with its test counts. The limit is 1 ns, past before
// the first test on any machine, so the outcome does not depend on speed.
func TestCircuitsFindACDCStopped(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join("..", "..", "circuits", "testdata", "ioimodel")
	out := filepath.Join(dir, "acdc.arrow")
	code, stdout, stderr := runCLI(t, "circuits", "find", "--method", "acdc", "--model", model, "--device", "cpu",
		"--task", filepath.Join(model, "task.jsonl"), "--pairs", "4", "--thresholds", "0.02,0.2", "--acdc-stop-after", "1ns", "--out", out)
	if code != 0 {
		t.Fatalf("find: exit %d: %s %s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "partial: stopped at the time limit at threshold 0.02 with 0 of 118 edges decided") {
		t.Errorf("stdout %q", stdout)
	}
	rows := readCircuitFile(t, out)
	partial, sweeps := false, 0
	for _, r := range rows {
		if r.Kind == store.CircuitFigure && r.Node == "partial" && r.Score == 1 {
			partial = true
		}
		if r.Kind == store.CircuitFigure && r.Node == "sweep_edges" {
			sweeps++
			if !strings.Contains(string(r.Details), `"partial":true`) || !strings.Contains(string(r.Details), `"tests":0`) {
				t.Errorf("sweep details %s", r.Details)
			}
		}
	}
	if !partial || sweeps != 1 {
		t.Errorf("partial figure %v, %d sweep rows (want 1: the sweep ends at the stop)", partial, sweeps)
	}
}

// Edge truth from the command line: ACDC (nodes first, batched) on the toy
// IOI model, scored against edges given with --truth.
func TestCircuitsFindEdgeTruth(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join("..", "..", "circuits", "testdata", "ioimodel")
	out := filepath.Join(dir, "acdc.arrow")
	code, stdout, stderr := runCLI(t, "circuits", "find", "--method", "acdc", "--model", model, "--device", "cpu",
		"--task", filepath.Join(model, "task.jsonl"), "--pairs", "8", "--thresholds", "0.02,0.2", "--acdc-batch", "4", "--acdc-nodes",
		"--truth", "embed->0.1,0.1->2.0,2.0->logits,embed->2.3", "--out", out, "--log", filepath.Join(dir, "progress.log"))
	if code != 0 {
		t.Fatalf("find: exit %d: %s %s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "edge ROC AUC") || !strings.Contains(stdout, "node ROC AUC") {
		t.Errorf("stdout %q", stdout)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "progress.log")); err != nil || !strings.Contains(string(b), "acdc nodes 0.02") || !strings.Contains(string(b), "acdc 0.2") {
		t.Errorf("progress log: %v\n%s", err, b)
	}
	rows := readCircuitFile(t, out)
	auc := -1.0
	for _, r := range rows {
		if r.Kind == store.CircuitFigure && r.Node == "edge_auc" {
			auc = r.Score
		}
	}
	if auc < 0 || auc > 1 {
		t.Errorf("edge_auc figure %v, want one in [0, 1]", auc)
	}
}

func TestCircuitsCommandErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.jsonl")
	os.WriteFile(bad, []byte(`{"clean_ids":[1,2,3],"corrupt_ids":[1,2],"answer_id":4}`+"\n"), 0o644)
	good := filepath.Join(dir, "good.jsonl")
	os.WriteFile(good, []byte(`{"clean_ids":[1,2,3],"corrupt_ids":[1,5,3],"answer_id":4}`+"\n"), 0o644)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"circuits", "find"}, 2, "--task is required"},
		{[]string{"circuits", "find", "--task", good, "--method", "magic"}, 2, "magic"},
		{[]string{"circuits", "find", "--task", good}, 2, "--method is required"},
		{[]string{"circuits", "find", "--method", "acdc", "--task", bad}, 1, "line 1"},
		{[]string{"circuits", "find", "--method", "acdc", "--task", filepath.Join(dir, "none.jsonl")}, 1, "none.jsonl"},
		{[]string{"circuits", "find", "--method", "acdc", "--task", good, "--truth", "9.9"}, 2, "9.9"},
		{[]string{"circuits", "find", "--method", "acdc", "--task", good, "--truth", "2.1->1.0"}, 2, "not computed before"},
		{[]string{"circuits", "find", "--method", "acdc", "--task", good, "--truth", "embed->x"}, 2, "embed->x"},
		{[]string{"circuits", "find", "--method", "acdc", "--task", good, "--acdc-batch", "0"}, 2, "--acdc-batch"},
		{[]string{"circuits", "find", "--method", "acdc", "--task", good, "--acdc-stop-after", "-1s"}, 2, "--acdc-stop-after"},
		{[]string{"circuits", "find", "--method", "sae", "--task", good, "--sae-arch", "vae"}, 2, "vae"},
		{[]string{"circuits", "find", "--method", "patching", "--task", good, "--sae-null"}, 2, "--sae-null is for --method sae"},
		{[]string{"circuits", "find", "--method", "sae", "--task", good, "--sae-null", "--pairs", "1000"}, 2, "--sae-null needs twice"},
		{[]string{"circuits", "find", "--method", "acdc", "--task", good, "--metric", "joy"}, 2, "joy"},
		{[]string{"circuits", "task", "limericks", "--out", good}, 2, "limericks"},
		{[]string{"circuits", "bogus"}, 2, "bogus"},
	} {
		code, _, stderr := runCLI(t, c.args...)
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d mentioning %q", c.args, code, stderr, c.code, c.want)
		}
	}
}

// readCircuitFile reads the circuit table of the Arrow file at path.
func readCircuitFile(t *testing.T, path string) []store.CircuitRow {
	t.Helper()
	tr, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	rows, err := tr.ReadCircuit(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return rows
}
