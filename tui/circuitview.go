package tui

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"

	"github.com/loupe-dev/loupe/store"
)

// circuitView shows a found circuit (a circuit table of `loupe circuits
// find`): the graph's heads and MLPs as cells laid out by layer and
// coloured by the method's node score, and below them the edges, best
// first, one of them selected. The selected edge's two ends are marked on
// the grid, so walking the list walks the circuit.
type circuitView struct {
	st     *state
	method int  // index into the source's circuit methods
	sel    int  // selected edge (index into edges())
	scroll int  // first edge row on screen
	all    bool // list every scored edge, not only the circuit's
}

// circuitGraph is one method's circuit, as the view draws it.
type circuitGraph struct {
	method, task string
	layers       int
	heads        int
	nodes        map[string]store.CircuitRow // by node name
	edges        []store.CircuitRow          // in-circuit first, then by score
	figures      []store.CircuitRow
}

// circuitGraphs groups a source's circuit rows by method, in the order the
// methods first appear.
func circuitGraphs(rows []store.CircuitRow) []*circuitGraph {
	var out []*circuitGraph
	by := map[string]*circuitGraph{}
	for _, r := range rows {
		g := by[r.Method]
		if g == nil {
			g = &circuitGraph{method: r.Method, task: r.Task, nodes: map[string]store.CircuitRow{}}
			by[r.Method] = g
			out = append(out, g)
		}
		switch r.Kind {
		case store.CircuitNode:
			g.nodes[r.Node] = r
			if r.Layer >= 0 {
				g.layers = max(g.layers, r.Layer+1)
			}
			g.heads = max(g.heads, r.Head+1)
		case store.CircuitEdge:
			g.edges = append(g.edges, r)
		case store.CircuitFigure:
			g.figures = append(g.figures, r)
		}
	}
	for _, g := range out {
		slices.SortStableFunc(g.edges, func(a, b store.CircuitRow) int {
			if a.InCircuit != b.InCircuit {
				if a.InCircuit {
					return -1
				}
				return 1
			}
			return cmp.Compare(b.Score, a.Score)
		})
	}
	return out
}

func (m *circuitView) graph() *circuitGraph {
	gs := m.st.src.circuitGraphs()
	if len(gs) == 0 {
		return nil
	}
	return gs[m.method%len(gs)]
}

// edges are the rows the list shows: the circuit's edges, or every scored
// edge when all is set.
func (m *circuitView) edges() []store.CircuitRow {
	g := m.graph()
	if g == nil {
		return nil
	}
	if m.all {
		return g.edges
	}
	n := 0
	for n < len(g.edges) && g.edges[n].InCircuit {
		n++
	}
	return g.edges[:n]
}

func (m *circuitView) Init() tea.Cmd { return nil }

func (m *circuitView) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	k := m.st.keys
	n := len(m.edges())
	switch msg := msg.(type) {
	case tea.KeyMsg:
		switch {
		case key.Matches(msg, k.Up):
			m.sel = max(m.sel-1, 0)
		case key.Matches(msg, k.Down):
			m.sel = min(m.sel+1, max(n-1, 0))
		case key.Matches(msg, k.PageUp):
			m.sel = max(m.sel-10, 0)
		case key.Matches(msg, k.PageDown):
			m.sel = min(m.sel+10, max(n-1, 0))
		case key.Matches(msg, k.Mode):
			m.all, m.sel, m.scroll = !m.all, 0, 0
		case key.Matches(msg, k.NextScore):
			m.method, m.sel, m.scroll = cycle(m.method, 1, len(m.st.src.circuitGraphs())), 0, 0
		case key.Matches(msg, k.PrevScore):
			m.method, m.sel, m.scroll = cycle(m.method, -1, len(m.st.src.circuitGraphs())), 0, 0
		}
	case tea.MouseMsg:
		if msg.Action == tea.MouseActionPress {
			switch msg.Button {
			case tea.MouseButtonWheelUp:
				m.sel = max(m.sel-1, 0)
			case tea.MouseButtonWheelDown:
				m.sel = min(m.sel+1, max(n-1, 0))
			}
		}
	}
	return m, nil
}

