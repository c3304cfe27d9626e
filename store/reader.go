package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// ErrNotLoupe is wrapped by errors about files that are Arrow files but not
// Loupe ones (no or unknown loupe.* metadata).
var ErrNotLoupe = errors.New("not a Loupe trace file")

// ErrIncomplete is wrapped by errors about files that are not complete Arrow
// IPC files: truncated, still being written, or damaged.
var ErrIncomplete = errors.New("not a complete Arrow IPC file (truncated, damaged, or still being written)")

// maxAlloc bounds one buffer the reader allocates (a decompressed column),
// so that a damaged length can never ask for unbounded memory.
const maxAlloc = 1 << 30

// Table is one open Loupe Arrow file: one table of a trace. Its record
// batches are memory-mapped; reading one touches only its own bytes.
// Batches and the slices they hold are valid until Close.
type Table struct {
	path    string
	info    TableInfo
	schema  *arrow.Schema
	meta    map[string]string
	run     RunInfo
	data    []byte
	blocks  [][3]int64 // record batch blocks from the checked footer
	unmap   func() error
	fr      *ipc.FileReader
	mu      sync.Mutex // guards closed
	closed  bool
	traceID string
	main    string
	version int // the file's schema version
}

// OpenTable opens one Loupe Arrow file, main or sibling, on its own. It
// reads the footer and the schema only.
func OpenTable(path string) (*Table, error) {
	f, err := os.Open(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	data, unmap, err := mapFile(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("store: open %s: mmap: %w", path, err)
	}
	t, err := OpenTableBytes(path, data)
	if err != nil {
		unmap()
		return nil, err
	}
	t.unmap = unmap
	return t, nil
}

// OpenTableBytes opens a Loupe Arrow file held in memory (read from a
// network, say); name only names it in errors. data must not change while
// the table is open.
func OpenTableBytes(name string, data []byte) (t *Table, err error) {
	path := name
	defer func() {
		if p := recover(); p != nil {
			t, err = nil, fmt.Errorf("store: open %s: %w: %v", path, ErrIncomplete, p)
		}
	}()
	if len(data) < 6 || string(data[len(data)-6:]) != "ARROW1" {
		return nil, fmt.Errorf("store: open %s: %w: no Arrow file footer at the end", path, ErrIncomplete)
	}
	blocks, err := checkFooter(data)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w: %v", path, ErrIncomplete, err)
	}
	fr, err := ipc.NewMappedFileReader(data, ipc.WithAllocator(&cappedAllocator{memory.NewGoAllocator()}))
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w: %v", path, ErrIncomplete, err)
	}
	t = &Table{path: path, data: data, blocks: blocks, fr: fr, schema: fr.Schema(), meta: map[string]string{}}
	if err := t.checkSchema(); err != nil {
		fr.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	return t, nil
}

