package circuits

import (
	"context"
	"fmt"

	"github.com/loupe-dev/loupe/probe"
)

// PathPatch measures the effect of sender on receiver through the residual
// stream alone, as Wang et al. (2022) define path patching:
//
//  1. run the clean prompt with the sender's output corrupted and every
//     node computed between the sender and the receiver frozen to its clean
//     value, so that the receiver's input changes only by the sender's
//     corrupted write; keep the receiver's output;
//  2. run the clean prompt with only the receiver's output replaced by
//     that one, letting everything downstream react.
//
// With the logits as receiver, step 1's output is the answer (the sender's
// direct effect). The effect is normalised as a noising patch. This uses
// only the ordinary hook points (hook_z, hook_mlp_out), so it is an
// independent check on the split-input edge cutting that ACDC uses.
func (p *Patcher) PathPatch(ctx context.Context, sender, receiver Node) (metric, effect float64, err error) {
	c := p.m.Config
	if err := CheckEdge(c, Edge{sender, receiver}); err != nil {
		return 0, 0, fmt.Errorf("path patch: %w", err)
	}
	lo, hi := order(sender, c.Layers), order(receiver, c.Layers)
	sum, n := 0.0, 0
	for _, ch := range p.chunks {
		edits := []probe.Edit{p.nodeEdit(sender, ch.corruptRun)}
		for _, u := range Nodes(c) {
			if u.Kind != NodeHead && u.Kind != NodeMLP || u == sender {
				continue
			}
			if o := order(u, c.Layers); o > lo && o < hi {
				edits = append(edits, p.nodeEdit(u, ch.cleanRun))
			}
		}
		opts := probe.Options{Hooks: &probe.Hooks{Edit: edits}, Logits: probe.LogitsLast}
		var out string
		if receiver.Kind != NodeLogits {
			out = p.outputHook(receiver)
			opts.Hooks.Cache = []string{out}
		}
		r, err := p.m.Forward(ctx, ch.clean, opts)
		if err != nil {
			return 0, 0, fmt.Errorf("path patch %s -> %s: %w", sender, receiver, err)
		}
		p.Runs++
		if receiver.Kind != NodeLogits {
			fake := &probe.Result{Cache: r.Cache, Batch: r.Batch, Len: r.Len, Pad: r.Pad}
			r, err = p.m.Forward(ctx, ch.clean, probe.Options{Hooks: &probe.Hooks{Edit: []probe.Edit{p.nodeEdit(receiver, fake)}}, Logits: probe.LogitsLast})
			if err != nil {
				return 0, 0, fmt.Errorf("path patch %s -> %s: %w", sender, receiver, err)
			}
			p.Runs++
		}
		for _, v := range p.scores(ch, r) {
			sum += v
			n++
		}
	}
	m := sum / float64(n)
	return m, p.Effect(m, Noising), nil
}

// outputHook is the hook a node's patch goes through.
func (p *Patcher) outputHook(n Node) string {
	switch n.Kind {
	case NodeHead:
		if p.opt.HeadSite == "result" {
			return fmt.Sprintf("blocks.%d.attn.hook_result", n.Layer)
		}
		return fmt.Sprintf("blocks.%d.attn.hook_z", n.Layer)
	case NodeMLP:
		return fmt.Sprintf("blocks.%d.hook_mlp_out", n.Layer)
	}
	return fmt.Sprintf("blocks.%d.hook_resid_pre", n.Layer)
}
