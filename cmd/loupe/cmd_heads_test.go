package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loupe-dev/loupe/store"
)

func TestHeadsUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"heads"}, "loupe heads classify"},
		{[]string{"heads", "frob"}, `unknown heads command "frob"`},
		{[]string{"heads", "classify", "--scores", "bogus"}, `unknown score "bogus"`},
		{[]string{"heads", "classify", "--scores", "induction,lookback_ratio"}, "no lookback prompts"},
		{[]string{"heads", "classify", "--model", "x", "--out", "x.parquet"}, "must end in .arrow"},
		{[]string{"heads", "classify", "--model", "x", "--niah-depths", "2"}, "not a fraction"},
		{[]string{"heads", "ablate", "--model", "x"}, "--heads is required"},
		{[]string{"heads", "ablate", "--model", "x", "--heads", "1.x", "--task", "niah"}, "want LAYER.HEAD"},
		{[]string{"heads", "ablate", "--model", "x", "--heads", "1.2", "--task", "foo"}, "want one of niah"},
		// The organism's suite has its own tasks: the real suite's sizes are refused, not ignored.
		{[]string{"heads", "classify", "--niah-lengths", "1024"}, "--niah-lengths sizes"},
		{[]string{"heads", "ablate", "--heads", "2.4", "--task", "successor", "--temporal-pairs", "0"}, "--temporal-pairs sizes"},
	} {
		code, _, errOut := runCLI(t, tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
}

// TestHeadsClassifyOrganism scores the embedded model organism and reads
// the Arrow file back.
func TestHeadsClassifyOrganism(t *testing.T) {
	out := filepath.Join(t.TempDir(), "heads.arrow")
	code, stdout, errOut := runCLI(t, "heads", "classify", "--model", "../../organism/model",
		"--scores", "previous_token,induction,successor", "--out", out, "--jsonl", "--quiet")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	var first struct {
		Score string `json:"score"`
		Layer int    `json:"layer"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil || first.Score != "previous_token" {
		t.Fatalf("first JSON line %q: %v", lines[0], err)
	}
	tr, err := store.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	rows, err := tr.ReadHeadScores(context.Background(), store.Selector{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(lines) {
		t.Errorf("%d Arrow rows, %d JSON lines", len(rows), len(lines))
	}
	if !strings.Contains(errOut, "induction") {
		t.Errorf("no summary on stderr: %q", errOut)
	}
}

// TestHeadsAblateOut: `loupe heads ablate --out` writes the experiment the
// JSON output reports to the ablation table.
func TestHeadsAblateOut(t *testing.T) {
	t.Setenv("LOUPE_CACHE", t.TempDir())
	out := filepath.Join(t.TempDir(), "ablation.arrow")
	code, stdout, errOut := runCLI(t, "heads", "ablate", "--heads", "1.0,1.1", "--task", "induction", "--seeds", "2", "--json", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var res struct {
		Task        string     `json:"task"`
		Heads       []string   `json:"heads"`
		Baseline    float64    `json:"baseline"`
		Ablated     float64    `json:"ablated"`
		Random      []float64  `json:"random"`
		RandomHeads [][]string `json:"random_heads"`
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatal(err)
	}
	tr, err := store.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if tr.MainTable() != string(store.KindAblation) {
		t.Errorf("main table %q", tr.MainTable())
	}
	abl, err := tr.ReadAblations(context.Background(), store.Selector{})
	if err != nil || len(abl) != 1 {
		t.Fatalf("%d experiments, %v", len(abl), err)
	}
	a := abl[0]
	if a.Task != res.Task || a.Method != "zero" || len(a.Heads) != 2 || a.Heads[0].String() != res.Heads[0] || a.Heads[1].String() != res.Heads[1] ||
		a.Baseline != res.Baseline || a.Accuracy != res.Ablated || len(a.RandomAccuracy) != 2 || a.RandomAccuracy[1] != res.Random[1] ||
		len(a.RandomHeads) != 2 || a.RandomHeads[0][1].String() != res.RandomHeads[0][1] {
		t.Errorf("stored %+v, printed %+v", a, res)
	}
	// Induction needs the organism's previous-token heads 1.0 and 1.1
	// (organism/model/README.md): ablating them costs more than ablating
	// as many random heads.
	if !(a.Accuracy < a.RandomMean()-a.RandomStd()) {
		t.Errorf("previous-token heads 1.0+1.1 ablated: induction %.3f, random %.3f ± %.3f: the effect is gone",
			a.Accuracy, a.RandomMean(), a.RandomStd())
	}
}
