package main

import (
	"context"
	"fmt"

	"github.com/loupe-dev/loupe/tui"
)

// cmdTui browses traces in the terminal: `loupe tui FILE.arrow ...`. Several
// files are merged (head scores from one, attention from another).
func cmdTui(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, usage{name: "tui", args: "FILE.arrow [FILE.arrow ...]",
		summary: "browse head maps, attention, traces and found circuits in the terminal; press ? inside for the keys",
		example: "loupe tui loupe-demo/*.arrow",
		writes:  "nothing: it reads the traces named (any of a trace's files opens the whole trace)"})
	if err := parseFlagsAndArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("%w: want at least one trace file (loupe tui FILE.arrow ...)", errUsage)
	}
	_ = ctx // the program ends on q or ctrl+c; bubbletea handles SIGINT itself
	return tui.Run(fs.Args(), nil, nil)
}
