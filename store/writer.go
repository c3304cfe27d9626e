package store

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/float16"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// Compression is the codec applied to the record batch buffers.
type Compression string

// Codecs. The zero value means Zstd.
const (
	None Compression = "none"
	Zstd Compression = "zstd"
	LZ4  Compression = "lz4"
)

// Default limits on one record batch.
const (
	DefaultMaxBatchBytes = 8 << 20
	DefaultMaxBatchRows  = 1 << 16
)

// Options tune a Writer. The zero value is ready to use.
type Options struct {
	// MainTable names the table written to the path given to Create; every
	// other table goes to a sibling file (see SiblingPath). Default "tokens".
	MainTable string
	// Compression of every file. Default Zstd.
	Compression Compression
	// ActivationDType is the element type activations are stored as.
	// Default Float32.
	ActivationDType DType
	// MaxBatchBytes and MaxBatchRows bound one record batch, and so the
	// memory the writer holds per table. Defaults DefaultMaxBatchBytes and
	// DefaultMaxBatchRows.
	MaxBatchBytes int
	MaxBatchRows  int
	// CompressWorkers compresses a batch's buffers in parallel. Default 1.
	CompressWorkers int
}

func (o *Options) fill() error {
	if o.MainTable == "" {
		o.MainTable = string(KindTokens)
	}
	if !validTableName(o.MainTable) || o.MainTable == string(KindIndex) {
		return fmt.Errorf("store: invalid main table %q", o.MainTable)
	}
	switch o.Compression {
	case "":
		o.Compression = Zstd
	case None, Zstd, LZ4:
	default:
		return fmt.Errorf("store: unknown compression %q (want none, zstd or lz4)", o.Compression)
	}
	switch o.ActivationDType {
	case "":
		o.ActivationDType = Float32
	case Float32, Float16:
	default:
		return fmt.Errorf("store: unknown activation dtype %q (want float32 or float16)", o.ActivationDType)
	}
	if o.MaxBatchBytes <= 0 {
		o.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if o.MaxBatchRows <= 0 {
		o.MaxBatchRows = DefaultMaxBatchRows
	}
	if o.CompressWorkers <= 0 {
		o.CompressWorkers = 1
	}
	return nil
}

// Writer streams one trace to disk. Each table is written record batch by
// record batch to a temporary file next to its final path; nothing is
// visible under the final names until Commit. Memory use is bounded by
// one pending batch per table, whatever the trace size.
//
// A Writer is safe for concurrent use. After an error every later call
// returns that error; call Abort (or Close) to remove the temporary files.
type Writer struct {
	mu      sync.Mutex
	path    string
	opts    Options
	traceID string
	run     []byte
	mem     memory.Allocator
	tables  map[string]*tableWriter
	err     error // sticky
	done    bool
	cleaned []Temp // dead writers' temporaries Create found in the folder
}

// Create starts a trace whose main file is path (conventionally *.arrow).
// The main table's file is created at once, as a temporary file in path's
// folder; others are created on first write.
func Create(path string, run RunInfo, opts Options) (*Writer, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	if !strings.HasSuffix(path, ".arrow") {
		return nil, fmt.Errorf("store: create %s: the main file's name must end in .arrow", path)
	}
	if run.CreatedAt.IsZero() {
		run.CreatedAt = time.Now()
	}
	run.CreatedAt = run.CreatedAt.UTC()
	runJSON, err := json.Marshal(run)
	if err != nil {
		return nil, fmt.Errorf("store: create %s: run info: %w", path, err)
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("store: create %s: %w", path, err)
	}
	w := &Writer{
		path:    path,
		opts:    opts,
		traceID: hex.EncodeToString(id[:]),
		run:     runJSON,
		mem:     memory.NewGoAllocator(),
		tables:  map[string]*tableWriter{},
	}
	info, err := w.infoFor(opts.MainTable)
	if err != nil {
		return nil, err
	}
	// A writer killed mid-write leaves its temporaries; the next writer in
	// the folder removes them. A failure here only leaves them in place.
	w.cleaned, _ = CleanTemps(filepath.Dir(path))
	if _, err := w.table(info, nil); err != nil {
		return nil, err
	}
	return w, nil
}

// Cleaned returns the temporary files of dead writers that Create found in
// the trace's folder, and whether it removed each (it cannot tell a dead
// writer from a live one where the file system has no flock).
func (w *Writer) Cleaned() []Temp { return w.cleaned }

// TraceID returns the random id stamped on every file of this write.
func (w *Writer) TraceID() string { return w.traceID }

// infoFor derives a table's description from its name.
func (w *Writer) infoFor(name string) (TableInfo, error) {
	if !validTableName(name) {
		return TableInfo{}, fmt.Errorf("store: invalid table name %q", name)
	}
	info := TableInfo{Name: name, Kind: Kind(name), Compression: string(w.opts.Compression)}
	if rest, ok := strings.CutPrefix(name, string(KindActivations)+"."); ok {
		info.Kind = KindActivations
		info.DType = w.opts.ActivationDType
		for _, d := range strings.Split(rest, "x") {
			n, err := strconv.Atoi(d)
			if err != nil || n <= 0 {
				return TableInfo{}, fmt.Errorf("store: invalid table name %q", name)
			}
			info.Shape = append(info.Shape, n)
		}
	}
	return info, nil
}

func (w *Writer) filePath(name string) string {
	if name == w.opts.MainTable {
		return w.path
	}
	return SiblingPath(w.path, name)
}

// table returns the writer of a table, creating its temporary file. extra
// holds schema metadata to add, as key, value pairs.
func (w *Writer) table(info TableInfo, extra []string) (*tableWriter, error) {
	if t, ok := w.tables[info.Name]; ok {
		return t, nil
	}
	final := w.filePath(info.Name)
	info.File = filepath.Base(final)
	tmp := filepath.Join(filepath.Dir(final), "."+info.File+".tmp-"+w.traceID[:12])
	f, err := createLockedTemp(tmp)
	if err != nil {
		return nil, fmt.Errorf("store: create %s: %w", final, err)
	}
	schema := tableSchema(info, w.opts.MainTable, w.traceID, w.run, extra)
	cw := &countWriter{w: bufio.NewWriterSize(f, 1<<20)}
	ipcOpts := []ipc.Option{ipc.WithSchema(schema), ipc.WithAllocator(w.mem), ipc.WithCompressConcurrency(w.opts.CompressWorkers)}
	switch w.opts.Compression {
	case Zstd:
		ipcOpts = append(ipcOpts, ipc.WithZstd())
	case LZ4:
		ipcOpts = append(ipcOpts, ipc.WithLZ4())
	}
	fw, err := ipc.NewFileWriter(cw, ipcOpts...)
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("store: create %s: %w", final, err)
	}
	t := &tableWriter{
		info:   info,
		final:  final,
		tmp:    tmp,
		f:      f,
		cw:     cw,
		fw:     fw,
		schema: schema,
		rb:     array.NewRecordBuilder(w.mem, schema),
		maxB:   w.opts.MaxBatchBytes,
		maxR:   w.opts.MaxBatchRows,
	}
	if info.Kind == KindActivations {
		t.act = &actBatch{hookOffsets: []int32{0}}
	}
	w.tables[info.Name] = t
	return t, nil
}

