package tui

import (
	"strings"

	"github.com/charmbracelet/bubbles/help"
	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"
)

// keyMap holds every binding. The footer shows the bindings of the screen
// on top (ShortHelp); `?` shows them all (FullHelp).
type keyMap struct {
	Up, Down, Left, Right   key.Binding
	PageUp, PageDown        key.Binding
	NextScore, PrevScore    key.Binding
	NextTop, PrevTop        key.Binding
	Filter, ClearFilter     key.Binding
	NextPrompt, PrevPrompt  key.Binding
	Open, Prompt, Map, Back key.Binding
	Search, NextMatch       key.Binding
	PrevMatch               key.Binding
	Help, Quit              key.Binding
	Mode, Rank              key.Binding
	Features, Sort          key.Binding
	Circuit                 key.Binding
	Codes                   key.Binding
}

func newKeyMap() keyMap {
	b := func(help string, desc string, keys ...string) key.Binding {
		return key.NewBinding(key.WithKeys(keys...), key.WithHelp(help, desc))
	}
	return keyMap{
		Up:          b("↑/k", "up", "up", "k"),
		Down:        b("↓/j", "down", "down", "j"),
		Left:        b("←/h", "left", "left", "h"),
		Right:       b("→/l", "right", "right", "l"),
		PageUp:      b("pgup", "page up", "pgup", "ctrl+u"),
		PageDown:    b("pgdn", "page down", "pgdown", "ctrl+d", " "),
		NextScore:   b("s/S", "score", "s", "tab"),
		PrevScore:   b("S", "previous score", "S", "shift+tab"),
		NextTop:     b("t/T", "top heads", "t"),
		PrevTop:     b("T", "previous top head", "T"),
		Filter:      b("f", "filter label", "f"),
		ClearFilter: b("F", "clear filter", "F"),
		NextPrompt:  b("]/[", "prompt", "]"),
		PrevPrompt:  b("[", "previous prompt", "["),
		Open:        b("enter", "head view", "enter"),
		Prompt:      b("p", "prompt view", "p"),
		Map:         b("m", "head map", "m"),
		Back:        b("esc", "back", "esc"),
		Search:      b("/", "search", "/"),
		NextMatch:   b("n/N", "next match", "n"),
		PrevMatch:   b("N", "previous match", "N"),
		Help:        b("?", "help", "?"),
		Mode:        b("a", "text/matrix", "a"),
		Rank:        b("1-9", "head of rank N", "1", "2", "3", "4", "5", "6", "7", "8", "9"),
		Quit:        b("q", "quit", "q", "ctrl+c"),
		Features:    b("x", "SAE features", "x"),
		Codes:       b("b", "codebook codes", "b"),
		Sort:        b("o", "sort", "o"),
		Circuit:     b("c", "circuit view", "c"),
	}
}

// screenKeys adapts the key map to help.KeyMap for one screen.
type screenKeys struct {
	short []key.Binding
	full  [][]key.Binding
}

func (s screenKeys) ShortHelp() []key.Binding  { return s.short }
func (s screenKeys) FullHelp() [][]key.Binding { return s.full }

