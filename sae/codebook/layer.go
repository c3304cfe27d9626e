package codebook

import (
	"fmt"
	"math"
	"slices"

	"github.com/loupe-dev/loupe/probe/compute"
)

// Reduce is how the k chosen codes combine.
type Reduce string

const (
	Mean Reduce = "mean" // the reference's choice
	Sum  Reduce = "sum"  // the paper's description
)

// Layer is one codebook layer at one hook point.
type Layer struct {
	Hook     string // the site: blocks.L.attn.hook_z, blocks.L.hook_mlp_out, ...
	Groups   int    // codebooks side by side (the heads at attn.hook_z), 1 otherwise
	Dim      int    // features of each group
	NumCodes int    // codes per codebook
	K        int    // codes chosen per row and group
	Reduce   Reduce
	// LayerNorm says whether inputs are layer-normalised before matching,
	// as the reference does; LNWeight and LNBias are then [Groups*Dim].
	LayerNorm        bool
	LNEps            float32
	LNWeight, LNBias []float32
	// Codes is [Groups, NumCodes, Dim].
	Codes []float32
}

// Width is the number of features of the activation the layer reads.
func (l *Layer) Width() int { return l.Groups * l.Dim }

// Code returns code id of group g (a view).
func (l *Layer) Code(g, id int) []float32 {
	off := (g*l.NumCodes + id) * l.Dim
	return l.Codes[off : off+l.Dim]
}

// Check validates the layer's sizes and values.
func (l *Layer) Check() error {
	switch {
	case l.Groups < 1 || l.Dim < 1 || l.NumCodes < 1:
		return fmt.Errorf("codebook %s: groups %d, dim %d, codes %d must be positive", l.Hook, l.Groups, l.Dim, l.NumCodes)
	case l.K < 1 || l.K > l.NumCodes:
		return fmt.Errorf("codebook %s: k = %d outside [1, %d]", l.Hook, l.K, l.NumCodes)
	case l.Reduce != Mean && l.Reduce != Sum:
		return fmt.Errorf("codebook %s: reduce %q is neither mean nor sum", l.Hook, l.Reduce)
	case len(l.Codes) != l.Groups*l.NumCodes*l.Dim:
		return fmt.Errorf("codebook %s: %d code values, want groups*codes*dim = %d", l.Hook, len(l.Codes), l.Groups*l.NumCodes*l.Dim)
	case l.LayerNorm && (len(l.LNWeight) != l.Width() || len(l.LNBias) != l.Width()):
		return fmt.Errorf("codebook %s: layer norm has %d weights and %d biases, want %d", l.Hook, len(l.LNWeight), len(l.LNBias), l.Width())
	case l.LayerNorm && !(l.LNEps > 0):
		return fmt.Errorf("codebook %s: layer norm eps %g must be positive", l.Hook, l.LNEps)
	}
	for i, v := range l.Codes {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("codebook %s: code value %d is %g", l.Hook, i, v)
		}
	}
	return nil
}

// Snapped is one application of a layer: the output rows and the chosen ids.
type Snapped struct {
	Out []float32 // [rows, Groups*Dim]
	IDs []int32   // [rows, Groups, K], best first
}

// Apply runs the layer over x [rows, Groups*Dim] on backend b and gives the
// output on the host (training reads it there). disabled, when not nil,
// says which codes of which group may not be chosen at a row (the next most
// similar are taken instead, as the reference's disable_codes with
// keep_k_codes does).
func (l *Layer) Apply(b compute.Backend, x compute.Tensor, disabled func(row, group int) []int32) (*Snapped, error) {
	ids, err := l.Select(b, x, nil, disabled)
	if err != nil {
		return nil, err
	}
	out, err := l.Decode(ids, x.Shape()[0])
	if err != nil {
		return nil, err
	}
	return &Snapped{Out: out, IDs: ids}, nil
}