// createLockedTemp creates a temporary file and takes its lock (lockTemp)
// under the folder's lock, so that CleanTemps, which holds the folder's
// lock too, never sees it unlocked.
func createLockedTemp(tmp string) (*os.File, error) {
	unlock, err := lockDir(filepath.Dir(tmp))
	if err != nil {
		return nil, err
	}
	defer unlock()
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	if _, err := lockTemp(f); err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, err
	}
	return f, nil
}

// begin takes the lock and checks the writer is usable.
func (w *Writer) begin() error {
	w.mu.Lock()
	if w.done {
		w.mu.Unlock()
		return fmt.Errorf("store: write %s: writer already committed or aborted", w.path)
	}
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	return nil
}

// end records a failure (sticky) and releases the lock. Errors about the
// input get the trace's path in front and leave the writer usable.
func (w *Writer) end(err error) error {
	if err != nil && !strings.HasPrefix(err.Error(), "store: ") {
		// Bad input is refused before any row is taken: not sticky.
		w.mu.Unlock()
		return fmt.Errorf("store: write %s: %w", w.path, err)
	}
	if err != nil && w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
	return err
}

func (w *Writer) tableNamed(name string) (*tableWriter, error) {
	info, err := w.infoFor(name)
	if err != nil {
		return nil, err
	}
	return w.table(info, nil)
}

