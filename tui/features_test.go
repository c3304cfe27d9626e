package tui

import (
	"context"
	"math"
	"path/filepath"
	"strings"
	"testing"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/ansi"

	"github.com/loupe-dev/loupe/store"
)

// writeFeatures writes a small features file: three latents, one dead.
func writeFeatures(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "features.arrow")
	w, err := store.Create(path, store.RunInfo{ModelPath: "toy", Architecture: "llama"}, store.Options{MainTable: "features"})
	if err != nil {
		t.Fatal(err)
	}
	empty := store.FeatureRow{HistCounts: []int32{}, TopIDs: []int32{}, TopTexts: []string{}, TopValues: []float32{},
		BottomIDs: []int32{}, BottomTexts: []string{}, BottomValues: []float32{}}
	f0, f1, f2 := empty, empty, empty
	f0.Latent, f0.Density, f0.MaxAct, f0.MeanAct, f0.HistCounts = 0, 0.01, 2, 1, []int32{5, 3, 1}
	f0.TopIDs, f0.TopTexts, f0.TopValues = []int32{1, 2}, []string{" Monday", " Tuesday"}, []float32{3, 2}
	f0.BottomIDs, f0.BottomTexts, f0.BottomValues = []int32{3}, []string{" the"}, []float32{-1}
	f1.Latent, f1.Density, f1.MaxAct, f1.MeanAct, f1.HistCounts = 1, 0.2, 9, 4, []int32{1, 1, 7}
	f1.TopIDs, f1.TopTexts, f1.TopValues = []int32{4}, []string{" cat"}, []float32{1}
	f1.BottomIDs, f1.BottomTexts, f1.BottomValues = []int32{5}, []string{" dog"}, []float32{-2}
	f2.Latent = 2
	if err := w.WriteFeatures([]store.FeatureRow{f0, f1, f2}); err != nil {
		t.Fatal(err)
	}
	ex := []store.FeatureExample{
		{Latent: 1, Kind: "top", Quantile: float32(math.NaN()), Context: 0, Position: 3, Activation: 9, WindowStart: 2,
			TokenIDs: []int32{7, 4, 8}, TokenTexts: []string{"the", " cat", " sat"}, Acts: []float32{0, 9, 1}},
		{Latent: 1, Kind: "quantile", Rank: 0, Quantile: 0.4, Context: 2, Position: 1, Activation: 3, WindowStart: 0,
			TokenIDs: []int32{9, 4}, TokenTexts: []string{"a", " cat"}, Acts: []float32{0, 3}},
	}
	if err := w.WriteFeatureExamples(ex); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	return path
}

func drive(m tea.Model, msgs []tea.Msg) tea.Model {
	m, _ = m.Update(tea.WindowSizeMsg{Width: 100, Height: 30})
	for _, msg := range msgs {
		m, _ = m.Update(msg)
	}
	return m
}

func TestFeatureScreens(t *testing.T) {
	src, err := Open(writeFeatures(t))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	m := drive(New(src), nil)
	if got := m.(Model).Current(); got != "features" {
		t.Fatalf("a features file opens on %q", got)
	}
	view := ansi.Strip(m.View())
	if !strings.Contains(view, "3 latents, 2 fire") || !strings.Contains(view, "dead") || !strings.Contains(view, "Monday") {
		t.Fatalf("feature list:\n%s", view)
	}
	// sorting keeps the cursor's latent (0); by max activation latent 1 is
	// above it
	m = drive(New(src), keys("o", "o", "up", "enter"))
	view = ansi.Strip(m.View())
	if m.(Model).Current() != "feature" || !strings.Contains(view, "latent 1") || !strings.Contains(view, "max 9") {
		t.Fatalf("sorted by max activation then opened:\n%s", view)
	}
	for _, want := range []string{"promotes", "cat", "suppresses", "dog", "top activations", "samples by activation quantile", "q0.4", "the cat sat"} {
		if !strings.Contains(strings.ReplaceAll(view, "·", " "), want) {
			t.Errorf("feature page lacks %q:\n%s", want, view)
		}
	}
	// search: a number jumps to the latent, a token finds latents promoting it
	m = drive(New(src), keys("/", "2", "enter", "enter"))
	if view = ansi.Strip(m.View()); !strings.Contains(view, "latent 2") || !strings.Contains(view, "never fires") {
		t.Errorf("search for latent 2:\n%s", view)
	}
	m = drive(New(src), keys("/", "tuesday", "enter", "enter"))
	if view = ansi.Strip(m.View()); !strings.Contains(view, "latent 0") {
		t.Errorf("search for a promoted token:\n%s", view)
	}
	m = drive(New(src), keys("/", "zebra", "enter"))
	if view = ansi.Strip(m.View()); !strings.Contains(view, `no latent promotes a token matching "zebra"`) {
		t.Errorf("search for nothing:\n%s", view)
	}
	// esc goes back to the list; random keys never panic
	m = drive(New(src), keys("enter", "esc"))
	if m.(Model).Current() != "features" {
		t.Errorf("esc from a latent: %s", m.(Model).Current())
	}
	drive(New(src), keys("jjjjkkkooo", "enter", "llllhhhhjjjj", "esc", "?", "?", "n", "N", "x", "m", "x"))
}
