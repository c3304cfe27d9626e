package store

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
)

// SchemaVersion is the version of the layout described in docs/schema.md.
// Every file carries it in its schema metadata under [MetaSchema]. A reader
// accepts files whose version is at most this one; a change that an older
// reader would misread bumps it.
//
// Version 2 gave the flow table head, from_layer, to_layer and output_pos
// columns (version 1 encoded the head and input layer in the method string
// and wrote uncomputed rows as NaN) and added the ablation table. Version 1
// files still read: see flowFieldsV1 and ReadFlow.
const SchemaVersion = 2

// Schema metadata keys stamped on every file of a trace.
const (
	MetaSchema    = "loupe.schema"     // schema version, decimal ("1")
	MetaKind      = "loupe.kind"       // the table kind, a Kind
	MetaTable     = "loupe.table"      // the table name, e.g. "activations.576"
	MetaMainTable = "loupe.main_table" // name of the table held by the trace's main file
	MetaTraceID   = "loupe.trace_id"   // random id shared by all files of one write
	MetaRun       = "loupe.run"        // RunInfo as JSON
	MetaShape     = "loupe.shape"      // activations: trailing shape as JSON, e.g. "[9,64]"
	MetaDType     = "loupe.dtype"      // activations: "float32" or "float16"
	MetaTables    = "loupe.tables"     // index file: []TableInfo as JSON
)

// Kind names what a table holds. It is stamped in every file under [MetaKind].
type Kind string

// The table kinds. docs/schema.md gives their columns.
const (
	KindTokens          Kind = "tokens"           // one row per prompt token
	KindActivations     Kind = "activations"      // one row per (hook, layer, head, prompt, position)
	KindAttention       Kind = "attention"        // full attention rows for short prompts
	KindAttentionTopK   Kind = "attention_topk"   // top-k attended keys per query, for long prompts
	KindHeadScores      Kind = "head_scores"      // one row per (layer, head, score)
	KindFlow            Kind = "flow"             // attention rollout and flow matrices, one row per matrix row
	KindLogitLens       Kind = "logit_lens"       // top-k next-token predictions per (prompt, layer, position)
	KindCircuit         Kind = "circuit"          // a found circuit: one row per node, edge or summary figure (circuit.go)
	KindFeatures        Kind = "features"         // SAE latents: density, activation histogram, logit table (features.go)
	KindFeatureExamples Kind = "feature_examples" // SAE latents' top and quantile-sampled contexts (features.go)
	KindFeatureActs     Kind = "feature_acts"     // the SAE latents active at each token of a prompt (features.go)
	KindIndex           Kind = "index"            // one row per record batch of every other table
)

// DType is the element type of activation values.
type DType string

// Activation element types.
const (
	Float32 DType = "float32"
	Float16 DType = "float16"
)

// RunInfo says how a trace was made. It is stamped, as JSON, in the schema
// metadata of every file of the trace (key [MetaRun]).
type RunInfo struct {
	ModelPath    string          `json:"model_path"`
	ModelHash    string          `json:"model_hash"` // "sha256:<hex>" of the weights; see HashFiles
	Architecture string          `json:"architecture"`
	Config       json.RawMessage `json:"config,omitempty"` // the model config, as a JSON object
	LoupeVersion string          `json:"loupe_version"`
	CommandLine  []string        `json:"command_line"`
	CreatedAt    time.Time       `json:"created_at"` // UTC, RFC 3339 with nanoseconds in JSON
}

// TableInfo describes one table of a trace. The index file lists them all
// under [MetaTables]; Trace.Tables returns them.
type TableInfo struct {
	Name        string `json:"name"`            // "tokens", "activations.576", ...
	Kind        Kind   `json:"kind"`            //
	File        string `json:"file"`            // base name of the file at write time
	Rows        int64  `json:"rows"`            //
	Batches     int    `json:"batches"`         //
	Shape       []int  `json:"shape,omitempty"` // activations: trailing shape of one row
	DType       DType  `json:"dtype,omitempty"` // activations: element type
	Compression string `json:"compression"`     // "none", "zstd" or "lz4"
}

// Column names shared by several tables.
const (
	colPromptID = "prompt_id"
	colPosition = "position"
	colLayer    = "layer"
	colHead     = "head"
	colHook     = "hook"
)

func i32(name string) arrow.Field {
	return arrow.Field{Name: name, Type: arrow.PrimitiveTypes.Int32}
}

func utf8(name string, nullable bool) arrow.Field {
	return arrow.Field{Name: name, Type: arrow.BinaryTypes.String, Nullable: nullable}
}