// WriteTokens appends one prompt's tokens.
func (w *Writer) WriteTokens(tk Tokens) error {
	if err := w.begin(); err != nil {
		return err
	}
	return w.end(w.writeTokens(tk))
}

func (w *Writer) writeTokens(tk Tokens) error {
	if len(tk.Texts) > len(tk.IDs) {
		return fmt.Errorf("tokens of prompt %d: %d texts for %d ids", tk.PromptID, len(tk.Texts), len(tk.IDs))
	}
	t, err := w.tableNamed(string(KindTokens))
	if err != nil {
		return err
	}
	key := batchKey{prompt: int32(tk.PromptID), layer: -1, head: -1}
	for i, id := range tk.IDs {
		text := ""
		if i < len(tk.Texts) {
			text = tk.Texts[i]
		}
		if err := t.startRow(key, 16+len(text)); err != nil {
			return err
		}
		t.i32(0).Append(int32(tk.PromptID))
		t.i32(1).Append(int32(tk.Start + i))
		t.i32(2).Append(int32(id))
		t.str(3).Append(text)
	}
	return nil
}

// WriteActivation appends one hook's activation for one prompt. Rows go to
// the activations table of a's trailing shape (see ActivationTableName).
func (w *Writer) WriteActivation(a Activation) error {
	if err := w.begin(); err != nil {
		return err
	}
	return w.end(w.writeActivation(&a))
}

func (w *Writer) writeActivation(a *Activation) error {
	n := prod(a.Shape)
	if len(a.Shape) == 0 || n <= 0 {
		return fmt.Errorf("activation %s prompt %d: bad shape %v", a.Hook, a.PromptID, a.Shape)
	}
	if len(a.Values)%n != 0 {
		return fmt.Errorf("activation %s prompt %d: %d values is not a multiple of shape %v", a.Hook, a.PromptID, len(a.Values), a.Shape)
	}
	rows := len(a.Values) / n
	if a.Positions != nil && len(a.Positions) != rows {
		return fmt.Errorf("activation %s prompt %d: %d positions for %d rows", a.Hook, a.PromptID, len(a.Positions), rows)
	}
	if a.Hook == "" {
		return fmt.Errorf("activation of prompt %d: empty hook name", a.PromptID)
	}
	t, err := w.tableNamed(ActivationTableName(a.Shape))
	if err != nil {
		return err
	}
	key := batchKey{prompt: int32(a.PromptID), hook: a.Hook, layer: int32(a.Layer), head: int32(a.Head)}
	elem := 4
	if t.info.DType == Float16 {
		elem = 2
	}
	rowBytes := 24 + len(a.Hook) + n*elem
	for r := 0; r < rows; {
		// Append as many rows as fit in the pending batch in one go.
		if err := t.startRow(key, rowBytes); err != nil {
			return err
		}
		m := t.room(rowBytes)
		m = min(m, rows-r)
		ab := t.act
		for i := 0; i < m; i++ {
			pos := a.Start + r + i
			if a.Positions != nil {
				pos = a.Positions[r+i]
			}
			ab.hookData = append(ab.hookData, a.Hook...)
			ab.hookOffsets = append(ab.hookOffsets, int32(len(ab.hookData)))
			ab.layer = append(ab.layer, int32(a.Layer))
			ab.head = append(ab.head, int32(a.Head))
			ab.prompt = append(ab.prompt, int32(a.PromptID))
			ab.pos = append(ab.pos, int32(pos))
		}
		vals := a.Values[r*n : (r+m)*n]
		if t.info.DType == Float16 {
			for _, v := range vals {
				ab.f16 = append(ab.f16, float16.New(v))
			}
		} else {
			ab.f32 = append(ab.f32, vals...)
		}
		t.added(m-1, (m-1)*rowBytes) // startRow counted the first row
		r += m
	}
	return nil
}

