package store_test

import (
	"context"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/loupe-dev/loupe/store"
)

func TestAblationRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ablation.arrow")
	w, err := store.Create(path, store.RunInfo{ModelPath: "m"}, store.Options{MainTable: string(store.KindAblation)})
	if err != nil {
		t.Fatal(err)
	}
	want := []store.Ablation{
		{Task: "niah", Method: "zero", Heads: []store.HeadRef{{Layer: 18, Head: 6}, {Layer: 17, Head: 3}}, Baseline: 1, Accuracy: 0.25,
			RandomAccuracy: []float64{1, 0.75, 0.875}, RandomHeads: [][]store.HeadRef{{{Layer: 1, Head: 2}, {Layer: 3, Head: 4}}, {{Layer: 0, Head: 0}, {Layer: 9, Head: 8}}, {{Layer: 5, Head: 5}, {Layer: 6, Head: 6}}}},
		{Task: "induction", Method: "zero", Heads: []store.HeadRef{{Layer: 2, Head: 3}}, Baseline: 0.5, Accuracy: 0.5,
			RandomAccuracy: []float64{}, RandomHeads: nil},
	}
	for _, a := range want {
		if err := w.WriteAblation(a); err != nil {
			t.Fatal(err)
		}
	}
	for _, bad := range []store.Ablation{
		{Task: "niah", Method: "zero"},
		{Task: "niah", Method: "zero", Heads: []store.HeadRef{{Layer: 1, Head: 1}}, RandomAccuracy: []float64{1}},
		{Task: "", Method: "zero", Heads: []store.HeadRef{{Layer: 1, Head: 1}}},
		{Task: "niah", Method: "zero", Heads: []store.HeadRef{{Layer: -1, Head: 1}}},
	} {
		if err := w.WriteAblation(bad); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("WriteAblation(%+v) = %v, want an error naming the file", bad, err)
		}
		// A bad row makes the writer unusable (sticky); start over.
		w.Abort()
		w, err = store.Create(path, store.RunInfo{ModelPath: "m"}, store.Options{MainTable: string(store.KindAblation)})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range want {
			if err := w.WriteAblation(a); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	tr, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	got, err := tr.ReadAblations(context.Background(), store.Selector{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("read\n%+v\nwant\n%+v", got, want)
	}
	if m, s := got[0].RandomMean(), got[0].RandomStd(); math.Abs(m-0.875) > 1e-12 || math.Abs(s-math.Sqrt(((0.125*0.125)*2)/3)) > 1e-12 {
		t.Errorf("random control %g ± %g, want 0.875 ± %g", m, s, math.Sqrt(0.03125/3))
	}
	if !math.IsNaN(got[1].RandomMean()) {
		t.Errorf("no random draws, yet mean %g", got[1].RandomMean())
	}
	one, err := tr.ReadAblations(context.Background(), store.Selector{Layers: []int{17}, Heads: []int{3}})
	if err != nil || len(one) != 1 || one[0].Task != "niah" {
		t.Errorf("experiments ablating 17.3: %+v, %v", one, err)
	}
	none, _ := tr.ReadAblations(context.Background(), store.Selector{Layers: []int{17}, Heads: []int{6}})
	if len(none) != 0 {
		t.Errorf("experiments ablating 17.6: %+v, want none (18.6 and 17.3 are not 17.6)", none)
	}
}
