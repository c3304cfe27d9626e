package store

import "encoding/json"

// The types below are what the writer takes and the typed readers give
// back. They are plain Go values (slices, ints, strings) so that a producer
// such as the probe needs to know nothing about Arrow.

// Tokens are the tokens of one prompt.
type Tokens struct {
	PromptID int
	Start    int      // position of IDs[0]; positions run Start, Start+1, ...
	IDs      []int    // token ids
	Texts    []string // decoded text of each token; nil or shorter means ""
}

// Activation is one hook's activation for one prompt: a block of rows, one
// per position, each of trailing shape Shape.
type Activation struct {
	Hook     string // TransformerLens name, e.g. "blocks.3.hook_resid_post"
	Layer    int    // block index; -1 for hooks outside a block (hook_embed, ln_final...)
	Head     int    // head index for per-head rows; -1 when the rows are not per head
	PromptID int

	// Positions of the rows. When nil, the rows are at Start, Start+1, ...
	// Readers always fill Positions (and set Start to Positions[0]).
	Start     int
	Positions []int

	Shape  []int     // trailing shape of one row, e.g. [576] or [9, 64]
	Values []float32 // rows x prod(Shape) values, row-major
}

// Rows returns the number of positions a holds.
func (a *Activation) Rows() int {
	n := prod(a.Shape)
	if n == 0 {
		return 0
	}
	return len(a.Values) / n
}

// Attention is one head's full attention pattern on one prompt: Queries
// query rows over Keys key positions. Query row i sits at position
// Keys-Queries+i. With Causal set, only the keys a query can see (0 through
// its own position) are stored; readers give those rows back padded with
// zeros.
type Attention struct {
	PromptID, Layer, Head int
	Queries, Keys         int
	Causal                bool
	Weights               []float32 // Queries x Keys, row-major
}

// AttentionTopK is one head's top-k attended key positions per query on one
// prompt, the reduced form of Attention for long prompts. Row i (query
// QueryPos[i]) has keys KeyPos[i*K : i*K+K] with weights Weight[...];
// a key position < 0 pads rows that have fewer than K keys.
type AttentionTopK struct {
	PromptID, Layer, Head int
	K                     int
	QueryPos              []int
	KeyPos                []int32
	Weight                []float32
}

// HeadScore is one score of one attention head.
type HeadScore struct {
	Layer, Head int
	Score       string          // score name, e.g. "induction", "prev_token"
	Value       float64         //
	Label       string          // optional classification, e.g. "induction head"; "" is stored as null
	Details     json.RawMessage // optional, the score's own details as a JSON value; nil is stored as null
}

// FlowMatrix is one attention-rollout or attention-flow result of one
// prompt: for each output position computed (a row), what reaches it from
// each input position (a column).
type FlowMatrix struct {
	PromptID int
	Method   string // "rollout" or "flow"
	// Layer is the layer the matrix is taken at (ToLayer-1), or -1 for the
	// whole model (FromLayer 0 up through every block). The index keys the
	// table's batches by it.
	Layer int
	// Head is the one head whose pattern was followed; HeadsAveraged (-1)
	// for the average over heads. Set it: 0 is head 0.
	Head int
	// FromLayer and ToLayer bound the layers followed: from the residual
	// stream after FromLayer blocks (0: the input embeddings) to the one
	// after ToLayer blocks; ToLayer > FromLayer. A schema v1 file whose
	// matrix was the whole model reads with the run config's layer count,
	// or -1 where the config does not give it.
	FromLayer, ToLayer int
	// Outputs holds the output position of each row; nil means rows
	// 0..Rows-1.
	Outputs    []int
	Rows, Cols int
	Values     []float32 // Rows x Cols, row-major
}

// HeadsAveraged is FlowMatrix.Head (and the flow table's head column) for a
// result over the average of every head's pattern.
const HeadsAveraged = -1

// OutputPos returns the output position of row r.
func (m *FlowMatrix) OutputPos(r int) int {
	if m.Outputs == nil {
		return r
	}
	return m.Outputs[r]
}

// IndexEntry locates one record batch of one table and says which prompt,
// hook, layer and head its rows belong to. A key field of -1 (or "" for
// Hook) means "not applicable, or several": the rows must be checked.
type IndexEntry struct {
	Table    string
	Batch    int   // record batch number within the table's file
	FirstRow int64 // row number of the batch's first row within the table
	Rows     int64
	PromptID int
	Hook     string
	Layer    int
	Head     int
}

// LogitLens is the logit lens of one prompt at one layer: the residual
// stream after the layer, unembedded, at each position. Row i is position
// Positions[i]; its top K predictions are TopIDs[i*K : i*K+K] (with
// TopProbs and TopTexts alike, an id < 0 padding short rows). TargetProb[i]
// is the probability of the prompt's actual next token, NaN where there is
// none (the last position).
type LogitLens struct {
	PromptID, Layer int
	K               int
	Positions       []int
	TargetProb      []float32
	TopIDs          []int32
	TopProbs        []float32
	TopTexts        []string
}