// WriteAttention appends one head's full attention pattern on one prompt.
func (w *Writer) WriteAttention(at Attention) error {
	if err := w.begin(); err != nil {
		return err
	}
	return w.end(w.writeAttention(&at))
}

func (w *Writer) writeAttention(at *Attention) error {
	if at.Queries < 0 || at.Keys <= 0 || at.Queries > at.Keys || len(at.Weights) != at.Queries*at.Keys {
		return fmt.Errorf("attention prompt %d layer %d head %d: %d weights for %d queries x %d keys",
			at.PromptID, at.Layer, at.Head, len(at.Weights), at.Queries, at.Keys)
	}
	t, err := w.tableNamed(string(KindAttention))
	if err != nil {
		return err
	}
	key := batchKey{prompt: int32(at.PromptID), layer: int32(at.Layer), head: -1}
	for i := 0; i < at.Queries; i++ {
		qpos := at.Keys - at.Queries + i
		row := at.Weights[i*at.Keys : (i+1)*at.Keys]
		if at.Causal {
			row = row[:qpos+1]
		}
		if err := t.startRow(key, 24+4*len(row)); err != nil {
			return err
		}
		t.i32(0).Append(int32(at.PromptID))
		t.i32(1).Append(int32(at.Layer))
		t.i32(2).Append(int32(at.Head))
		t.i32(3).Append(int32(qpos))
		t.i32(4).Append(int32(at.Keys))
		appendF32List(t.rb.Field(5), row)
	}
	return nil
}

// WriteAttentionTopK appends one head's top-k attended keys on one prompt.
func (w *Writer) WriteAttentionTopK(at AttentionTopK) error {
	if err := w.begin(); err != nil {
		return err
	}
	return w.end(w.writeAttentionTopK(&at))
}

func (w *Writer) writeAttentionTopK(at *AttentionTopK) error {
	q := len(at.QueryPos)
	if at.K <= 0 || len(at.KeyPos) != q*at.K || len(at.Weight) != q*at.K {
		return fmt.Errorf("top-k attention prompt %d layer %d head %d: %d keys and %d weights for %d queries x k=%d",
			at.PromptID, at.Layer, at.Head, len(at.KeyPos), len(at.Weight), q, at.K)
	}
	t, err := w.tableNamed(string(KindAttentionTopK))
	if err != nil {
		return err
	}
	key := batchKey{prompt: int32(at.PromptID), layer: int32(at.Layer), head: -1}
	for i := 0; i < q; i++ {
		keys := at.KeyPos[i*at.K : (i+1)*at.K]
		ws := at.Weight[i*at.K : (i+1)*at.K]
		n := 0
		for n < len(keys) && keys[n] >= 0 {
			n++
		}
		if err := t.startRow(key, 20+8*n); err != nil {
			return err
		}
		t.i32(0).Append(int32(at.PromptID))
		t.i32(1).Append(int32(at.Layer))
		t.i32(2).Append(int32(at.Head))
		t.i32(3).Append(int32(at.QueryPos[i]))
		kb := t.rb.Field(4).(*array.ListBuilder)
		kb.Append(true)
		kb.ValueBuilder().(*array.Int32Builder).AppendValues(keys[:n], nil)
		appendF32List(t.rb.Field(5), ws[:n])
	}
	return nil
}

// WriteHeadScores appends head scores.
func (w *Writer) WriteHeadScores(scores []HeadScore) error {
	if err := w.begin(); err != nil {
		return err
	}
	return w.end(w.writeHeadScores(scores))
}

func (w *Writer) writeHeadScores(scores []HeadScore) error {
	for _, s := range scores {
		if s.Details != nil && !json.Valid(s.Details) {
			return fmt.Errorf("head score %s layer %d head %d: details are not valid JSON", s.Score, s.Layer, s.Head)
		}
	}
	t, err := w.tableNamed(string(KindHeadScores))
	if err != nil {
		return err
	}
	key := batchKey{prompt: -1, layer: -1, head: -1}
	for _, s := range scores {
		if err := t.startRow(key, 32+len(s.Score)+len(s.Label)+len(s.Details)); err != nil {
			return err
		}
		t.i32(0).Append(int32(s.Layer))
		t.i32(1).Append(int32(s.Head))
		t.str(2).Append(s.Score)
		t.rb.Field(3).(*array.Float64Builder).Append(s.Value)
		appendOptString(t.str(4), s.Label)
		appendOptString(t.str(5), string(s.Details))
	}
	return nil
}

