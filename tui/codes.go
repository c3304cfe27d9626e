package tui

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"

	"github.com/loupe-dev/loupe/store"
)

// The codebook screens, for files written by `loupe codebook codes`: a list
// of every code of every codebook (sortable by site, frequency and how well
// it detects its label, e.g. a TokFSM state) and one code's page: how often
// it fires, what it stands for, the tokens it fires on and contexts with
// the firing token marked. They move like the SAE feature screens
// (dictlist.go holds what the two share).

// loadCodes reads the codes table of the first trace that has one (one row
// per code, contexts included: small).
func (s *Source) loadCodes() error {
	rows, _, err := readFirst(s, store.KindCodes, (*store.Trace).ReadCodes)
	if err != nil {
		return err
	}
	s.codes = rows
	return nil
}

// Codes lists the codes of the first trace that has them.
func (s *Source) Codes() []store.Code { return s.codes }

// codeSorts are the list orders `o` cycles through.
var codeSorts = []string{"site", "frequency", "label AP"}

// codeOrder gives the list's codes (indices into Codes()) in the chosen
// order.
func (st *state) codeOrder() []int {
	cs := st.src.Codes()
	if st.codeOrd != nil && st.codeOrdSort == st.codeSort {
		return st.codeOrd
	}
	var less func(a, b int) bool
	switch st.codeSort {
	case 1:
		less = func(a, b int) bool { return cs[a].Count > cs[b].Count }
	case 2:
		less = func(a, b int) bool { return labelAP(cs[a]) > labelAP(cs[b]) }
	}
	st.codeOrd, st.codeOrdSort = sortedOrder(len(cs), less), st.codeSort
	return st.codeOrd
}

// labelAP is a code's label AP, -1 without a label (they sort last).
func labelAP(c store.Code) float64 {
	if c.Label == "" || math.IsNaN(float64(c.LabelAP)) {
		return -1
	}
	return float64(c.LabelAP)
}

// currentCode is the index into Codes() under the list's cursor (-1: none).
func (st *state) currentCode() int {
	ord := st.codeOrder()
	if len(ord) == 0 {
		return -1
	}
	return ord[min(max(st.codeAt, 0), len(ord)-1)]
}

// focusCode moves the cursor to code i (an index into Codes()).
func (st *state) focusCode(i int) {
	for at, j := range st.codeOrder() {
		if j == i {
			st.codeAt = at
			return
		}
	}
}

// codeName is how a screen names a code: its site, the head of a per-head
// codebook, and its id.
func codeName(c store.Code) string {
	if strings.HasSuffix(c.Hook, "attn.hook_z") {
		return fmt.Sprintf("%s[head %d]:%d", c.Hook, c.Group, c.Code)
	}
	return fmt.Sprintf("%s:%d", c.Hook, c.Code)
}

// codeList is the list of codes.
type codeList struct {
	st   *state
	row0 int
}

func (m *codeList) Init() tea.Cmd { return nil }

func (m *codeList) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	st, k := m.st, m.st.keys
	if msg, ok := msg.(tea.KeyMsg); ok && !moveCursor(msg, k, &st.codeAt, len(st.src.Codes()), max(st.bodyHeight()-2, 1)) &&
		key.Matches(msg, k.Sort) {
		cur := st.currentCode() // keep the code under the cursor
		st.codeSort = (st.codeSort + 1) % len(codeSorts)
		st.focusCode(cur)
		st.status = "sorted by " + codeSorts[st.codeSort]
	}
	return m, nil
}

func (m *codeList) View() string {
	st := m.st
	cs := st.src.Codes()
	if len(cs) == 0 {
		return dimStyle.Render("no codebook codes in these files (loupe codebook codes writes them)")
	}
	ord := st.codeOrder()
	lo, hi := listWindow(st.codeAt, &m.row0, max(st.bodyHeight()-2, 1), len(ord))
	sites, fire := map[string]bool{}, 0
	width := 0
	for _, c := range cs {
		sites[c.Hook] = true
		if c.Count > 0 {
			fire++
		}
		width = max(width, len(codeName(c)))
	}
	width = min(width, 40)
	var b strings.Builder
	fmt.Fprintf(&b, "%d codes in %d codebooks, %d fire · sorted by %s (o: sort, enter: open, /: code id, label or token)\n",
		len(cs), len(sites), fire, codeSorts[st.codeSort])
	b.WriteString(headStyle.Render(fmt.Sprintf("%-*s %8s %9s  %-22s %s", width, "code", "fires", "frequency", "label (precision, AP)", "top tokens")) + "\n")
	for i := lo; i < hi; i++ {
		c := cs[ord[i]]
		freq := "dead"
		if c.Count > 0 && c.Positions > 0 {
			freq = fmt.Sprintf("1e%.2f", math.Log10(float64(c.Count)/float64(c.Positions)))
		}
		label := ""
		if c.Label != "" {
			label = fmt.Sprintf("%s (%s, %s)", c.Label, fmtCell(float64(c.LabelPrecision), 3), fmtCell(float64(c.LabelAP), 3))
		}
		var top []string
		for j := range c.TopTokens[:min(4, len(c.TopTokens))] {
			top = append(top, tokenText(codeTokenText(c, j)))
		}
		line := fmt.Sprintf("%-*s %8d %9s  %-22s %s", width, clip(codeName(c), width), c.Count, freq, clip(label, 22), strings.Join(top, " "))
		if i == st.codeAt {
			line = focusStyle.Render(line)
		}
		b.WriteString(line + "\n")
	}
	return strings.TrimRight(b.String(), "\n")
}

