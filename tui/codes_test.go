package tui

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/charmbracelet/x/ansi"

	"github.com/loupe-dev/loupe/store"
)

// writeCodes writes a small codes file: two codebooks (one per head at
// hook_z), a dead code, labelled and unlabelled codes.
func writeCodes(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "codes.arrow")
	w, err := store.Create(path, store.RunInfo{ModelPath: "tokfsm", Architecture: "neox"}, store.Options{MainTable: string(store.KindCodes)})
	if err != nil {
		t.Fatal(err)
	}
	none := store.Code{Source: "codebook", TopTokens: []int32{}, TopCounts: []int32{}, ContextPrompts: []int32{}, ContextPositions: []int32{}, Contexts: []string{}}
	c0, c1, c2, c3 := none, none, none, none
	c0.Hook, c0.Code, c0.Count, c0.Positions = "blocks.1.hook_mlp_out", 0, 40, 1000
	c0.TopTokens, c0.TopCounts, c0.TopTexts = []int32{4, 2}, []int32{30, 10}, []string{"4", "2"}
	c0.ContextPrompts, c0.ContextPositions, c0.Contexts = []int32{3}, []int32{8}, []string{"1 7 «4» 2"}
	c0.Label, c0.LabelPrecision, c0.LabelAP = "state 42", 0.9, 0.8
	c1.Hook, c1.Code, c1.Count, c1.Positions = "blocks.1.hook_mlp_out", 1, 200, 1000
	c1.TopTokens, c1.TopCounts, c1.TopTexts = []int32{7}, []int32{200}, []string{"7"}
	c1.Label, c1.LabelPrecision, c1.LabelAP = "state 7", 0.3, 0.25
	c2.Hook, c2.Code, c2.Positions = "blocks.1.hook_mlp_out", 2, 1000 // dead
	c3.Hook, c3.Group, c3.Code, c3.Count, c3.Positions = "blocks.0.attn.hook_z", 3, 0, 5, 1000
	c3.TopTokens, c3.TopCounts = []int32{9}, []int32{5} // no texts: shown by id
	if err := w.WriteCodes([]store.Code{c0, c1, c2, c3}); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCodeScreens(t *testing.T) {
	src, err := Open(writeCodes(t))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	m := drive(New(src), nil)
	if got := m.(Model).Current(); got != "codes" {
		t.Fatalf("a codes file opens on %q", got)
	}
	view := ansi.Strip(m.View())
	for _, want := range []string{"4 codes in 2 codebooks, 3 fire", "sorted by site", "blocks.1.hook_mlp_out:0", "state 42 (.90, .80)",
		"blocks.0.attn.hook_z[head 3]:0", "#9", "dead", "enter open code"} {
		if !strings.Contains(view, want) {
			t.Errorf("code list lacks %q:\n%s", want, view)
		}
	}
	// o twice sorts by label AP, the cursor staying on its code; the top
	// of the list is then the best detector, which enter opens.
	m = drive(New(src), keys("o", "o", "up", "up", "up", "enter"))
	view = ansi.Strip(m.View())
	if m.(Model).Current() != "code" || !strings.Contains(view, "blocks.1.hook_mlp_out:0") {
		t.Fatalf("sorted by label AP then opened:\n%s", view)
	}
	for _, want := range []string{"fires at 40 of 1000 positions (1 in 25)", "stands for state 42: precision 0.900, average precision 0.800",
		"fires on", "contexts (the firing token marked)", "prompt 3 pos 8  1 7 4 2"} {
		if !strings.Contains(view, want) {
			t.Errorf("code page lacks %q:\n%s", want, view)
		}
	}
	// → walks to the next code of the order; esc goes back to the list
	m = drive(New(src), keys("o", "o", "up", "up", "up", "enter", "right", "esc"))
	if m.(Model).Current() != "codes" {
		t.Errorf("esc from a code: %s", m.(Model).Current())
	}
	// search: an id finds that code of every codebook (n walks them), a
	// label finds its code exactly, a token finds codes firing on it
	m = drive(New(src), keys("/", "0", "enter"))
	if st := m.(Model).st.status; !strings.Contains(st, "match 1/2") {
		t.Errorf("search for id 0: %q", st)
	}
	m = drive(New(src), keys("/", "0", "enter", "n", "enter"))
	if view = ansi.Strip(m.View()); !strings.Contains(view, "blocks.0.attn.hook_z[head 3]:0") || !strings.Contains(view, "no label") {
		t.Errorf("second match for id 0, opened:\n%s", view)
	}
	m = drive(New(src), keys("/", "state 7", "enter", "enter"))
	if view = ansi.Strip(m.View()); !strings.Contains(view, "blocks.1.hook_mlp_out:1") {
		t.Errorf("search for the label state 7:\n%s", view)
	}
	m = drive(New(src), keys("/", "blocks.1.hook_mlp_out:2", "enter", "enter"))
	if view = ansi.Strip(m.View()); !strings.Contains(view, "never fires") {
		t.Errorf("search for site:id:\n%s", view)
	}
	m = drive(New(src), keys("/", "zebra", "enter"))
	if st := m.(Model).st.status; !strings.Contains(st, `no code's label or top token matches "zebra"`) {
		t.Errorf("search for nothing: %q", st)
	}
	m = drive(New(src), keys("?"))
	if view = ansi.Strip(m.View()); !strings.Contains(view, "SAE features") || !strings.Contains(view, "sort") {
		t.Errorf("help on the code list:\n%s", view)
	}
	// random keys never panic
	drive(New(src), keys("jjjjkkkooo", "enter", "llllhhhhjjjj", "esc", "?", "?", "n", "N", "b", "x", "m", "b"))
}
