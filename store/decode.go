package store

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// The typed readers below turn record batches back into the plain Go types
// the writer takes. They read only the batches the index points to, copy
// what they return (so it outlives the trace), and check what they decode:
// a damaged file gives an error, never a panic.

// ReadTokens returns the tokens of the selected prompts (sel.Prompts; other
// fields are ignored), one Tokens per prompt in file order.
func (tr *Trace) ReadTokens(ctx context.Context, sel Selector) (_ []Tokens, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer guard(tr.path, &err)
	sel = Selector{Prompts: sel.Prompts}
	if _, ok := tr.TableInfo(string(KindTokens)); !ok {
		return nil, nil
	}
	var out []Tokens
	at := map[int]int{} // prompt -> index in out
	for rec, err := range tr.Batches(ctx, string(KindTokens), sel) {
		if err != nil {
			return nil, err
		}
		c := rec.Columns()
		prompt, pos, id, text := c[0].(*array.Int32), c[1].(*array.Int32), c[2].(*array.Int32), c[3].(*array.String)
		for i := 0; i < int(rec.NumRows()); i++ {
			p := int(prompt.Value(i))
			if !sel.row(KindTokens, p, "", -1, -1) {
				continue
			}
			k, ok := at[p]
			if !ok {
				k = len(out)
				at[p] = k
				out = append(out, Tokens{PromptID: p, Start: int(pos.Value(i))})
			}
			out[k].IDs = append(out[k].IDs, int(id.Value(i)))
			out[k].Texts = append(out[k].Texts, text.Value(i))
		}
	}
	return out, nil
}

// ReadActivations returns the selected activations of every activations
// table: consecutive rows of one (hook, layer, head, prompt) come back as
// one Activation, values converted to float32.
//
// The result is held in memory: narrow the selection, or iterate with
// Batches, on traces larger than RAM.
func (tr *Trace) ReadActivations(ctx context.Context, sel Selector) (_ []Activation, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer guard(tr.path, &err)
	var out []Activation
	for _, name := range tr.tablesOfKind(KindActivations) {
		in, _ := tr.TableInfo(name)
		last := -1 // index in out of the activation being extended
		for rec, err := range tr.Batches(ctx, name, sel) {
			if err != nil {
				return nil, err
			}
			c := rec.Columns()
			hook, layer, head := c[0].(*array.String), c[1].(*array.Int32), c[2].(*array.Int32)
			prompt, pos := c[3].(*array.Int32), c[4].(*array.Int32)
			fl := c[5].(*array.FixedSizeList)
			n := int(fl.DataType().(*arrow.FixedSizeListType).Len())
			off := fl.Data().Offset()
			var f32 []float32
			var f16 *array.Float16
			switch v := fl.ListValues().(type) {
			case *array.Float32:
				f32 = v.Float32Values()
			case *array.Float16:
				f16 = v
			default:
				return nil, fmt.Errorf("store: read %s: values are %s", name, v.DataType())
			}
			for i := 0; i < int(rec.NumRows()); i++ {
				h, l, hd, p := hook.Value(i), int(layer.Value(i)), int(head.Value(i)), int(prompt.Value(i))
				if !sel.row(KindActivations, p, h, l, hd) {
					last = -1
					continue
				}
				if last < 0 || out[last].Hook != h || out[last].Layer != l || out[last].Head != hd || out[last].PromptID != p {
					last = len(out)
					out = append(out, Activation{Hook: h, Layer: l, Head: hd, PromptID: p, Start: int(pos.Value(i)), Shape: in.Shape})
				}
				a := &out[last]
				a.Positions = append(a.Positions, int(pos.Value(i)))
				lo := (off + i) * n
				if f32 != nil {
					a.Values = append(a.Values, f32[lo:lo+n]...)
				} else {
					for j := lo; j < lo+n; j++ {
						a.Values = append(a.Values, f16.Value(j).Float32())
					}
				}
			}
		}
	}
	return out, nil
}

// listF32 returns row i of a list<float32> column.
func listF32(l *array.List, i int) []float32 {
	lo, hi := l.ValueOffsets(i)
	return l.ListValues().(*array.Float32).Float32Values()[lo:hi]
}

func listI32(l *array.List, i int) []int32 {
	lo, hi := l.ValueOffsets(i)
	return l.ListValues().(*array.Int32).Int32Values()[lo:hi]
}

type headKey struct{ prompt, layer, head int }

