package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loupe-dev/loupe/organism/tokfsm"
	"github.com/loupe-dev/loupe/sae/codebook"
	"github.com/loupe-dev/loupe/store"
)

const tokfsmModel = "../../organism/tokfsm/model"

// train, eval and codes on the embedded organism, end to end.
func TestCodebookTrainEvalCodes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cb")
	code, out, errOut := runCLI(t, "codebook", "train", "--hook", "blocks.1.hook_resid_post", "--codes", "64", "--k", "2",
		"--tokens", "4096", "--batch", "512", "--ctx", "32", "--organism-docs", "400", "--eval-contexts", "4", "--out", dir)
	if code != 0 {
		t.Fatalf("train: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "CE loss recovered") {
		t.Fatalf("train printed no evaluation:\n%s", out)
	}
	set, err := codebook.Load(dir)
	if err != nil || set.Layers[0].NumCodes != 64 || set.Layers[0].K != 2 {
		t.Fatalf("trained folder: %v", err)
	}
	if code, out, errOut = runCLI(t, "codebook", "eval", dir, "--ctx", "32", "--organism-docs", "400", "--eval-contexts", "2"); code != 0 || !strings.Contains(out, "CE loss recovered") {
		t.Fatalf("eval: exit %d\n%s%s", code, out, errOut)
	}
	arrow := filepath.Join(t.TempDir(), "codes.arrow")
	if code, out, errOut = runCLI(t, "codebook", "codes", dir, "--out", arrow, "--ctx", "32", "--organism-docs", "400", "--prompts", "4"); code != 0 {
		t.Fatalf("codes: exit %d\n%s%s", code, out, errOut)
	}
	tr, err := store.Open(arrow)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	feats, err := tr.ReadCodes(context.Background())
	if err != nil || len(feats) != 64 {
		t.Fatalf("features: %d rows, %v", len(feats), err)
	}
	fired := int64(0)
	for _, f := range feats {
		fired += f.Count
	}
	if fired != 4*31*2 { // 4 contexts of 31 positions, k = 2
		t.Fatalf("codes fired %d times, want 4*31*2", fired)
	}
	// Resume with nothing left to train is refused without a checkpoint.
	if code, _, _ := runCLI(t, "codebook", "train", "--hook", "blocks.1.hook_resid_post", "--tokens", "4096", "--resume", "--out", t.TempDir()); code == 0 {
		t.Fatal("--resume without a checkpoint succeeded")
	}
}

func TestCodebookSteerAndBadInput(t *testing.T) {
	if _, err := os.Stat(tokfsmModel); err != nil {
		t.Skip("no TokFSM model")
	}
	code, out, errOut := runCLI(t, "codebook", "steer", tokfsmModel, "--code", "blocks.1.hook_mlp_out:3", "--prompt", "4207", "--max-tokens", "6")
	if code != 0 || !strings.Contains(out, "steered:") {
		t.Fatalf("steer: exit %d\n%s%s", code, out, errOut)
	}
	for _, args := range [][]string{
		{"codebook", "steer", tokfsmModel, "--code", "blocks.1.hook_mlp_out:999999", "--prompt", "42"},
		{"codebook", "steer", tokfsmModel, "--code", "blocks.0.hook_resid_post:1", "--prompt", "42"},
		{"codebook", "steer", tokfsmModel, "--code", "blocks.1.hook_mlp_out:1", "--prompt", "4x"},
		{"codebook", "steer", tokfsmModel, "--code", "blocks.1.hook_mlp_out:3@999", "--prompt", "42", "--max-tokens", "4"},
		{"codebook", "train", "--hook", "blocks.9.hook_mlp_out", "--out", t.TempDir()},
		{"codebook", "eval", t.TempDir()},
	} {
		code, _, errOut := runCLI(t, args...)
		if code == 0 || strings.TrimSpace(errOut) == "" {
			t.Errorf("%v: exit %d, stderr %q: want a clear error", args, code, errOut)
		}
	}
	// Training sizes are usage errors that name the flag, before any work.
	for _, tc := range []struct{ flags []string }{
		{[]string{"--codes", "0"}},
		{[]string{"--k", "0"}},
		{[]string{"--codes", "16", "--k", "17"}},
		{[]string{"--tokens", "100", "--batch", "1024"}},
		{[]string{"--replace-every", "-1"}},
	} {
		out := filepath.Join(t.TempDir(), "cb")
		args := append([]string{"codebook", "train", "--hook", "blocks.1.hook_resid_post", "--out", out}, tc.flags...)
		code, _, errOut := runCLI(t, args...)
		if code != 2 || !strings.Contains(errOut, tc.flags[0]) {
			t.Errorf("%v: exit %d, stderr %q: want exit 2 naming %s", tc.flags, code, errOut, tc.flags[0])
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%v: left %s behind", tc.flags, out)
		}
	}
}

