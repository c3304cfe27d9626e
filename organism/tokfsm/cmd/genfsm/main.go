// Command genfsm draws a TokFSM machine and writes it as JSON, the file the
// TokFSM training script (organism/tokfsm/train/train.py) reads.
//
//	go run ./organism/tokfsm/cmd/genfsm -out fsm.json -states 100 -edges 10 -seed 42
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/loupe-dev/loupe/organism/tokfsm"
)

func main() {
	out := flag.String("out", "fsm.json", "output file")
	states := flag.Int("states", 100, "states")
	edges := flag.Int("edges", 10, "out-neighbours of every state")
	base := flag.Int("base", 10, "numeral base of the state tokens")
	seed := flag.Uint64("seed", 42, "seed")
	flag.Parse()
	f, err := tokfsm.New(*states, *edges, *base, *seed)
	if err == nil {
		err = f.Save(*out)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "genfsm:", err)
		os.Exit(1)
	}
}
