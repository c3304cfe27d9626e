package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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
		{[]string{"heads", "classify", "--quiet"}, "temporal"}, // --scores all: every score the organism's suite feeds
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
var subcommands = map[string][]string{"heads": {"classify", "ablate"}, "sae": {"train", "eval", "features"}, "circuits": {"find", "task", "compare"}, "codebook": {"train", "eval", "codes", "steer"}}

// TestHelpHasExample asks every command for -h: each gives its usage line,
// an example and what it writes, on stdout (help asked for is output, as
// `loupe help` is) and nothing on stderr.
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
		code, text, errOut := runCLI(t, append(n, "-h")...)
		if code != 0 || errOut != "" {
			t.Errorf("loupe %s -h: exit %d, stderr %q; want 0 and nothing", strings.Join(n, " "), code, errOut)
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

// TestJSONOutput: run and generate print one JSON object that says what
// their text output says.
func TestJSONOutput(t *testing.T) {
	t.Setenv("LOUPE_CACHE", t.TempDir())
	const prompt = "The day after Monday is"
	code, out, errOut := runCLI(t, "run", "--prompt", prompt, "--top", "4", "--json")
	if code != 0 {
		t.Fatalf("run --json: exit %d: %s", code, errOut)
	}
	var r runJSON
	if err := json.Unmarshal([]byte(out), &r); err != nil || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Fatalf("run --json: not one JSON line (%v): %q", err, out)
	}
	_, table, _ := runCLI(t, "run", "--prompt", prompt, "--top", "4")
	if r.Model != "loupe-organism" || r.Prompt != prompt || len(r.PromptIDs) != 6 || len(r.Next) != 4 {
		t.Fatalf("run --json: %+v", r)
	}
	for i, n := range r.Next {
		row := fmt.Sprintf("%d  %d  %q  %.4f  %.4f", n.Rank, n.ID, n.Token, n.Logit, n.Prob)
		if n.Rank != i+1 || !strings.Contains(strings.Join(strings.Fields(table), " "), strings.Join(strings.Fields(row), " ")) {
			t.Errorf("run --json next[%d] = %+v is not the table's row:\n%s", i, n, table)
		}
		if i > 0 && n.Logit > r.Next[i-1].Logit {
			t.Errorf("next tokens not in logit order: %+v", r.Next)
		}
	}

	code, out, errOut = runCLI(t, "generate", "--prompt", prompt, "--max-tokens", "5", "--json")
	if code != 0 {
		t.Fatalf("generate --json: exit %d: %s", code, errOut)
	}
	var g generateJSON
	if err := json.Unmarshal([]byte(out), &g); err != nil {
		t.Fatalf("generate --json: %v: %q", err, out)
	}
	_, text, _ := runCLI(t, "generate", "--prompt", prompt, "--max-tokens", "5")
	if text != prompt+g.Text+"\n" || len(g.IDs) == 0 || len(g.IDs) > 5 || g.IDs[0] != r.Next[0].ID {
		t.Errorf("generate --json %+v disagrees with the text output %q or run's top token %d", g, text, r.Next[0].ID)
	}
	if (g.Stop == "max_tokens") != (len(g.IDs) == 5) {
		t.Errorf("generate --json: stop %q after %d of 5 tokens", g.Stop, len(g.IDs))
	}
}

// TestOutFolderMade: every command that writes --out makes its folder
// first, as trace and flow do, rather than failing at the end of the work.
func TestOutFolderMade(t *testing.T) {
	t.Setenv("LOUPE_CACHE", t.TempDir())
	tmp := t.TempDir()
	heads := filepath.Join(tmp, "a", "heads.arrow")
	for _, tc := range []struct {
		args []string
		file string
	}{
		{[]string{"heads", "classify", "--scores", "previous_token", "--quiet", "--out", heads}, heads},
		{[]string{"heads", "ablate", "--heads", "1.1", "--task", "induction", "--seeds", "1", "--quiet", "--out", filepath.Join(tmp, "b", "abl.arrow")}, filepath.Join(tmp, "b", "abl.arrow")},
		{[]string{"circuits", "task", "induction", "--n", "4", "--out", filepath.Join(tmp, "c", "task.jsonl")}, filepath.Join(tmp, "c", "task.jsonl")},
		{[]string{"codebook", "codes", "../../organism/tokfsm/model", "--prompts", "4", "--out", filepath.Join(tmp, "d", "codes.arrow")}, filepath.Join(tmp, "d", "codes.arrow")},
		{[]string{"export", heads, "--to", "csv", "--out", filepath.Join(tmp, "e", "heads.csv")}, filepath.Join(tmp, "e", "heads.csv")},
	} {
		code, _, errOut := runCLI(t, tc.args...)
		if _, err := os.Stat(tc.file); code != 0 || err != nil {
			t.Errorf("loupe %s: exit %d, stderr %q, %v; want exit 0 and the file", strings.Join(tc.args, " "), code, errOut, err)
		}
	}
}
