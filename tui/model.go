package tui

import (
	"fmt"
	"strings"

	"github.com/charmbracelet/bubbles/help"
	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"
)

// screen names the four screens.
type screen int

const (
	screenHeadMap screen = iota
	screenHeadView
	screenPromptView
	screenError
	screenFeatures // SAE latents (loupe sae features)
	screenFeature  // one latent
	screenCircuit  // a found circuit (loupe circuits find)
	screenCodes    // codebook codes (loupe codebook codes)
	screenCode     // one code
)

func (s screen) String() string {
	return [...]string{"head map", "head view", "prompt view", "error", "features", "feature", "circuit", "codes", "code"}[s]
}

// inDictionary says the screen is one of the feature or code screens,
// where search and n/N find latents or codes, not tokens.
func (s screen) inDictionary() bool {
	return s == screenFeatures || s == screenFeature || s == screenCodes || s == screenCode
}

// state is what the screens share, so that moving between them keeps the
// focused head, the chosen prompt and the selected score.
type state struct {
	src           *Source
	keys          keyMap
	width, height int

	layer, head int // focused head
	score       int // index into src.ScoreNames()
	prompt      int // index into src.Prompts()
	query       int // head view: query position; -1 = the last token
	pos         int // prompt view: token cursor
	lensLayer   int // prompt view: layer whose logit lens is shown; -1 = last
	label       int // head-map label filter: index into src.Labels(), -1 = none
	top         int // rank of the last top-N jump, -1 = none

	status string // one-line message (search results, "no such head")

	featAt        int   // feature list: cursor, an index into featureOrder()
	featSort      int   // index into featureSorts
	featOrder     []int // cached order of featSort
	featOrderSort int

	codeAt      int   // code list: cursor, an index into codeOrder()
	codeSort    int   // index into codeSorts
	codeOrd     []int // cached order of codeSort
	codeOrdSort int
}

func (st *state) scoreName() string {
	if names := st.src.ScoreNames(); len(names) > 0 {
		return names[st.score%len(names)]
	}
	return ""
}

func (st *state) promptID() (int, bool) {
	ps := st.src.Prompts()
	if len(ps) == 0 {
		return 0, false
	}
	return ps[min(max(st.prompt, 0), len(ps)-1)], true
}

// bodyHeight is the height a screen draws in: the header, the status line
// and the footer take one line each.
func (st *state) bodyHeight() int { return max(st.height-3, 1) }

// cycle moves i by d within [0, n).
func cycle(i, d, n int) int {
	if n <= 0 {
		return 0
	}
	return ((i+d)%n + n) % n
}

// Model is the root model: it routes keys to the screen on top, switches
// screens, and draws the header, search bar, status line, footer and the
// help overlay around the screen's body.
type Model struct {
	st       *state
	current  screen
	screens  map[screen]tea.Model
	help     help.Model
	search   *searchModel
	showHelp bool
}

// New returns the browser over an open source.
func New(src *Source) Model {
	st := &state{src: src, keys: newKeyMap(), width: 80, height: 24, query: -1, lensLayer: -1, label: -1, top: -1}
	m := Model{st: st, current: screenHeadMap, help: help.New(), search: newSearch(st)}
	m.screens = map[screen]tea.Model{
		screenHeadMap:    &headMap{st: st},
		screenHeadView:   &headView{st: st, lastQ: -2},
		screenPromptView: &promptView{st: st},
		screenFeatures:   &featureList{st: st},
		screenFeature:    &featureView{st: st},
		screenCircuit:    &circuitView{st: st},
		screenCodes:      &codeList{st: st},
		screenCode:       &codeView{st: st},
	}
	// Start on the best head of the first score: that is what one opens a
	// head map to find.
	if top := src.Top(st.scoreName()); len(top) > 0 {
		st.layer, st.head = top[0].Layer, top[0].Head
	}
	if src.Layers() == 0 && len(src.Prompts()) > 0 {
		m.current = screenPromptView // a trace without heads: show its prompts
	}
	if len(src.Features()) > 0 && len(src.ScoreNames()) == 0 && len(src.Prompts()) == 0 {
		m.current = screenFeatures // a features file (loupe sae features)
	}
	if len(src.circuitGraphs()) > 0 && len(src.Prompts()) == 0 {
		m.current = screenCircuit // a circuit file (loupe circuits find)
	}
	if len(src.Codes()) > 0 && len(src.Features()) == 0 && len(src.ScoreNames()) == 0 && len(src.Prompts()) == 0 && len(src.circuitGraphs()) == 0 {
		m.current = screenCodes // a codes file (loupe codebook codes)
	}
	return m
}

// NewError returns the error screen for a file that could not be opened.
func NewError(err error) Model {
	st := &state{keys: newKeyMap(), width: 80, height: 24}
	m := Model{st: st, current: screenError, help: help.New()}
	m.screens = map[screen]tea.Model{screenError: &errorScreen{st: st, err: err}}
	return m
}

// Init implements tea.Model.
func (m Model) Init() tea.Cmd { return nil }