// checkSchema validates the loupe.* metadata and the columns.
func (t *Table) checkSchema() error {
	md := t.schema.Metadata()
	for i, k := range md.Keys() {
		t.meta[k] = md.Values()[i]
	}
	vs, ok := t.meta[MetaSchema]
	if !ok {
		return fmt.Errorf("%w: no %s in the schema metadata", ErrNotLoupe, MetaSchema)
	}
	v, err := strconv.Atoi(vs)
	if err != nil || v < 1 {
		return fmt.Errorf("%w: bad %s %q", ErrNotLoupe, MetaSchema, vs)
	}
	if v > SchemaVersion {
		return fmt.Errorf("schema version %d is newer than this Loupe reads (%d); update Loupe", v, SchemaVersion)
	}
	t.version = v
	t.info.Name = t.meta[MetaTable]
	t.info.Kind = Kind(t.meta[MetaKind])
	t.traceID = t.meta[MetaTraceID]
	t.main = t.meta[MetaMainTable]
	t.info.File = filepath.Base(t.path)
	t.info.Batches = t.fr.NumRecords()
	t.info.Rows = -1 // known from the trace's index (Trace.Table), not from one file
	if !safeTableName(t.info.Name) {
		return fmt.Errorf("%w: bad table name %q", ErrNotLoupe, t.info.Name)
	}
	if r, ok := t.meta[MetaRun]; ok {
		if err := json.Unmarshal([]byte(r), &t.run); err != nil {
			return fmt.Errorf("%w: bad %s: %v", ErrNotLoupe, MetaRun, err)
		}
	}
	var want []arrow.Field
	switch t.info.Kind {
	case KindActivations:
		shape, err := parseShape(t.meta[MetaShape])
		if err != nil {
			return fmt.Errorf("%w: %v", ErrNotLoupe, err)
		}
		dt := DType(t.meta[MetaDType])
		if dt != Float32 && dt != Float16 {
			return fmt.Errorf("%w: bad %s %q", ErrNotLoupe, MetaDType, dt)
		}
		t.info.Shape, t.info.DType = shape, dt
		want = activationFields(shape, dt)
	case KindFlow:
		want = fields(t.info.Kind)
		if v == 1 {
			want = flowFieldsV1()
		}
	case KindAblation:
		if v < 2 {
			return fmt.Errorf("%w: an ablation table in a schema v%d file (ablation tables came with v2)", ErrNotLoupe, v)
		}
		want = fields(t.info.Kind)
	case KindTokens, KindAttention, KindAttentionTopK, KindHeadScores, KindLogitLens, KindCircuit, KindIndex,
		KindFeatures, KindFeatureExamples, KindFeatureActs, KindCodes:
		want = fields(t.info.Kind)
	default:
		return fmt.Errorf("%w: unknown kind %q", ErrNotLoupe, t.info.Kind)
	}
	if t.schema.NumFields() != len(want) {
		return fmt.Errorf("%w: %s table has %d columns, want %d", ErrNotLoupe, t.info.Kind, t.schema.NumFields(), len(want))
	}
	for i, f := range want {
		got := t.schema.Field(i)
		if got.Name != f.Name || !arrow.TypeEqual(got.Type, f.Type) {
			return fmt.Errorf("%w: column %d is %s %s, want %s %s", ErrNotLoupe, i, got.Name, got.Type, f.Name, f.Type)
		}
	}
	return nil
}

// Path returns the file's path.
func (t *Table) Path() string { return t.path }

// SchemaVersion returns the schema version the file was written with.
func (t *Table) SchemaVersion() int { return t.version }

// Info describes the table. Rows is counted from the trace's index when the
// table was opened through Open, and -1 otherwise (counting would read).
func (t *Table) Info() TableInfo { return t.info }

// Schema returns the Arrow schema, metadata included.
func (t *Table) Schema() *arrow.Schema { return t.schema }

// Metadata returns the schema metadata as a map.
func (t *Table) Metadata() map[string]string { return t.meta }

// Run returns the run information stamped in the file.
func (t *Table) Run() RunInfo { return t.run }

// TraceID returns the id shared by the files of one write.
func (t *Table) TraceID() string { return t.traceID }

// MainTable returns the name of the table in the trace's main file.
func (t *Table) MainTable() string { return t.main }

// NumBatches returns the number of record batches.
func (t *Table) NumBatches() int { return t.fr.NumRecords() }

// Batch reads record batch i: it maps (or decompresses) only that batch's
// buffers and validates them. The caller must Release it.
func (t *Table) Batch(i int) (rec arrow.RecordBatch, err error) {
	t.mu.Lock()
	closed := t.closed
	t.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("store: read %s: table closed", t.path)
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			rec, err = nil, fmt.Errorf("store: read %s batch %d: %w: %v", t.path, i, ErrIncomplete, p)
		}
	}()
	if i >= 0 && i < len(t.blocks) {
		if err := checkMessage(t.data, t.blocks[i][0], t.blocks[i][1]); err != nil {
			return nil, fmt.Errorf("store: read %s batch %d: %w: %v", t.path, i, ErrIncomplete, err)
		}
	}
	rec, err = t.fr.RecordBatchAt(i)
	if err != nil {
		return nil, fmt.Errorf("store: read %s batch %d: %w: %v", t.path, i, ErrIncomplete, err)
	}
	if err := validateRecord(rec); err != nil {
		rec.Release()
		return nil, fmt.Errorf("store: read %s batch %d: %w: %v", t.path, i, ErrIncomplete, err)
	}
	return rec, nil
}

