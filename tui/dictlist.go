package tui

import (
	"sort"
	"strings"

	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"
)

// What the dictionary screens share: the SAE latents (features.go) and the
// codebook codes (codes.go) are both a long sortable list with one page per
// entry, moved through with the same keys.

// moveCursor moves a list cursor at over n entries by the key msg (up,
// down, page up, page down; rows to a page) and reports whether the key
// was one of those.
func moveCursor(msg tea.KeyMsg, k keyMap, at *int, n, rows int) bool {
	switch {
	case key.Matches(msg, k.Up):
		*at = max(*at-1, 0)
	case key.Matches(msg, k.Down):
		*at = min(*at+1, max(n-1, 0))
	case key.Matches(msg, k.PageUp):
		*at = max(*at-rows, 0)
	case key.Matches(msg, k.PageDown):
		*at = min(*at+rows, max(n-1, 0))
	default:
		return false
	}
	return true
}

// stepEntry moves the cursor at one entry left or right (a page's ←/→)
// and reports whether the key was one of those.
func stepEntry(msg tea.KeyMsg, k keyMap, at *int, n int) bool {
	d := 0
	switch {
	case key.Matches(msg, k.Left):
		d = -1
	case key.Matches(msg, k.Right):
		d = 1
	default:
		return false
	}
	*at = min(max(*at+d, 0), max(n-1, 0))
	return true
}

// scrollPage moves a page's first line row0 by the key msg (h lines to a
// page) and reports whether the key scrolled.
func scrollPage(msg tea.KeyMsg, k keyMap, row0 *int, h int) bool {
	switch {
	case key.Matches(msg, k.Up):
		*row0 = max(*row0-1, 0)
	case key.Matches(msg, k.Down):
		*row0++
	case key.Matches(msg, k.PageUp):
		*row0 = max(*row0-h, 0)
	case key.Matches(msg, k.PageDown):
		*row0 += h
	default:
		return false
	}
	return true
}

// listWindow keeps the cursor at on screen: it moves the list's first row
// row0 so that at lies within rows lines, and returns the rows to draw.
func listWindow(at int, row0 *int, rows, n int) (lo, hi int) {
	if at < *row0 {
		*row0 = at
	}
	if at >= *row0+rows {
		*row0 = at - rows + 1
	}
	return *row0, min(*row0+rows, n)
}

// pageWindow draws the h lines of a page from row0, clamped so the page's
// end stays at the bottom.
func pageWindow(lines []string, row0 *int, h int) string {
	*row0 = min(*row0, max(len(lines)-h, 0))
	return strings.Join(lines[*row0:min(len(lines), *row0+h)], "\n")
}

// sortedOrder gives the indices 0..n-1 stably sorted by less (nil: in
// order).
func sortedOrder(n int, less func(a, b int) bool) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	if less != nil {
		sort.SliceStable(idx, func(a, b int) bool { return less(idx[a], idx[b]) })
	}
	return idx
}

// barOf draws a count as a bar of at most w cells, relative to top.
func barOf(count, top int64, w int) string {
	if top <= 0 || count <= 0 {
		return ""
	}
	return strings.Repeat("█", max(int(float64(count)/float64(top)*float64(w)+0.5), 1))
}
