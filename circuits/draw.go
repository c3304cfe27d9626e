package circuits

import (
	"fmt"
	"html"
	"math"
	"sort"
	"strings"

	"github.com/loupe-dev/loupe/probe"
)

// Pictures of a circuit: Graphviz DOT text (for `dot -Tsvg` and friends)
// and a self-contained SVG drawn here, so no Graphviz is needed. Both lay
// the graph out by layer, the embeddings at the bottom and the logits at
// the top; only the circuit's nodes and edges are drawn.

// Picture is what gets drawn.
type Picture struct {
	Title  string
	Config probe.Config
	Nodes  []Node
	Edges  []Edge
	Scores map[Node]float64 // optional, shown under the node names
	// EdgeScores set the edges' widths (optional).
	EdgeScores map[Edge]float64
}

// nodesWithEnds adds the embeddings and logits when an edge touches them.
func (pic *Picture) nodesWithEnds() []Node {
	seen := map[Node]bool{}
	var out []Node
	add := func(n Node) {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	for _, n := range pic.Nodes {
		add(n)
	}
	for _, e := range pic.Edges {
		add(e.From)
		add(e.To)
	}
	L := pic.Config.Layers
	sort.Slice(out, func(i, j int) bool {
		oi, oj := order(out[i], L), order(out[j], L)
		if oi != oj {
			return oi < oj
		}
		return out[i].Head < out[j].Head
	})
	return out
}

// DOT writes the circuit as a Graphviz digraph.
func (pic *Picture) DOT() string {
	var b strings.Builder
	fmt.Fprintf(&b, "digraph circuit {\n  label=%q;\n  rankdir=BT;\n  node [shape=box, style=rounded, fontname=\"Helvetica\"];\n", pic.Title)
	rank := map[int][]string{}
	for _, n := range pic.nodesWithEnds() {
		label := n.String()
		if s, ok := pic.Scores[n]; ok {
			label += fmt.Sprintf("\\n%.3g", s)
		}
		shape := ""
		if n.Kind == NodeMLP {
			shape = ", shape=ellipse"
		}
		fmt.Fprintf(&b, "  %q [label=\"%s\"%s];\n", n.String(), label, shape)
		rank[order(n, pic.Config.Layers)] = append(rank[order(n, pic.Config.Layers)], n.String())
	}
	keys := make([]int, 0, len(rank))
	for k := range rank {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "  { rank=same; ")
		for _, n := range rank[k] {
			fmt.Fprintf(&b, "%q; ", n)
		}
		b.WriteString("}\n")
	}
	for _, e := range pic.Edges {
		attr := ""
		if s, ok := pic.EdgeScores[e]; ok {
			attr = fmt.Sprintf(" [penwidth=%.2f, tooltip=\"%.3g\"]", 1+3*math.Min(1, math.Abs(s)), s)
		}
		fmt.Fprintf(&b, "  %q -> %q%s;\n", e.From.String(), e.To.String(), attr)
	}
	b.WriteString("}\n")
	return b.String()
}

// SVG draws the circuit: one row per node layer (embed, each block's
// heads, each block's MLP, logits), edges as curves.
func (pic *Picture) SVG() string {
	nodes := pic.nodesWithEnds()
	L := pic.Config.Layers
	rows := map[int][]Node{}
	var keys []int
	for _, n := range nodes {
		o := order(n, L)
		if _, ok := rows[o]; !ok {
			keys = append(keys, o)
		}
		rows[o] = append(rows[o], n)
	}
	sort.Ints(keys)
	const boxW, boxH, gapX, gapY, margin = 64.0, 30.0, 18.0, 56.0, 30.0
	widest := 1
	for _, k := range keys {
		widest = max(widest, len(rows[k]))
	}
	W := 2*margin + float64(widest)*(boxW+gapX)
	W = math.Max(W, 2*margin+7*float64(len(pic.Title))) // room for the title at 14 px
	H := 2*margin + 24 + float64(len(keys))*(boxH+gapY)
	pos := map[Node][2]float64{}
	for r, k := range keys {
		row := rows[k]
		y := H - margin - float64(r)*(boxH+gapY) - boxH
		x0 := (W - float64(len(row))*(boxW+gapX) + gapX) / 2
		for i, n := range row {
			pos[n] = [2]float64{x0 + float64(i)*(boxW+gapX), y}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="Helvetica, Arial, sans-serif">`+"\n", W, H, W, H)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="20" font-size="14" text-anchor="middle">%s</text>`+"\n", W/2, html.EscapeString(pic.Title))
	for _, e := range pic.Edges {
		a, c := pos[e.From], pos[e.To]
		x1, y1 := a[0]+boxW/2, a[1]
		x2, y2 := c[0]+boxW/2, c[1]+boxH
		w := 1.2
		if s, ok := pic.EdgeScores[e]; ok {
			w = 1 + 3*math.Min(1, math.Abs(s))
		}
		fmt.Fprintf(&b, `<path d="M %.1f %.1f C %.1f %.1f, %.1f %.1f, %.1f %.1f" stroke="#4a6fa5" stroke-opacity="0.6" stroke-width="%.2f" fill="none"><title>%s</title></path>`+"\n",
			x1, y1, x1, (y1+y2)/2, x2, (y1+y2)/2, x2, y2, w, html.EscapeString(e.String()))
	}
	for _, n := range nodes {
		p := pos[n]
		fill := "#f4e3c1"
		switch n.Kind {
		case NodeMLP:
			fill = "#d7ead3"
		case NodeEmbed, NodeLogits:
			fill = "#e6e6e6"
		}
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.0f" height="%.0f" rx="6" fill="%s" stroke="#555"/>`+"\n", p[0], p[1], boxW, boxH, fill)
		label := n.String()
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="12" text-anchor="middle">%s</text>`+"\n", p[0]+boxW/2, p[1]+13, html.EscapeString(label))
		if s, ok := pic.Scores[n]; ok {
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="9" text-anchor="middle" fill="#555">%.3g</text>`+"\n", p[0]+boxW/2, p[1]+25, s)
		}
	}
	b.WriteString("</svg>\n")
	return b.String()
}
