// Command loupe is the one command-line entry to Loupe: it parses flags and
// calls the packages that do the work.
//
//	loupe run      --model M --prompt P --top K      next-token table
//	loupe generate --model M --prompt P --max-tokens N
//	loupe inspect  --model M                         architecture, config, hooks
//
// Run `loupe help` for every command.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"

	"github.com/charmbracelet/x/term"
)

// command is one `loupe NAME` subcommand. run gets the arguments after NAME.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env *cliEnv, args []string) error
}

// commands lists every subcommand. Each lives in its own cmd_*.go file.
func commands() []command {
	cmds := []command{
		{"run", "run a prompt and print the next-token table", cmdRun},
		{"generate", "generate text with a KV cache (greedy or sampled)", cmdGenerate},
		{"inspect", "print a model's architecture, config, parameter count and hook names", cmdInspect},
		{"ls", "say what a trace file holds (tables, prompts, hooks) without reading its data", cmdLs},
		{"trace", "run prompts and store tokens, activations, attention and the logit lens in Arrow files", cmdTrace},
		{"circuits", "find a task's circuit by activation/path patching, ACDC or SAE codes; write task files", cmdCircuits},
		{"flow", "attention rollout or exact attention flow from the input tokens to a position", cmdFlow},
		{"export", "export a trace's tables to Parquet or CSV", cmdExport},
		{"heads", "score every attention head (classify) and check heads causally (ablate)", cmdHeads},
		{"demo", "run the embedded model organism: tasks, head map, Arrow traces (no download)", cmdDemo},
		{"tui", "browse head maps, attention and traces in the terminal", cmdTui},
		{"sae", "train, evaluate and export sparse autoencoders (SAELens v6 folders)", cmdSAE},
		{"codebook", "train codebooks, read their codes, steer with them (codebook features)", cmdCodebook},
		{"devices", "list the GPUs Loupe can use (driver, CUDA, cuBLAS, free memory) or say why there is none", cmdDevices},
	}
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].name < cmds[j].name })
	return cmds
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	env := &cliEnv{stdout: os.Stdout, stderr: os.Stderr, stderrTerminal: term.IsTerminal(os.Stderr.Fd())}
	code := runMain(ctx, os.Args[1:], env)
	stop()
	os.Exit(code)
}

// errUsage marks an error the user made on the command line (exit status 2).
var errUsage = errors.New("usage")

func runMain(ctx context.Context, args []string, env *cliEnv) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		printHelp(env.stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] == "--version" || args[0] == "-version" || args[0] == "version" {
		fmt.Fprintln(env.stdout, "loupe", buildVersion())
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, env, args[1:])
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			fmt.Fprintf(env.stderr, "loupe %s: %v\n", c.name, err)
			return 2
		case ctx.Err() != nil && errors.Is(err, context.Canceled):
			// Ctrl-C: say so, and exit as a shell does for SIGINT.
			fmt.Fprintf(env.stderr, "loupe %s: interrupted (%v)\n", c.name, err)
			return 130
		default:
			fmt.Fprintf(env.stderr, "loupe %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(env.stderr, "loupe: unknown command %q (run `loupe help`)\n", args[0])
	return 2
}

func printHelp(w io.Writer) {
	fmt.Fprintln(w, "loupe: a mechanistic-interpretability toolkit\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun `loupe COMMAND -h` for a command's flags, an example and what it writes;")
	fmt.Fprintln(w, "`loupe --version` for the version. Every command that runs a model runs the")
	fmt.Fprintln(w, "embedded model organism unless --model names another.")
}