// WriteFlow appends one rollout or flow matrix.
func (w *Writer) WriteFlow(m FlowMatrix) error {
	if err := w.begin(); err != nil {
		return err
	}
	return w.end(w.writeFlow(&m))
}

func (w *Writer) writeFlow(m *FlowMatrix) error {
	what := fmt.Sprintf("flow %q prompt %d layer %d", m.Method, m.PromptID, m.Layer)
	switch {
	case m.Rows < 0 || m.Cols < 0 || len(m.Values) != m.Rows*m.Cols || m.Method == "":
		return fmt.Errorf("%s: %d values for %d x %d", what, len(m.Values), m.Rows, m.Cols)
	case m.Outputs != nil && len(m.Outputs) != m.Rows:
		return fmt.Errorf("%s: %d output positions for %d rows", what, len(m.Outputs), m.Rows)
	case m.Head < HeadsAveraged:
		return fmt.Errorf("%s: head %d (want a head, or %d for the average)", what, m.Head, HeadsAveraged)
	case m.FromLayer < 0 || m.ToLayer <= m.FromLayer:
		return fmt.Errorf("%s: layers %d..%d (want 0 <= from_layer < to_layer)", what, m.FromLayer, m.ToLayer)
	}
	t, err := w.tableNamed(string(KindFlow))
	if err != nil {
		return err
	}
	key := batchKey{prompt: int32(m.PromptID), hook: m.Method, layer: int32(m.Layer), head: int32(m.Head)}
	for r := 0; r < m.Rows; r++ {
		if err := t.startRow(key, 32+len(m.Method)+4*m.Cols); err != nil {
			return err
		}
		t.i32(0).Append(int32(m.PromptID))
		t.str(1).Append(m.Method)
		t.i32(2).Append(int32(m.Layer))
		t.i32(3).Append(int32(m.Head))
		t.i32(4).Append(int32(m.FromLayer))
		t.i32(5).Append(int32(m.ToLayer))
		t.i32(6).Append(int32(m.OutputPos(r)))
		appendF32List(t.rb.Field(7), m.Values[r*m.Cols:(r+1)*m.Cols])
	}
	return nil
}

// WriteLogitLens appends the logit lens of one prompt at one layer.
func (w *Writer) WriteLogitLens(l LogitLens) error {
	if err := w.begin(); err != nil {
		return err
	}
	return w.end(w.writeLogitLens(&l))
}

func (w *Writer) writeLogitLens(l *LogitLens) error {
	q := len(l.Positions)
	if l.K <= 0 || len(l.TargetProb) != q || len(l.TopIDs) != q*l.K || len(l.TopProbs) != q*l.K || (l.TopTexts != nil && len(l.TopTexts) != q*l.K) {
		return fmt.Errorf("logit lens prompt %d layer %d: sizes do not match %d positions x k=%d", l.PromptID, l.Layer, q, l.K)
	}
	t, err := w.tableNamed(string(KindLogitLens))
	if err != nil {
		return err
	}
	key := batchKey{prompt: int32(l.PromptID), layer: int32(l.Layer), head: -1}
	for i := 0; i < q; i++ {
		ids := l.TopIDs[i*l.K : (i+1)*l.K]
		n := 0
		for n < len(ids) && ids[n] >= 0 {
			n++
		}
		if err := t.startRow(key, 20+16*n); err != nil {
			return err
		}
		t.i32(0).Append(int32(l.PromptID))
		t.i32(1).Append(int32(l.Layer))
		t.i32(2).Append(int32(l.Positions[i]))
		if p := l.TargetProb[i]; p != p {
			t.rb.Field(3).AppendNull()
		} else {
			t.rb.Field(3).(*array.Float32Builder).Append(p)
		}
		kb := t.rb.Field(4).(*array.ListBuilder)
		kb.Append(true)
		kb.ValueBuilder().(*array.Int32Builder).AppendValues(ids[:n], nil)
		appendF32List(t.rb.Field(5), l.TopProbs[i*l.K:i*l.K+n])
		tb := t.rb.Field(6).(*array.ListBuilder)
		tb.Append(true)
		sb := tb.ValueBuilder().(*array.StringBuilder)
		for j := 0; j < n; j++ {
			if l.TopTexts != nil {
				sb.Append(l.TopTexts[i*l.K+j])
			} else {
				sb.Append("")
			}
		}
	}
	return nil
}

