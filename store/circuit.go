package store

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime/debug"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// The circuit table (kind "circuit", table name "circuit"): what a circuit
// discovery method found, one row per graph node, per graph edge, or per
// summary figure (ROC AUC, wall time, ...). docs/schema.md gives the
// columns.

// Circuit row kinds.
const (
	CircuitNode   = "node"
	CircuitEdge   = "edge"
	CircuitFigure = "figure"
)

// CircuitRow is one row of the circuit table.
type CircuitRow struct {
	Method string // "patching", "acdc", "sae"
	Task   string // the task's name
	Kind   string // CircuitNode, CircuitEdge or CircuitFigure
	// Node is the node ("2.3", "mlp1", "embed", "logits") for a node row,
	// the sender for an edge row, the figure's name for a figure row.
	Node string
	// To is an edge's receiver ("" for the other kinds; stored as null).
	To string
	// Layer and Head locate a node row's head (Head -1 for other nodes,
	// both -1 for edges and figures).
	Layer, Head int
	Score       float64         // the method's score, or the figure's value
	InCircuit   bool            // the method puts it in the circuit
	Details     json.RawMessage // optional JSON; nil is stored as null
}

func circuitFields() []arrow.Field {
	return []arrow.Field{utf8("method", false), utf8("task", false), utf8("kind", false),
		utf8("node", false), utf8("to", true), i32(colLayer), i32(colHead),
		{Name: "score", Type: arrow.PrimitiveTypes.Float64},
		{Name: "in_circuit", Type: arrow.FixedWidthTypes.Boolean},
		utf8("details", true)}
}

// WriteCircuit appends circuit rows.
func (w *Writer) WriteCircuit(rows []CircuitRow) error {
	if err := w.begin(); err != nil {
		return err
	}
	return w.end(w.writeCircuit(rows))
}

func (w *Writer) writeCircuit(rows []CircuitRow) error {
	for _, r := range rows {
		switch r.Kind {
		case CircuitNode, CircuitEdge, CircuitFigure:
		default:
			return fmt.Errorf("circuit row %q: kind %q (want node, edge or figure)", r.Node, r.Kind)
		}
		if r.Method == "" || r.Node == "" {
			return fmt.Errorf("circuit row %q of method %q: method and node must be set", r.Node, r.Method)
		}
		if r.Details != nil && !json.Valid(r.Details) {
			return fmt.Errorf("circuit row %s: details are not valid JSON", r.Node)
		}
	}
	t, err := w.tableNamed(string(KindCircuit))
	if err != nil {
		return err
	}
	key := batchKey{prompt: -1, layer: -1, head: -1}
	for _, r := range rows {
		if err := t.startRow(key, 48+len(r.Method)+len(r.Task)+len(r.Node)+len(r.To)+len(r.Details)); err != nil {
			return err
		}
		t.str(0).Append(r.Method)
		t.str(1).Append(r.Task)
		t.str(2).Append(r.Kind)
		t.str(3).Append(r.Node)
		appendOptString(t.str(4), r.To)
		t.i32(5).Append(int32(r.Layer))
		t.i32(6).Append(int32(r.Head))
		t.rb.Field(7).(*array.Float64Builder).Append(r.Score)
		t.rb.Field(8).(*array.BooleanBuilder).Append(r.InCircuit)
		appendOptString(t.str(9), string(r.Details))
	}
	return nil
}

// ReadCircuit returns every row of the circuit table (nil when the trace
// has none).
func (tr *Trace) ReadCircuit(ctx context.Context) (_ []CircuitRow, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer guard(tr.path, &err)
	name := string(KindCircuit)
	if _, ok := tr.TableInfo(name); !ok {
		return nil, nil
	}
	var out []CircuitRow
	for rec, err := range tr.Batches(ctx, name, Selector{}) {
		if err != nil {
			return nil, err
		}
		c := rec.Columns()
		method, task, kind, node, to := c[0].(*array.String), c[1].(*array.String), c[2].(*array.String), c[3].(*array.String), c[4].(*array.String)
		layer, head, score, in, details := c[5].(*array.Int32), c[6].(*array.Int32), c[7].(*array.Float64), c[8].(*array.Boolean), c[9].(*array.String)
		for i := 0; i < int(rec.NumRows()); i++ {
			r := CircuitRow{Method: method.Value(i), Task: task.Value(i), Kind: kind.Value(i), Node: node.Value(i),
				Layer: int(layer.Value(i)), Head: int(head.Value(i)), Score: score.Value(i), InCircuit: in.Value(i)}
			if to.IsValid(i) {
				r.To = to.Value(i)
			}
			if details.IsValid(i) {
				d := details.Value(i)
				if !json.Valid([]byte(d)) {
					return nil, fmt.Errorf("store: read %s: %w: details of circuit row %s are not JSON", SiblingPath(tr.path, name), ErrIncomplete, r.Node)
				}
				r.Details = json.RawMessage(d)
			}
			out = append(out, r)
		}
	}
	return out, nil
}
