package store

import (
	"context"
	"fmt"
	"runtime/debug"
	"slices"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// KindCodes is the codes table: one row per code of a codebook, with how often it fires, on which
// tokens and in which contexts, and what it was found to stand for.
const KindCodes Kind = "codes"

// Code is one row of the codes table.
type Code struct {
	Source string // "codebook" or "sae"
	Hook   string // the site it reads, e.g. "blocks.1.hook_mlp_out"
	Group  int    // the head of a per-head codebook; 0 otherwise
	Code   int    // the code id
	// Count is how many of Positions positions it fired at.
	Count, Positions int64
	// TopTokens are the tokens it fired on most, with their counts and
	// texts (TopTexts may be nil).
	TopTokens, TopCounts []int32
	TopTexts             []string
	// Contexts are example firings: prompt id, position and a rendered
	// window of text around the token (marked with « »).
	ContextPrompts, ContextPositions []int32
	Contexts                         []string
	// Label, when known, is what the feature stands for ("state 42");
	// LabelPrecision is the fraction of its firings that carry the label
	// and LabelAP its average precision as a detector of the label.
	Label                   string
	LabelPrecision, LabelAP float32
}

func codeFields() []arrow.Field {
	i64 := func(n string) arrow.Field { return arrow.Field{Name: n, Type: arrow.PrimitiveTypes.Int64} }
	f32 := func(n string, null bool) arrow.Field {
		return arrow.Field{Name: n, Type: arrow.PrimitiveTypes.Float32, Nullable: null}
	}
	li := func(n string) arrow.Field {
		return arrow.Field{Name: n, Type: arrow.ListOf(arrow.PrimitiveTypes.Int32)}
	}
	ls := func(n string) arrow.Field { return arrow.Field{Name: n, Type: arrow.ListOf(arrow.BinaryTypes.String)} }
	return []arrow.Field{utf8("source", false), utf8(colHook, false), i32("group"), i32("code"),
		i64("count"), i64("positions"), f32("frequency", false),
		li("top_tokens"), li("top_counts"), ls("top_texts"),
		li("context_prompts"), li("context_positions"), ls("contexts"),
		utf8("label", true), f32("label_precision", true), f32("label_ap", true)}
}

// WriteCodes appends codes.
func (w *Writer) WriteCodes(fs []Code) error {
	if err := w.begin(); err != nil {
		return err
	}
	return w.end(w.writeCodes(fs))
}

func (w *Writer) writeCodes(fs []Code) error {
	for _, f := range fs {
		if len(f.TopCounts) != len(f.TopTokens) || len(f.TopTexts) > len(f.TopTokens) {
			return fmt.Errorf("code %s %d: %d top tokens, %d counts, %d texts", f.Hook, f.Code, len(f.TopTokens), len(f.TopCounts), len(f.TopTexts))
		}
		if len(f.ContextPositions) != len(f.ContextPrompts) || len(f.Contexts) != len(f.ContextPrompts) {
			return fmt.Errorf("code %s %d: %d context prompts, %d positions, %d texts", f.Hook, f.Code, len(f.ContextPrompts), len(f.ContextPositions), len(f.Contexts))
		}
	}
	t, err := w.tableNamed(string(KindCodes))
	if err != nil {
		return err
	}
	key := batchKey{prompt: -1, layer: -1, head: -1}
	for _, f := range fs {
		n := 64 + len(f.Hook) + 8*len(f.TopTokens) + 8*len(f.ContextPrompts)
		for _, s := range f.Contexts {
			n += len(s)
		}
		if err := t.startRow(key, n); err != nil {
			return err
		}
		t.str(0).Append(f.Source)
		t.str(1).Append(f.Hook)
		t.i32(2).Append(int32(f.Group))
		t.i32(3).Append(int32(f.Code))
		t.rb.Field(4).(*array.Int64Builder).Append(f.Count)
		t.rb.Field(5).(*array.Int64Builder).Append(f.Positions)
		freq := float32(0)
		if f.Positions > 0 {
			freq = float32(float64(f.Count) / float64(f.Positions))
		}
		t.rb.Field(6).(*array.Float32Builder).Append(freq)
		appendI32List(t.rb.Field(7), f.TopTokens)
		appendI32List(t.rb.Field(8), f.TopCounts)
		texts := make([]string, len(f.TopTokens))
		copy(texts, f.TopTexts)
		appendStrList(t.rb.Field(9), texts)
		appendI32List(t.rb.Field(10), f.ContextPrompts)
		appendI32List(t.rb.Field(11), f.ContextPositions)
		appendStrList(t.rb.Field(12), f.Contexts)
		appendOptString(t.str(13), f.Label)
		for i, v := range []float32{f.LabelPrecision, f.LabelAP} {
			b := t.rb.Field(14 + i).(*array.Float32Builder)
			if f.Label == "" {
				b.AppendNull()
			} else {
				b.Append(v)
			}
		}
	}
	return nil
}

// ReadCodes returns every code of the trace (none when it has no codes
// table).
func (tr *Trace) ReadCodes(ctx context.Context) (_ []Code, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer guard(tr.path, &err)
	name := string(KindCodes)
	if _, ok := tr.TableInfo(name); !ok {
		return nil, nil
	}
	var out []Code
	for rec, err := range tr.Batches(ctx, name, Selector{}) {
		if err != nil {
			return nil, err
		}
		c := rec.Columns()
		for i := 0; i < int(rec.NumRows()); i++ {
			f := Code{
				Source: c[0].(*array.String).Value(i), Hook: c[1].(*array.String).Value(i),
				Group: int(c[2].(*array.Int32).Value(i)), Code: int(c[3].(*array.Int32).Value(i)),
				Count: c[4].(*array.Int64).Value(i), Positions: c[5].(*array.Int64).Value(i),
				TopTokens: slices.Clone(listI32(c[7].(*array.List), i)), TopCounts: slices.Clone(listI32(c[8].(*array.List), i)),
				TopTexts:       listStr(c[9].(*array.List), i),
				ContextPrompts: slices.Clone(listI32(c[10].(*array.List), i)), ContextPositions: slices.Clone(listI32(c[11].(*array.List), i)),
				Contexts: listStr(c[12].(*array.List), i),
			}
			if l := c[13].(*array.String); l.IsValid(i) {
				f.Label = l.Value(i)
				f.LabelPrecision = c[14].(*array.Float32).Value(i)
				f.LabelAP = c[15].(*array.Float32).Value(i)
			}
			out = append(out, f)
		}
	}
	return out, nil
}