// helpFor returns the bindings of one screen, most used first, since the
// footer cuts what does not fit.
func (k keyMap) helpFor(sc screen) screenKeys {
	views := []key.Binding{k.Map, k.Open, k.Prompt, k.Back, k.Search, k.NextMatch, k.PrevMatch, k.Help, k.Quit}
	switch sc {
	case screenHeadMap:
		return screenKeys{
			short: []key.Binding{k.Help, k.Up, k.NextScore, k.NextTop, k.Filter, k.Open, k.Prompt, k.Search, k.Quit},
			full: [][]key.Binding{{k.Up, k.Down, k.Left, k.Right},
				{k.NextScore, k.PrevScore, k.NextTop, k.PrevTop, k.Rank, k.Filter, k.ClearFilter, k.Circuit},
				views},
		}
	case screenHeadView:
		left, right, up, down := k.Left, k.Right, k.Up, k.Down
		left.SetHelp("←/h", "query left")
		right.SetHelp("→/l", "query right")
		up.SetHelp("↑/k", "scroll (matrix: query) up")
		down.SetHelp("↓/j", "scroll (matrix: query) down")
		return screenKeys{
			short: []key.Binding{k.Help, left, k.Mode, k.NextPrompt, k.NextTop, k.NextScore, k.Prompt, k.Back, k.Search, k.Quit},
			full: [][]key.Binding{{left, right, up, down, k.PageUp, k.PageDown},
				{k.Mode, k.NextPrompt, k.PrevPrompt, k.NextTop, k.PrevTop, k.NextScore, k.PrevScore},
				views},
		}
	case screenPromptView:
		left, right := k.Left, k.Right
		left.SetHelp("←/h", "lens layer")
		right.SetHelp("→/l", "lens layer")
		up, down, open := k.Up, k.Down, k.Open
		up.SetHelp("↑/k", "token up")
		down.SetHelp("↓/j", "token down")
		open.SetHelp("enter", "head view, token as query")
		return screenKeys{
			short: []key.Binding{k.Help, up, left, k.NextPrompt, k.Open, k.Back, k.Search, k.Quit},
			full:  [][]key.Binding{{up, down, left, right, k.PageUp, k.PageDown}, {k.NextPrompt, k.PrevPrompt, open}, views},
		}
	case screenFeatures:
		open := k.Open
		open.SetHelp("enter", "open latent")
		return screenKeys{
			short: []key.Binding{k.Help, k.Up, k.Sort, open, k.Search, k.NextMatch, k.Quit},
			full:  [][]key.Binding{{k.Up, k.Down, k.PageUp, k.PageDown}, {k.Sort, open, k.Search, k.NextMatch, k.PrevMatch}, {k.Map, k.Codes, k.Help, k.Quit}},
		}
	case screenCircuit:
		up, down, mode, method := k.Up, k.Down, k.Mode, k.NextScore
		up.SetHelp("↑/k", "previous edge")
		down.SetHelp("↓/j", "next edge")
		mode.SetHelp("a", "circuit/all edges")
		method.SetHelp("s/S", "method")
		return screenKeys{
			short: []key.Binding{k.Help, up, down, mode, method, k.Map, k.Quit},
			full:  [][]key.Binding{{up, down, k.PageUp, k.PageDown}, {mode, method, k.PrevScore}, {k.Map, k.Back, k.Help, k.Quit}},
		}
	case screenFeature:
		left, right, up := k.Left, k.Right, k.Up
		left.SetHelp("←/h", "previous latent")
		right.SetHelp("→/l", "next latent")
		up.SetHelp("↑/k", "scroll")
		return screenKeys{
			short: []key.Binding{k.Help, up, left, k.Back, k.Search, k.NextMatch, k.Quit},
			full:  [][]key.Binding{{up, k.Down, k.PageUp, k.PageDown, left, right}, {k.Back, k.Search, k.NextMatch, k.PrevMatch}, {k.Help, k.Quit}},
		}
	case screenCodes:
		open := k.Open
		open.SetHelp("enter", "open code")
		return screenKeys{
			short: []key.Binding{k.Help, k.Up, k.Sort, open, k.Search, k.NextMatch, k.Quit},
			full:  [][]key.Binding{{k.Up, k.Down, k.PageUp, k.PageDown}, {k.Sort, open, k.Search, k.NextMatch, k.PrevMatch}, {k.Map, k.Features, k.Help, k.Quit}},
		}
	case screenCode:
		left, right, up := k.Left, k.Right, k.Up
		left.SetHelp("←/h", "previous code")
		right.SetHelp("→/l", "next code")
		up.SetHelp("↑/k", "scroll")
		return screenKeys{
			short: []key.Binding{k.Help, up, left, k.Back, k.Search, k.NextMatch, k.Quit},
			full:  [][]key.Binding{{up, k.Down, k.PageUp, k.PageDown, left, right}, {k.Back, k.Search, k.NextMatch, k.PrevMatch}, {k.Help, k.Quit}},
		}
	}
	return screenKeys{short: []key.Binding{k.Quit}, full: [][]key.Binding{{k.Quit}}}
}

// helpOverlay draws the full help in a box over the middle of base.
func helpOverlay(h help.Model, keys screenKeys, base string, w, hgt int) string {
	h.ShowAll = true
	h.Width = 0 // measure the full width first
	// When the columns do not fit side by side, fold the first ones into
	// one taller column rather than let help drop the last.
	for lipgloss.Width(h.View(keys)) > w-6 && len(keys.full) > 2 {
		merged := append(append([]key.Binding{}, keys.full[0]...), keys.full[1]...)
		keys = screenKeys{short: keys.short, full: append([][]key.Binding{merged}, keys.full[2:]...)}
	}
	h.Width = max(w-6, 10)
	body := headStyle.Render("Keys") + "\n\n" + h.View(keys) + "\n\n" +
		dimStyle.Render("Mouse wheel scrolls. ? or esc closes this help.")
	box := overlayStyle.Render(body)
	return overlay(base, box, w, hgt)
}

// overlay draws box centred over base, line by line: lipgloss v1 has no
// layers, so each covered line is cut around the box.
func overlay(base, box string, w, h int) string {
	lines := strings.Split(base, "\n")
	bl := strings.Split(box, "\n")
	bw := lipgloss.Width(box)
	if bw > w {
		bw = w
	}
	x := max((w-bw)/2, 0)
	y := max((h-len(bl))/2, 0)
	for i, l := range bl {
		if y+i >= len(lines) {
			break
		}
		base := fitLine(lines[y+i], w)
		left := ansi.Truncate(base, x, "")
		right := ansi.TruncateLeft(base, x+bw, "")
		lines[y+i] = left + fitLine(clip(l, bw), bw) + right
	}
	return strings.Join(lines, "\n")
}