// Commit finishes every file, makes it durable (fsync), and moves it to its
// final name: the sibling files and the index first, the main file last, in
// one critical section locked against other writers of the same folder.
// Sibling files of an earlier trace at the same path that this write does
// not replace are removed. On error or cancellation nothing under the
// final names is touched and the temporary files are removed.
func (w *Writer) Commit(ctx context.Context) error {
	if err := w.begin(); err != nil {
		return err
	}
	err := w.commit(ctx)
	w.done = true
	// Close every file (and so drop its lock) only now, after the renames:
	// a temporary file is never unlocked while its writer lives. Files not
	// renamed (an error) are removed.
	w.removeTemps()
	w.mu.Unlock()
	return err
}

func (w *Writer) commit(ctx context.Context) error {
	// Flush pending batches and collect the index.
	names := make([]string, 0, len(w.tables))
	for name := range w.tables {
		names = append(names, name)
	}
	sort.Strings(names)
	var index []IndexEntry
	var infos []TableInfo
	for _, name := range names {
		t := w.tables[name]
		if err := t.flush(); err != nil {
			return err
		}
		index = append(index, t.index...)
		infos = append(infos, t.info)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: commit %s: %w", w.path, err)
	}
	// The index table.
	idxInfo := TableInfo{Name: string(KindIndex), Kind: KindIndex, Compression: string(w.opts.Compression)}
	tablesJSON, err := json.Marshal(append(infos, TableInfo{Name: idxInfo.Name, Kind: KindIndex, File: filepath.Base(SiblingPath(w.path, idxInfo.Name)), Compression: idxInfo.Compression, Rows: int64(len(index))}))
	if err != nil {
		return fmt.Errorf("store: commit %s: %w", w.path, err)
	}
	it, err := w.table(idxInfo, []string{MetaTables, string(tablesJSON)})
	if err != nil {
		return err
	}
	for _, e := range index {
		if err := it.startRow(batchKey{prompt: -1, layer: -1, head: -1}, 64+len(e.Table)+len(e.Hook)); err != nil {
			return err
		}
		it.str(0).Append(e.Table)
		it.i32(1).Append(int32(e.Batch))
		it.rb.Field(2).(*array.Int64Builder).Append(e.FirstRow)
		it.rb.Field(3).(*array.Int64Builder).Append(e.Rows)
		it.i32(4).Append(int32(e.PromptID))
		it.str(5).Append(e.Hook)
		it.i32(6).Append(int32(e.Layer))
		it.i32(7).Append(int32(e.Head))
	}
	if err := it.flush(); err != nil {
		return err
	}
	it.index = nil
	// Close and fsync every temporary file.
	all := append(names, idxInfo.Name)
	for _, name := range all {
		if err := w.tables[name].finish(); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("store: commit %s: %w", w.path, err)
		}
	}
	// Publish: siblings, then the index, then the main file.
	dir := filepath.Dir(w.path)
	unlock, err := lockDir(dir)
	if err != nil {
		return fmt.Errorf("store: commit %s: lock %s: %w", w.path, dir, err)
	}
	defer unlock()
	order := make([]string, 0, len(all))
	for _, name := range names {
		if name != w.opts.MainTable {
			order = append(order, name)
		}
	}
	order = append(order, idxInfo.Name)
	for _, name := range order {
		t := w.tables[name]
		if err := os.Rename(t.tmp, t.final); err != nil {
			return fmt.Errorf("store: commit %s: %w", t.final, err)
		}
		t.renamed = true
	}
	w.removeStaleSiblings(all)
	mt := w.tables[w.opts.MainTable]
	if err := os.Rename(mt.tmp, mt.final); err != nil {
		return fmt.Errorf("store: commit %s: %w", mt.final, err)
	}
	mt.renamed = true
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("store: commit %s: sync folder: %w", w.path, err)
	}
	return nil
}