// All iterates over every record batch in order. Each batch is released
// when the loop body returns; Retain it to keep it.
func (t *Table) All(ctx context.Context) iter.Seq2[arrow.RecordBatch, error] {
	return func(yield func(arrow.RecordBatch, error) bool) {
		for i := 0; i < t.NumBatches(); i++ {
			if err := ctx.Err(); err != nil {
				yield(nil, err)
				return
			}
			rec, err := t.Batch(i)
			if err != nil {
				yield(nil, err)
				return
			}
			ok := yield(rec, nil)
			rec.Release()
			if !ok {
				return
			}
		}
	}
}

// Close unmaps the file. Batches read from it must not be used afterwards.
func (t *Table) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	t.fr.Close()
	if t.unmap != nil {
		if err := t.unmap(); err != nil {
			return fmt.Errorf("store: close %s: %w", t.path, err)
		}
	}
	return nil
}

// validateRecord checks what ipc does not: offsets, bitmaps and child
// lengths, so that reading values can never index out of range.
func validateRecord(rec arrow.RecordBatch) error {
	for i, col := range rec.Columns() {
		if int64(col.Len()) != rec.NumRows() {
			return fmt.Errorf("column %d has %d rows, batch %d", i, col.Len(), rec.NumRows())
		}
		if err := validateArray(col); err != nil {
			return fmt.Errorf("column %s: %v", rec.Schema().Field(i).Name, err)
		}
	}
	return nil
}

func validateArray(a arrow.Array) error {
	if a.NullN() > 0 {
		bm := a.NullBitmapBytes()
		if len(bm)*8 < a.Data().Offset()+a.Len() {
			return errors.New("validity bitmap too short")
		}
	}
	switch a := a.(type) {
	case *array.String:
		return a.ValidateFull()
	case *array.List:
		if err := a.ValidateFull(); err != nil {
			return err
		}
		return validateArray(a.ListValues())
	case *array.FixedSizeList:
		if err := a.ValidateFull(); err != nil {
			return err
		}
		n := a.DataType().(*arrow.FixedSizeListType).Len()
		if int64(a.ListValues().Len()) < int64(a.Data().Offset()+a.Len())*int64(n) {
			return errors.New("fixed-size list values too short")
		}
		return validateArray(a.ListValues())
	}
	return nil
}

// cappedAllocator refuses (by panicking, which the reader recovers) any
// allocation above maxAlloc.
type cappedAllocator struct{ memory.Allocator }

func (c *cappedAllocator) Allocate(n int) []byte {
	if n < 0 || n > maxAlloc {
		panic(fmt.Sprintf("buffer of %d bytes exceeds the reader's limit of %d", n, maxAlloc))
	}
	return c.Allocator.Allocate(n)
}

func (c *cappedAllocator) Reallocate(n int, b []byte) []byte {
	if n < 0 || n > maxAlloc {
		panic(fmt.Sprintf("buffer of %d bytes exceeds the reader's limit of %d", n, maxAlloc))
	}
	return c.Allocator.Reallocate(n, b)
}

// Trace is an open trace: its main file, its index, and its other tables,
// opened (memory-mapped) on first use. Opening reads the main file's
// footer and schema and the small index file, nothing else: Tables,
// Index, Prompts, Hooks and Layers say what the trace holds without
// touching its data.
type Trace struct {
	path    string
	main    *Table
	run     RunInfo
	infos   []TableInfo
	entries []IndexEntry

	mu     sync.Mutex
	tables map[string]*Table
}

