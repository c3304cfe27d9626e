package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
}
