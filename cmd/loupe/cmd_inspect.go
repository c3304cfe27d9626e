package main

import (
	"context"
	"fmt"
	"io"
	"slices"
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
	printLayerPattern(w, c)
	if c.QKNorm {
		fmt.Fprintf(w, "qk-norm       true\n")
	}
	if c.RotaryDim > 0 && c.Family != probe.FamilyGPT2 {
		fmt.Fprintf(w, "rope          theta %g", c.RopeTheta)
		if c.RopeLocalTheta > 0 {
			fmt.Fprintf(w, " (global layers), %g (sliding layers)", c.RopeLocalTheta)
		}
		fmt.Fprintf(w, ", %d of %d dims rotated", c.RotaryDim, c.HeadDim)
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

// printLayerPattern writes which layers attend globally and which through a
// sliding window: one letter per layer, S sliding, G global.
func printLayerPattern(w io.Writer, c probe.Config) {
	var letters, global []string
	windows := map[int]bool{}
	for i := range c.Layers {
		if win := c.Window(i); win > 0 {
			letters = append(letters, "S")
			windows[win] = true
		} else {
			letters = append(letters, "G")
			global = append(global, fmt.Sprint(i))
		}
	}
	if len(windows) == 0 {
		fmt.Fprintf(w, "attention     global (causal) in every layer\n")
		return
	}
	var sizes []string
	for win := range windows {
		sizes = append(sizes, fmt.Sprint(win))
	}
	slices.Sort(sizes)
	fmt.Fprintf(w, "attention     sliding window %s on %d layers, global on %d", strings.Join(sizes, "/"), c.Layers-len(global), len(global))
	if len(global) > 0 {
		fmt.Fprintf(w, " (layers %s)", strings.Join(global, ", "))
	}
	fmt.Fprintf(w, "\nlayer pattern %s (S sliding, G global)\n", strings.Join(letters, " "))
}