// Update implements tea.Model.
func (m Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	k := m.st.keys
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.st.width, m.st.height = max(msg.Width, 1), max(msg.Height, 1)
		return m, nil
	case tea.KeyMsg:
		if msg.Type == tea.KeyCtrlC {
			return m, tea.Quit // even from the search bar
		}
		if m.search != nil && m.search.active && m.current.inDictionary() {
			next, cmd := m.search.update(msg)
			if next == screenFeatures || next == screenCodes {
				m.current = next // the list, its cursor on the match
			}
			return m, cmd
		}
		if m.search != nil && m.search.active {
			next, cmd := m.search.update(msg)
			// A token found from the head view becomes its query there;
			// from elsewhere the prompt view shows it.
			if next == screenPromptView && m.current == screenHeadView {
				next = screenHeadView
			}
			if next != screen(-1) && (next != screenHeadView || m.st.src.Layers() > 0) {
				m.current = next
			}
			return m, cmd
		}
		if m.showHelp {
			if key.Matches(msg, k.Help, k.Back) {
				m.showHelp = false
			} else if key.Matches(msg, k.Quit) {
				return m, tea.Quit
			}
			return m, nil
		}
		switch {
		case key.Matches(msg, k.Quit):
			return m, tea.Quit
		case key.Matches(msg, k.Help):
			m.showHelp = true
			return m, nil
		}
		if m.current == screenError {
			return m, nil
		}
		m.st.status = ""
		switch {
		case key.Matches(msg, k.Search):
			cmd := m.search.start()
			m.search.inFeatures = m.current == screenFeatures || m.current == screenFeature
			m.search.inCodes = m.current == screenCodes || m.current == screenCode
			return m, cmd
		case key.Matches(msg, k.NextMatch), key.Matches(msg, k.PrevMatch):
			d := 1
			if key.Matches(msg, k.PrevMatch) {
				d = -1
			}
			if m.current == screenFeatures || m.current == screenFeature {
				m.search.stepFeature(d)
				return m, nil
			}
			if m.current == screenCodes || m.current == screenCode {
				m.search.stepCode(d)
				return m, nil
			}
			m.current = m.search.step(d, m.current)
			return m, nil
		case key.Matches(msg, k.Features) && len(m.st.src.Features()) > 0 && m.current != screenFeatures:
			m.current = screenFeatures
			return m, nil
		case key.Matches(msg, k.Codes) && len(m.st.src.Codes()) > 0 && m.current != screenCodes:
			m.current = screenCodes
			return m, nil
		case key.Matches(msg, k.Map):
			m.current = screenHeadMap
			return m, nil
		case key.Matches(msg, k.Circuit) && len(m.st.src.circuitGraphs()) > 0 && m.current != screenCircuit:
			m.current = screenCircuit
			return m, nil
		case key.Matches(msg, k.Prompt) && m.current != screenPromptView:
			m.current = screenPromptView
			return m, nil
		case key.Matches(msg, k.Back):
			switch m.current {
			case screenCircuit:
				m.current = screenHeadMap
			case screenFeature:
				m.current = screenFeatures
			case screenCode:
				m.current = screenCodes
			case screenHeadView:
				m.current = screenHeadMap
			case screenPromptView:
				m.current = screenHeadView
				if m.st.src.Layers() == 0 {
					m.current = screenPromptView
				}
			}
			return m, nil
		case key.Matches(msg, k.Open) && m.current == screenFeatures:
			m.current = screenFeature
			return m, nil
		case key.Matches(msg, k.Open) && m.current == screenFeature:
			return m, nil
		case key.Matches(msg, k.Open) && m.current == screenCodes:
			m.current = screenCode
			return m, nil
		case key.Matches(msg, k.Open) && m.current == screenCode:
			return m, nil
		case key.Matches(msg, k.Open) && m.current != screenHeadView:
			if m.current == screenPromptView {
				m.st.query = m.st.pos // look at this token as the query
			}
			if m.st.src.Layers() > 0 {
				m.current = screenHeadView
			}
			return m, nil
		}
	case tea.MouseMsg:
		if m.showHelp || (m.search != nil && m.search.active) {
			return m, nil
		}
	}
	if s, ok := m.screens[m.current]; ok {
		next, cmd := s.Update(msg)
		m.screens[m.current] = next
		return m, cmd
	}
	return m, nil
}

// View implements tea.Model.
func (m Model) View() string {
	w, h := m.st.width, m.st.height
	body := ""
	if s, ok := m.screens[m.current]; ok {
		body = s.View()
	}
	var b strings.Builder
	b.WriteString(fitLine(m.header(), w))
	b.WriteString("\n")
	b.WriteString(fit(body, w, m.st.bodyHeight()))
	b.WriteString("\n")
	switch {
	case m.search != nil && m.search.active:
		b.WriteString(fitLine(m.search.view(), w))
	case m.st.status != "":
		b.WriteString(fitLine(statusStyle.Render(m.st.status), w))
	default:
		b.WriteString(fitLine("", w))
	}
	b.WriteString("\n")
	hm := m.help
	hm.Width = w
	keys := m.st.keys.helpFor(m.current)
	b.WriteString(fitLine(hm.View(keys), w))
	out := fit(b.String(), w, h)
	if m.showHelp {
		out = helpOverlay(m.help, keys, out, w, h)
	}
	return out
}

// header is the top bar: where one is and what is selected.
func (m Model) header() string {
	st := m.st
	parts := []string{titleStyle.Render(" Loupe ") + barStyle.Render(" "+m.current.String()+" ")}
	if st.src != nil {
		// The selection first and the file names last: a narrow terminal
		// cuts the end of the bar.
		var info []string
		if st.src.Layers() > 0 && !m.current.inDictionary() {
			info = append(info, fmt.Sprintf("L%d.H%d", st.layer, st.head))
		}
		if n := st.scoreName(); n != "" {
			info = append(info, n)
		}
		if p, ok := st.promptID(); ok {
			info = append(info, fmt.Sprintf("prompt %d", p))
		}
		info = append(info, st.src.Name())
		parts = append(parts, barStyle.Render(" "+strings.Join(info, " │ ")+" "))
	}
	return strings.Join(parts, "")
}

// Current reports the screen on top (for tests and the e2e harness).
func (m Model) Current() string { return m.current.String() }
