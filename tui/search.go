package tui

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/charmbracelet/bubbles/cursor"
	"github.com/charmbracelet/bubbles/textinput"
	tea "github.com/charmbracelet/bubbletea"
)

// searchModel is the `/` bar. A query that reads as a head (L3.H2, 3.2)
// jumps to that head; anything else looks for tokens whose text contains
// it, in every prompt, and n / N walk the matches.
type searchModel struct {
	st      *state
	input   textinput.Model
	active  bool
	matches []tokenMatch
	at      int
	query   string

	featMatches []int // latents found from the feature screens
	inFeatures  bool  // the bar was opened from a feature screen
	codeMatches []int // codes found from the code screens (indices into Codes())
	inCodes     bool  // the bar was opened from a code screen
}

type tokenMatch struct{ prompt, pos int } // prompt is an index into Prompts()

func newSearch(st *state) *searchModel {
	in := textinput.New()
	in.Prompt = "/"
	in.Placeholder = "token, or head as L.H"
	// A static cursor: a blinking one would make frames depend on time.
	in.Cursor.SetMode(cursor.CursorStatic)
	in.CharLimit = 200
	return &searchModel{st: st, input: in}
}

func (s *searchModel) start() tea.Cmd {
	s.active = true
	s.inFeatures, s.inCodes = false, false
	s.input.SetValue("")
	return s.input.Focus()
}

// headRE reads a head: "L3.H2", "3.2", "l3h2", "3 2".
var headRE = regexp.MustCompile(`^(?i)\s*l?(\d+)\s*[.:, ]?\s*h?(\d+)\s*$`)

// update handles a key while the bar is open and returns the screen to show
// (screen(-1): unchanged).
func (s *searchModel) update(msg tea.KeyMsg) (screen, tea.Cmd) {
	switch msg.Type {
	case tea.KeyEsc:
		s.active = false
		s.input.Blur()
		return -1, nil
	case tea.KeyEnter:
		s.active = false
		s.input.Blur()
		q := strings.TrimSpace(s.input.Value())
		if s.inFeatures && q != "" && s.searchFeatures(q) {
			return screenFeatures, nil
		}
		if s.inCodes && q != "" && s.searchCodes(q) {
			return screenCodes, nil
		}
		return s.run(q), nil
	}
	var cmd tea.Cmd
	s.input, cmd = s.input.Update(msg)
	return -1, cmd
}

// run performs a search and returns the screen to show: -1 (unchanged) for
// a head, which every screen shows, and the prompt view for a token (the
// root keeps the head view instead, where the token becomes the query).
func (s *searchModel) run(q string) screen {
	st := s.st
	if q == "" {
		return -1
	}
	if m := headRE.FindStringSubmatch(q); m != nil && st.src.Layers() > 0 {
		l, _ := strconv.Atoi(m[1])
		h, _ := strconv.Atoi(m[2])
		if l >= st.src.Layers() || h >= st.src.Heads() {
			st.status = fmt.Sprintf("no head L%d.H%d: the files have %d layers x %d heads", l, h, st.src.Layers(), st.src.Heads())
			return -1
		}
		st.layer, st.head = l, h
		st.status = fmt.Sprintf("head L%d.H%d", l, h)
		return -1
	}
	s.query, s.matches, s.at = q, nil, 0
	needle := strings.ToLower(strings.TrimSpace(q))
	for i, p := range st.src.Prompts() {
		t, err := st.src.Tokens(p)
		if err != nil {
			st.status = err.Error()
			return -1
		}
		if t == nil {
			continue
		}
		for j, txt := range t.Texts {
			if strings.Contains(strings.ToLower(strings.TrimSpace(txt)), needle) {
				s.matches = append(s.matches, tokenMatch{i, t.Start + j})
			}
		}
	}
	if len(s.matches) == 0 {
		st.status = fmt.Sprintf("no token matches %q", q)
		return -1
	}
	return s.show(screenPromptView)
}

// show moves the shared state to the current match.
func (s *searchModel) show(sc screen) screen {
	st := s.st
	mt := s.matches[s.at]
	st.prompt, st.pos, st.query = mt.prompt, mt.pos, mt.pos
	p, _ := st.promptID()
	st.status = fmt.Sprintf("match %d/%d for %q: prompt %d, position %d %s (n/N: next/previous)",
		s.at+1, len(s.matches), s.query, p, mt.pos, tokenText(st.src.TokenText(p, mt.pos)))
	return sc
}

// step walks the matches from the screen cur: the head view stays (the
// match becomes its query), others go to the prompt view.
func (s *searchModel) step(d int, cur screen) screen {
	if len(s.matches) == 0 {
		s.st.status = "no search: press / to search for a token or a head"
		return cur
	}
	s.at = cycle(s.at, d, len(s.matches))
	sc := screenPromptView
	if slices.Contains([]screen{screenHeadView, screenPromptView}, cur) {
		sc = cur
	}
	return s.show(sc)
}

func (s *searchModel) view() string {
	return s.input.View() + dimStyle.Render("   enter: search · esc: cancel")
}
