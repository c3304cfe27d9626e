package tui

import (
	"fmt"
	"math"
	"strings"

	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"

	"github.com/loupe-dev/loupe/store"
)

// promptView is one traced prompt, one row per token: the token, its
// activation norm at every layer (a heat strip), the logit lens's top
// prediction at the chosen layer, and how much attention rollout and flow
// carry from the token into the last position. The line under the table
// details the token under the cursor.
type promptView struct {
	st   *state
	row0 int // first position on screen
}

func (m *promptView) Init() tea.Cmd { return nil }

func (m *promptView) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	st, k := m.st, m.st.keys
	n := m.count()
	rows := m.tableRows()
	switch msg := msg.(type) {
	case tea.KeyMsg:
		switch {
		case key.Matches(msg, k.Up):
			st.pos = max(st.pos-1, 0)
		case key.Matches(msg, k.Down):
			st.pos = min(st.pos+1, max(n-1, 0))
		case key.Matches(msg, k.PageUp):
			st.pos = max(st.pos-rows, 0)
		case key.Matches(msg, k.PageDown):
			st.pos = min(st.pos+rows, max(n-1, 0))
		case key.Matches(msg, k.Left), key.Matches(msg, k.Right):
			d := 1
			if key.Matches(msg, k.Left) {
				d = -1
			}
			if ls := m.lensLayers(); len(ls) > 0 {
				i := indexOf(ls, m.lensLayer())
				st.lensLayer = ls[min(max(i+d, 0), len(ls)-1)]
			}
		case key.Matches(msg, k.NextPrompt):
			st.prompt, st.pos, st.query = cycle(st.prompt, 1, len(st.src.Prompts())), 0, -1
		case key.Matches(msg, k.PrevPrompt):
			st.prompt, st.pos, st.query = cycle(st.prompt, -1, len(st.src.Prompts())), 0, -1
		}
	case tea.MouseMsg:
		// The wheel scrolls the table; the cursor follows when it would
		// leave the screen.
		if msg.Action == tea.MouseActionPress {
			switch msg.Button {
			case tea.MouseButtonWheelUp:
				m.row0 = max(m.row0-3, 0)
			case tea.MouseButtonWheelDown:
				m.row0 = min(m.row0+3, max(n-rows, 0))
			}
			st.pos = min(max(st.pos, m.row0), m.row0+rows-1)
		}
	}
	return m, nil
}

func (m *promptView) count() int {
	p, ok := m.st.promptID()
	if !ok {
		return 0
	}
	return m.st.src.tokenCount(p)
}

// tableRows is how many token rows fit: the body less the title, the
// column header, a blank line and the three detail lines.
func (m *promptView) tableRows() int { return max(m.st.bodyHeight()-6, 1) }

// lensByLayer is the cursor token's top logit-lens prediction at every
// layer: how the model's guess forms through depth. It reads every layer's
// lens of the prompt, so long prompts (whose lens would be large) skip it.
func (m *promptView) lensByLayer(p, n, w int) string {
	if n > 4096 {
		return dimStyle.Render("by layer: ←/→ walks the layers (a prompt this long is not read whole)")
	}
	parts := []string{}
	for _, l := range m.lensLayers() {
		lens, err := m.st.src.Lens(p, l)
		if err != nil {
			return errStyle.Render("logit lens: " + err.Error())
		}
		part := fmt.Sprintf("L%d %s", l, lensTop(lens, m.st.pos, 1, w))
		if l == m.lensLayer() {
			part = boldStyle.Render(part)
		}
		parts = append(parts, part)
	}
	return clip("by layer: "+strings.Join(parts, dimStyle.Render(" │ ")), w)
}

func (m *promptView) lensLayers() []int {
	p, ok := m.st.promptID()
	if !ok {
		return nil
	}
	return m.st.src.LensLayers(p)
}

// lensLayer resolves st.lensLayer (-1: the last layer) against the lens.
func (m *promptView) lensLayer() int {
	ls := m.lensLayers()
	if len(ls) == 0 {
		return -1
	}
	if indexOf(ls, m.st.lensLayer) >= 0 {
		return m.st.lensLayer
	}
	return ls[len(ls)-1]
}

func indexOf(xs []int, v int) int {
	for i, x := range xs {
		if x == v {
			return i
		}
	}
	return -1
}

