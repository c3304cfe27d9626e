package probe

import "fmt"

// Unembed applies the final norm and the unembedding to residual-stream
// vectors: resid is [rows, d_model] (for example rows of a cached
// blocks.L.hook_resid_post), the result [rows, d_vocab] logits. Reading an
// intermediate layer's residual stream this way is the logit lens
// (nostalgebraist, 2020).
func (m *Model) Unembed(resid []float32, rows int) ([]float32, error) {
	D := m.Config.DModel
	if rows <= 0 || len(resid) != rows*D {
		return nil, fmt.Errorf("unembed: %d values are not %d rows of d_model %d", len(resid), rows, D)
	}
	b := m.backend
	x := b.FromHost(resid, rows, D)
	p := &pass{m: m, b: b}
	return b.ToHost(b.Linear(p.finalNorm(x), m.unembed, nil)), nil
}
