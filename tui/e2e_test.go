package tui

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestE2ETmux builds the real loupe binary, runs `loupe tui` in a detached
// tmux session (its own server socket, so no user session is touched),
// types keys with send-keys and reads the screen with capture-pane. It runs
// over the sample files, over a file that is not a trace, and over the
// files `loupe demo` writes.
func TestE2ETmux(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: skipped in -short mode")
	}
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux is not installed (apt-get install -y tmux): skipping the end-to-end run of loupe tui")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "loupe")
	build := exec.Command("go", "build", "-o", bin, "github.com/loupe-dev/loupe/cmd/loupe")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	trace, heads := writeSample(t, dir)

	t.Run("sample", func(t *testing.T) {
		s := startTmux(t, 120, 40, bin, "tui", trace, heads)
		s.waitFor("head map", "Top heads · prev_token", "L0.H0 prev_token = 0.900", "previous-token head")
		s.keys("s", "t")
		s.waitFor("Score induction", "top 1/", "L5.H1 induction = 0.900")
		s.keys("Enter")
		s.waitFor("head view", "Head L5.H1", "Attention of the query over the keys", "Top attended by query 12", "Scores of this head")
		s.keys("/", "L4.H3", "Enter", "]")
		s.waitFor("Head L4.H3", "prompt 1 (2/3)", `needle_tokens: [" 4" " 7" " 1"]`, "ablation_niah")
		s.keys("p")
		s.waitFor("prompt view", "Prompt 1 (2/3) · 47 tokens", "norms: hook_resid_post", "lens@L5", "rollout", "flow")
		s.keys("/", "Paris", "Enter")
		s.waitFor("match 1/2", "Paris")
		s.keys("?")
		s.waitFor("Keys", "previous prompt", "Mouse wheel scrolls")
		s.keys("Escape", "m")
		s.waitFor("head map", "Score induction", "L4.H3 induction =")
		// The mouse wheel, as the terminal reports it (SGR encoding, which
		// bubbletea turns on): up moves the focus up a layer.
		s.tmux("send-keys", "-t", s.name, "-l", "\x1b[<64;10;10M")
		s.waitFor("L3.H3 induction =")
		// Resizing redraws at the new size.
		s.tmux("resize-window", "-t", s.name, "-x", "80", "-y", "24")
		s.waitFor("head map", "Score induction")
		for i, l := range strings.Split(s.capture(), "\n") {
			if n := len([]rune(l)); n > 80 {
				t.Errorf("after resizing to 80 columns, line %d has %d: %q", i, n, l)
			}
		}
		s.keys("q")
		s.waitExit()
	})

	t.Run("sae_features", func(t *testing.T) {
		// An SAE trained by the real binary on the organism, its features
		// scanned into Arrow, browsed: list, sort, one latent's page with
		// its windows coloured (24-bit backgrounds), search by number.
		cache := filepath.Join(dir, "cache")
		run := func(args ...string) {
			cmd := exec.Command(bin, args...)
			cmd.Env = append(os.Environ(), "LOUPE_CACHE="+cache)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("loupe %v: %v\n%s", args, err, out)
			}
		}
		saeDir, feats := filepath.Join(dir, "sae"), filepath.Join(dir, "features.arrow")
		run("sae", "train", "--hook", "blocks.2.hook_resid_post", "--arch", "topk", "--k", "8", "--expansion", "2", "--tokens", "4096",
			"--batch", "256", "--ctx", "33", "--organism-docs", "400", "--eval-tokens", "512", "--eval-contexts", "1", "--quiet", "--out", saeDir)
		run("sae", "features", saeDir, "--tokens", "1024", "--ctx", "33", "--organism-docs", "400", "--out", feats)
		s := startTmuxEnv(t, 120, 40, []string{"TERM=xterm-256color", "COLORTERM=truecolor"}, bin, "tui", feats)
		s.waitFor("features", "512 latents", "sorted by index", "promotes")
		s.keys("o")
		s.waitFor("sorted by density")
		s.keys("/", "7", "Enter", "Enter")
		s.waitFor("latent 7", "promotes (W_dec·W_U)", "suppresses")
		if screen := s.tmux("capture-pane", "-e", "-p", "-t", s.name); strings.Contains(s.capture(), "top activations") && !strings.Contains(screen, "48;2;") {
			t.Errorf("example windows are not coloured:\n%q", screen)
		}
		s.keys("Escape")
		s.waitFor("sorted by density")
		s.keys("q")
		s.waitExit()
	})

	t.Run("codebook_codes", func(t *testing.T) {
		// The shipped TokFSM codebook model's codes, read by the real
		// binary into Arrow, browsed: the list, sorted by how well each code
		// detects its state, a search by label, one code's page.
		codes := filepath.Join(dir, "codes.arrow")
		cmd := exec.Command(bin, "codebook", "codes", filepath.Join("..", "organism", "tokfsm", "model"), "--prompts", "16", "--device", "cpu", "--out", codes)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("loupe codebook codes: %v\n%s", err, out)
		}
		s := startTmux(t, 120, 40, bin, "tui", codes)
		s.waitFor("codes", "20000 codes in 8 codebooks", "sorted by site", "blocks.0.attn.hook_z[head 0]:0")
		s.keys("o", "o")
		s.waitFor("sorted by label AP")
		s.keys("/", "state 42", "Enter")
		s.waitFor("match 1/")
		s.keys("Enter")
		s.waitFor("stands for state 42", "fires on", "contexts (the firing token marked)")
		s.keys("Escape")
		s.waitFor("sorted by label AP")
		s.keys("q")
		s.waitExit()
	})

	t.Run("colour_profiles", func(t *testing.T) {
		// The terminal's colour support is detected (termenv): 24-bit
		// backgrounds where COLORTERM says truecolor, the 256-colour
		// palette where TERM only promises that.
		for _, c := range []struct{ colorterm, want, not string }{
			{"truecolor", "48;2;", "48;5;"},
			{"", "48;5;", "48;2;"},
		} {
			s := startTmuxEnv(t, 120, 40, []string{"TERM=xterm-256color", "COLORTERM=" + c.colorterm}, bin, "tui", trace, heads)
			s.waitFor("head map", "Top heads")
			screen := s.tmux("capture-pane", "-e", "-p", "-t", s.name)
			if !strings.Contains(screen, c.want) || strings.Contains(screen, c.not) {
				t.Errorf("COLORTERM=%q: want %q colours and no %q:\n%q", c.colorterm, c.want, c.not, screen)
			}
			s.keys("q")
			s.waitExit()
		}
	})

	t.Run("error_screen", func(t *testing.T) {
		bad := filepath.Join(dir, "garbage.arrow")
		must(t, os.WriteFile(bad, []byte("not arrow at all"), 0o644))
		s := startTmux(t, 120, 40, bin, "tui", bad)
		s.waitFor("Loupe cannot read this file", "garbage.arrow", "no Arrow file footer")
		s.keys("q")
		s.waitExit()
	})

	t.Run("demo", func(t *testing.T) {
		// The files of `loupe demo` (the shipped model organism): when the
		// command is in this build, its trace is browsed too.
		out := filepath.Join(dir, "demo")
		cmd := exec.Command(bin, "demo", "--out", out, "--quiet")
		msg, err := cmd.CombinedOutput()
		if strings.Contains(string(msg), "unknown command") {
			t.Skip("this build has no `loupe demo`; the sample files above stand in for it")
		}
		if err != nil {
			// The demo's own tests report its failures; here it only feeds
			// the browser.
			t.Skipf("loupe demo failed, so its files cannot be browsed: %v\n%s", err, msg)
		}
		s := startTmux(t, 120, 40, bin, "tui", filepath.Join(out, "trace.arrow"))
		s.waitFor("head map", "trace.arrow", "Top heads")
		s.keys("Enter")
		s.waitFor("head view", "Attention of the query over the keys", "Top attended by query", "Scores of this head")
		s.keys("p")
		s.waitFor("prompt view", "Prompt 0 (1/")
		s.keys("q")
		s.waitExit()

		// `loupe tui out/*.arrow`, as the shell expands it: every table of
		// the trace, each leading to the same trace, opened once.
		glob, err := filepath.Glob(filepath.Join(out, "*.arrow"))
		if err != nil || len(glob) < 3 {
			t.Fatalf("%s/*.arrow: %v %v", out, glob, err)
		}
		s = startTmux(t, 120, 40, append([]string{bin, "tui"}, glob...)...)
		s.waitFor("head map", "trace.arrow", "Top heads")
		if screen := s.capture(); strings.Contains(screen, "cannot read") {
			t.Fatalf("loupe tui %s/*.arrow shows an error:\n%s", out, screen)
		}
		s.keys("q")
		s.waitExit()
	})
}