// ReadAttention returns the selected full attention patterns, one per
// (prompt, layer, head), padded back to Queries x Keys.
func (tr *Trace) ReadAttention(ctx context.Context, sel Selector) (_ []Attention, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer guard(tr.path, &err)
	name := string(KindAttention)
	if _, ok := tr.TableInfo(name); !ok {
		return nil, nil
	}
	type row struct {
		nkeys int
		w     []float32
	}
	var keys []headKey
	rows := map[headKey][]row{}
	for rec, err := range tr.Batches(ctx, name, sel) {
		if err != nil {
			return nil, err
		}
		c := rec.Columns()
		prompt, layer, head, nkeys := c[0].(*array.Int32), c[1].(*array.Int32), c[2].(*array.Int32), c[4].(*array.Int32)
		w := c[5].(*array.List)
		for i := 0; i < int(rec.NumRows()); i++ {
			k := headKey{int(prompt.Value(i)), int(layer.Value(i)), int(head.Value(i))}
			if !sel.row(KindAttention, k.prompt, "", k.layer, k.head) {
				continue
			}
			if _, ok := rows[k]; !ok {
				keys = append(keys, k)
			}
			rows[k] = append(rows[k], row{int(nkeys.Value(i)), append([]float32(nil), listF32(w, i)...)})
		}
	}
	out := make([]Attention, 0, len(keys))
	for _, k := range keys {
		rs := rows[k]
		a := Attention{PromptID: k.prompt, Layer: k.layer, Head: k.head, Queries: len(rs), Keys: rs[0].nkeys}
		if a.Keys < a.Queries || int64(a.Keys)*int64(a.Queries) > maxAlloc/4 {
			return nil, fmt.Errorf("store: read %s: prompt %d layer %d head %d: %w: %d queries over %d keys",
				SiblingPath(tr.path, name), k.prompt, k.layer, k.head, ErrIncomplete, a.Queries, a.Keys)
		}
		a.Weights = make([]float32, a.Queries*a.Keys)
		for i, r := range rs {
			if r.nkeys != a.Keys || len(r.w) > a.Keys {
				return nil, fmt.Errorf("store: read %s: prompt %d layer %d head %d: %w: inconsistent key counts",
					SiblingPath(tr.path, name), k.prompt, k.layer, k.head, ErrIncomplete)
			}
			if len(r.w) < a.Keys {
				a.Causal = true
			}
			copy(a.Weights[i*a.Keys:], r.w)
		}
		out = append(out, a)
	}
	return out, nil
}

// ReadAttentionTopK returns the selected top-k attention, one per (prompt,
// layer, head); rows with fewer than K keys are padded with key -1.
func (tr *Trace) ReadAttentionTopK(ctx context.Context, sel Selector) (_ []AttentionTopK, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer guard(tr.path, &err)
	name := string(KindAttentionTopK)
	if _, ok := tr.TableInfo(name); !ok {
		return nil, nil
	}
	type row struct {
		q    int
		keys []int32
		w    []float32
	}
	var keys []headKey
	rows := map[headKey][]row{}
	for rec, err := range tr.Batches(ctx, name, sel) {
		if err != nil {
			return nil, err
		}
		c := rec.Columns()
		prompt, layer, head, q := c[0].(*array.Int32), c[1].(*array.Int32), c[2].(*array.Int32), c[3].(*array.Int32)
		kl, wl := c[4].(*array.List), c[5].(*array.List)
		for i := 0; i < int(rec.NumRows()); i++ {
			k := headKey{int(prompt.Value(i)), int(layer.Value(i)), int(head.Value(i))}
			if !sel.row(KindAttentionTopK, k.prompt, "", k.layer, k.head) {
				continue
			}
			kk, ww := listI32(kl, i), listF32(wl, i)
			if len(kk) != len(ww) {
				return nil, fmt.Errorf("store: read %s: %w: %d keys but %d weights in a row", SiblingPath(tr.path, name), ErrIncomplete, len(kk), len(ww))
			}
			if _, ok := rows[k]; !ok {
				keys = append(keys, k)
			}
			rows[k] = append(rows[k], row{int(q.Value(i)), append([]int32(nil), kk...), append([]float32(nil), ww...)})
		}
	}
	out := make([]AttentionTopK, 0, len(keys))
	for _, k := range keys {
		rs := rows[k]
		a := AttentionTopK{PromptID: k.prompt, Layer: k.layer, Head: k.head, K: 1}
		for _, r := range rs {
			a.K = max(a.K, len(r.keys))
		}
		a.KeyPos = make([]int32, len(rs)*a.K)
		a.Weight = make([]float32, len(rs)*a.K)
		for i, r := range rs {
			a.QueryPos = append(a.QueryPos, r.q)
			for j := range a.K {
				if j < len(r.keys) {
					a.KeyPos[i*a.K+j], a.Weight[i*a.K+j] = r.keys[j], r.w[j]
				} else {
					a.KeyPos[i*a.K+j] = -1
				}
			}
		}
		out = append(out, a)
	}
	return out, nil
}

