package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The tests in this file run the real binary, as a shell would: its own
// stdout and stderr, files and signals.

var built struct {
	once sync.Once
	dir  string
	bin  string
	err  error
	out  []byte
}

// repoHasGitDir says the module root is a git checkout with a .git
// directory, where the Go tool stamps the commit into binaries (it does not
// in a git worktree, whose .git is a file).
func repoHasGitDir() bool {
	st, err := os.Stat(filepath.Join("..", "..", ".git"))
	return err == nil && st.IsDir()
}

// loupeBinary builds cmd/loupe once per test run and returns its path.
func loupeBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the loupe binary: skipped in -short mode")
	}
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "loupe-bin-")
		if built.err != nil {
			return
		}
		built.bin = filepath.Join(built.dir, "loupe")
		vcs := "-buildvcs=false"
		if repoHasGitDir() {
			vcs = "-buildvcs=true"
		}
		cmd := exec.Command("go", "build", vcs, "-o", built.bin, ".")
		built.out, built.err = cmd.CombinedOutput()
	})
	if built.err != nil {
		t.Fatalf("go build: %v\n%s", built.err, built.out)
	}
	return built.bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// TestVersion: `loupe --version` names the module version and, in a git
// checkout, the commit the binary was built from.
func TestVersion(t *testing.T) {
	bin := loupeBinary(t)
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatalf("loupe --version: %v", err)
	}
	line := strings.TrimSpace(string(out))
	if !strings.HasPrefix(line, "loupe ") || strings.Count(line, "\n") != 0 {
		t.Fatalf("loupe --version printed %q", line)
	}
	if !repoHasGitDir() {
		if !strings.Contains(line, "no commit recorded") {
			t.Errorf("built without VCS stamping, yet %q names no absence", line)
		}
		t.Logf("not a git checkout with a .git directory: %q", line)
		return
	}
	head, err := exec.Command("git", "-C", filepath.Join("..", ".."), "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("git rev-parse HEAD: %v", err)
	}
	if want := "commit " + strings.TrimSpace(string(head)); !strings.Contains(line, want) {
		t.Errorf("loupe --version printed %q, want %q", line, want)
	}
	if strings.Contains(line, "(devel)") {
		t.Errorf("loupe --version printed %q: no module version", line)
	}
}

// TestDemoToFile runs `loupe demo > file 2> file` with no flag: neither file
// holds a carriage return (the progress line is drawn on terminals only),
// and stdout holds the report.
func TestDemoToFile(t *testing.T) {
	bin := loupeBinary(t)
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "demo", "--out", filepath.Join(dir, "demo"))
	cmd.Env = append(os.Environ(), "LOUPE_CACHE="+filepath.Join(dir, "cache"))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("loupe demo: %v\n%s", err, stderr.String())
	}
	if strings.ContainsRune(stdout.String(), '\r') || strings.ContainsRune(stderr.String(), '\r') {
		t.Errorf("loupe demo > file: carriage returns in stdout (%d) or stderr (%d)",
			strings.Count(stdout.String(), "\r"), strings.Count(stderr.String(), "\r"))
	}
	if !strings.Contains(stdout.String(), "Head map") {
		t.Errorf("stdout lacks the head map:\n%s", stdout.String())
	}
}
