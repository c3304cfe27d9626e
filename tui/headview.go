package tui

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/ansi"

	"github.com/loupe-dev/loupe/store"
)

// headView shows one head on one prompt: the attention of a query token
// over the key tokens as a heat view, its top attended tokens, every score
// of the head with its details, and ablation results where the files have
// them.
type headView struct {
	st        *state
	scroll    int    // first line of the token heat view on screen
	lastQ     int    // query position last drawn
	layoutKey [4]int // prompt, query, width and length the layout was made for
	breaks    []int  // first position of each line of the text view
	matrix    bool   // draw the whole pattern (queries x keys) instead of one query over the prompt text
}

func (m *headView) Init() tea.Cmd { return nil }

func (m *headView) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	st, k := m.st, m.st.keys
	n := m.tokenCount()
	switch msg := msg.(type) {
	case tea.KeyMsg:
		switch {
		case key.Matches(msg, k.Left):
			st.query = max(m.queryPos(n)-1, 0)
		case key.Matches(msg, k.Right):
			st.query = min(m.queryPos(n)+1, max(n-1, 0))
		case key.Matches(msg, k.Mode):
			m.matrix = !m.matrix
		case key.Matches(msg, k.Up) && m.matrix:
			st.query = max(m.queryPos(n)-1, 0)
		case key.Matches(msg, k.Down) && m.matrix:
			st.query = min(m.queryPos(n)+1, max(n-1, 0))
		case key.Matches(msg, k.Up):
			m.scroll = max(m.scroll-1, 0)
		case key.Matches(msg, k.Down):
			m.scroll++
		case key.Matches(msg, k.PageUp):
			m.scroll = max(m.scroll-5, 0)
		case key.Matches(msg, k.PageDown):
			m.scroll += 5
		case key.Matches(msg, k.NextPrompt):
			st.prompt, st.query, m.scroll = cycle(st.prompt, 1, len(st.src.Prompts())), -1, 0
		case key.Matches(msg, k.PrevPrompt):
			st.prompt, st.query, m.scroll = cycle(st.prompt, -1, len(st.src.Prompts())), -1, 0
		case key.Matches(msg, k.NextTop):
			jumpTop(st, 1)
		case key.Matches(msg, k.PrevTop):
			jumpTop(st, -1)
		case key.Matches(msg, k.NextScore):
			st.score, st.top = cycle(st.score, 1, len(st.src.ScoreNames())), -1
		case key.Matches(msg, k.PrevScore):
			st.score, st.top = cycle(st.score, -1, len(st.src.ScoreNames())), -1
		}
	case tea.MouseMsg:
		if msg.Action == tea.MouseActionPress {
			switch {
			case msg.Button == tea.MouseButtonWheelUp && m.matrix:
				st.query = max(m.queryPos(n)-1, 0)
			case msg.Button == tea.MouseButtonWheelDown && m.matrix:
				st.query = min(m.queryPos(n)+1, max(n-1, 0))
			case msg.Button == tea.MouseButtonWheelUp:
				m.scroll = max(m.scroll-1, 0)
			case msg.Button == tea.MouseButtonWheelDown:
				m.scroll++
			}
		}
	}
	return m, nil
}

// tokenCount is the number of positions of the chosen prompt, from its
// tokens or else from its attention.
func (m *headView) tokenCount() int {
	p, ok := m.st.promptID()
	if !ok {
		return 0
	}
	if n := m.st.src.tokenCount(p); n > 0 {
		return n
	}
	if a := m.st.src.Attention(p, m.st.layer, m.st.head); a != nil && a.Err == nil {
		return a.Keys
	}
	return 0
}

// queryPos resolves st.query (-1 = last token) against n positions.
func (m *headView) queryPos(n int) int {
	if m.st.query < 0 || m.st.query >= n {
		return max(n-1, 0)
	}
	return m.st.query
}

