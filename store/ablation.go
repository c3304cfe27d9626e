package store

import (
	"context"
	"fmt"
	"math"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// The ablation table (schema v2): one row per ablation experiment, a set of
// heads knocked out on one task, with the accuracy it leaves, the accuracy
// without ablation and the random-head control (as many random heads, drawn
// several times) that says whether the drop is the heads' or any heads'.

// KindAblation is the kind of the ablation table.
const KindAblation Kind = "ablation"

// HeadRef names one attention head.
type HeadRef struct{ Layer, Head int }

// String is "L.H", the form `loupe heads ablate --heads` takes.
func (h HeadRef) String() string { return strconv.Itoa(h.Layer) + "." + strconv.Itoa(h.Head) }

// Ablation is one ablation experiment.
type Ablation struct {
	Task   string    // "niah", "induction", ...
	Method string    // how heads are knocked out: "zero" (hook_z set to 0)
	Heads  []HeadRef // the heads ablated together
	// Baseline is the accuracy with no ablation, Accuracy with Heads
	// ablated.
	Baseline, Accuracy float64
	// RandomAccuracy holds one accuracy per draw of len(Heads) random heads
	// ablated instead, RandomHeads the heads of each draw.
	RandomAccuracy []float64
	RandomHeads    [][]HeadRef
}

// RandomMean is the mean accuracy over the random draws (NaN without any).
func (a *Ablation) RandomMean() float64 {
	if len(a.RandomAccuracy) == 0 {
		return math.NaN()
	}
	var s float64
	for _, v := range a.RandomAccuracy {
		s += v
	}
	return s / float64(len(a.RandomAccuracy))
}

// RandomStd is the population standard deviation over the random draws.
func (a *Ablation) RandomStd() float64 {
	if len(a.RandomAccuracy) == 0 {
		return math.NaN()
	}
	m := a.RandomMean()
	var s float64
	for _, v := range a.RandomAccuracy {
		s += (v - m) * (v - m)
	}
	return math.Sqrt(s / float64(len(a.RandomAccuracy)))
}

func ablationFields() []arrow.Field {
	f64 := arrow.PrimitiveTypes.Float64
	return []arrow.Field{utf8("task", false), utf8("method", false),
		{Name: "layers", Type: arrow.ListOf(arrow.PrimitiveTypes.Int32)},
		{Name: "heads", Type: arrow.ListOf(arrow.PrimitiveTypes.Int32)},
		{Name: "baseline", Type: f64}, {Name: "accuracy", Type: f64},
		{Name: "random_mean", Type: f64, Nullable: true}, {Name: "random_std", Type: f64, Nullable: true},
		{Name: "random_accuracy", Type: arrow.ListOf(f64)},
		{Name: "random_heads", Type: arrow.ListOf(arrow.BinaryTypes.String)}}
}

// WriteAblation appends one ablation experiment.
func (w *Writer) WriteAblation(a Ablation) error {
	if err := w.begin(); err != nil {
		return err
	}
	return w.end(w.writeAblation(&a))
}

func (w *Writer) writeAblation(a *Ablation) error {
	what := fmt.Sprintf("ablation of %v on %q", a.Heads, a.Task)
	switch {
	case a.Task == "" || a.Method == "":
		return fmt.Errorf("%s: task and method must be named", what)
	case len(a.Heads) == 0:
		return fmt.Errorf("%s: no heads", what)
	case len(a.RandomHeads) != len(a.RandomAccuracy):
		return fmt.Errorf("%s: %d random draws but %d accuracies", what, len(a.RandomHeads), len(a.RandomAccuracy))
	}
	for _, h := range a.Heads {
		if h.Layer < 0 || h.Head < 0 {
			return fmt.Errorf("%s: head %s", what, h)
		}
	}
	t, err := w.tableNamed(string(KindAblation))
	if err != nil {
		return err
	}
	if err := t.startRow(batchKey{prompt: -1, layer: -1, head: -1}, 64+len(a.Task)+16*len(a.Heads)*(1+len(a.RandomHeads))); err != nil {
		return err
	}
	layers, heads := make([]int32, len(a.Heads)), make([]int32, len(a.Heads))
	for i, h := range a.Heads {
		layers[i], heads[i] = int32(h.Layer), int32(h.Head)
	}
	t.str(0).Append(a.Task)
	t.str(1).Append(a.Method)
	appendI32List(t.rb.Field(2), layers)
	appendI32List(t.rb.Field(3), heads)
	t.rb.Field(4).(*array.Float64Builder).Append(a.Baseline)
	t.rb.Field(5).(*array.Float64Builder).Append(a.Accuracy)
	for i, v := range []float64{a.RandomMean(), a.RandomStd()} {
		b := t.rb.Field(6 + i).(*array.Float64Builder)
		if math.IsNaN(v) {
			b.AppendNull()
		} else {
			b.Append(v)
		}
	}
	lb := t.rb.Field(8).(*array.ListBuilder)
	lb.Append(true)
	lb.ValueBuilder().(*array.Float64Builder).AppendValues(a.RandomAccuracy, nil)
	sb := t.rb.Field(9).(*array.ListBuilder)
	sb.Append(true)
	for _, draw := range a.RandomHeads {
		s := make([]string, len(draw))
		for i, h := range draw {
			s[i] = h.String()
		}
		sb.ValueBuilder().(*array.StringBuilder).Append(strings.Join(s, ","))
	}
	return nil
}

func appendI32List(b array.Builder, vals []int32) {
	lb := b.(*array.ListBuilder)
	lb.Append(true)
	lb.ValueBuilder().(*array.Int32Builder).AppendValues(vals, nil)
}

// ReadAblations returns every ablation experiment of the trace, in file
// order (none when it has no ablation table). sel.Layers and sel.Heads pick
// experiments that ablate one of the selected heads.
func (tr *Trace) ReadAblations(ctx context.Context, sel Selector) (_ []Ablation, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer guard(tr.path, &err)
	name := string(KindAblation)
	if _, ok := tr.TableInfo(name); !ok {
		return nil, nil
	}
	var out []Ablation
	for rec, err := range tr.Batches(ctx, name, Selector{}) {
		if err != nil {
			return nil, err
		}
		c := rec.Columns()
		task, method, layers, heads := c[0].(*array.String), c[1].(*array.String), c[2].(*array.List), c[3].(*array.List)
		base, acc := c[4].(*array.Float64), c[5].(*array.Float64)
		racc, rheads := c[8].(*array.List), c[9].(*array.List)
		for i := 0; i < int(rec.NumRows()); i++ {
			a := Ablation{Task: task.Value(i), Method: method.Value(i), Baseline: base.Value(i), Accuracy: acc.Value(i)}
			ls, hs := listI32(layers, i), listI32(heads, i)
			if len(ls) != len(hs) {
				return nil, fmt.Errorf("store: read %s: %w: experiment %d has %d layers for %d heads",
					SiblingPath(tr.path, name), ErrIncomplete, len(out), len(ls), len(hs))
			}
			picked := len(sel.Layers) == 0 && len(sel.Heads) == 0
			for j := range ls {
				h := HeadRef{int(ls[j]), int(hs[j])}
				a.Heads = append(a.Heads, h)
				picked = picked || ((len(sel.Layers) == 0 || contains(sel.Layers, h.Layer)) && (len(sel.Heads) == 0 || contains(sel.Heads, h.Head)))
			}
			lo, hi := racc.ValueOffsets(i)
			a.RandomAccuracy = append([]float64{}, racc.ListValues().(*array.Float64).Float64Values()[lo:hi]...)
			lo, hi = rheads.ValueOffsets(i)
			strs := rheads.ListValues().(*array.String)
			for j := lo; j < hi; j++ {
				draw, err := parseHeadList(strs.Value(int(j)))
				if err != nil {
					return nil, fmt.Errorf("store: read %s: %w: %v", SiblingPath(tr.path, name), ErrIncomplete, err)
				}
				a.RandomHeads = append(a.RandomHeads, draw)
			}
			if len(a.RandomHeads) != len(a.RandomAccuracy) {
				return nil, fmt.Errorf("store: read %s: %w: experiment %d has %d random draws for %d accuracies",
					SiblingPath(tr.path, name), ErrIncomplete, len(out), len(a.RandomHeads), len(a.RandomAccuracy))
			}
			if picked {
				out = append(out, a)
			}
		}
	}
	return out, nil
}

// parseHeadList reads "1.2,3.4".
func parseHeadList(s string) ([]HeadRef, error) {
	var out []HeadRef
	for _, p := range strings.Split(s, ",") {
		l, h, ok := strings.Cut(p, ".")
		li, err1 := strconv.Atoi(l)
		hi, err2 := strconv.Atoi(h)
		if !ok || err1 != nil || err2 != nil || li < 0 || hi < 0 {
			return nil, fmt.Errorf("bad head list %q", s)
		}
		out = append(out, HeadRef{li, hi})
	}
	return out, nil
}
