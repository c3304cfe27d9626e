package main

// The plumbing every command shares: the --model flag and how it loads,
// the text of `loupe COMMAND -h`, --quiet and the progress line. A new
// command uses these rather than its own copies:
//
//	fs := newFlags(env, usage{name: "sae train", example: "loupe sae train --hooks ...",
//		writes: "an SAELens folder under --out"})
//	var mf modelFlag
//	mf.register(fs)
//	quiet := registerQuiet(fs)
//	if err := parseFlags(fs, args); err != nil { return err }
//	m, err := mf.load()
//	bar := env.progress(*quiet)

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/loupe-dev/loupe/organism"
	"github.com/loupe-dev/loupe/probe"
	"github.com/loupe-dev/loupe/probe/compute"
	"github.com/loupe-dev/loupe/store"
)

// cliEnv is what every command writes to.
type cliEnv struct {
	stdout, stderr io.Writer
	// stderrTerminal says stderr is a terminal: progress lines are drawn
	// only then, so pipes and log files never hold carriage-return frames.
	stderrTerminal bool
}

// organismModel is the --model value naming the embedded model organism,
// every command's default (DESIGN decision 12). A directory that happens to
// be called "organism" is reached as ./organism.
const organismModel = "organism"

// modelFlag is --model, registered by every command that runs a model,
// with --device and --weight-dtype (deviceFlags, device.go): load builds
// the model on the backend they name, so every command gets devices
// without a change of its own.
type modelFlag struct {
	path string
	dev  deviceFlags // --device and --weight-dtype (device.go)
}

func (f *modelFlag) register(fs *flag.FlagSet) {
	fs.StringVar(&f.path, "model", organismModel,
		`the model: "organism" (the embedded model organism that loupe demo runs), a Hugging Face model directory or a .gguf file`)
	f.dev.register(fs)
}

// isOrganism says the flag names the embedded organism.
func (f *modelFlag) isOrganism() bool { return f.path == organismModel }

// backend is the compute backend the model is built on (--device).
func (f *modelFlag) backend() (compute.Backend, error) { return f.dev.backend() }

// load opens the model the flag names.
func (f *modelFlag) load() (*probe.Loaded, error) {
	if strings.TrimSpace(f.path) == "" {
		return nil, fmt.Errorf("%w: --model is empty (leave it out for the embedded organism, or give a model directory or .gguf file)", errUsage)
	}
	b, err := f.backend()
	if err != nil {
		return nil, err
	}
	if f.isOrganism() {
		return organism.Load(b)
	}
	return probe.Load(f.path, b)
}

// name is how output and file metadata call the model: the path given, or
// the organism's name.
func (f *modelFlag) name() string {
	if f.isOrganism() {
		return organism.Name
	}
	return f.path
}

// noteCleaned tells the user, on stderr, about the temporary files of
// killed writers that a new trace writer removed from its folder. Every
// command that creates a trace calls it after store.Create.
func (env *cliEnv) noteCleaned(w *store.Writer) {
	var n int
	var bytes int64
	for _, t := range w.Cleaned() {
		if t.Removed {
			n++
			bytes += t.Bytes
		}
	}
	if n > 0 {
		fmt.Fprintf(env.stderr, "note: removed %d temporary files (%s) that a killed writer left in this folder\n", n, humanBytes(bytes))
	}
}

// usage is what `loupe NAME -h` prints above the flags.
type usage struct {
	name    string // "run", or "heads classify" for a subcommand
	args    string // positional arguments, e.g. "FILE.arrow"; empty for none
	summary string // one sentence; empty: the command list's summary
	example string // one command line a user can paste
	writes  string // what the command writes, and where
}

// newFlags makes a FlagSet that reports errors instead of exiting and whose
// -h gives the usage line, the summary, an example and what it writes, on
// stdout (as `loupe help` does: help asked for is output, and pipes into a
// pager). The FlagSet's output is stderr, for notes (deviceFlags').
func newFlags(env *cliEnv, u usage) *flag.FlagSet {
	fs := flag.NewFlagSet("loupe "+u.name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() {
		w := env.stdout
		defer fs.SetOutput(fs.Output())
		fs.SetOutput(w) // for PrintDefaults
		line := "loupe " + u.name + " [flags]"
		if u.args != "" {
			line = "loupe " + u.name + " " + u.args + " [flags]"
		}
		fmt.Fprintf(w, "usage: %s\n\n", line)
		if s := u.summary; s != "" || summaryOf(u.name) != "" {
			if s == "" {
				s = summaryOf(u.name)
			}
			fmt.Fprintf(w, "%s.\n\n", strings.TrimSuffix(capitalize(s), "."))
		}
		if u.example != "" {
			fmt.Fprintf(w, "Example:\n  %s\n\n", u.example)
		}
		if u.writes != "" {
			fmt.Fprintf(w, "Writes: %s\n\n", u.writes)
		}
		fmt.Fprintln(w, "Flags:")
		fs.PrintDefaults()
	}
	return fs
}

// summaryOf is the command list's summary of a top-level command.
func summaryOf(name string) string {
	for _, c := range commands() {
		if c.name == name {
			return c.summary
		}
	}
	return ""
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// leadingArg takes a command's leading positional argument (DIR in
// "loupe sae eval DIR [flags]") from before its flags; call it once every
// flag is registered, so that -h in its place prints the whole help.
func leadingArg(fs *flag.FlagSet, args []string, line string) (string, []string, error) {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		return "", nil, parseFlags(fs, args[:1])
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return "", nil, fmt.Errorf("%w: %s", errUsage, line)
	}
	return args[0], args[1:], nil
}

// parseFlags parses args and turns a flag error into a usage error.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := parseFlagsAndArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return nil
}