// tmuxSession is one detached tmux session on a private server.
type tmuxSession struct {
	t      *testing.T
	socket string
	name   string
}

func startTmux(t *testing.T, w, h int, argv ...string) *tmuxSession {
	t.Helper()
	return startTmuxEnv(t, w, h, []string{"TERM=xterm-256color", "COLORTERM=truecolor"}, argv...)
}

// startTmuxEnv runs argv with the given environment settings in a new
// detached session.
func startTmuxEnv(t *testing.T, w, h int, env []string, argv ...string) *tmuxSession {
	t.Helper()
	s := &tmuxSession{t: t, socket: fmt.Sprintf("loupe-e2e-%d-%d", os.Getpid(), time.Now().UnixNano()), name: "tui"}
	// A fixed TERM and COLORTERM, so the colour profile does not depend on
	// the terminal the test runs from; and no CI or NO_COLOR, which termenv
	// reads as "no colour" (CI runs this test with CI=true).
	args := []string{"new-session", "-d", "-s", s.name, "-x", fmt.Sprint(w), "-y", fmt.Sprint(h), "env", "-u", "CI", "-u", "NO_COLOR"}
	args = append(append(args, env...), argv...)
	s.tmux(args...)
	t.Cleanup(func() { exec.Command("tmux", "-L", s.socket, "kill-server").Run() })
	return s
}

