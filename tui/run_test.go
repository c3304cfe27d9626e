package tui

import (
	"errors"
	"io"
	"strings"
	"testing"
)

type failReader struct{}

func (failReader) Read([]byte) (int, error) { return 0, errors.New("no terminal") }

// TestRunNamesUnopenedFile: when the screen cannot run (no terminal), Run
// still says which file did not open, not only why the screen failed.
func TestRunNamesUnopenedFile(t *testing.T) {
	err := Run([]string{"/no/such/trace.arrow"}, failReader{}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "/no/such/trace.arrow") {
		t.Fatalf("Run: %v; want the missing file named", err)
	}
}