func (m *headView) View() string {
	st := m.st
	w, h := st.width, st.bodyHeight()
	p, ok := st.promptID()
	title := boldStyle.Render(fmt.Sprintf("Head L%d.H%d", st.layer, st.head))
	if !ok {
		return title + "\n\n" + dimStyle.Render("These files hold no prompts, so there is no attention to show.") +
			"\n\n" + m.scoresBlock(w, h-3)
	}
	n := m.tokenCount()
	q := m.queryPos(n)
	a := st.src.Attention(p, st.layer, st.head)
	toks, tokErr := st.src.Tokens(p)
	text := func(pos int) string {
		if toks != nil && pos-toks.Start >= 0 && pos-toks.Start < len(toks.Texts) {
			return toks.Texts[pos-toks.Start]
		}
		return fmt.Sprintf("#%d", pos)
	}
	head := fmt.Sprintf("%s · prompt %d (%d/%d) · %d tokens · query %d %s", title, p, st.prompt+1, len(st.src.Prompts()), n, q,
		boldStyle.Render(tokenText(text(q))))

	// The query's row of weights over the keys.
	var row []float32
	var note string
	switch {
	case tokErr != nil:
		note = errStyle.Render("tokens: ") + tokErr.Error()
	case a == nil:
		note = dimStyle.Render(fmt.Sprintf("No attention for L%d.H%d on prompt %d in these files: open a trace with an attention or attention_topk table along with them.", st.layer, st.head, p))
	case a.Err != nil:
		note = errStyle.Render("attention: ") + a.Err.Error()
	default:
		row = a.Row(q)
		if a.TopK {
			note = dimStyle.Render("from the top-k table: keys outside the top k show as 0")
		}
	}

	two := w >= 110
	leftW := w
	if two {
		leftW = w * 11 / 20
	}
	var heat []string
	if m.matrix {
		heat = append(heat, headStyle.Render("Attention pattern, queries x keys")+dimStyle.Render(" (a: text view; colour: weight / row max)"))
	} else {
		heat = append(heat, headStyle.Render("Attention of the query over the keys")+dimStyle.Render(" (a: matrix; colour: weight / row max)"))
	}
	if note != "" {
		heat = append(heat, wrap(note, leftW, "")...)
	}
	// Only the lines on screen are rendered: a long prompt is laid out
	// (widths only) and then just its visible window is coloured.
	var total, qLine int
	var render func(from, to int) []string
	if m.matrix {
		total, qLine = n, q
		render = func(from, to int) []string { return matrixLines(a, n, text, q, leftW, from, to) }
	} else {
		// The layout is cached: a long prompt's is O(T) to compute.
		if k := [4]int{p, q, leftW, n}; k != m.layoutKey || m.breaks == nil {
			m.layoutKey, m.breaks = k, layoutTokens(n, text, q, leftW)
		}
		breaks := m.breaks
		total, qLine = len(breaks), lineOf(breaks, q)
		render = func(from, to int) []string { return heatLines(breaks, n, text, row, q, from, to) }
	}
	topLines := topAttended(row, text, 5)
	scoreH := 0
	var heatH int
	if two {
		heatH = h - 1 - len(heat)
	} else {
		// Stacked: the heat view gets what the top list and at least a few
		// score lines leave.
		scoreH = max(h-1-len(heat)-len(topLines)-1-max(total, 3), 4)
		heatH = max(h-1-len(heat)-len(topLines)-1-scoreH, 3)
	}
	// Keep the query's line on screen when the query moves; the wheel and
	// ↑/↓ scroll freely otherwise.
	if q != m.lastQ || m.matrix {
		m.scroll = scrollTo(m.scroll, qLine, heatH, total)
		m.lastQ = q
	}
	m.scroll = min(m.scroll, max(total-heatH, 0))
	end := min(m.scroll+heatH, total)
	heat = append(heat, render(m.scroll, end)...)
	if total > heatH {
		heat[0] += dimStyle.Render(fmt.Sprintf(" lines %d-%d/%d", m.scroll+1, end, total))
	}

	var right []string
	right = append(right, headStyle.Render(fmt.Sprintf("Top attended by query %d", q)))
	right = append(right, topLines...)
	right = append(right, "")
	if two {
		right = append(right, m.scoresBlock(w-leftW-2, h-1-len(right)))
		return head + "\n" + besides(strings.Join(heat, "\n"), strings.Join(right, "\n"), leftW+2)
	}
	for len(heat) < heatH+1 {
		heat = append(heat, "")
	}
	return head + "\n" + strings.Join(heat, "\n") + "\n" + strings.Join(right, "\n") + "\n" + m.scoresBlock(w, h-1-len(heat)-len(right))
}

