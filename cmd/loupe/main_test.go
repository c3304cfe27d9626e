package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCLI runs loupe with args and returns its exit code, stdout and stderr.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := runMain(context.Background(), args, &cliEnv{stdout: &out, stderr: &errOut})
	return code, out.String(), errOut.String()
}

func smolLM2(t testing.TB) string {
	p := os.Getenv("LOUPE_SMOLLM2_GGUF")
	if p == "" {
		home, _ := os.UserHomeDir()
		p = filepath.Join(home, ".cache", "loupe", "SmolLM2-135M-Instruct.Q4_1.gguf")
	}
	if _, err := os.Stat(p); err != nil {
		t.Skipf("SmolLM2 GGUF not at %s: run scripts/fetch-smollm2.sh", p)
	}
	return p
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"help"}, 0, "Commands:"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"run", "--model", "", "--prompt", "hi"}, 2, "--model is empty"},
		{[]string{"run"}, 2, "--prompt is empty"},
		{[]string{"run", "--bogus"}, 2, "flag provided but not defined"},
		{[]string{"tui", "--bogus"}, 2, "flag provided but not defined"},
		{[]string{"run", "--model", "/no/such/model", "--prompt", "hi"}, 1, "/no/such/model"},
		{[]string{"generate", "--model", "x", "--prompt", "hi", "--max-tokens", "0"}, 2, "--max-tokens must be positive"},
		{[]string{"generate", "--model", "x", "--prompt", "hi", "--top-p", "2"}, 2, "--top-p"},
		{[]string{"inspect", "--model", "/no/such/dir"}, 1, "/no/such/dir"},
		{[]string{"generate", "--model", "x", "--prompt", "hi", "--temperature", "NaN"}, 2, "--temperature must be a finite number"},
		{[]string{"generate", "--model", "x", "--prompt", "hi", "--temperature", "+Inf"}, 2, "--temperature must be a finite number"},
		{[]string{"generate", "--model", "x", "--prompt", "hi", "--top-p", "NaN"}, 2, "--top-p must be in [0, 1]"},
		{[]string{"flow", "--model", "x", "--prompt", "hi", "--top", "0"}, 2, "--top must be positive"},
		{[]string{"trace", "--model", "x", "--prompts", "p.txt", "--full-max", "-5"}, 2, "--full-max must not be negative"},
		{[]string{"sae", "features", "/no/such/sae", "--out", "f.arrow", "--tokens", "0"}, 2, "--tokens must be positive"},
		{[]string{"sae", "features", "/no/such/sae", "--out", "f.arrow", "--top", "-1"}, 2, "--top must be positive"},
		{[]string{"sae", "features", "/no/such/sae", "--out", "f.arrow", "--window", "0"}, 2, "--window must be positive"},
		{[]string{"codebook", "codes", "/no/such/dir", "--out", "codes.parquet"}, 2, `--out "codes.parquet": the file name must end in .arrow`},
		// The organism's context is 512: refused before anything is printed.
		{[]string{"generate", "--prompt", "one two", "--max-tokens", "100000"}, 2, "--max-tokens 100000: the prompt's"},
	} {
		code, out, errOut := runCLI(t, tc.args...)
		if code != tc.code || !strings.Contains(out+errOut, tc.want) {
			t.Errorf("loupe %v: exit %d, output %q%q; want exit %d and %q", tc.args, code, out, errOut, tc.code, tc.want)
		}
	}
}

