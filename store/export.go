package store

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/csv"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// Format is an export format.
type Format string

// Export formats.
const (
	Parquet Format = "parquet"
	CSV     Format = "csv"
)

// ExportTable writes one table to w, batch by batch (memory stays bounded
// by one batch).
//
// Parquet keeps every column's type (fixed-size lists become Parquet
// lists, restored to fixed-size lists by Arrow readers through the stored
// Arrow schema), the schema metadata (run info, version) and zstd
// compression; each record batch becomes one row group.
//
// CSV has a header row; list and fixed-size-list columns (activation
// values, attention weights...) are written as JSON arrays in one cell,
// e.g. "[0.25,-1.5]", NaN as null; nulls are empty cells. CSV has no
// place for schema metadata.
func ExportTable(ctx context.Context, t *Table, w io.Writer, format Format) error {
	switch format {
	case Parquet:
		return exportParquet(ctx, t, w)
	case CSV:
		return exportCSV(ctx, t, w)
	}
	return fmt.Errorf("store: export %s: unknown format %q (want parquet or csv)", t.path, format)
}

func exportParquet(ctx context.Context, t *Table, w io.Writer) error {
	props := parquet.NewWriterProperties(parquet.WithCompression(compress.Codecs.Zstd))
	fw, err := pqarrow.NewFileWriter(t.schema, w, props, pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
	if err != nil {
		return fmt.Errorf("store: export %s to parquet: %w", t.path, err)
	}
	for rec, err := range t.All(ctx) {
		if err != nil {
			fw.Close()
			return err
		}
		if err := fw.Write(rec); err != nil {
			fw.Close()
			return fmt.Errorf("store: export %s to parquet: %w", t.path, err)
		}
	}
	if err := fw.Close(); err != nil {
		return fmt.Errorf("store: export %s to parquet: %w", t.path, err)
	}
	return nil
}

// csvSchema replaces list columns by string columns.
func csvSchema(s *arrow.Schema) *arrow.Schema {
	fs := make([]arrow.Field, s.NumFields())
	for i, f := range s.Fields() {
		switch f.Type.(type) {
		case *arrow.ListType, *arrow.FixedSizeListType:
			f = arrow.Field{Name: f.Name, Type: arrow.BinaryTypes.String, Nullable: true}
		}
		fs[i] = f
	}
	return arrow.NewSchema(fs, nil)
}

func exportCSV(ctx context.Context, t *Table, w io.Writer) error {
	schema := csvSchema(t.schema)
	cw := csv.NewWriter(w, schema, csv.WithHeader(true), csv.WithNullWriter(""))
	mem := memory.NewGoAllocator()
	for rec, err := range t.All(ctx) {
		if err != nil {
			return err
		}
		cols := make([]arrow.Array, rec.NumCols())
		for i, c := range rec.Columns() {
			if arrow.TypeEqual(schema.Field(i).Type, c.DataType()) {
				c.Retain()
				cols[i] = c
				continue
			}
			cols[i] = listsAsJSON(mem, c)
		}
		out := array.NewRecordBatch(schema, cols, rec.NumRows())
		for _, c := range cols {
			c.Release()
		}
		err := cw.Write(out)
		out.Release()
		if err != nil {
			return fmt.Errorf("store: export %s to csv: %w", t.path, err)
		}
	}
	if err := cw.Flush(); err != nil {
		return fmt.Errorf("store: export %s to csv: %w", t.path, err)
	}
	return nil
}

// listsAsJSON turns a list or fixed-size-list column into JSON arrays.
func listsAsJSON(mem memory.Allocator, c arrow.Array) arrow.Array {
	b := array.NewStringBuilder(mem)
	defer b.Release()
	var sb strings.Builder
	for i := 0; i < c.Len(); i++ {
		if c.IsNull(i) {
			b.AppendNull()
			continue
		}
		var lo, hi int64
		var vals arrow.Array
		switch l := c.(type) {
		case *array.List:
			lo, hi = l.ValueOffsets(i)
			vals = l.ListValues()
		case *array.FixedSizeList:
			lo, hi = l.ValueOffsets(i)
			vals = l.ListValues()
		}
		sb.Reset()
		sb.WriteByte('[')
		for j := lo; j < hi; j++ {
			if j > lo {
				sb.WriteByte(',')
			}
			writeJSONValue(&sb, vals, int(j))
		}
		sb.WriteByte(']')
		b.Append(sb.String())
	}
	return b.NewArray()
}

func writeJSONValue(sb *strings.Builder, vals arrow.Array, j int) {
	if vals.IsNull(j) {
		sb.WriteString("null")
		return
	}
	f := func(v float64, bits int) {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			sb.WriteString("null")
			return
		}
		sb.WriteString(strconv.FormatFloat(v, 'g', -1, bits))
	}
	switch v := vals.(type) {
	case *array.Float32:
		f(float64(v.Value(j)), 32)
	case *array.Float16:
		f(float64(v.Value(j).Float32()), 32)
	case *array.Float64:
		f(v.Value(j), 64)
	case *array.Int32:
		sb.WriteString(strconv.Itoa(int(v.Value(j))))
	case *array.String:
		writeJSONString(sb, v.Value(j))
	default:
		writeJSONString(sb, v.ValueStr(j))
	}
}

// writeJSONString writes s as a JSON string. strconv.Quote would write Go
// escapes (\x.. for bytes that are not UTF-8, as a byte-level BPE token's
// text can be), which JSON has not; encoding/json writes U+FFFD for them.
func writeJSONString(sb *strings.Builder, s string) {
	b, _ := json.Marshal(s)
	sb.Write(b)
}

// Export writes every table of the trace whose main file is src in the
// given format, mirroring the trace's file names: with dst "out.parquet",
// the main table goes to out.parquet and table NAME to out.NAME.parquet.
// An empty dst means src with its extension replaced. Each output file is
// written atomically. It returns the files written.
func Export(ctx context.Context, src, dst string, format Format) ([]string, error) {
	if format != Parquet && format != CSV {
		return nil, fmt.Errorf("store: export %s: unknown format %q (want parquet or csv)", src, format)
	}
	ext := "." + string(format)
	if dst == "" {
		dst = strings.TrimSuffix(src, ".arrow") + ext
	}
	stem := strings.TrimSuffix(dst, ext)
	tr, err := Open(src)
	if err != nil {
		return nil, err
	}
	defer tr.Close()
	var written []string
	for _, in := range tr.Tables() {
		out := stem + "." + in.Name + ext
		if in.Name == tr.MainTable() {
			out = stem + ext
		}
		t, err := tr.Table(in.Name)
		if err != nil {
			return written, err
		}
		err = writeAtomic(out, func(w io.Writer) error { return ExportTable(ctx, t, w, format) })
		if err != nil {
			return written, err
		}
		written = append(written, out)
	}
	return written, nil
}

// writeAtomic writes path through a temporary file in the same folder,
// fsynced and renamed into place.
func writeAtomic(path string, write func(io.Writer) error) error {
	var id [6]byte
	rand.Read(id[:])
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp-"+hex.EncodeToString(id[:]))
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("store: write %s: %w", path, err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	err = write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		if !strings.Contains(err.Error(), path) && !strings.Contains(err.Error(), "store: ") {
			err = fmt.Errorf("store: write %s: %w", path, err)
		}
		return err
	}
	return nil
}