// layoutTokens wraps the prompt's tokens into lines of at most w cells and
// returns the first position of each line.
func layoutTokens(n int, text func(int) string, q, w int) []int {
	breaks := []int{0}
	curW := 0
	for pos := range n {
		tw := ansi.StringWidth(heatToken(text, pos, q, w))
		if curW > 0 && curW+1+tw > w {
			breaks = append(breaks, pos)
			curW = 0
		}
		if curW > 0 {
			curW++
		}
		curW += tw
	}
	return breaks
}

// lineOf is the line that holds position pos.
func lineOf(breaks []int, pos int) int {
	return max(sort.SearchInts(breaks, pos+1)-1, 0)
}

// heatToken is a token as the heat view prints it: the query bracketed.
func heatToken(text func(int) string, pos, q, w int) string {
	t := clip(tokenText(text(pos)), max(w-2, 1))
	if pos == q {
		t = "[" + t + "]"
	}
	return t
}

// heatLines renders lines [from, to) of the laid-out prompt, each token's
// background coloured by the query's weight on it (over the row's
// largest). Keys after the query (masked under causal attention) are
// dimmed.
func heatLines(breaks []int, n int, text func(int) string, row []float32, q, from, to int) []string {
	var mx float32
	for _, v := range row {
		mx = max(mx, v)
	}
	var lines []string
	for li := from; li < to && li < len(breaks); li++ {
		end := n
		if li+1 < len(breaks) {
			end = breaks[li+1]
		}
		var b strings.Builder
		for pos := breaks[li]; pos < end; pos++ {
			if pos > breaks[li] {
				b.WriteString(" ")
			}
			t := heatToken(text, pos, q, 1<<30)
			switch {
			case pos > q:
				b.WriteString(dimStyle.Render(t))
			case row == nil:
				b.WriteString(t)
			default:
				v := 0.0
				if pos < len(row) && mx > 0 {
					v = float64(row[pos] / mx)
				}
				b.WriteString(heatStyle(v).Render(t))
			}
		}
		lines = append(lines, b.String())
	}
	return lines
}

// matrixLines renders query rows [from, to) of the attention pattern, one
// cell per key: the token-by-token picture in which previous-token heads
// show as a diagonal and sinks as a first column. Each row is scaled to
// its own largest weight. The key window follows the focused query.
func matrixLines(a *attnResult, n int, text func(int) string, q, w, from, to int) []string {
	const labelW = 14
	cols := max(w-labelW, 1)
	k0 := 0
	if n > cols {
		k0 = min(max(q-cols+cols/4, 0), n-cols)
	}
	var lines []string
	for pos := from; pos < to && pos < n; pos++ {
		label := pad(fmt.Sprintf("%4d %s", pos, tokenText(text(pos))), labelW-1) + " "
		if pos == q {
			label = focusStyle.Render(label)
		}
		var b strings.Builder
		b.WriteString(label)
		row := a.Row(pos)
		var mx float32
		for _, v := range row {
			mx = max(mx, v)
		}
		for k := k0; k < min(k0+cols, n); k++ {
			switch {
			case row == nil || k >= len(row):
				b.WriteString(dimStyle.Render("·"))
			case k > pos && row[k] == 0:
				b.WriteString(" ")
			default:
				t := 0.0
				if mx > 0 {
					t = float64(row[k] / mx)
				}
				b.WriteString(heatStyle(t).Render(shade(t)))
			}
		}
		lines = append(lines, b.String())
	}
	return lines
}

// topAttended lists the k keys with the largest weights, with a bar.
func topAttended(row []float32, text func(int) string, k int) []string {
	if row == nil {
		return []string{dimStyle.Render("  (no attention row)")}
	}
	idx := make([]int, len(row))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return row[idx[a]] > row[idx[b]] })
	var out []string
	for _, i := range idx[:min(k, len(idx))] {
		v := float64(row[i])
		if v <= 0 {
			break // keys outside a top-k row, or masked ones
		}
		bar := strings.Repeat("█", int(v*10+0.5))
		out = append(out, fmt.Sprintf("  %.3f %-10s pos %d %s", v, heatStyle(v).Render(bar)+strings.Repeat(" ", 10-len([]rune(bar))), i, tokenText(text(i))))
	}
	return out
}

