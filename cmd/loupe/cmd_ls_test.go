package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLsUnreadableTable: loupe ls of a trace whose sibling file is
// truncated says that table cannot be read and exits non-zero; the index
// alone lists it as whole. A folder listing holding it fails too.
func TestLsUnreadableTable(t *testing.T) {
	t.Setenv("LOUPE_CACHE", t.TempDir())
	tmp := t.TempDir()
	prompts := filepath.Join(tmp, "p.txt")
	os.WriteFile(prompts, []byte("The day after Monday is\n"), 0o644)
	out := filepath.Join(tmp, "out", "t.arrow")
	if code, _, errOut := runCLI(t, "trace", "--prompts", prompts, "--out", out, "--quiet"); code != 0 {
		t.Fatalf("trace: exit %d: %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, "ls", out); code != 0 {
		t.Fatalf("ls of a whole trace: exit %d: %s", code, errOut)
	}
	att := filepath.Join(tmp, "out", "t.attention.arrow")
	st, err := os.Stat(att)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(att, st.Size()/2); err != nil {
		t.Fatal(err)
	}
	code, stdout, errOut := runCLI(t, "ls", out)
	if code != 1 || !strings.Contains(stdout, "t.attention.arrow (cannot read)") || !strings.Contains(stdout, "cannot read   attention: open "+att) ||
		!strings.Contains(errOut, "1 of the tables listed cannot be read") {
		t.Errorf("ls %s with a truncated attention file: exit %d, stdout %q, stderr %q", out, code, stdout, errOut)
	}
	if code, _, errOut := runCLI(t, "ls", out, "--json"); code != 1 {
		t.Errorf("ls --json: exit %d (%s); want 1", code, errOut)
	}
	if code, stdout, _ := runCLI(t, "ls", filepath.Dir(out)); code != 1 || !strings.Contains(stdout, "cannot read: attention") {
		t.Errorf("ls of the folder: exit %d, stdout %q; want 1 and the attention table named", code, stdout)
	}
}