// removeStaleSiblings deletes sibling files of an earlier trace at the same
// path whose tables this write does not have, so the folder never mixes two
// writes. Errors are ignored: the reader checks trace ids anyway.
func (w *Writer) removeStaleSiblings(keep []string) {
	prefix := strings.TrimSuffix(filepath.Base(w.path), ".arrow") + "."
	entries, err := os.ReadDir(filepath.Dir(w.path))
	if err != nil {
		return
	}
	kept := map[string]bool{}
	for _, k := range keep {
		kept[k] = true
	}
	for _, e := range entries {
		name, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok {
			continue
		}
		name, ok = strings.CutSuffix(name, ".arrow")
		if !ok || !validTableName(name) || kept[name] {
			continue
		}
		os.Remove(filepath.Join(filepath.Dir(w.path), e.Name()))
	}
}

// Abort stops the write and removes the temporary files. Files under the
// final names (an earlier trace) are left as they were. Abort after Commit
// does nothing.
func (w *Writer) Abort() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return nil
	}
	w.done = true
	w.removeTemps()
	return nil
}

// Close is Abort: deferring it makes every early return clean up.
func (w *Writer) Close() error { return w.Abort() }

func (w *Writer) removeTemps() {
	for _, t := range w.tables {
		t.discard()
	}
}

// batchKey is what all rows of one record batch share; the index stores it.
type batchKey struct {
	prompt      int32
	hook        string
	layer, head int32
}

// tableWriter streams one table to its temporary file.
type tableWriter struct {
	info    TableInfo
	final   string
	tmp     string
	f       *os.File
	cw      *countWriter
	fw      *ipc.FileWriter
	schema  *arrow.Schema
	rb      *array.RecordBuilder // every kind but activations
	act     *actBatch            // activations
	maxB    int
	maxR    int
	key     batchKey
	rows    int // pending rows
	bytes   int // pending bytes (estimate)
	written int64
	index   []IndexEntry
	closed  bool
	renamed bool
}

func (t *tableWriter) i32(i int) *array.Int32Builder  { return t.rb.Field(i).(*array.Int32Builder) }
func (t *tableWriter) str(i int) *array.StringBuilder { return t.rb.Field(i).(*array.StringBuilder) }

// startRow makes room for one row of about n bytes with the given key,
// flushing the pending batch if the key changes or a limit would be passed,
// and counts the row as added.
func (t *tableWriter) startRow(key batchKey, n int) error {
	if t.rows > 0 && (key != t.key || t.rows+1 > t.maxR || t.bytes+n > t.maxB) {
		if err := t.flush(); err != nil {
			return err
		}
	}
	t.key = key
	t.added(1, n)
	return nil
}

// room returns how many rows of n bytes fit in the pending batch, counting
// a row already started by startRow; at least 1.
func (t *tableWriter) room(n int) int {
	byRows := t.maxR - t.rows + 1
	byBytes := (t.maxB-t.bytes)/max(n, 1) + 1
	return max(1, min(byRows, byBytes))
}

func (t *tableWriter) added(rows, bytes int) {
	t.rows += rows
	t.bytes += bytes
}

// flush writes the pending rows as one record batch.
func (t *tableWriter) flush() error {
	if t.rows == 0 {
		return nil
	}
	var rec arrow.RecordBatch
	if t.act != nil {
		rec = t.act.record(t.schema)
	} else {
		rec = t.rb.NewRecordBatch()
	}
	defer rec.Release()
	if err := t.fw.Write(rec); err != nil {
		return fmt.Errorf("store: write %s: %w", t.final, err)
	}
	t.index = append(t.index, IndexEntry{
		Table: t.info.Name, Batch: t.info.Batches, FirstRow: t.written, Rows: rec.NumRows(),
		PromptID: int(t.key.prompt), Hook: t.key.hook, Layer: int(t.key.layer), Head: int(t.key.head),
	})
	t.info.Batches++
	t.info.Rows += rec.NumRows()
	t.written += rec.NumRows()
	t.rows, t.bytes = 0, 0
	if t.act != nil {
		t.act.reset()
	}
	return nil
}