func (m *promptView) View() string {
	st := m.st
	w := st.width
	p, ok := st.promptID()
	if !ok {
		return "\n  " + boldStyle.Render("These files hold no prompts.") + "\n\n  Traces with prompts come from `loupe demo` (and the commands that trace a model)."
	}
	toks, err := st.src.Tokens(p)
	if err != nil {
		return "\n  " + errStyle.Render("Cannot read the tokens of prompt "+fmt.Sprint(p)) + "\n  " + err.Error()
	}
	n := m.count()
	st.pos = min(max(st.pos, 0), max(n-1, 0))
	norms := st.src.Norms(p)
	flow := st.src.Flow(p)
	ll := m.lensLayer()
	var lens *store.LogitLens
	var lensErr error
	if ll >= 0 {
		lens, lensErr = st.src.Lens(p, ll)
	}

	var info []string
	var errs []string
	if norms != nil && norms.Err == nil {
		info = append(info, "norms: "+norms.Hook)
	} else if norms != nil {
		errs = append(errs, "activations: "+norms.Err.Error())
	}
	if lensErr != nil {
		errs = append(errs, "logit lens: "+lensErr.Error())
	} else if ll >= 0 {
		info = append(info, fmt.Sprintf("lens at L%d (←/→)", ll))
	}
	var mats []store.FlowMatrix
	if flow != nil && flow.Err == nil {
		mats = flow.Mats
		var ms []string
		for _, f := range mats {
			ms = append(ms, flowName(f))
		}
		info = append(info, "into last token: "+strings.Join(ms, ", "))
	} else if flow != nil {
		errs = append(errs, "flow: "+flow.Err.Error())
	}
	if len(info) == 0 && len(errs) == 0 {
		info = append(info, "tokens only: the files have no activations, logit lens or flow for this prompt")
	}
	title := boldStyle.Render(fmt.Sprintf("Prompt %d (%d/%d) · %d tokens", p, st.prompt+1, len(st.src.Prompts()), n))
	if len(info) > 0 {
		title += dimStyle.Render(" · " + strings.Join(info, " · "))
	}

	// Column layout: pos, token, norm strip, lens, flow columns.
	const posW = 5
	tokW := 14
	nl := 0
	if norms != nil && norms.Err == nil {
		nl = len(norms.Layers)
	}
	cellW := 2
	if nl*3+posW+tokW+40 <= w {
		cellW = 3
	}
	lensW := 0
	if lensErr == nil && ll >= 0 {
		lensW = 18
	}
	flowW := make([]int, len(mats))
	for i, f := range mats {
		flowW[i] = max(8, len(flowName(f))+1)
	}
	var hdr strings.Builder
	hdr.WriteString(pad("pos", posW) + pad("token", tokW))
	if nl > 0 {
		hdr.WriteString(layerRuler(norms.Layers, cellW) + " ")
	}
	if lensW > 0 {
		hdr.WriteString(pad(fmt.Sprintf("lens@L%d", ll), lensW))
	}
	for i, f := range mats {
		hdr.WriteString(pad(flowName(f), flowW[i]))
	}

	// Per-layer scale: norms grow with depth, so each layer's strip is
	// scaled to that layer's largest norm; otherwise the last layers would
	// wash everything else out.
	var layerMax []float64
	if nl > 0 {
		layerMax = make([]float64, nl)
		for i, row := range norms.Norms {
			for _, v := range row {
				if !math.IsNaN(float64(v)) {
					layerMax[i] = max(layerMax[i], float64(v))
				}
			}
		}
	}
	flowMax := make([]float64, len(mats))
	for i, f := range mats {
		for _, v := range lastRow(f) {
			flowMax[i] = max(flowMax[i], float64(v))
		}
	}

	// Errors take lines from the table, so that they always show.
	var errLines []string
	for _, e := range errs {
		for _, l := range wrap(e, max(w-2, 10), "  ") {
			errLines = append(errLines, errStyle.Render(l))
		}
	}
	rows := max(m.tableRows()-len(errLines), 1)
	m.row0 = scrollTo(m.row0, st.pos, rows, n)
	lines := []string{title, dimStyle.Render(hdr.String())}
	start := 0
	if toks != nil {
		start = toks.Start
	}
	for pos := m.row0; pos < min(m.row0+rows, n); pos++ {
		var b strings.Builder
		txt := st.src.TokenText(p, pos)
		left := pad(fmt.Sprint(pos), posW) + pad(tokenText(txt), tokW-1) + " "
		if pos == st.pos {
			left = focusStyle.Render(left)
		}
		b.WriteString(left)
		for i := range nl {
			row := norms.Norms[i]
			if pos < len(row) && !math.IsNaN(float64(row[pos])) {
				t := norm(float64(row[pos]), 0, layerMax[i])
				b.WriteString(heatStyle(t).Render(pad(shade(t), cellW)))
			} else {
				b.WriteString(dimStyle.Render(pad("·", cellW)))
			}
		}
		if nl > 0 {
			b.WriteString(" ")
		}
		if lensW > 0 {
			b.WriteString(pad(lensTop(lens, pos, 1, lensW), lensW))
		}
		for i, f := range mats {
			r := lastRow(f)
			if pos-start >= 0 && pos < len(r) {
				v := float64(r[pos])
				b.WriteString(heatStyle(norm(v, 0, flowMax[i])).Render(pad(fmt.Sprintf("%.3f", v), flowW[i]-1)) + " ")
			} else {
				b.WriteString(pad("", flowW[i]))
			}
		}
		lines = append(lines, b.String())
	}
	lines = append(lines, "")
	// Detail of the token under the cursor.
	det := fmt.Sprintf("pos %d %s", st.pos, boldStyle.Render(tokenText(st.src.TokenText(p, st.pos))))
	if toks != nil && st.pos-toks.Start >= 0 && st.pos-toks.Start < len(toks.IDs) {
		det += dimStyle.Render(fmt.Sprintf(" (id %d)", toks.IDs[st.pos-toks.Start]))
	}
	if nl > 0 {
		var vs []string
		for i, l := range norms.Layers {
			if row := norms.Norms[i]; st.pos < len(row) {
				vs = append(vs, fmt.Sprintf("L%d %.1f", l, row[st.pos]))
			}
		}
		det += " · norm " + strings.Join(vs, " ")
	}
	for _, f := range mats {
		if r := lastRow(f); st.pos < len(r) {
			det += fmt.Sprintf(" · %s %.3f", flowName(f), r[st.pos])
		}
	}
	lines = append(lines, det)
	if lensW > 0 {
		lines = append(lines, fmt.Sprintf("lens L%d: %s", ll, lensTop(lens, st.pos, 5, w)))
		lines = append(lines, m.lensByLayer(p, n, w))
	}
	lines = append(lines, errLines...)
	return strings.Join(lines, "\n")
}

