package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/loupe-dev/loupe/probe"
)

func cmdInspect(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, usage{name: "inspect",
		example: "loupe inspect --model SmolLM2-135M-Instruct.Q4_1.gguf",
		writes:  "the architecture, config, parameter count and hook names on stdout; nothing on disk"})
	var mf modelFlag
	mf.register(fs)
	allHooks := fs.Bool("all-hooks", false, "list every hook name, not one layer's")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	m, err := mf.load()
	if err != nil {
		return err
	}
	defer m.Close()
	c := m.Config
	w := env.stdout
	fmt.Fprintf(w, "model         %s (%s)\n", mf.name(), m.Weights.Format)
	fmt.Fprintf(w, "architecture  %s (model_type %s)\n", c.Family, c.ModelType)
	fmt.Fprintf(w, "parameters    %d (%.1fM)\n", m.NumParams(), float64(m.NumParams())/1e6)
	fmt.Fprintf(w, "layers        %d\n", c.Layers)
	fmt.Fprintf(w, "d_model       %d\n", c.DModel)
	fmt.Fprintf(w, "heads         %d query, %d key/value, d_head %d\n", c.Heads, c.KVHeads, c.HeadDim)
	fmt.Fprintf(w, "d_mlp         %d (%s)\n", c.DMLP, c.Act)
	fmt.Fprintf(w, "vocab         %d (tokenizer %d)\n", c.Vocab, m.Tokenizer.VocabSize())
	fmt.Fprintf(w, "context       %d\n", c.MaxPos)
	if c.RotaryDim > 0 && c.Family != probe.FamilyGPT2 {
		fmt.Fprintf(w, "rope          theta %g, %d of %d dims rotated", c.RopeTheta, c.RotaryDim, c.HeadDim)
		if c.RopeScale != nil {
			fmt.Fprintf(w, ", %s scaling x%g", c.RopeScale.Type, c.RopeScale.Factor)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "tied embed    %v\n", c.TiedEmbed)
	fmt.Fprintf(w, "weights hash  %s\n", m.Weights.ContentHash)
	names := m.HookNames()
	fmt.Fprintf(w, "hook points   %d\n", len(names))
	for _, n := range names {
		if !*allHooks && strings.HasPrefix(n, "blocks.") && !strings.HasPrefix(n, "blocks.0.") {
			continue
		}
		if !*allHooks && strings.HasPrefix(n, "blocks.0.") {
			n = "blocks.{0.." + fmt.Sprint(c.Layers-1) + "}." + strings.TrimPrefix(n, "blocks.0.")
		}
		fmt.Fprintf(w, "  %s\n", n)
	}
	return nil
}