// Tables are a layer's tensors on one backend (Set.Upload makes them once,
// so that a forward pass uploads nothing of the codebook): per group the unit-length
// codes the similarities are taken against and the layer norm's weight and
// bias, and the codes themselves as one table [Groups*NumCodes+1, Dim]
// whose last row is zero (what an id of -1 reads).
type Tables struct {
	b        compute.Backend
	unit     []compute.Tensor // per group, [NumCodes, Dim]
	lnW, lnB []compute.Tensor // per group, [Dim]; nil without a layer norm
	table    compute.Tensor
}

// Tables uploads the layer's tensors to b. The layer's codes must not
// change while the tables are in use. On a GPU, tables made inside a
// forward pass are that pass's temporaries.
func (l *Layer) Tables(b compute.Backend) *Tables {
	t := l.selectTables(b)
	rows := l.Groups * l.NumCodes
	table := make([]float32, (rows+1)*l.Dim)
	copy(table, l.Codes)
	t.table = b.FromHost(table, rows+1, l.Dim)
	return t
}

// selectTables are the tables Select reads (the unit codes and the layer
// norm), without the code table that only decoding on b needs.
func (l *Layer) selectTables(b compute.Backend) *Tables {
	t := &Tables{b: b}
	unit := l.unitCodes()
	for g := 0; g < l.Groups; g++ {
		t.unit = append(t.unit, b.FromHost(unit[g*l.NumCodes*l.Dim:(g+1)*l.NumCodes*l.Dim], l.NumCodes, l.Dim))
		if l.LayerNorm {
			t.lnW = append(t.lnW, b.FromHost(l.LNWeight[g*l.Dim:(g+1)*l.Dim], l.Dim))
			t.lnB = append(t.lnB, b.FromHost(l.LNBias[g*l.Dim:(g+1)*l.Dim], l.Dim))
		}
	}
	return t
}

// Select gives the ids [rows, Groups, K] the layer chooses for x
// [rows, Groups*Dim], best first. The similarities are computed on b and
// only the ids come to the host. tabs may be nil (they are made here).
func (l *Layer) Select(b compute.Backend, x compute.Tensor, tabs *Tables, disabled func(row, group int) []int32) ([]int32, error) {
	sh := x.Shape()
	if len(sh) != 2 || sh[1] != l.Width() {
		return nil, fmt.Errorf("codebook %s: activation is %v, the codebook reads %d features (%d groups of %d)", l.Hook, sh, l.Width(), l.Groups, l.Dim)
	}
	if tabs == nil || tabs.b != b {
		tabs = l.selectTables(b)
	}
	rows := sh[0]
	ids := make([]int32, rows*l.Groups*l.K)
	for g := 0; g < l.Groups; g++ {
		xg := x
		if l.Groups > 1 {
			xg = b.Columns(x, g*l.Dim, (g+1)*l.Dim)
		}
		if l.LayerNorm {
			xg = b.LayerNorm(xg, tabs.lnW[g], tabs.lnB[g], l.LNEps)
		}
		sim := b.Linear(xg, tabs.unit[g], nil) // [rows, NumCodes]
		extra := 0
		if disabled != nil {
			for r := 0; r < rows; r++ {
				extra = max(extra, len(disabled(r, g)))
			}
		}
		want := min(l.K+extra, l.NumCodes)
		idx, _ := b.TopKRows(sim, want)
		for r := 0; r < rows; r++ {
			var off []int32
			if disabled != nil {
				off = disabled(r, g)
			}
			dst := ids[(r*l.Groups+g)*l.K : (r*l.Groups+g+1)*l.K]
			n := 0
			for _, id := range idx[r*want : (r+1)*want] {
				if n == l.K {
					break
				}
				if slices.Contains(off, id) {
					continue
				}
				dst[n] = id
				n++
			}
			for ; n < l.K; n++ { // every code disabled: nothing
				dst[n] = -1
			}
		}
	}
	return ids, nil
}