// lastRow is the row of a flow matrix for its last output position: what
// flows into the last position, where the model makes its prediction.
func lastRow(f store.FlowMatrix) []float32 {
	if f.Rows == 0 || f.Cols == 0 || len(f.Values) < f.Rows*f.Cols {
		return nil
	}
	last := 0
	for r := range f.Rows {
		if f.OutputPos(r) > f.OutputPos(last) {
			last = r
		}
	}
	return f.Values[last*f.Cols : (last+1)*f.Cols]
}

// lensTop formats the top k predictions of the logit lens at a position.
func lensTop(l *store.LogitLens, pos, k, w int) string {
	if l == nil {
		return dimStyle.Render("·")
	}
	// Rows are usually positions 0, 1, ...: try that before searching.
	at := -1
	if pos >= 0 && pos < len(l.Positions) && l.Positions[pos] == pos {
		at = pos
	} else {
		at = indexOf(l.Positions, pos)
	}
	if at >= 0 {
		i := at
		var parts []string
		for j := range min(k, l.K) {
			id := l.TopIDs[i*l.K+j]
			if id < 0 {
				break
			}
			parts = append(parts, fmt.Sprintf("%s %.2f", tokenText(l.TopTexts[i*l.K+j]), l.TopProbs[i*l.K+j]))
		}
		s := strings.Join(parts, "  ")
		if k > 1 && !math.IsNaN(float64(l.TargetProb[i])) {
			s += dimStyle.Render(fmt.Sprintf("  (next token p=%.3f)", l.TargetProb[i]))
		}
		return clip(s, w)
	}
	return dimStyle.Render("·")
}

// flowName names a matrix's column: its method, and its layer unless it is
// the whole model's.
func flowName(f store.FlowMatrix) string {
	name := f.Method
	if f.Head >= 0 {
		name += fmt.Sprintf(".h%d", f.Head)
	}
	if f.FromLayer > 0 {
		name += fmt.Sprintf(" from L%d", f.FromLayer)
	}
	if f.Layer >= 0 {
		name += fmt.Sprintf("@L%d", f.Layer)
	}
	return name
}

// layerRuler labels the norm strip's columns: every layer when the labels
// fit in the cells, else every few layers, each label starting over its
// own column.
func layerRuler(layers []int, cellW int) string {
	widest := 0
	for _, l := range layers {
		widest = max(widest, len(fmt.Sprint(l)))
	}
	step := (widest + cellW) / cellW // room for the label and a space
	if widest < cellW {
		step = 1
	}
	row := []rune(strings.Repeat(" ", len(layers)*cellW))
	for i, l := range layers {
		if i%step != 0 {
			continue
		}
		for j, r := range fmt.Sprint(l) {
			if k := i*cellW + j; k < len(row) {
				row[k] = r
			}
		}
	}
	return string(row)
}