// Open opens the trace whose main file is path.
func Open(path string) (*Trace, error) {
	main, err := OpenTable(path)
	if err != nil {
		return nil, err
	}
	tr := &Trace{path: path, main: main, run: main.run, tables: map[string]*Table{main.info.Name: main}}
	if main.main != main.info.Name {
		tr.Close()
		where := "its main file"
		if p, ok := mainPathOf(path, main.info.Name); ok {
			where = p
		}
		return nil, fmt.Errorf("store: open %s: this is the %q table of a trace whose main file (%s) holds %q; open %s instead",
			path, main.info.Name, where, main.main, where)
	}
	idx, err := tr.openSibling(string(KindIndex))
	if err != nil {
		tr.Close()
		return nil, err
	}
	if err := json.Unmarshal([]byte(idx.meta[MetaTables]), &tr.infos); err != nil {
		tr.Close()
		return nil, fmt.Errorf("store: open %s: %w: bad %s: %v", idx.path, ErrNotLoupe, MetaTables, err)
	}
	known := map[string]bool{}
	for i, in := range tr.infos {
		if in.Name == string(KindIndex) {
			// The index cannot count its own batches before writing them.
			tr.infos[i].Batches = idx.NumBatches()
		}
		if !safeTableName(in.Name) || known[in.Name] {
			tr.Close()
			return nil, fmt.Errorf("store: open %s: %w: bad table list", idx.path, ErrNotLoupe)
		}
		known[in.Name] = true
	}
	if !known[main.info.Name] {
		tr.Close()
		return nil, fmt.Errorf("store: open %s: %w: the index does not list the main table %q", idx.path, ErrNotLoupe, main.info.Name)
	}
	tr.entries, err = readIndex(context.Background(), idx)
	if err != nil {
		tr.Close()
		return nil, err
	}
	return tr, nil
}

// MainPath returns the main file of the trace that path is a file of: path
// itself for a main file, the main file for a sibling table
// ("t.attention.arrow" and "t.index.arrow" give "t.arrow"). It reads
// footers and schemas only, and checks that the main file exists and
// belongs to the same write.
func MainPath(path string) (string, error) {
	t, err := OpenTable(path)
	if err != nil {
		return "", err
	}
	name, mainTable, id := t.info.Name, t.main, t.traceID
	t.Close()
	if name == mainTable {
		return path, nil
	}
	main, ok := mainPathOf(path, name)
	if !ok {
		return "", fmt.Errorf("store: open %s: %w: it holds the %q table of a trace, but its name does not end in %q, so its main file cannot be found",
			path, ErrNotLoupe, name, "."+name+".arrow")
	}
	m, err := OpenTable(main)
	if err != nil {
		return "", fmt.Errorf("store: open %s: the %q table of a trace whose main file cannot be read: %w", path, name, err)
	}
	defer m.Close()
	if m.traceID != id {
		return "", fmt.Errorf("store: open %s: the %q table of another write of %s (trace id %s, the main file has %s): the trace is being rewritten, or its files were copied from different runs",
			path, name, main, id, m.traceID)
	}
	if m.info.Name != mainTable {
		return "", fmt.Errorf("store: open %s: %w: its main file %s holds %q, want %q", path, ErrNotLoupe, main, m.info.Name, mainTable)
	}
	return main, nil
}

// mainPathOf inverts SiblingPath: the main file of the sibling at path
// holding table name.
func mainPathOf(path, name string) (string, bool) {
	stem, ok := strings.CutSuffix(path, "."+name+".arrow")
	if !ok || stem == "" || strings.HasSuffix(stem, string(filepath.Separator)) {
		return "", false
	}
	return stem + ".arrow", true
}