// DecodeOn is Decode computed on b: the output rows [rows, Groups*Dim] of
// ids [rows, Groups, K] as a tensor of b, gathered from the layer's code
// table there (tabs may be nil: they are made here).
func (l *Layer) DecodeOn(b compute.Backend, ids []int32, rows int, tabs *Tables) (compute.Tensor, error) {
	if len(ids) != rows*l.Groups*l.K {
		return nil, fmt.Errorf("codebook %s: %d ids for %d rows of %d groups x k = %d", l.Hook, len(ids), rows, l.Groups, l.K)
	}
	if tabs == nil || tabs.b != b {
		tabs = l.Tables(b)
	}
	zero := l.Groups * l.NumCodes // the table's zero row
	flat := make([]int, len(ids))
	for i, id := range ids {
		switch {
		case id == -1:
			flat[i] = zero
		case id < 0 || int(id) >= l.NumCodes:
			return nil, fmt.Errorf("codebook %s: code id %d out of range [0, %d) (or -1 for none)", l.Hook, id, l.NumCodes)
		default:
			flat[i] = (i/l.K)%l.Groups*l.NumCodes + int(id)
		}
	}
	codes := b.Embed(tabs.table, flat) // [rows*Groups*K, Dim]
	if l.K == 1 && l.Groups == 1 {
		return codes, nil
	}
	if l.K == 1 {
		return b.Reshape(codes, rows, l.Width()), nil
	}
	// [rows*Groups, K*Dim]: the k codes of one row and group side by side.
	byRow := b.Reshape(codes, rows*l.Groups, l.K*l.Dim)
	acc := b.Columns(byRow, 0, l.Dim)
	for j := 1; j < l.K; j++ {
		b.AddInPlace(acc, b.Columns(byRow, j*l.Dim, (j+1)*l.Dim))
	}
	if l.Reduce == Mean {
		b.ScaleInPlace(acc, 1/float32(l.K))
	}
	return b.Reshape(acc, rows, l.Width()), nil
}

// Decode gives the output rows [rows, Groups*Dim] of chosen ids
// [rows, Groups, K]; an id of -1 contributes nothing.
func (l *Layer) Decode(ids []int32, rows int) ([]float32, error) {
	if len(ids) != rows*l.Groups*l.K {
		return nil, fmt.Errorf("codebook %s: %d ids for %d rows of %d groups x k = %d", l.Hook, len(ids), rows, l.Groups, l.K)
	}
	out := make([]float32, rows*l.Width())
	scale := float32(1)
	if l.Reduce == Mean {
		scale = 1 / float32(l.K)
	}
	for r := 0; r < rows; r++ {
		for g := 0; g < l.Groups; g++ {
			dst := out[r*l.Width()+g*l.Dim : r*l.Width()+(g+1)*l.Dim]
			for _, id := range ids[(r*l.Groups+g)*l.K : (r*l.Groups+g+1)*l.K] {
				if id == -1 {
					continue
				}
				if id < 0 || int(id) >= l.NumCodes {
					return nil, fmt.Errorf("codebook %s: code id %d out of range [0, %d) (or -1 for none)", l.Hook, id, l.NumCodes)
				}
				for d, v := range l.Code(g, int(id)) {
					dst[d] += v
				}
			}
			if scale != 1 {
				for d := range dst {
					dst[d] *= scale
				}
			}
		}
	}
	return out, nil
}

// unitCodes is Codes with every code scaled to unit length (a zero code
// stays zero): ranking by n·c/|c| is ranking by the cosine similarity.
func (l *Layer) unitCodes() []float32 {
	u := make([]float32, len(l.Codes))
	for i := 0; i < l.Groups*l.NumCodes; i++ {
		c := l.Codes[i*l.Dim : (i+1)*l.Dim]
		var ss float64
		for _, v := range c {
			ss += float64(v) * float64(v)
		}
		if ss == 0 {
			continue
		}
		inv := float32(1 / math.Sqrt(ss))
		for d, v := range c {
			u[i*l.Dim+d] = v * inv
		}
	}
	return u
}