func (s *tmuxSession) tmux(args ...string) string {
	s.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-L", s.socket}, args...)...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// keys sends each argument as one send-keys call: a tmux key name
// ("Enter", "Escape") or literal text.
func (s *tmuxSession) keys(keys ...string) {
	s.t.Helper()
	for _, k := range keys {
		switch k {
		case "Enter", "Escape", "Up", "Down", "Left", "Right":
			s.tmux("send-keys", "-t", s.name, k)
		default:
			s.tmux("send-keys", "-t", s.name, "-l", k)
		}
		time.Sleep(50 * time.Millisecond) // let the program draw between keys
	}
}

func (s *tmuxSession) capture() string {
	s.t.Helper()
	return s.tmux("capture-pane", "-p", "-t", s.name)
}

// waitFor polls the screen until it shows every want, or fails with the
// last screen.
func (s *tmuxSession) waitFor(want ...string) {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var screen string
	for time.Now().Before(deadline) {
		screen = s.capture()
		missing := ""
		for _, w := range want {
			if !strings.Contains(screen, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, w := range want {
		if !strings.Contains(screen, w) {
			s.t.Fatalf("the screen does not show %q:\n%s", w, screen)
		}
	}
}

// waitExit waits for the program to quit, which ends the session.
func (s *tmuxSession) waitExit() {
	s.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if exec.Command("tmux", "-L", s.socket, "has-session", "-t", s.name).Run() != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("loupe tui did not quit:\n%s", s.capture())
}