// fields returns the columns of a table kind. Activations need their shape
// and dtype: see activationFields.
func fields(k Kind) []arrow.Field {
	switch k {
	case KindTokens:
		return []arrow.Field{i32(colPromptID), i32(colPosition), i32("token_id"), utf8("token_text", false)}
	case KindAttention:
		return []arrow.Field{i32(colPromptID), i32(colLayer), i32(colHead), i32("query_pos"), i32("n_keys"),
			{Name: "weights", Type: arrow.ListOf(arrow.PrimitiveTypes.Float32)}}
	case KindAttentionTopK:
		return []arrow.Field{i32(colPromptID), i32(colLayer), i32(colHead), i32("query_pos"),
			{Name: "key_pos", Type: arrow.ListOf(arrow.PrimitiveTypes.Int32)},
			{Name: "weight", Type: arrow.ListOf(arrow.PrimitiveTypes.Float32)}}
	case KindHeadScores:
		return []arrow.Field{i32(colLayer), i32(colHead), utf8("score", false),
			{Name: "value", Type: arrow.PrimitiveTypes.Float64},
			utf8("label", true), utf8("details", true)}
	case KindFlow:
		return []arrow.Field{i32(colPromptID), utf8("method", false), i32(colLayer), i32(colHead),
			i32("from_layer"), i32("to_layer"), i32("output_pos"),
			{Name: "values", Type: arrow.ListOf(arrow.PrimitiveTypes.Float32)}}
	case KindLogitLens:
		return []arrow.Field{i32(colPromptID), i32(colLayer), i32(colPosition),
			{Name: "target_prob", Type: arrow.PrimitiveTypes.Float32, Nullable: true},
			{Name: "top_ids", Type: arrow.ListOf(arrow.PrimitiveTypes.Int32)},
			{Name: "top_probs", Type: arrow.ListOf(arrow.PrimitiveTypes.Float32)},
			{Name: "top_texts", Type: arrow.ListOf(arrow.BinaryTypes.String)}}
	case KindCodes:
		return codeFields()
	case KindCircuit:
		return circuitFields()
	case KindAblation:
		return ablationFields()
	case KindFeatures, KindFeatureExamples, KindFeatureActs:
		return featureFields(k)
	case KindIndex:
		return []arrow.Field{utf8("table", false), i32("batch"),
			{Name: "first_row", Type: arrow.PrimitiveTypes.Int64},
			{Name: "rows", Type: arrow.PrimitiveTypes.Int64},
			i32(colPromptID), utf8(colHook, false), i32(colLayer), i32(colHead)}
	}
	return nil
}

// flowFieldsV1 are the flow table's columns in schema version 1.
func flowFieldsV1() []arrow.Field {
	return []arrow.Field{i32(colPromptID), utf8("method", false), i32(colLayer), i32("row"),
		{Name: "values", Type: arrow.ListOf(arrow.PrimitiveTypes.Float32)}}
}

// activationFields returns the columns of an activations table whose rows
// hold one position's values of the given trailing shape.
func activationFields(shape []int, dt DType) []arrow.Field {
	var elem arrow.DataType = arrow.PrimitiveTypes.Float32
	if dt == Float16 {
		elem = arrow.FixedWidthTypes.Float16
	}
	meta := arrow.NewMetadata([]string{MetaShape, MetaDType}, []string{shapeJSON(shape), string(dt)})
	return []arrow.Field{utf8(colHook, false), i32(colLayer), i32(colHead), i32(colPromptID), i32(colPosition),
		{Name: "values", Type: arrow.FixedSizeListOf(int32(prod(shape)), elem), Metadata: meta}}
}

// tableSchema builds the schema of one file, stamping the common metadata.
func tableSchema(info TableInfo, main, traceID string, run []byte, extra []string) *arrow.Schema {
	var fs []arrow.Field
	if info.Kind == KindActivations {
		fs = activationFields(info.Shape, info.DType)
	} else {
		fs = fields(info.Kind)
	}
	keys := []string{MetaSchema, MetaKind, MetaTable, MetaMainTable, MetaTraceID, MetaRun}
	vals := []string{strconv.Itoa(SchemaVersion), string(info.Kind), info.Name, main, traceID, string(run)}
	if info.Kind == KindActivations {
		keys = append(keys, MetaShape, MetaDType)
		vals = append(vals, shapeJSON(info.Shape), string(info.DType))
	}
	for i := 0; i+1 < len(extra); i += 2 {
		keys = append(keys, extra[i])
		vals = append(vals, extra[i+1])
	}
	md := arrow.NewMetadata(keys, vals)
	return arrow.NewSchema(fs, &md)
}

// ActivationTableName is the name of the activations table whose rows have
// the given trailing shape: "activations.576", "activations.9x64".
func ActivationTableName(shape []int) string {
	parts := make([]string, len(shape))
	for i, d := range shape {
		parts[i] = strconv.Itoa(d)
	}
	return string(KindActivations) + "." + strings.Join(parts, "x")
}

var tableNameRE = regexp.MustCompile(`^(tokens|attention|attention_topk|head_scores|flow|logit_lens|circuit|ablation|features|feature_examples|feature_acts|codes|index|activations\.[0-9]+(x[0-9]+)*)$`)

// validTableName reports whether name is a table name of this schema version.
func validTableName(name string) bool { return tableNameRE.MatchString(name) }

var safeNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$`)

// safeTableName reports whether a reader may derive a file name from name:
// table names of later versions are listed, not refused, but can never
// reach outside the trace's folder.
func safeTableName(name string) bool { return len(name) <= 128 && safeNameRE.MatchString(name) }

// SiblingPath returns the file that holds table name in the trace whose
// main file is mainPath: "runs/traces.arrow" + "tokens" ->
// "runs/traces.tokens.arrow". The main table itself lives in mainPath.
func SiblingPath(mainPath, name string) string {
	stem := strings.TrimSuffix(mainPath, ".arrow")
	return stem + "." + name + ".arrow"
}

func shapeJSON(shape []int) string {
	b, _ := json.Marshal(shape)
	return string(b)
}

func parseShape(s string) ([]int, error) {
	var shape []int
	if err := json.Unmarshal([]byte(s), &shape); err != nil {
		return nil, fmt.Errorf("bad shape %q: %v", s, err)
	}
	if len(shape) == 0 {
		return nil, fmt.Errorf("bad shape %q: empty", s)
	}
	for _, d := range shape {
		if d <= 0 || d > 1<<24 {
			return nil, fmt.Errorf("bad shape %q: dimension %d out of range", s, d)
		}
	}
	if prod(shape) > 1<<24 {
		return nil, fmt.Errorf("bad shape %q: too many elements", s)
	}
	return shape, nil
}

func prod(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}