// codebook topic end to end on the TokFSM model given a digit tokenizer:
// the "topic" is the digits 99; the codes chosen where it starts in
// sampled walks, forced at every position, make every sample show it
// (unsteered: 1 in 8). And its bad input.
func TestCodebookTopic(t *testing.T) {
	if testing.Short() {
		t.Skip("generates with the TokFSM model")
	}
	dir := t.TempDir()
	for _, f := range []string{"config.json", "model.safetensors", "codebooks.json", "codebooks.safetensors"} {
		b, err := os.ReadFile(filepath.Join(tokfsmModel, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := os.ReadFile("../../sae/codebook/testdata/tokfsm-digits-tokenizer.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), tok, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := tokfsm.Load(filepath.Join(tokfsmModel, "fsm.json"))
	if err != nil {
		t.Fatal(err)
	}
	// 60 walks of 30 states as "stories", one a line of JSON
	var corpus strings.Builder
	rng := rand.New(rand.NewPCG(3, 4))
	for range 60 {
		s := rng.IntN(f.States)
		var b strings.Builder
		for range 30 {
			fmt.Fprintf(&b, "%02d", s)
			s = f.Next[s][rng.IntN(len(f.Next[s]))]
		}
		fmt.Fprintf(&corpus, "{\"text\": %q}\n", b.String())
	}
	cpath := filepath.Join(t.TempDir(), "walks.jsonl")
	if err := os.WriteFile(cpath, []byte(corpus.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "topic.json")
	code, stdout, stderr := runCLI(t, "codebook", "topic", dir, "--corpus", cpath, "--pattern", "99", "--scope", "token",
		"--topk", "1", "--min-precision", "0", "--prompt", "", "--prompt", "17", "--samples", "4", "--max-tokens", "24", "--out", out)
	if code != 0 {
		t.Fatalf("topic: exit %d\n%s%s", code, stdout, stderr)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Topics []struct {
			Codes    []codebook.PatternCode `json:"codes"`
			Baseline float64                `json:"baseline_fraction"`
			Steered  float64                `json:"steered_fraction"`
		} `json:"topics"`
	}
	if err := json.Unmarshal(raw, &rep); err != nil || len(rep.Topics) != 1 {
		t.Fatalf("report: %v\n%s", err, raw)
	}
	tp := rep.Topics[0]
	t.Logf("%d codes; samples with 99: unsteered %.2f, steered %.2f\n%s", len(tp.Codes), tp.Baseline, tp.Steered, stdout)
	if len(tp.Codes) == 0 || tp.Steered < 0.9 || tp.Baseline > 0.5 {
		t.Errorf("%d codes, steered fraction %.2f, unsteered %.2f: want codes, >= 0.9 and <= 0.5", len(tp.Codes), tp.Steered, tp.Baseline)
	}
	for _, bad := range [][]string{
		{"codebook", "topic", dir},                                         // no corpus
		{"codebook", "topic", dir, "--corpus", cpath, "--scope", "page"},   // unknown scope
		{"codebook", "topic", dir, "--corpus", cpath, "--pattern", "4[0-"}, // bad regex
		{"codebook", "topic", tokfsmModel, "--corpus", cpath},              // no tokenizer.json
		{"codebook", "topic", dir, "--corpus", filepath.Join(dir, "none.jsonl")},
		{"codebook", "topic", dir, "--corpus", cpath, "--model", "organism"},              // DIR is the model
		{"codebook", "topic", dir, "--corpus", cpath, "--pattern", ""},                    // matches everything
		{"codebook", "topic", dir, "--corpus", cpath, "--pattern", "(99)?"},               // matches the empty string
		{"codebook", "topic", dir, "--corpus", cpath, "--topk", "0"},                      // no codes per head
		{"codebook", "topic", dir, "--corpus", cpath, "--max-codes", "-1"},                // negative
		{"codebook", "topic", dir, "--corpus", cpath, "--min-precision", "1"},             // no code can pass
		{"codebook", "topic", dir, "--corpus", cpath, "--out", filepath.Join(cpath, "x")}, // --out under a file
		{"codebook", "topic", t.TempDir(), "--corpus", cpath},                             // no model folder
	} {
		if code, _, stderr := runCLI(t, bad...); code == 0 || stderr == "" {
			t.Errorf("%v: exit %d, stderr %q: want an error", bad, code, stderr)
		}
	}
}
