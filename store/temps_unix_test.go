//go:build unix

package store_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loupe-dev/loupe/store"
)

// TestKilledWriterTemps kills a writing process with SIGKILL (no deferred
// cleanup runs) and checks that its temporary files are found as dead,
// that the next writer in the folder removes them, and that a live
// writer's temporaries are never touched.
func TestKilledWriterTemps(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "t.arrow")
	child := exec.Command(os.Args[0], "-test.run=^TestHelperWriter$")
	child.Env = append(os.Environ(), "LOUPE_STORE_HELPER_WRITE="+path)
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Process.Kill()
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err == nil && !strings.HasPrefix(line, "writing") {
			err = fmt.Errorf("the child said %q", line)
		}
		ready <- err
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("child writer: %v", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the child writer never started writing")
	}
	// A live writer in this process, in the same folder, mid-write.
	live, err := store.Create(filepath.Join(dir, "live.arrow"), store.RunInfo{ModelPath: "m"}, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Abort()
	if err := live.WriteAttention(store.Attention{PromptID: 0, Layer: 0, Head: 0, Queries: 1, Keys: 1, Causal: true, Weights: []float32{1}}); err != nil {
		t.Fatal(err)
	}
	// The child is still alive: its files are not anyone's to remove.
	if temps, err := store.FindTemps(dir); err != nil || len(temps) != 0 {
		t.Fatalf("with both writers alive, FindTemps = %+v, %v; want none", temps, err)
	}
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	child.Wait()

	temps, err := store.FindTemps(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tm := range temps {
		names = append(names, filepath.Base(tm.Path))
		if !tm.Dead || tm.Removed || !strings.HasPrefix(filepath.Base(tm.Path), ".t.") {
			t.Errorf("dead writer's temporary %+v", tm)
		}
	}
	if len(temps) != 2 { // the main file (tokens) and the attention sibling
		t.Fatalf("after SIGKILL, FindTemps = %v; want the child's 2 temporaries", names)
	}
	if _, err := os.Stat(path); err == nil {
		t.Errorf("the killed write published %s", path)
	}

	// The next writer of the trace removes them, and says so.
	next, err := store.Create(path, store.RunInfo{ModelPath: "m"}, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cleaned := next.Cleaned()
	if len(cleaned) != 2 || !cleaned[0].Removed || !cleaned[1].Removed {
		t.Errorf("Create cleaned %+v, want the 2 dead temporaries removed", cleaned)
	}
	for _, tm := range temps {
		if _, err := os.Stat(tm.Path); !os.IsNotExist(err) {
			t.Errorf("%s is still there: %v", tm.Path, err)
		}
	}
	if err := next.WriteTokens(store.Tokens{PromptID: 0, IDs: []int{1}, Texts: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	if err := next.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The live writer's files survived both scans, and it still commits.
	if err := live.WriteTokens(store.Tokens{PromptID: 0, IDs: []int{1}, Texts: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	if err := live.Commit(context.Background()); err != nil {
		t.Fatalf("the live writer, after the cleanups: %v", err)
	}
	if temps, _ := store.FindTemps(dir); len(temps) != 0 {
		t.Errorf("after both commits, leftovers %+v", temps)
	}
}

// TestHelperWriter is the child process of TestKilledWriterTemps: it starts
// a trace, writes to two tables, says so and waits to be killed.
func TestHelperWriter(t *testing.T) {
	path := os.Getenv("LOUPE_STORE_HELPER_WRITE")
	if path == "" {
		t.Skip("the child process of TestKilledWriterTemps")
	}
	w, err := store.Create(path, store.RunInfo{ModelPath: "m"}, store.Options{MaxBatchRows: 1})
	if err != nil {
		t.Fatal(err)
	}
	for p := range 4 {
		if err := w.WriteTokens(store.Tokens{PromptID: p, IDs: []int{1, 2}, Texts: []string{"a", "b"}}); err != nil {
			t.Fatal(err)
		}
		if err := w.WriteAttention(store.Attention{PromptID: p, Layer: 0, Head: 0, Queries: 2, Keys: 2, Causal: true, Weights: []float32{1, 0, 0.5, 0.5}}); err != nil {
			t.Fatal(err)
		}
	}
	os.Stdout.WriteString("writing\n")
	time.Sleep(10 * time.Minute)
}
