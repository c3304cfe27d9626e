// Package flowstore maps circuits' rollout and flow results onto the
// store's flow table (docs/schema.md: prompt_id, method, layer, head,
// from_layer, to_layer, output_pos, values), so that `loupe flow`, the TUI
// and the notebooks read them like any other trace.
//
// One table row is one output position computed; only computed positions
// are written. The layer column is the block whose output the matrix is
// taken at (ToLayer-1), and -1 when that is the whole model from the input
// embeddings, as the schema asks; head is -1 for the average over heads.
package flowstore

import (
	"fmt"

	"github.com/loupe-dev/loupe/circuits"
	"github.com/loupe-dev/loupe/store"
)

// Matrix converts r into the store's flow matrix for one prompt of a model
// with `layers` blocks.
func Matrix(r *circuits.Result, promptID, layers int) (store.FlowMatrix, error) {
	if r == nil || r.T <= 0 || len(r.Values) != len(r.Outputs)*r.T {
		return store.FlowMatrix{}, fmt.Errorf("flowstore: malformed result")
	}
	T := r.T
	vals := make([]float32, len(r.Values))
	for i, v := range r.Values {
		vals[i] = float32(v)
	}
	for _, j := range r.Outputs {
		if j < 0 || j >= T {
			return store.FlowMatrix{}, fmt.Errorf("flowstore: output position %d outside 0..%d", j, T-1)
		}
	}
	layer := r.ToLayer - 1
	if r.ToLayer == layers && r.FromLayer == 0 {
		layer = -1
	}
	head := r.Head
	if head < 0 {
		head = store.HeadsAveraged
	}
	return store.FlowMatrix{PromptID: promptID, Method: string(r.Method), Layer: layer, Head: head,
		FromLayer: r.FromLayer, ToLayer: r.ToLayer, Outputs: append([]int(nil), r.Outputs...),
		Rows: len(r.Outputs), Cols: T, Values: vals}, nil
}
