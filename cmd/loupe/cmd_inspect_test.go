package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func gemma3(t testing.TB) string {
	p := os.Getenv("LOUPE_GEMMA3_GGUF")
	if p == "" {
		home, _ := os.UserHomeDir()
		p = filepath.Join(home, ".cache", "loupe", "gemma-3-270m-q4_k_m.gguf")
	}
	if _, err := os.Stat(p); err != nil {
		t.Skipf("Gemma 3 GGUF not at %s: run scripts/fetch-gemma3.sh", p)
	}
	return p
}

// TestInspectGemma3 shows Gemma 3 270M's layer pattern: a 512-token window
// on every layer but 5, 11 and 17, and its extra norms' hook points.
func TestInspectGemma3(t *testing.T) {
	code, out, errOut := runCLI(t, "inspect", "--model", gemma3(t))
	if code != 0 {
		t.Fatalf("inspect: exit %d\n%s", code, errOut)
	}
	for _, want := range []string{
		"architecture  gemma3 (model_type gemma3_text)",
		"attention     sliding window 512 on 15 layers, global on 3 (layers 5, 11, 17)",
		"layer pattern S S S S S G S S S S S G S S S S S G",
		"rope          theta 1e+06 (global layers), 10000 (sliding layers)",
		"blocks.{0..17}.ln1_post.hook_normalized",
		"blocks.{0..17}.ln2_post.hook_normalized",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}
}
