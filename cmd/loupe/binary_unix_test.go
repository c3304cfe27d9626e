//go:build unix

package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestKilledTrace kills `loupe trace` with SIGKILL mid-write: no trace is
// published, `loupe ls DIR` names the temporary files left, and the next
// `loupe trace` of the same file removes them and says so.
func TestKilledTrace(t *testing.T) {
	bin := loupeBinary(t)
	dir := t.TempDir()
	cache := "LOUPE_CACHE=" + filepath.Join(dir, "cache")
	outDir := filepath.Join(dir, "out")
	prompts := filepath.Join(dir, "prompts.txt")
	var text strings.Builder
	for i := range 400 {
		fmt.Fprintf(&text, "Prompt %d: The day after Monday is Tuesday. The day after Tuesday is Wednesday. One, two, three, four, five.\n", i)
	}
	if err := os.WriteFile(prompts, []byte(text.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	trace := func() *exec.Cmd {
		cmd := exec.Command(bin, "trace", "--prompts", prompts, "--out", filepath.Join(outDir, "t.arrow"),
			"--hooks", "blocks.*", "--attention", "full")
		cmd.Env = append(os.Environ(), cache)
		return cmd
	}
	cmd := trace()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill it once its temporary files exist: it has started writing.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if m, _ := filepath.Glob(filepath.Join(outDir, ".t.*.tmp-*")); len(m) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("loupe trace wrote no temporary files within 2 minutes")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("loupe trace finished before it was killed (%v): make the prompts longer", err)
	}
	if _, err := os.Stat(filepath.Join(outDir, "t.arrow")); err == nil {
		t.Fatal("the killed trace published t.arrow")
	}
	left, _ := filepath.Glob(filepath.Join(outDir, ".t.*.tmp-*"))

	ls := exec.Command(bin, "ls", outDir)
	ls.Env = append(os.Environ(), cache)
	out, err := ls.CombinedOutput()
	if err != nil {
		t.Fatalf("loupe ls %s: %v\n%s", outDir, err, out)
	}
	for _, f := range left {
		if !strings.Contains(string(out), f) {
			t.Errorf("loupe ls %s does not name %s:\n%s", outDir, f, out)
		}
	}
	if !strings.Contains(string(out), "its writer is gone") {
		t.Errorf("loupe ls %s does not say the writer is gone:\n%s", outDir, out)
	}

	var stderr bytes.Buffer
	again := exec.Command(bin, "trace", "--prompts", writePrompt(t, dir), "--out", filepath.Join(outDir, "t.arrow"))
	again.Env = append(os.Environ(), cache)
	again.Stderr = &stderr
	if err := again.Run(); err != nil {
		t.Fatalf("second loupe trace: %v\n%s", err, stderr.String())
	}
	if want := fmt.Sprintf("removed %d temporary files", len(left)); !strings.Contains(stderr.String(), want) {
		t.Errorf("second loupe trace: stderr %q lacks %q", stderr.String(), want)
	}
	if rest, _ := filepath.Glob(filepath.Join(outDir, ".*.tmp-*")); len(rest) != 0 {
		t.Errorf("after the second trace, leftovers remain: %v", rest)
	}
}

func writePrompt(t *testing.T, dir string) string {
	p := filepath.Join(dir, "one.txt")
	if err := os.WriteFile(p, []byte("The day after Monday is\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