// TestFlagErrorOneLine: a mistyped flag is one line on stderr that names
// it and points at -h, not the message and then the whole flag list; a
// flag given twice gets a note saying which value is used, unless it is
// repeatable.
func TestFlagErrorOneLine(t *testing.T) {
	t.Setenv("LOUPE_CACHE", t.TempDir())
	for _, tc := range []struct {
		args []string
		note string
	}{
		{[]string{"run", "--prompt", "a", "--top", "3", "--top=4"}, "loupe run: note: --top is given more than once; the last one, 4, is used"},
		{[]string{"run", "--prompt", "a", "--prompt", "The day after Monday is", "--top", "2"}, "note: --prompt is given more than once; the last one, The day after Monday is, is used"},
		{[]string{"generate", "--json", "--prompt", "a", "--max-tokens", "1", "--json=false"}, "note: --json is given more than once; the last one, false, is used"},
	} {
		if code, _, errOut := runCLI(t, tc.args...); code != 0 || !strings.Contains(errOut, tc.note) {
			t.Errorf("loupe %v: exit %d, stderr %q; want 0 and %q", tc.args, code, errOut, tc.note)
		}
	}
	code, out, errOut := runCLI(t, "run", "--prompt", "hi", "--bogus")
	if code != 2 || out != "" || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "-bogus") || !strings.Contains(errOut, "`loupe run -h`") {
		t.Errorf("loupe run --bogus: exit %d, stdout %q, stderr %q; want 2 and one line naming -bogus and loupe run -h", code, out, errOut)
	}
	fs := newFlags(&cliEnv{stdout: io.Discard, stderr: io.Discard}, usage{name: "x"})
	var prompts stringsFlag
	fs.Var(&prompts, "prompt", "")
	fs.Bool("b", false, "")
	fs.Int("n", 0, "")
	var notes strings.Builder
	fs.SetOutput(&notes)
	if err := parseFlags(fs, []string{"--prompt", "a", "-b", "--n", "-1", "--prompt=b"}); err != nil || len(prompts) != 2 || notes.Len() != 0 {
		t.Errorf("repeatable --prompt: %v, %q, notes %q", err, prompts, notes.String())
	}
}

func TestRunSmolLM2(t *testing.T) {
	m := smolLM2(t)
	code, out, errOut := runCLI(t, "run", "--model", m, "--prompt", "The capital of France is", "--top", "3")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || !strings.Contains(lines[2], `" Paris"`) {
		t.Fatalf("next-token table:\n%s", out)
	}
	code, _, errOut = runCLI(t, "run", "--model", m, "--prompt", "")
	if code != 2 || !strings.Contains(errOut, "--prompt is empty") {
		t.Fatalf("empty prompt: exit %d, %q", code, errOut)
	}
	code, out, errOut = runCLI(t, "generate", "--model", m, "--prompt", "The capital of France is", "--max-tokens", "4")
	if code != 0 || !strings.HasPrefix(out, "The capital of France is Paris") {
		t.Fatalf("generate: exit %d, %q %q", code, out, errOut)
	}
	code, out, _ = runCLI(t, "inspect", "--model", m)
	if code != 0 || !strings.Contains(out, "layers        30") || !strings.Contains(out, "blocks.{0..29}.attn.hook_pattern") {
		t.Fatalf("inspect: exit %d\n%s", code, out)
	}
}

// TestInterrupted: a command stopped by Ctrl-C (its context cancelled)
// says it was interrupted, exits 130 as a shell does for SIGINT, and
// leaves no trace file.
func TestInterrupted(t *testing.T) {
	t.Setenv("LOUPE_CACHE", t.TempDir())
	tmp := t.TempDir()
	prompts := filepath.Join(tmp, "p.txt")
	os.WriteFile(prompts, []byte("The day after Monday is\n"), 0o644)
	out := filepath.Join(tmp, "t.arrow")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var stdout, stderr bytes.Buffer
	code := runMain(ctx, []string{"trace", "--prompts", prompts, "--out", out, "--quiet"}, &cliEnv{stdout: &stdout, stderr: &stderr})
	if code != 130 || !strings.Contains(stderr.String(), "loupe trace: interrupted") {
		t.Errorf("exit %d, stderr %q; want 130 and loupe trace: interrupted", code, stderr.String())
	}
	if files, _ := os.ReadDir(tmp); len(files) != 1 {
		t.Errorf("the folder holds %d files, want only the prompts", len(files))
	}
}