// scoresBlock lists every score of the focused head with its label and
// details, then the ablation results (scores named ablation...).
func (m *headView) scoresBlock(w, h int) string {
	st := m.st
	all := st.src.HeadScores(st.layer, st.head)
	var scores, ablations []store.HeadScore
	for _, s := range all {
		if strings.HasPrefix(s.Score, "ablat") {
			ablations = append(ablations, s)
		} else {
			scores = append(scores, s)
		}
	}
	var lines []string
	lines = append(lines, headStyle.Render("Scores of this head"))
	if len(scores) == 0 {
		lines = append(lines, dimStyle.Render("  none in these files"))
	}
	sel := st.scoreName()
	for _, s := range scores {
		line := fmt.Sprintf("  %-16s %s", s.Score, fmtVal(s.Value))
		if s.Score == sel {
			line = boldStyle.Render(line)
		}
		if s.Label != "" {
			line += " " + statusStyle.Render(s.Label)
		}
		lines = append(lines, line)
		if d := detailText(s.Details); d != "" {
			// The selected score's details in full (up to 6 lines), the
			// others' first line.
			dl := wrap(d, max(w-6, 10), "")
			n := 1
			if s.Score == sel {
				n = 6
			}
			for _, l := range dl[:min(n, len(dl))] {
				lines = append(lines, dimStyle.Render("      "+l))
			}
		}
	}
	lines = append(lines, headStyle.Render("Ablation"))
	exps := st.src.Ablations(st.layer, st.head)
	if len(ablations) == 0 && len(exps) == 0 {
		lines = append(lines, dimStyle.Render("  none in these files (`loupe heads ablate --out` writes it)"))
	}
	for _, a := range exps {
		lines = append(lines, ablationLines(a, w)...)
	}
	for _, s := range ablations {
		lines = append(lines, fmt.Sprintf("  %-16s %s %s", s.Score, fmtVal(s.Value), dimStyle.Render(detailText(s.Details))))
	}
	if h > 0 && len(lines) > h {
		lines = append(lines[:max(h-1, 0)], dimStyle.Render(fmt.Sprintf("  … %d more lines (a taller terminal shows them)", len(lines)-h+1)))
	}
	return strings.Join(lines, "\n")
}

// ablationLines describes one ablation experiment that includes the focused
// head: the task, the accuracy with no head ablated and with the heads
// ablated, and the random-head control.
func ablationLines(a store.Ablation, w int) []string {
	names := make([]string, len(a.Heads))
	for i, h := range a.Heads {
		names[i] = "L" + h.String()
	}
	line := fmt.Sprintf("  %-10s %s → %s", a.Task, fmtVal(a.Baseline), fmtVal(a.Accuracy))
	if len(a.RandomAccuracy) > 0 {
		line += fmt.Sprintf("  random %s ± %s", fmtVal(a.RandomMean()), fmtVal(a.RandomStd()))
	}
	out := []string{line}
	detail := fmt.Sprintf("%s-ablated with %s", a.Method, strings.Join(names, " "))
	if n := len(a.RandomAccuracy); n > 0 {
		detail += fmt.Sprintf("; control: %d random heads, %d draws", len(a.Heads), n)
	}
	for _, l := range wrap(detail, max(w-6, 10), "") {
		out = append(out, dimStyle.Render("      "+l))
	}
	return out
}

// detailText flattens a score's JSON details into "key: value" pairs, the
// interesting ones first (what a retrieval head copied, say), bookkeeping
// (rank, source, model) last.
func detailText(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil {
		return string(raw)
	}
	// The model's name is the same on every row (and in the run metadata):
	// it is left out.
	delete(m, "model")
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	// Bookkeeping comes last.
	late := map[string]bool{"rank": true, "source": true, "threshold": true}
	sort.Slice(keys, func(a, b int) bool {
		if late[keys[a]] != late[keys[b]] {
			return !late[keys[a]]
		}
		return keys[a] < keys[b]
	})
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+": "+clip(detailValue(m[k]), 80))
	}
	return strings.Join(parts, "  ")
}

// detailValue prints one detail: numbers to 3 significant digits (the
// scorers write full float64s), lists and objects as compact JSON.
func detailValue(v any) string {
	switch v := v.(type) {
	case float64:
		return strconv.FormatFloat(v, 'g', 3, 64)
	case string:
		return strconv.Quote(v)
	case []any:
		parts := make([]string, len(v))
		for i, x := range v {
			parts[i] = detailValue(x)
		}
		return "[" + strings.Join(parts, " ") + "]"
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + ": " + detailValue(v[k])
		}
		return "{" + strings.Join(parts, ", ") + "}"
	default:
		js, _ := json.Marshal(v)
		return string(js)
	}
}
