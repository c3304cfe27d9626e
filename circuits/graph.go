package circuits

import (
	"fmt"

	"github.com/loupe-dev/loupe/probe"
)

// # The graph
//
// Circuit discovery sees the model as a graph whose nodes are the
// embeddings, every attention head, every MLP and the logits, and whose
// edges run through the residual stream: a node reads the sum of what every
// earlier node wrote, so there is an edge u → v for every u computed before
// v. Heads of one block are computed side by side and never feed each
// other; a block's MLP reads its own block's heads. An edge is cut by
// giving v alone u's corrupted output in place of u's actual one
// (the hook points hook_attn_in and hook_mlp_in give each receiver its own
// input), which is how ACDC (Conmy et al. 2023) ablates edges.

// Edge is an edge of the graph.
type Edge struct{ From, To Node }

func (e Edge) String() string { return e.From.String() + "->" + e.To.String() }

// order is a node's place in the forward pass.
func order(n Node, layers int) int {
	switch n.Kind {
	case NodeEmbed:
		return -1
	case NodeHead:
		return 2 * n.Layer
	case NodeMLP:
		return 2*n.Layer + 1
	}
	return 2 * layers
}

// Nodes lists the graph's nodes in forward order: embed, the heads of
// block 0, mlp0, the heads of block 1, ..., logits.
func Nodes(c probe.Config) []Node {
	out := []Node{EmbedNode()}
	for l := 0; l < c.Layers; l++ {
		for h := 0; h < c.Heads; h++ {
			out = append(out, HeadNode(l, h))
		}
		out = append(out, MLPNode(l))
	}
	return append(out, LogitsNode())
}

// Components are the nodes that are heads or MLPs (what node ROC curves
// rank).
func Components(c probe.Config) []Node {
	var out []Node
	for _, n := range Nodes(c) {
		if n.Kind == NodeHead || n.Kind == NodeMLP {
			out = append(out, n)
		}
	}
	return out
}

// Edges lists every edge, grouped by receiver in forward order, senders in
// forward order.
func Edges(c probe.Config) []Edge {
	nodes := Nodes(c)
	var out []Edge
	for _, v := range nodes {
		if v.Kind == NodeEmbed {
			continue
		}
		for _, u := range nodes {
			if u.Kind != NodeLogits && order(u, c.Layers) < order(v, c.Layers) {
				out = append(out, Edge{u, v})
			}
		}
	}
	return out
}

// CheckEdge says whether e is an edge of the model's graph.
func CheckEdge(c probe.Config, e Edge) error {
	for _, n := range []Node{e.From, e.To} {
		if err := checkNode(c, n); err != nil {
			return err
		}
		if n.Kind == NodeResid {
			return fmt.Errorf("edge %s: residual positions are not graph nodes", e)
		}
	}
	if e.From.Kind == NodeLogits || e.To.Kind == NodeEmbed || order(e.From, c.Layers) >= order(e.To, c.Layers) {
		return fmt.Errorf("edge %s: %s is not computed before %s", e, e.From, e.To)
	}
	return nil
}