// openSibling opens the file of a table and checks it belongs to this write.
func (tr *Trace) openSibling(name string) (*Table, error) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if t, ok := tr.tables[name]; ok {
		return t, nil
	}
	p := SiblingPath(tr.path, name)
	t, err := OpenTable(p)
	if err != nil {
		return nil, err
	}
	switch {
	case t.traceID != tr.main.traceID:
		t.Close()
		return nil, fmt.Errorf("store: open %s: it belongs to another write of this trace (trace id %s, main file %s has %s): the trace is being rewritten, or its files were copied from different runs",
			p, t.traceID, tr.path, tr.main.traceID)
	case t.info.Name != name:
		t.Close()
		return nil, fmt.Errorf("store: open %s: %w: holds table %q, want %q", p, ErrNotLoupe, t.info.Name, name)
	}
	tr.tables[name] = t
	return t, nil
}

func readIndex(ctx context.Context, idx *Table) ([]IndexEntry, error) {
	var out []IndexEntry
	for rec, err := range idx.All(ctx) {
		if err != nil {
			return nil, err
		}
		c := rec.Columns()
		table, batch := c[0].(*array.String), c[1].(*array.Int32)
		first, rows := c[2].(*array.Int64), c[3].(*array.Int64)
		prompt, hook := c[4].(*array.Int32), c[5].(*array.String)
		layer, head := c[6].(*array.Int32), c[7].(*array.Int32)
		for i := 0; i < int(rec.NumRows()); i++ {
			out = append(out, IndexEntry{
				Table: table.Value(i), Batch: int(batch.Value(i)), FirstRow: first.Value(i), Rows: rows.Value(i),
				PromptID: int(prompt.Value(i)), Hook: hook.Value(i), Layer: int(layer.Value(i)), Head: int(head.Value(i)),
			})
		}
	}
	return out, nil
}

// Path returns the main file's path.
func (tr *Trace) Path() string { return tr.path }

// Run returns how the trace was made.
func (tr *Trace) Run() RunInfo { return tr.run }

// SchemaVersion returns the schema version the trace was written with
// (its main file's).
func (tr *Trace) SchemaVersion() int { return tr.main.version }

// TraceID returns the id shared by all files of the trace.
func (tr *Trace) TraceID() string { return tr.main.traceID }

// MainTable returns the name of the table in the main file.
func (tr *Trace) MainTable() string { return tr.main.info.Name }

// Tables describes every table of the trace, the index included.
func (tr *Trace) Tables() []TableInfo { return slices.Clone(tr.infos) }

// TableInfo describes one table; ok is false if the trace has no such table.
func (tr *Trace) TableInfo(name string) (TableInfo, bool) {
	for _, in := range tr.infos {
		if in.Name == name {
			return in, true
		}
	}
	return TableInfo{}, false
}

// Index returns the batch index: one entry per record batch of every table.
func (tr *Trace) Index() []IndexEntry { return slices.Clone(tr.entries) }

// Table opens (memory-maps) one table of the trace; it stays open until
// the trace is closed.
func (tr *Trace) Table(name string) (*Table, error) {
	in, ok := tr.TableInfo(name)
	if !ok {
		return nil, fmt.Errorf("store: %s has no table %q", tr.path, name)
	}
	t, err := tr.openSibling(name)
	if err != nil {
		return nil, err
	}
	if t.NumBatches() != in.Batches {
		return nil, fmt.Errorf("store: open %s: %w: %d batches, the index says %d", t.path, ErrIncomplete, t.NumBatches(), in.Batches)
	}
	t.info.Rows = in.Rows
	return t, nil
}

// Prompts returns the prompt ids of the tokens and activations, sorted.
func (tr *Trace) Prompts() []int {
	return tr.distinct(func(e IndexEntry) (int, bool) { return e.PromptID, e.PromptID >= 0 })
}

