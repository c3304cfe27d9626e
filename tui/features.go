package tui

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"

	"github.com/loupe-dev/loupe/store"
)

// The SAE feature screens, for files written by `loupe sae features`: a
// list of latents (sortable by index, density and max activation) and one
// latent's page: its statistics and activation histogram, the tokens its
// decoder row promotes and suppresses, and its example contexts with each
// token coloured by the latent's activation.

// loadFeatures reads the features tables of the open traces (one row per
// latent: small); examples are read per latent on first use.
func (s *Source) loadFeatures() error {
	rows, tr, err := readFirst(s, store.KindFeatures, (*store.Trace).ReadFeatures)
	if err != nil || tr == nil {
		return err
	}
	s.features, s.featTrace = rows, tr
	s.examples = map[int][]store.FeatureExample{}
	return nil
}

// Features lists the latents of the first trace that has them.
func (s *Source) Features() []store.FeatureRow { return s.features }

// Examples gives one latent's example contexts.
func (s *Source) Examples(latent int) ([]store.FeatureExample, error) {
	if ex, ok := s.examples[latent]; ok {
		return ex, nil
	}
	var ex []store.FeatureExample
	err := guard(func() error {
		var err error
		ex, err = s.featTrace.ReadFeatureExamples(context.Background(), latent)
		return err
	})
	if err != nil {
		return nil, fileErr(tablePath(s.featTrace, string(store.KindFeatureExamples)), err)
	}
	s.examples[latent] = ex
	return ex, nil
}

// featureSorts are the list orders `o` cycles through.
var featureSorts = []string{"index", "density", "max activation"}

// featureOrder gives the list's latents (indices into Features()) in the
// chosen order.
func (st *state) featureOrder() []int {
	fs := st.src.Features()
	if st.featOrder != nil && st.featOrderSort == st.featSort {
		return st.featOrder
	}
	var less func(a, b int) bool
	switch st.featSort {
	case 1:
		less = func(a, b int) bool { return fs[a].Density > fs[b].Density }
	case 2:
		less = func(a, b int) bool { return fs[a].MaxAct > fs[b].MaxAct }
	}
	idx := sortedOrder(len(fs), less)
	st.featOrder, st.featOrderSort = idx, st.featSort
	return idx
}

// featureList is the list of latents.
type featureList struct {
	st   *state
	row0 int
}

func (m *featureList) Init() tea.Cmd { return nil }

func (m *featureList) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	st, k := m.st, m.st.keys
	n := len(st.src.Features())
	rows := max(st.bodyHeight()-2, 1)
	if msg, ok := msg.(tea.KeyMsg); ok && !moveCursor(msg, k, &st.featAt, n, rows) && key.Matches(msg, k.Sort) {
		// keep the latent under the cursor
		cur := st.currentLatent()
		st.featSort = (st.featSort + 1) % len(featureSorts)
		st.focusLatent(cur)
		st.status = "sorted by " + featureSorts[st.featSort]
	}
	return m, nil
}

// currentLatent is the latent under the list's cursor (-1: none).
func (st *state) currentLatent() int {
	ord := st.featureOrder()
	if len(ord) == 0 {
		return -1
	}
	return st.src.Features()[ord[min(max(st.featAt, 0), len(ord)-1)]].Latent
}

// focusLatent moves the cursor to a latent; false if there is none such.
func (st *state) focusLatent(latent int) bool {
	fs := st.src.Features()
	for i, j := range st.featureOrder() {
		if fs[j].Latent == latent {
			st.featAt = i
			return true
		}
	}
	return false
}