// codeTokenText is the text of a code's j-th top token: its stored text, or
// its id when the file has none.
func codeTokenText(c store.Code, j int) string {
	if j < len(c.TopTexts) && c.TopTexts[j] != "" {
		return c.TopTexts[j]
	}
	return "#" + strconv.Itoa(int(c.TopTokens[j]))
}

// codeView is one code's page.
type codeView struct {
	st   *state
	row0 int
}

func (m *codeView) Init() tea.Cmd { return nil }

func (m *codeView) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	if msg, ok := msg.(tea.KeyMsg); ok && !scrollPage(msg, m.st.keys, &m.row0, m.st.bodyHeight()) &&
		stepEntry(msg, m.st.keys, &m.st.codeAt, len(m.st.src.Codes())) {
		m.row0 = 0
	}
	return m, nil
}

func (m *codeView) View() string {
	st := m.st
	i := st.currentCode()
	if i < 0 {
		return dimStyle.Render("no codebook codes in these files")
	}
	c := st.src.Codes()[i]
	fires := "never fires in the scan"
	if c.Count > 0 && c.Positions > 0 {
		fires = fmt.Sprintf("fires at %d of %d positions (1 in %.0f)", c.Count, c.Positions, float64(c.Positions)/float64(c.Count))
	}
	lines := []string{headStyle.Render(codeName(c)) + "  " + fires}
	if c.Label != "" {
		lines = append(lines, fmt.Sprintf("stands for %s: precision %s, average precision %s",
			headStyle.Render(c.Label), fmtVal(float64(c.LabelPrecision)), fmtVal(float64(c.LabelAP))))
	} else {
		lines = append(lines, dimStyle.Render("no label (TokFSM models label codes by the state they detect)"))
	}
	if len(c.TopTokens) > 0 {
		lines = append(lines, "", headStyle.Render("fires on"))
		var top int64
		for _, n := range c.TopCounts {
			top = max(top, int64(n))
		}
		for j, n := range c.TopCounts {
			lines = append(lines, fmt.Sprintf("%-16s %7d %s", clip(tokenText(codeTokenText(c, j)), 16), n, barOf(int64(n), top, 30)))
		}
	}
	if len(c.Contexts) > 0 {
		lines = append(lines, "", headStyle.Render("contexts (the firing token marked)"))
		for j, txt := range c.Contexts {
			lines = append(lines, fmt.Sprintf("prompt %d pos %d  %s", c.ContextPrompts[j], c.ContextPositions[j], markFiring(txt)))
		}
	}
	return pageWindow(lines, &m.row0, st.bodyHeight())
}

// markFiring draws a context's «token» (the position the code fired at)
// highlighted, without the marks.
func markFiring(s string) string {
	lo := strings.Index(s, "«")
	hi := strings.Index(s, "»")
	if lo < 0 || hi < lo {
		return s
	}
	tok := s[lo+len("«") : hi]
	return s[:lo] + heatStyle(1).Underline(true).Bold(true).Render(tok) + s[hi+len("»"):]
}

// searchCodes handles a search in the codebook screens: a number finds the
// codes with that id (one per codebook), HOOK:ID one code, other text the
// codes whose label is that text (else contains it) or whose top tokens
// contain it; n/N walk them.
func (s *searchModel) searchCodes(q string) bool {
	st := s.st
	cs := st.src.Codes()
	if len(cs) == 0 {
		return false
	}
	s.codeMatches, s.at, s.query = nil, 0, q
	hook, idText, hasHook := "", q, false
	if i := strings.LastIndex(q, ":"); i > 0 {
		hook, idText, hasHook = q[:i], q[i+1:], true
	}
	if id, err := strconv.Atoi(strings.TrimPrefix(idText, "#")); err == nil {
		for i, c := range cs {
			if c.Code == id && (!hasHook || c.Hook == hook || codeName(c) == q) {
				s.codeMatches = append(s.codeMatches, i)
			}
		}
		if len(s.codeMatches) == 0 {
			st.status = fmt.Sprintf("no code %s", q)
			return true
		}
		s.showCode()
		return true
	}
	needle := strings.ToLower(q)
	for i, c := range cs {
		if strings.ToLower(c.Label) == needle {
			s.codeMatches = append(s.codeMatches, i)
		}
	}
	if len(s.codeMatches) == 0 {
		for i, c := range cs {
			match := c.Label != "" && strings.Contains(strings.ToLower(c.Label), needle)
			for j := range c.TopTokens {
				match = match || strings.Contains(strings.ToLower(strings.TrimSpace(codeTokenText(c, j))), needle)
			}
			if match {
				s.codeMatches = append(s.codeMatches, i)
			}
		}
	}
	if len(s.codeMatches) == 0 {
		st.status = fmt.Sprintf("no code's label or top token matches %q", q)
		return true
	}
	s.showCode()
	return true
}

func (s *searchModel) showCode() {
	i := s.codeMatches[s.at]
	s.st.focusCode(i)
	s.st.status = fmt.Sprintf("match %d/%d for %q: %s (n/N: next/previous)", s.at+1, len(s.codeMatches), s.query, codeName(s.st.src.Codes()[i]))
}

// stepCode walks the codes a search found.
func (s *searchModel) stepCode(d int) {
	if len(s.codeMatches) == 0 {
		s.st.status = "no search: press / to search for a code id, a label or a token"
		return
	}
	s.at = cycle(s.at, d, len(s.codeMatches))
	s.showCode()
}
