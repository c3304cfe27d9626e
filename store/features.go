package store

import (
	"context"
	"fmt"
	"math"
	"runtime/debug"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// The SAE feature tables, written by `loupe sae features` (docs/schema.md
// gives the columns):
//
//	features          one row per latent: density, activation statistics and
//	                  histogram, the tokens its decoder row promotes and
//	                  suppresses (W_dec·W_U)
//	feature_examples  one row per example context of a latent: its top
//	                  activations and samples from activation quantiles, each
//	                  a window of tokens with the latent's value at each
//	feature_acts      one row per token of a prompt: the latents active there

// FeatureRow is one row of the features table.
type FeatureRow struct {
	Latent  int
	Density float64 // fraction of the scanned tokens on which it fires
	MaxAct  float32
	MeanAct float32 // mean over the tokens where it fires
	// HistCounts counts its non-zero activations in equal bins over
	// (0, MaxAct].
	HistCounts []int32
	// Top and bottom tokens of W_dec·W_U (empty for hooks outside the
	// residual stream's width).
	TopIDs, BottomIDs       []int32
	TopTexts, BottomTexts   []string
	TopValues, BottomValues []float32
}

// FeatureExample is one row of feature_examples.
type FeatureExample struct {
	Latent int
	// Kind is "top" (the largest activations, Rank 0 first) or "quantile"
	// (a sample from the activations between quantiles Quantile and the
	// next bin's).
	Kind        string
	Rank        int
	Quantile    float32 // NaN for top rows (stored as null)
	Context     int     // the scanned context it comes from
	Position    int     // the token's position in that context
	Activation  float32
	WindowStart int // position of the window's first token
	TokenIDs    []int32
	TokenTexts  []string
	Acts        []float32 // the latent's value at each window token
}

// FeatureActs is one row of feature_acts: a prompt token and its active
// latents, largest first.
type FeatureActs struct {
	PromptID, Position int
	TokenID            int32
	TokenText          string
	Latents            []int32
	Values             []float32
}

func featureFields(k Kind) []arrow.Field {
	i32l := func(n string) arrow.Field {
		return arrow.Field{Name: n, Type: arrow.ListOf(arrow.PrimitiveTypes.Int32)}
	}
	f32l := func(n string) arrow.Field {
		return arrow.Field{Name: n, Type: arrow.ListOf(arrow.PrimitiveTypes.Float32)}
	}
	strl := func(n string) arrow.Field { return arrow.Field{Name: n, Type: arrow.ListOf(arrow.BinaryTypes.String)} }
	f32 := func(n string, null bool) arrow.Field {
		return arrow.Field{Name: n, Type: arrow.PrimitiveTypes.Float32, Nullable: null}
	}
	switch k {
	case KindFeatures:
		return []arrow.Field{i32("latent"), {Name: "density", Type: arrow.PrimitiveTypes.Float64}, f32("max_act", false), f32("mean_act", false),
			i32l("hist_counts"), i32l("top_token_ids"), strl("top_token_texts"), f32l("top_logits"),
			i32l("bottom_token_ids"), strl("bottom_token_texts"), f32l("bottom_logits")}
	case KindFeatureExamples:
		return []arrow.Field{i32("latent"), utf8("kind", false), i32("rank"), f32("quantile", true), i32("context"), i32(colPosition),
			f32("activation", false), i32("window_start"), i32l("token_ids"), strl("token_texts"), f32l("acts")}
	case KindFeatureActs:
		return []arrow.Field{i32(colPromptID), i32(colPosition), i32("token_id"), utf8("token_text", false), i32l("latents"), f32l("values")}
	}
	return nil
}

func appendStrList(b array.Builder, vals []string) {
	lb := b.(*array.ListBuilder)
	lb.Append(true)
	sb := lb.ValueBuilder().(*array.StringBuilder)
	for _, s := range vals {
		sb.Append(s)
	}
}

func strsBytes(s []string) int {
	n := 0
	for _, v := range s {
		n += len(v) + 4
	}
	return n
}

// WriteFeatures appends rows to the features table.
func (w *Writer) WriteFeatures(rows []FeatureRow) error {
	if err := w.begin(); err != nil {
		return err
	}
	return w.end(w.writeFeatures(rows))
}

func (w *Writer) writeFeatures(rows []FeatureRow) error {
	for _, r := range rows {
		if len(r.TopIDs) != len(r.TopValues) || len(r.TopIDs) != len(r.TopTexts) ||
			len(r.BottomIDs) != len(r.BottomValues) || len(r.BottomIDs) != len(r.BottomTexts) {
			return fmt.Errorf("feature %d: token lists of different lengths", r.Latent)
		}
	}
	t, err := w.tableNamed(string(KindFeatures))
	if err != nil {
		return err
	}
	key := batchKey{prompt: -1, layer: -1, head: -1}
	for _, r := range rows {
		size := 24 + 4*len(r.HistCounts) + 8*(len(r.TopIDs)+len(r.BottomIDs)) + strsBytes(r.TopTexts) + strsBytes(r.BottomTexts)
		if err := t.startRow(key, size); err != nil {
			return err
		}
		t.i32(0).Append(int32(r.Latent))
		t.rb.Field(1).(*array.Float64Builder).Append(r.Density)
		t.rb.Field(2).(*array.Float32Builder).Append(r.MaxAct)
		t.rb.Field(3).(*array.Float32Builder).Append(r.MeanAct)
		appendI32List(t.rb.Field(4), r.HistCounts)
		appendI32List(t.rb.Field(5), r.TopIDs)
		appendStrList(t.rb.Field(6), r.TopTexts)
		appendF32List(t.rb.Field(7), r.TopValues)
		appendI32List(t.rb.Field(8), r.BottomIDs)
		appendStrList(t.rb.Field(9), r.BottomTexts)
		appendF32List(t.rb.Field(10), r.BottomValues)
	}
	return nil
}

// WriteFeatureExamples appends rows to feature_examples.
func (w *Writer) WriteFeatureExamples(rows []FeatureExample) error {
	if err := w.begin(); err != nil {
		return err
	}
	return w.end(w.writeFeatureExamples(rows))
}

func (w *Writer) writeFeatureExamples(rows []FeatureExample) error {
	for _, r := range rows {
		if r.Kind != "top" && r.Kind != "quantile" {
			return fmt.Errorf("feature %d example: kind %q (want top or quantile)", r.Latent, r.Kind)
		}
		if len(r.TokenIDs) != len(r.Acts) || len(r.TokenIDs) != len(r.TokenTexts) {
			return fmt.Errorf("feature %d example: window lists of different lengths", r.Latent)
		}
	}
	t, err := w.tableNamed(string(KindFeatureExamples))
	if err != nil {
		return err
	}
	key := batchKey{prompt: -1, layer: -1, head: -1}
	for _, r := range rows {
		if err := t.startRow(key, 40+8*len(r.TokenIDs)+strsBytes(r.TokenTexts)); err != nil {
			return err
		}
		t.i32(0).Append(int32(r.Latent))
		t.str(1).Append(r.Kind)
		t.i32(2).Append(int32(r.Rank))
		if q := r.Quantile; q != q {
			t.rb.Field(3).AppendNull()
		} else {
			t.rb.Field(3).(*array.Float32Builder).Append(q)
		}
		t.i32(4).Append(int32(r.Context))
		t.i32(5).Append(int32(r.Position))
		t.rb.Field(6).(*array.Float32Builder).Append(r.Activation)
		t.i32(7).Append(int32(r.WindowStart))
		appendI32List(t.rb.Field(8), r.TokenIDs)
		appendStrList(t.rb.Field(9), r.TokenTexts)
		appendF32List(t.rb.Field(10), r.Acts)
	}
	return nil
}

// WriteFeatureActs appends rows to feature_acts.
func (w *Writer) WriteFeatureActs(rows []FeatureActs) error {
	if err := w.begin(); err != nil {
		return err
	}
	return w.end(w.writeFeatureActs(rows))
}

func (w *Writer) writeFeatureActs(rows []FeatureActs) error {
	for _, r := range rows {
		if len(r.Latents) != len(r.Values) {
			return fmt.Errorf("feature acts of prompt %d position %d: %d latents, %d values", r.PromptID, r.Position, len(r.Latents), len(r.Values))
		}
	}
	t, err := w.tableNamed(string(KindFeatureActs))
	if err != nil {
		return err
	}
	for _, r := range rows {
		key := batchKey{prompt: int32(r.PromptID), layer: -1, head: -1}
		if err := t.startRow(key, 24+len(r.TokenText)+8*len(r.Latents)); err != nil {
			return err
		}
		t.i32(0).Append(int32(r.PromptID))
		t.i32(1).Append(int32(r.Position))
		t.i32(2).Append(r.TokenID)
		t.str(3).Append(r.TokenText)
		appendI32List(t.rb.Field(4), r.Latents)
		appendF32List(t.rb.Field(5), r.Values)
	}
	return nil
}

func listStr(l *array.List, i int) []string {
	lo, hi := l.ValueOffsets(i)
	s := l.ListValues().(*array.String)
	out := make([]string, 0, hi-lo)
	for j := lo; j < hi; j++ {
		out = append(out, s.Value(int(j)))
	}
	return out
}

func cloneI32(v []int32) []int32     { return append([]int32{}, v...) }
func cloneF32(v []float32) []float32 { return append([]float32{}, v...) }

// ReadFeatures returns every row of the features table (nil when the trace
// has none).
func (tr *Trace) ReadFeatures(ctx context.Context) (_ []FeatureRow, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer guard(tr.path, &err)
	name := string(KindFeatures)
	if _, ok := tr.TableInfo(name); !ok {
		return nil, nil
	}
	var out []FeatureRow
	for rec, err := range tr.Batches(ctx, name, Selector{}) {
		if err != nil {
			return nil, err
		}
		c := rec.Columns()
		lat, dens, mx, mean := c[0].(*array.Int32), c[1].(*array.Float64), c[2].(*array.Float32), c[3].(*array.Float32)
		hist, tid, ttx, tv := c[4].(*array.List), c[5].(*array.List), c[6].(*array.List), c[7].(*array.List)
		bid, btx, bv := c[8].(*array.List), c[9].(*array.List), c[10].(*array.List)
		for i := 0; i < int(rec.NumRows()); i++ {
			f := FeatureRow{Latent: int(lat.Value(i)), Density: dens.Value(i), MaxAct: mx.Value(i), MeanAct: mean.Value(i),
				HistCounts: cloneI32(listI32(hist, i)),
				TopIDs:     cloneI32(listI32(tid, i)), TopTexts: listStr(ttx, i), TopValues: cloneF32(listF32(tv, i)),
				BottomIDs: cloneI32(listI32(bid, i)), BottomTexts: listStr(btx, i), BottomValues: cloneF32(listF32(bv, i))}
			if len(f.TopTexts) != len(f.TopIDs) || len(f.TopValues) != len(f.TopIDs) ||
				len(f.BottomTexts) != len(f.BottomIDs) || len(f.BottomValues) != len(f.BottomIDs) {
				return nil, fmt.Errorf("store: read %s: %w: latent %d has top lists of %d ids, %d texts, %d logits and bottom lists of %d, %d, %d",
					SiblingPath(tr.path, name), ErrIncomplete, f.Latent, len(f.TopIDs), len(f.TopTexts), len(f.TopValues),
					len(f.BottomIDs), len(f.BottomTexts), len(f.BottomValues))
			}
			out = append(out, f)
		}
	}
	return out, nil
}

// ReadFeatureExamples returns the examples of one latent (latent < 0: of
// every latent), in file order.
func (tr *Trace) ReadFeatureExamples(ctx context.Context, latent int) (_ []FeatureExample, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer guard(tr.path, &err)
	name := string(KindFeatureExamples)
	if _, ok := tr.TableInfo(name); !ok {
		return nil, nil
	}
	var out []FeatureExample
	for rec, err := range tr.Batches(ctx, name, Selector{}) {
		if err != nil {
			return nil, err
		}
		c := rec.Columns()
		lat, kind, rank, q := c[0].(*array.Int32), c[1].(*array.String), c[2].(*array.Int32), c[3].(*array.Float32)
		cx, pos, act, ws := c[4].(*array.Int32), c[5].(*array.Int32), c[6].(*array.Float32), c[7].(*array.Int32)
		ids, texts, acts := c[8].(*array.List), c[9].(*array.List), c[10].(*array.List)
		for i := 0; i < int(rec.NumRows()); i++ {
			if latent >= 0 && int(lat.Value(i)) != latent {
				continue
			}
			e := FeatureExample{Latent: int(lat.Value(i)), Kind: kind.Value(i), Rank: int(rank.Value(i)), Quantile: float32(math.NaN()),
				Context: int(cx.Value(i)), Position: int(pos.Value(i)), Activation: act.Value(i), WindowStart: int(ws.Value(i)),
				TokenIDs: cloneI32(listI32(ids, i)), TokenTexts: listStr(texts, i), Acts: cloneF32(listF32(acts, i))}
			if q.IsValid(i) {
				e.Quantile = q.Value(i)
			}
			if len(e.TokenTexts) != len(e.TokenIDs) || len(e.Acts) != len(e.TokenIDs) {
				return nil, fmt.Errorf("store: read %s: %w: an example of latent %d has %d token ids, %d texts and %d activations",
					SiblingPath(tr.path, name), ErrIncomplete, e.Latent, len(e.TokenIDs), len(e.TokenTexts), len(e.Acts))
			}
			out = append(out, e)
		}
	}
	return out, nil
}

// ReadFeatureActs returns the feature_acts rows of one prompt (prompt < 0:
// every prompt).
func (tr *Trace) ReadFeatureActs(ctx context.Context, prompt int) (_ []FeatureActs, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer guard(tr.path, &err)
	name := string(KindFeatureActs)
	if _, ok := tr.TableInfo(name); !ok {
		return nil, nil
	}
	sel := Selector{}
	if prompt >= 0 {
		sel.Prompts = []int{prompt}
	}
	var out []FeatureActs
	for rec, err := range tr.Batches(ctx, name, sel) {
		if err != nil {
			return nil, err
		}
		c := rec.Columns()
		pid, pos, tok, txt := c[0].(*array.Int32), c[1].(*array.Int32), c[2].(*array.Int32), c[3].(*array.String)
		lat, val := c[4].(*array.List), c[5].(*array.List)
		for i := 0; i < int(rec.NumRows()); i++ {
			if prompt >= 0 && int(pid.Value(i)) != prompt {
				continue
			}
			a := FeatureActs{PromptID: int(pid.Value(i)), Position: int(pos.Value(i)), TokenID: tok.Value(i), TokenText: txt.Value(i),
				Latents: cloneI32(listI32(lat, i)), Values: cloneF32(listF32(val, i))}
			if len(a.Values) != len(a.Latents) {
				return nil, fmt.Errorf("store: read %s: %w: prompt %d position %d has %d latents and %d values",
					SiblingPath(tr.path, name), ErrIncomplete, a.PromptID, a.Position, len(a.Latents), len(a.Values))
			}
			out = append(out, a)
		}
	}
	return out, nil
}