func (m *featureList) View() string {
	st := m.st
	fs := st.src.Features()
	if len(fs) == 0 {
		return dimStyle.Render("no SAE features in these files (loupe sae features writes them)")
	}
	ord := st.featureOrder()
	lo, hi := listWindow(st.featAt, &m.row0, max(st.bodyHeight()-2, 1), len(ord))
	alive := 0
	for _, f := range fs {
		if f.Density > 0 {
			alive++
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d latents, %d fire · sorted by %s (o: sort, enter: open, /: latent number or token)\n", len(fs), alive, featureSorts[st.featSort])
	b.WriteString(headStyle.Render(fmt.Sprintf("%7s %10s %9s %9s  %s", "latent", "density", "max act", "mean act", "promotes")) + "\n")
	for i := lo; i < hi; i++ {
		f := fs[ord[i]]
		dens := "dead"
		if f.Density > 0 {
			dens = fmt.Sprintf("1e%.2f", math.Log10(f.Density))
		}
		var top []string
		for _, t := range f.TopTexts[:min(4, len(f.TopTexts))] {
			top = append(top, tokenText(t))
		}
		line := fmt.Sprintf("%7d %10s %9s %9s  %s", f.Latent, dens, fmtVal(float64(f.MaxAct)), fmtVal(float64(f.MeanAct)), strings.Join(top, " "))
		if i == st.featAt {
			line = focusStyle.Render(line)
		}
		b.WriteString(line + "\n")
	}
	return strings.TrimRight(b.String(), "\n")
}

// featureView is one latent's page.
type featureView struct {
	st   *state
	row0 int // first line of the page on screen
}

func (m *featureView) Init() tea.Cmd { return nil }

func (m *featureView) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	if msg, ok := msg.(tea.KeyMsg); ok && !scrollPage(msg, m.st.keys, &m.row0, m.st.bodyHeight()) &&
		stepEntry(msg, m.st.keys, &m.st.featAt, len(m.st.src.Features())) {
		m.row0 = 0
	}
	return m, nil
}

var sparks = []rune("▁▂▃▄▅▆▇█")

func (m *featureView) View() string {
	st := m.st
	fs := st.src.Features()
	ord := st.featureOrder()
	if len(ord) == 0 {
		return dimStyle.Render("no SAE features in these files")
	}
	f := fs[ord[min(max(st.featAt, 0), len(ord)-1)]]
	var lines []string
	dens := "never fires in the scan"
	if f.Density > 0 {
		dens = fmt.Sprintf("density %.3g (1 in %.0f tokens)", f.Density, 1/f.Density)
	}
	lines = append(lines, headStyle.Render(fmt.Sprintf("latent %d", f.Latent))+fmt.Sprintf("  %s · max %s · mean %s", dens, fmtVal(float64(f.MaxAct)), fmtVal(float64(f.MeanAct))))
	var hmax int32
	for _, c := range f.HistCounts {
		hmax = max(hmax, c)
	}
	var spark strings.Builder
	for _, c := range f.HistCounts {
		if c == 0 {
			spark.WriteRune(' ')
			continue
		}
		spark.WriteRune(sparks[min(int(float64(c)/float64(hmax)*float64(len(sparks)-1)+0.5), len(sparks)-1)])
	}
	lines = append(lines, fmt.Sprintf("activations 0 %s %s", spark.String(), fmtVal(float64(f.MaxAct))))
	if len(f.TopIDs) > 0 {
		lines = append(lines, "", headStyle.Render(fmt.Sprintf("%-34s %s", "promotes (W_dec·W_U)", "suppresses")))
		for i := 0; i < max(len(f.TopIDs), len(f.BottomIDs)); i++ {
			l, r := "", ""
			if i < len(f.TopIDs) {
				l = fmt.Sprintf("%-24s %+8.3f", clip(tokenText(f.TopTexts[i]), 24), f.TopValues[i])
			}
			if i < len(f.BottomIDs) {
				r = fmt.Sprintf("%-24s %+8.3f", clip(tokenText(f.BottomTexts[i]), 24), f.BottomValues[i])
			}
			lines = append(lines, fmt.Sprintf("%-34s %s", l, r))
		}
	}
	ex, err := st.src.Examples(f.Latent)
	if err != nil {
		lines = append(lines, "", errStyle.Render(err.Error()))
	}
	kind := ""
	for _, e := range ex {
		if e.Kind != kind {
			kind = e.Kind
			title := "top activations"
			if kind == "quantile" {
				title = "samples by activation quantile"
			}
			lines = append(lines, "", headStyle.Render(title))
		}
		tag := fmt.Sprintf("%8s ", fmtVal(float64(e.Activation)))
		if e.Kind == "quantile" {
			tag = fmt.Sprintf("q%.1f %s ", e.Quantile, fmtVal(float64(e.Activation)))
		}
		lines = append(lines, tag+colourWindow(e, f.MaxAct))
	}
	if len(ex) == 0 && err == nil {
		lines = append(lines, "", dimStyle.Render("no examples: the latent did not fire in the scan"))
	}
	return pageWindow(lines, &m.row0, st.bodyHeight())
}

// colourWindow renders an example's tokens, each on a background as warm
// as the latent's activation there (relative to its max), the example's
// own token underlined.
func colourWindow(e store.FeatureExample, maxAct float32) string {
	var b strings.Builder
	for i, t := range e.TokenTexts {
		txt := tokenText(t)
		a := e.Acts[i]
		style := lipgloss.NewStyle()
		if a > 0 && maxAct > 0 {
			style = heatStyle(float64(a / maxAct))
		}
		if e.WindowStart+i == e.Position {
			style = style.Underline(true).Bold(true)
		}
		b.WriteString(style.Render(txt))
	}
	return b.String()
}

// searchFeatures handles a search in the feature screens: a number (or
// #number) jumps to that latent; text finds latents whose promoted tokens
// contain it, n/N walking them.
func (s *searchModel) searchFeatures(q string) bool {
	st := s.st
	if len(st.src.Features()) == 0 {
		return false
	}
	if n, err := strconv.Atoi(strings.TrimPrefix(q, "#")); err == nil {
		if st.focusLatent(n) {
			st.status = fmt.Sprintf("latent %d", n)
		} else {
			st.status = fmt.Sprintf("no latent %d", n)
		}
		return true
	}
	needle := strings.ToLower(q)
	s.featMatches, s.at, s.query = nil, 0, q
	for _, f := range st.src.Features() {
		for _, t := range f.TopTexts {
			if strings.Contains(strings.ToLower(strings.TrimSpace(t)), needle) {
				s.featMatches = append(s.featMatches, f.Latent)
				break
			}
		}
	}
	if len(s.featMatches) == 0 {
		st.status = fmt.Sprintf("no latent promotes a token matching %q", q)
		return true
	}
	s.showFeature()
	return true
}

func (s *searchModel) showFeature() {
	j := s.featMatches[s.at]
	s.st.focusLatent(j)
	s.st.status = fmt.Sprintf("match %d/%d for %q: latent %d (n/N: next/previous)", s.at+1, len(s.featMatches), s.query, j)
}

// stepFeature walks the latents a token search found.
func (s *searchModel) stepFeature(d int) {
	if len(s.featMatches) == 0 {
		s.st.status = "no search: press / to search for a latent number or a promoted token"
		return
	}
	s.at = cycle(s.at, d, len(s.featMatches))
	s.showFeature()
}