// finish writes the footer, flushes and fsyncs the temporary file. The file
// stays open, holding its lock, until discard.
func (t *tableWriter) finish() error {
	if t.closed {
		return nil
	}
	if err := t.flush(); err != nil {
		return err
	}
	t.closed = true
	t.rb.Release()
	err := t.fw.Close()
	if err == nil {
		err = t.cw.w.Flush()
	}
	if err == nil {
		err = t.f.Sync()
	}
	if err != nil {
		return fmt.Errorf("store: write %s: %w", t.final, err)
	}
	return nil
}

// discard closes the file and removes it unless it was published.
func (t *tableWriter) discard() {
	if !t.closed {
		t.closed = true
		t.rb.Release()
	}
	if t.f != nil {
		t.f.Close()
		t.f = nil
	}
	if !t.renamed {
		os.Remove(t.tmp)
	}
}

// actBatch accumulates the pending rows of an activations table in plain
// slices that are reused from batch to batch: the hot path of a trace
// allocates nothing per batch once warm, and the record handed to the IPC
// writer points straight at these slices (the writer copies or compresses
// them before Write returns).
type actBatch struct {
	hookOffsets              []int32 // len rows+1, starts with 0
	hookData                 []byte
	layer, head, prompt, pos []int32
	f32                      []float32
	f16                      []float16.Num
}

func (b *actBatch) reset() {
	b.hookOffsets = b.hookOffsets[:1]
	b.hookData = b.hookData[:0]
	b.layer, b.head, b.prompt, b.pos = b.layer[:0], b.head[:0], b.prompt[:0], b.pos[:0]
	b.f32, b.f16 = b.f32[:0], b.f16[:0]
}

func i32Data(v []int32) arrow.ArrayData {
	return array.NewData(arrow.PrimitiveTypes.Int32, len(v),
		[]*memory.Buffer{nil, memory.NewBufferBytes(arrow.Int32Traits.CastToBytes(v))}, nil, 0, 0)
}

// record wraps the pending rows, without copying, as a record batch.
func (b *actBatch) record(schema *arrow.Schema) arrow.RecordBatch {
	n := len(b.layer)
	hook := array.NewData(arrow.BinaryTypes.String, n, []*memory.Buffer{nil,
		memory.NewBufferBytes(arrow.Int32Traits.CastToBytes(b.hookOffsets)), memory.NewBufferBytes(b.hookData)}, nil, 0, 0)
	ft := schema.Field(5).Type.(*arrow.FixedSizeListType)
	var vals arrow.ArrayData
	if len(b.f16) > 0 || ft.Elem().ID() == arrow.FLOAT16 {
		vals = array.NewData(ft.Elem(), len(b.f16), []*memory.Buffer{nil, memory.NewBufferBytes(arrow.Float16Traits.CastToBytes(b.f16))}, nil, 0, 0)
	} else {
		vals = array.NewData(ft.Elem(), len(b.f32), []*memory.Buffer{nil, memory.NewBufferBytes(arrow.Float32Traits.CastToBytes(b.f32))}, nil, 0, 0)
	}
	list := array.NewData(ft, n, []*memory.Buffer{nil}, []arrow.ArrayData{vals}, 0, 0)
	datas := []arrow.ArrayData{hook, i32Data(b.layer), i32Data(b.head), i32Data(b.prompt), i32Data(b.pos), list}
	cols := make([]arrow.Array, len(datas))
	for i, d := range datas {
		cols[i] = array.MakeFromData(d)
		d.Release()
	}
	vals.Release()
	rec := array.NewRecordBatch(schema, cols, int64(n))
	for _, c := range cols {
		c.Release()
	}
	return rec
}

// countWriter counts the bytes written through it.
type countWriter struct {
	w *bufio.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

var _ io.Writer = (*countWriter)(nil)

func appendF32List(b array.Builder, vals []float32) {
	lb := b.(*array.ListBuilder)
	lb.Append(true)
	lb.ValueBuilder().(*array.Float32Builder).AppendValues(vals, nil)
}

func appendOptString(b *array.StringBuilder, s string) {
	if s == "" {
		b.AppendNull()
		return
	}
	b.Append(s)
}