func (m *circuitView) View() string {
	g := m.graph()
	if g == nil {
		return dimStyle.Render("These files hold no circuit table (loupe circuits find writes one).")
	}
	w, h := m.st.width, m.st.bodyHeight()
	edges := m.edges()
	inCircuit := 0
	for _, n := range g.nodes {
		if n.InCircuit {
			inCircuit++
		}
	}
	circuitEdges := 0
	for _, e := range g.edges {
		if e.InCircuit {
			circuitEdges++
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %s\n", boldStyle.Render(fmt.Sprintf("Circuit: %s on %s", g.method, g.task)),
		dimStyle.Render(fmt.Sprintf("%d nodes and %d edges in the circuit%s", inCircuit, circuitEdges, figureText(g.figures))))
	var from, to string
	if m.sel < len(edges) {
		from, to = edges[m.sel].Node, edges[m.sel].To
	}
	// The grid: a row per layer, a cell per head and one for the MLP.
	top := 0.0
	for _, n := range g.nodes {
		top = math.Max(top, math.Abs(n.Score))
	}
	cell := func(name string, label string) string {
		r, ok := g.nodes[name]
		text := fmt.Sprintf("%-4s", label)
		if !ok {
			return dimStyle.Render(text)
		}
		t := 0.0
		if top > 0 {
			t = math.Abs(r.Score) / top
		}
		if r.InCircuit {
			text = fmt.Sprintf("%-4s", label+"*")
		}
		st := heatStyle(t)
		if name == from || name == to {
			st = focusStyle
		}
		return st.Render(text)
	}
	ends := func(name string) string {
		if name == from || name == to {
			return focusStyle.Render(name)
		}
		return dimStyle.Render(name)
	}
	b.WriteString(ends("embed") + "\n")
	// A tall model on a short terminal: keep the layers that hold a node
	// of the circuit or an end of the selected edge, so the list keeps
	// room.
	show := func(int) bool { return true }
	if g.layers+14 > h {
		keep := map[int]bool{}
		for _, n := range g.nodes {
			if n.InCircuit || n.Node == from || n.Node == to {
				keep[n.Layer] = true
			}
		}
		show = func(l int) bool { return keep[l] }
	}
	hidden := 0
	for l := 0; l < g.layers; l++ {
		if !show(l) {
			hidden++
			continue
		}
		fmt.Fprintf(&b, "L%-3d", l)
		for hd := 0; hd < g.heads; hd++ {
			b.WriteString(cell(fmt.Sprintf("%d.%d", l, hd), strconv.Itoa(hd)) + " ")
		}
		b.WriteString(cell(fmt.Sprintf("mlp%d", l), "mlp") + "\n")
	}
	b.WriteString(ends("logits") + "\n")
	if hidden > 0 {
		b.WriteString(dimStyle.Render(fmt.Sprintf("(%d layers without a circuit node not shown: a taller terminal shows them)", hidden)) + "\n")
	}
	b.WriteString(dimStyle.Render("cells: heads by number, the MLP last; colour |score| / top score; * in the circuit") + "\n\n")
	// The edge list fills what is left.
	title := "circuit edges"
	if m.all {
		title = "every scored edge"
	}
	fmt.Fprintf(&b, "%s %s\n", headStyle.Render(title), dimStyle.Render(fmt.Sprintf("(%d; a: %s)", len(edges), map[bool]string{false: "all edges", true: "circuit edges"}[m.all])))
	room := max(h-strings.Count(b.String(), "\n")-1, 1)
	if m.sel < m.scroll {
		m.scroll = m.sel
	}
	if m.sel >= m.scroll+room {
		m.scroll = m.sel - room + 1
	}
	if len(edges) == 0 {
		b.WriteString(dimStyle.Render("no edges: this method scores nodes only, or its circuit has none (a: all edges)"))
	}
	for i := m.scroll; i < len(edges) && i < m.scroll+room; i++ {
		e := edges[i]
		mark := " "
		if e.InCircuit {
			mark = "*"
		}
		line := fmt.Sprintf("%s %-8s → %-8s %10.4g", mark, e.Node, e.To, e.Score)
		if i == m.sel {
			line = focusStyle.Render(clip(line, w))
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

// figureText is the run's summary figures (AUCs, wall time) for the title.
func figureText(fs []store.CircuitRow) string {
	var parts []string
	for _, f := range fs {
		switch f.Node {
		case "node_auc", "edge_auc":
			parts = append(parts, fmt.Sprintf("%s %.3f", strings.ReplaceAll(f.Node, "_", " "), f.Score))
		case "wall_s":
			parts = append(parts, fmt.Sprintf("%.1f s", f.Score))
		case "partial":
			if f.Score == 1 {
				parts = append(parts, "partial (ACDC stopped at its time limit)")
			}
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "; " + strings.Join(parts, ", ")
}