// ReadHeadScores returns the selected head scores (sel.Layers, sel.Heads).
func (tr *Trace) ReadHeadScores(ctx context.Context, sel Selector) (_ []HeadScore, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer guard(tr.path, &err)
	name := string(KindHeadScores)
	if _, ok := tr.TableInfo(name); !ok {
		return nil, nil
	}
	var out []HeadScore
	for rec, err := range tr.Batches(ctx, name, Selector{}) {
		if err != nil {
			return nil, err
		}
		c := rec.Columns()
		layer, head, score := c[0].(*array.Int32), c[1].(*array.Int32), c[2].(*array.String)
		value, label, details := c[3].(*array.Float64), c[4].(*array.String), c[5].(*array.String)
		for i := 0; i < int(rec.NumRows()); i++ {
			l, h := int(layer.Value(i)), int(head.Value(i))
			if (len(sel.Layers) > 0 && !contains(sel.Layers, l)) || (len(sel.Heads) > 0 && !contains(sel.Heads, h)) {
				continue
			}
			s := HeadScore{Layer: l, Head: h, Score: score.Value(i), Value: value.Value(i)}
			if label.IsValid(i) {
				s.Label = label.Value(i)
			}
			if details.IsValid(i) {
				d := details.Value(i)
				if !json.Valid([]byte(d)) {
					return nil, fmt.Errorf("store: read %s: %w: details of %s layer %d head %d are not JSON", SiblingPath(tr.path, name), ErrIncomplete, s.Score, l, h)
				}
				s.Details = json.RawMessage(d)
			}
			out = append(out, s)
		}
	}
	return out, nil
}

// ReadFlow returns the selected rollout and flow results (sel.Prompts,
// sel.Methods, sel.Layers, sel.Heads), one per (prompt, method, layer,
// head, from_layer, to_layer), rows in file order. Schema v1 files read
// into the same form: the head and input layer come out of the method
// string ("flow/head=3/from=2"), and rows that were written as all NaN (not
// computed) are left out.
func (tr *Trace) ReadFlow(ctx context.Context, sel Selector) (_ []FlowMatrix, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer guard(tr.path, &err)
	name := string(KindFlow)
	if _, ok := tr.TableInfo(name); !ok {
		return nil, nil
	}
	t, err := tr.Table(name)
	if err != nil {
		return nil, err
	}
	v1 := t.version == 1
	type key struct {
		prompt, layer, head, from, to int
		method                        string
	}
	var order []key
	ms := map[key]*FlowMatrix{}
	for rec, err := range tr.Batches(ctx, name, sel) {
		if err != nil {
			return nil, err
		}
		c := rec.Columns()
		prompt, method, layer := c[0].(*array.Int32), c[1].(*array.String), c[2].(*array.Int32)
		var head, from, to, outPos *array.Int32
		var vals *array.List
		if v1 {
			outPos, vals = c[3].(*array.Int32), c[4].(*array.List)
		} else {
			head, from, to, outPos, vals = c[3].(*array.Int32), c[4].(*array.Int32), c[5].(*array.Int32), c[6].(*array.Int32), c[7].(*array.List)
		}
		for i := 0; i < int(rec.NumRows()); i++ {
			k := key{prompt: int(prompt.Value(i)), method: method.Value(i), layer: int(layer.Value(i))}
			if v1 {
				m, h, f, err := parseV1Method(k.method)
				if err != nil {
					return nil, fmt.Errorf("store: read %s: %w: %v", t.path, ErrNotLoupe, err)
				}
				k.method, k.head, k.from = m, h, f
				k.to = k.layer + 1
				if k.layer < 0 {
					k.to = configLayers(tr.run.Config)
				}
			} else {
				k.head, k.from, k.to = int(head.Value(i)), int(from.Value(i)), int(to.Value(i))
			}
			if !sel.row(KindFlow, k.prompt, k.method, k.layer, k.head) {
				continue
			}
			v := listF32(vals, i)
			if v1 && allNaN(v) {
				continue // v1 wrote rows it had not computed as NaN
			}
			m, ok := ms[k]
			if !ok {
				m = &FlowMatrix{PromptID: k.prompt, Method: k.method, Layer: k.layer, Head: k.head, FromLayer: k.from, ToLayer: k.to,
					Outputs: []int{}, Cols: len(v)}
				ms[k] = m
				order = append(order, k)
			}
			if len(v) != m.Cols {
				return nil, fmt.Errorf("store: read %s: %w: %s matrix of prompt %d has rows of %d and %d values",
					t.path, ErrIncomplete, k.method, k.prompt, m.Cols, len(v))
			}
			m.Values = append(m.Values, v...)
			m.Outputs = append(m.Outputs, int(outPos.Value(i)))
			m.Rows++
		}
	}
	out := make([]FlowMatrix, len(order))
	for i, k := range order {
		out[i] = *ms[k]
	}
	return out, nil
}