// parseFlagsAndArgs is parseFlags for a command that takes positional
// arguments after its flags (fs.Args()). A flag error comes back as one
// usage error, which runMain prints as one line, not with the whole flag
// list after it; -h prints the help once. A flag given twice, unless its
// value collects every use (--prompt of sae features), gets a note on
// stderr: flag's rule, the last one wins, would otherwise drop the first
// without a word (scripts that override a default rely on that rule).
func parseFlagsAndArgs(fs *flag.FlagSet, args []string) error {
	out, usage := fs.Output(), fs.Usage
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.SetOutput(out)
	fs.Usage = usage
	if errors.Is(err, flag.ErrHelp) {
		fs.Usage()
		return err
	}
	if err != nil {
		return fmt.Errorf("%w: %v (`%s -h` lists the flags)", errUsage, err, fs.Name())
	}
	if name := repeatedFlag(fs, args[:len(args)-fs.NArg()]); name != "" {
		fmt.Fprintf(out, "%s: note: --%s is given more than once; the last one, %s, is used\n", fs.Name(), name, fs.Lookup(name).Value)
	}
	return nil
}

// repeatable marks a flag.Value that collects every use of its flag.
type repeatable interface{ repeatable() }

// repeatedFlag names the first flag that args (the flags fs parsed) give
// twice, leaving out repeatable ones; "" if none.
func repeatedFlag(fs *flag.FlagSet, args []string) string {
	seen := map[string]bool{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" || !strings.HasPrefix(a, "-") {
			break
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := fs.Lookup(name)
		if f == nil {
			continue
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); !hasValue && !(ok && b.IsBoolFlag()) {
			i++ // the value is the next argument
		}
		if _, ok := f.Value.(repeatable); !ok && seen[name] {
			return name
		}
		seen[name] = true
	}
	return ""
}

// makeOutDir makes the folder of the output file that flag names, before
// any work: a missing folder then neither fails the command at its end
// nor differs between commands.
func makeOutDir(flag, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("--%s %s: %w", flag, path, err)
	}
	return nil
}

// flagSet says whether the named flag was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// registerQuiet adds --quiet: no progress line.
func registerQuiet(fs *flag.FlagSet) *bool {
	return fs.Bool("quiet", false, "no progress line on stderr (it is drawn only when stderr is a terminal)")
}

// progress returns the progress line of a long command: drawn on stderr
// when stderr is a terminal and quiet is false, silent otherwise.
func (env *cliEnv) progress(quiet bool) *progressBar {
	return &progressBar{w: env.stderr, off: quiet || !env.stderrTerminal, start: time.Now()}
}

// progressBar draws one line on stderr: the stage, a bar and a count,
// redrawn in place. Its update method fits heads.Progress.
type progressBar struct {
	w     io.Writer
	off   bool
	start time.Time
	last  string
}

func (p *progressBar) update(stage string, done, total int) {
	if p.off {
		return
	}
	const width = 30
	fill := 0
	count := ""
	if total > 0 {
		fill = min(width, width*done/total)
		count = fmt.Sprintf("%d/%d", done, total)
	}
	line := fmt.Sprintf("%-12s [%s%s] %s %s", stage, strings.Repeat("#", fill), strings.Repeat("-", width-fill), count,
		time.Since(p.start).Round(time.Second))
	if line != p.last {
		// Clear to the end of the line: a shorter line leaves no tail.
		fmt.Fprintf(p.w, "\r%s\x1b[K", line)
		p.last = line
	}
}

// done ends the progress line, so what follows starts on a fresh line.
func (p *progressBar) done() {
	if !p.off && p.last != "" {
		fmt.Fprintln(p.w)
		p.last = ""
	}
}

// printJSON writes v to stdout as indented JSON. A value JSON cannot hold
// (a NaN or infinite metric, say) is an error, not an empty line.
func printJSON(env *cliEnv, v any) error {
	js, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("the report as JSON: %w", err)
	}
	_, err = fmt.Fprintln(env.stdout, string(js))
	return err
}