// Layers returns the layers that appear in the trace's index, sorted.
func (tr *Trace) Layers() []int {
	return tr.distinct(func(e IndexEntry) (int, bool) { return e.Layer, e.Layer >= 0 })
}

// Hooks returns the activation hook names, sorted.
func (tr *Trace) Hooks() []string {
	seen := map[string]bool{}
	var out []string
	for _, e := range tr.entries {
		in, _ := tr.TableInfo(e.Table)
		if in.Kind == KindActivations && !seen[e.Hook] {
			seen[e.Hook] = true
			out = append(out, e.Hook)
		}
	}
	sort.Strings(out)
	return out
}

func (tr *Trace) distinct(f func(IndexEntry) (int, bool)) []int {
	seen := map[int]bool{}
	var out []int
	for _, e := range tr.entries {
		if v, ok := f(e); ok && !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	sort.Ints(out)
	return out
}

// Close closes every open table of the trace.
func (tr *Trace) Close() error {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var errs []error
	for _, t := range tr.tables {
		errs = append(errs, t.Close())
	}
	tr.tables = map[string]*Table{}
	return errors.Join(errs...)
}

// Selector picks rows by key. An empty list matches everything.
type Selector struct {
	Prompts []int
	Hooks   []string // activations: hook names
	Methods []string // flow: methods
	Layers  []int
	Heads   []int
}

// matchEntry reports whether a batch may hold selected rows; a -1 (or "")
// key in the index means several values and always may.
func (s Selector) matchEntry(kind Kind, e IndexEntry) bool {
	names, name := s.Hooks, e.Hook
	if kind == KindFlow {
		// Schema v1 indexes flow batches by "flow/head=3/from=2".
		names, name = s.Methods, strings.Split(e.Hook, "/")[0]
	}
	return matchInt(s.Prompts, e.PromptID, true) && matchStr(names, name) &&
		matchInt(s.Layers, e.Layer, true) && matchInt(s.Heads, e.Head, true)
}

func matchInt(list []int, v int, wild bool) bool {
	return len(list) == 0 || (wild && v == -1) || slices.Contains(list, v)
}

func matchStr(list []string, v string) bool {
	return len(list) == 0 || v == "" || slices.Contains(list, v)
}

// row reports whether one row is selected (no wildcards here).
func (s Selector) row(kind Kind, prompt int, name string, layer, head int) bool {
	names := s.Hooks
	if kind == KindFlow {
		names = s.Methods
	}
	return (len(s.Prompts) == 0 || slices.Contains(s.Prompts, prompt)) &&
		(len(names) == 0 || slices.Contains(names, name)) &&
		(len(s.Layers) == 0 || slices.Contains(s.Layers, layer)) &&
		(len(s.Heads) == 0 || slices.Contains(s.Heads, head))
}

// Batches iterates over the record batches of one table that may hold rows
// picked by sel, reading only those batches (found through the index).
// Rows inside a batch are not filtered: a batch that mixes heads, say, is
// given whole. Each batch is released when the loop body returns.
func (tr *Trace) Batches(ctx context.Context, table string, sel Selector) iter.Seq2[arrow.RecordBatch, error] {
	return func(yield func(arrow.RecordBatch, error) bool) {
		t, err := tr.Table(table)
		if err != nil {
			yield(nil, err)
			return
		}
		for _, e := range tr.entries {
			if e.Table != table || !sel.matchEntry(t.info.Kind, e) {
				continue
			}
			if err := ctx.Err(); err != nil {
				yield(nil, err)
				return
			}
			rec, err := t.Batch(e.Batch)
			if err != nil {
				yield(nil, err)
				return
			}
			ok := yield(rec, nil)
			rec.Release()
			if !ok {
				return
			}
		}
	}
}

// tablesOfKind lists the trace's tables of one kind.
func (tr *Trace) tablesOfKind(k Kind) []string {
	var out []string
	for _, in := range tr.infos {
		if in.Kind == k {
			out = append(out, in.Name)
		}
	}
	return out
}