// parseV1Method splits a schema v1 flow method, "flow/head=3/from=2", into
// the method, the head (HeadsAveraged when absent) and the input layer.
func parseV1Method(s string) (method string, head, from int, err error) {
	parts := strings.Split(s, "/")
	method, head = parts[0], HeadsAveraged
	for _, p := range parts[1:] {
		k, v, ok := strings.Cut(p, "=")
		n, perr := strconv.Atoi(v)
		if !ok || perr != nil || n < 0 {
			return "", 0, 0, fmt.Errorf("flow method %q: bad part %q", s, p)
		}
		switch k {
		case "head":
			head = n
		case "from":
			from = n
		default:
			return "", 0, 0, fmt.Errorf("flow method %q: unknown part %q", s, p)
		}
	}
	return method, head, from, nil
}

// configLayers reads the layer count out of a run's model config (Loupe's
// own probe.Config, or the names Hugging Face and TransformerLens use);
// -1 when absent.
func configLayers(raw json.RawMessage) int {
	var m map[string]any
	if len(raw) == 0 || json.Unmarshal(raw, &m) != nil {
		return -1
	}
	for _, k := range []string{"Layers", "n_layers", "num_hidden_layers", "n_layer"} {
		if v, ok := m[k].(float64); ok && v > 0 && v < 1<<16 {
			return int(v)
		}
	}
	return -1
}

func allNaN(v []float32) bool {
	for _, x := range v {
		if !math.IsNaN(float64(x)) {
			return false
		}
	}
	return len(v) > 0
}

// ReadLogitLens returns the selected logit lens, one per (prompt, layer);
// rows with fewer than K predictions are padded with id -1.
func (tr *Trace) ReadLogitLens(ctx context.Context, sel Selector) (_ []LogitLens, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer guard(tr.path, &err)
	name := string(KindLogitLens)
	if _, ok := tr.TableInfo(name); !ok {
		return nil, nil
	}
	type row struct {
		pos   int
		tp    float32
		ids   []int32
		probs []float32
		texts []string
	}
	type key struct{ prompt, layer int }
	var order []key
	rows := map[key][]row{}
	for rec, err := range tr.Batches(ctx, name, sel) {
		if err != nil {
			return nil, err
		}
		c := rec.Columns()
		prompt, layer, pos, tp := c[0].(*array.Int32), c[1].(*array.Int32), c[2].(*array.Int32), c[3].(*array.Float32)
		il, pl, tl := c[4].(*array.List), c[5].(*array.List), c[6].(*array.List)
		texts := tl.ListValues().(*array.String)
		for i := 0; i < int(rec.NumRows()); i++ {
			k := key{int(prompt.Value(i)), int(layer.Value(i))}
			if !sel.row(KindLogitLens, k.prompt, "", k.layer, -1) {
				continue
			}
			r := row{pos: int(pos.Value(i)), tp: float32(math.NaN())}
			if tp.IsValid(i) {
				r.tp = tp.Value(i)
			}
			r.ids = append(r.ids, listI32(il, i)...)
			r.probs = append(r.probs, listF32(pl, i)...)
			lo, hi := tl.ValueOffsets(i)
			for j := lo; j < hi; j++ {
				r.texts = append(r.texts, texts.Value(int(j)))
			}
			if len(r.probs) != len(r.ids) || len(r.texts) != len(r.ids) {
				return nil, fmt.Errorf("store: read %s: %w: row lists of different lengths", SiblingPath(tr.path, name), ErrIncomplete)
			}
			if _, ok := rows[k]; !ok {
				order = append(order, k)
			}
			rows[k] = append(rows[k], r)
		}
	}
	out := make([]LogitLens, 0, len(order))
	for _, k := range order {
		rs := rows[k]
		l := LogitLens{PromptID: k.prompt, Layer: k.layer, K: 1}
		for _, r := range rs {
			l.K = max(l.K, len(r.ids))
		}
		for _, r := range rs {
			l.Positions = append(l.Positions, r.pos)
			l.TargetProb = append(l.TargetProb, r.tp)
			for j := range l.K {
				if j < len(r.ids) {
					l.TopIDs = append(l.TopIDs, r.ids[j])
					l.TopProbs = append(l.TopProbs, r.probs[j])
					l.TopTexts = append(l.TopTexts, r.texts[j])
				} else {
					l.TopIDs = append(l.TopIDs, -1)
					l.TopProbs = append(l.TopProbs, 0)
					l.TopTexts = append(l.TopTexts, "")
				}
			}
		}
		out = append(out, l)
	}
	return out, nil
}

// guard turns a panic while decoding (a file changed under its memory map,
// which SetPanicOnFault makes a panic rather than a crash) into an error.
func guard(path string, err *error) {
	if p := recover(); p != nil {
		*err = fmt.Errorf("store: read %s: %w: %v (was the file changed while open?)", path, ErrIncomplete, p)
	}
}

func contains(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
