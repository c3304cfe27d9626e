package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDefaultModelIsOrganism runs every model-reading command without
// --model, as a user who has just seen `loupe demo` would, and with
// --model organism: both run the embedded organism.
func TestDefaultModelIsOrganism(t *testing.T) {
	t.Setenv("LOUPE_CACHE", t.TempDir())
	tmp := t.TempDir()
	prompts := filepath.Join(tmp, "prompts.txt")
	if err := os.WriteFile(prompts, []byte("The day after Monday is\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--prompt", "The day after Monday is", "--top", "3"}, "loupe-organism: 6 prompt tokens"},
		{[]string{"run", "--model", "organism", "--prompt", "The day after Monday is", "--top", "3"}, `" Tuesday"`},
		{[]string{"generate", "--prompt", "The day after Monday is", "--max-tokens", "2"}, "The day after Monday is Tuesday"},
		{[]string{"inspect"}, "layers        4"},
		{[]string{"inspect", "--model", "organism"}, "model         loupe-organism"},
		{[]string{"trace", "--prompts", prompts, "--out", filepath.Join(tmp, "t.arrow"), "--quiet"}, "traced 1 prompts"},
		{[]string{"flow", "--prompt", "The day after Monday is", "--out", filepath.Join(tmp, "f.arrow")}, "wrote "},
		{[]string{"heads", "classify", "--scores", "previous_token", "--quiet"}, "previous_token"},
		{[]string{"heads", "ablate", "--heads", "1.1", "--task", "induction", "--seeds", "1", "--quiet"}, "task induction on loupe-organism"},
	} {
		code, out, errOut := runCLI(t, tc.args...)
		if code != 0 || !strings.Contains(out, tc.want) {
			t.Errorf("loupe %s: exit %d, stdout %q, stderr %q; want exit 0 and %q on stdout", strings.Join(tc.args, " "), code, out, errOut, tc.want)
		}
	}
}

// subcommands lists the commands that dispatch to subcommands, for the help
// test below.
var subcommands = map[string][]string{"heads": {"classify", "ablate"}}

// TestHelpHasExample asks every command for -h: each gives its usage line,
// an example and what it writes.
func TestHelpHasExample(t *testing.T) {
	var names [][]string
	for _, c := range commands() {
		if subs, ok := subcommands[c.name]; ok {
			for _, s := range subs {
				names = append(names, []string{c.name, s})
			}
			continue
		}
		names = append(names, []string{c.name})
	}
	for _, n := range names {
		code, out, errOut := runCLI(t, append(n, "-h")...)
		text := out + errOut
		if code != 0 {
			t.Errorf("loupe %s -h: exit %d", strings.Join(n, " "), code)
		}
		for _, want := range []string{"usage: loupe " + strings.Join(n, " "), "Example:\n  loupe " + n[0], "Writes: ", "Flags:"} {
			if !strings.Contains(text, want) {
				t.Errorf("loupe %s -h lacks %q:\n%s", strings.Join(n, " "), want, text)
			}
		}
	}
}

// TestProgressOnlyOnTerminal: a command's progress line goes to stderr,
// only when stderr is a terminal, and --quiet silences it; stdout never
// holds a carriage return.
func TestProgressOnlyOnTerminal(t *testing.T) {
	t.Setenv("LOUPE_CACHE", t.TempDir())
	run := func(terminal bool, extra ...string) (string, string) {
		var out, errOut bytes.Buffer
		args := append([]string{"heads", "classify", "--scores", "previous_token,induction"}, extra...)
		code := runMain(context.Background(), args, &cliEnv{stdout: &out, stderr: &errOut, stderrTerminal: terminal})
		if code != 0 {
			t.Fatalf("loupe %v (terminal %v): exit %d: %s", args, terminal, code, errOut.String())
		}
		return out.String(), errOut.String()
	}
	out, errOut := run(true)
	if strings.Contains(out, "\r") {
		t.Errorf("stdout holds a carriage return: %q", out)
	}
	if !strings.Contains(errOut, "\r") || !strings.Contains(errOut, "[###") {
		t.Errorf("stderr on a terminal has no progress line: %q", errOut)
	}
	for _, extra := range [][]string{nil, {"--quiet"}} {
		terminal := extra != nil // --quiet on a terminal, nothing on a pipe
		out, errOut := run(terminal, extra...)
		if strings.ContainsRune(out+errOut, '\r') {
			t.Errorf("terminal %v %v: output holds carriage returns: stdout %q stderr %q", terminal, extra, out, errOut)
		}
	}
}
