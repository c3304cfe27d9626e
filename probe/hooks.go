package probe

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/loupe-dev/loupe/probe/compute"
)

// Hooks says what one forward pass observes and changes. The zero value (or
// a nil *Hooks) observes nothing and costs nothing.
type Hooks struct {
	// Cache holds glob patterns (path.Match syntax, '.' is an ordinary
	// character, so "blocks.*.hook_resid_post" matches every layer): the
	// activations whose names match are copied to Result.Cache.
	Cache []string
	// Reduce computes summaries of attention patterns where they live.
	Reduce []Reduction
	// Edit changes activations as they pass.
	Edit []Edit
}

// ReduceOp is a summary of each row of an attention pattern.
type ReduceOp int

const (
	// TopK keeps each query's K most-attended key positions and weights.
	TopK ReduceOp = iota
	// SpanMass sums each query's attention on key positions [Lo, Hi).
	SpanMass
	// Entropy is each query's attention entropy in nats.
	Entropy
	// KeyMass sums each query's attention on a set of keys of its own
	// (Reduction.Keys), such as the cells a head detector predicts.
	KeyMass
)

func (op ReduceOp) String() string {
	switch op {
	case TopK:
		return "topk"
	case SpanMass:
		return "span_mass"
	case Entropy:
		return "entropy"
	case KeyMass:
		return "key_mass"
	}
	return "reduce(" + strconv.Itoa(int(op)) + ")"
}

// Reduction asks for a summary of every pattern hook matching Hook (a glob,
// normally "blocks.*.attn.hook_pattern"). Reductions of a pattern that no
// hook edits are computed by the backend's fused attention from the exact
// softmax without building the pattern, so they cost memory linear in the
// context. Reductions of hook_attn_scores (TopK, SpanMass, Entropy of the
// raw scores, every row) make that layer build its scores.
type Reduction struct {
	Hook string
	Op   ReduceOp
	K    int // TopK
	// Lo, Hi: SpanMass over keys [Lo, Hi); Hi ≤ 0 or beyond the keys means
	// up to the last key. An end marked relative counts from each query's
	// own key position p: {Lo: -63, Hi: 1} with both relative is the 64
	// most recent keys, the current one included, and {Lo: 1, Hi: 0} with
	// HiRelative every earlier key but the first (a relative Hi ≤ 0 is not
	// special).
	Lo, Hi                 int
	LoRelative, HiRelative bool
	// Keys, for KeyMass, gives the keys whose attention is summed for the
	// query of sequence b at key position q (its index among the keys:
	// past positions plus its index in this pass, left padding included).
	Keys func(b, q int) []int
	// Rows are the query rows reduced, as indices into this pass's
	// queries; negative ones count from the end (-1 is the last query).
	// Nil reduces every row.
	Rows []int
	// SumRows sums SpanMass, KeyMass and Entropy values over the rows:
	// one value per (batch, head), the accumulator of a head score.
	SumRows bool
}

// Reduced is one reduction's result for one hook point. Values run over
// [batch, head, row] with Shape [B, H, R] (plus K for TopK), R the rows
// reduced (every query when Rows is nil); with SumRows Shape is [B, H].
type Reduced struct {
	Hook    string
	Op      ReduceOp
	Shape   []int
	Rows    []int     // the query rows reduced, ascending; nil: every query
	Index   []int32   // TopK: key positions, largest weight first
	Values  []float32 // TopK weights, or one value per row (per head with SumRows)
	KeysLen int       // keys each row was reduced over

	reduction int // the index of its Reduction in Hooks.Reduce
}

// Edit changes the activations whose names match Hook (a glob). Fn gets the
// backend, the hook name, the activation in its internal layout (2-D:
// [batch*pos, features] for every hook but the attention scores and
// patterns, which are [batch, head, query, key]) and its TransformerLens
// shape; it returns the tensor to continue with (the same one when it
// edited in place).
type Edit struct {
	Hook string
	Fn   func(b compute.Backend, name string, t compute.Tensor, shape []int) (compute.Tensor, error)
	// FnPoint, when set, is used instead of Fn. It gets, besides Fn's
	// arguments, point: a function that passes a tensor the edit derives
	// (say, the ids a codebook chose) through the run's hooks under a name
	// of the edit's choosing, so other hooks can cache, reduce or edit it
	// like any activation. Such nested hook points are not in HookNames;
	// the edit that makes one does not apply to it.
	FnPoint func(b compute.Backend, name string, t compute.Tensor, shape []int, point PointFunc) (compute.Tensor, error)
}

// PointFunc passes t (TransformerLens shape shape) through the hook point
// name of the current run and returns the tensor to continue with.
type PointFunc func(name string, t compute.Tensor, shape []int) (compute.Tensor, error)

// ZeroAblateHead removes one head's output by zeroing its hook_z slice.
func ZeroAblateHead(cfg Config, layer, head int) Edit {
	return MeanAblateHead(cfg, layer, head, make([]float32, cfg.HeadDim))
}

// MeanAblateHead replaces one head's hook_z at every position with mean
// (length d_head), typically the head's mean z over a reference dataset.
func MeanAblateHead(cfg Config, layer, head int, mean []float32) Edit {
	return Edit{
		Hook: hookName(layer, "attn.hook_z"),
		Fn: func(b compute.Backend, name string, t compute.Tensor, shape []int) (compute.Tensor, error) {
			if len(mean) != cfg.HeadDim {
				return nil, fmt.Errorf("mean-ablate %s head %d: mean has %d values, d_head is %d", name, head, len(mean), cfg.HeadDim)
			}
			if head < 0 || head >= cfg.Heads {
				return nil, fmt.Errorf("ablate %s: head %d out of range [0, %d)", name, head, cfg.Heads)
			}
			b.FillColumnsInPlace(t, head*cfg.HeadDim, (head+1)*cfg.HeadDim, mean)
			return t, nil
		},
	}
}

// Patch replaces the named activation with values from another run (for
// example Result.Cache of run A). The shapes must agree.
func Patch(name string, from *Activation) Edit {
	return Edit{
		Hook: name,
		Fn: func(b compute.Backend, _ string, t compute.Tensor, shape []int) (compute.Tensor, error) {
			if !slices.Equal(shape, from.Shape) {
				return nil, fmt.Errorf("patch %s: activation is %v, patch is %v", name, shape, from.Shape)
			}
			return b.FromHost(from.Data, t.Shape()...), nil
		},
	}
}

// Steer adds scale·vec to every position of a residual-stream hook
// (vec has d_model values).
func Steer(name string, vec []float32, scale float32) Edit {
	return Edit{
		Hook: name,
		Fn: func(b compute.Backend, _ string, t compute.Tensor, shape []int) (compute.Tensor, error) {
			if shape[len(shape)-1] != len(vec) || len(t.Shape()) != 2 {
				return nil, fmt.Errorf("steer %s: vector has %d values, activation is %v", name, len(vec), shape)
			}
			v := make([]float32, len(vec))
			for i, x := range vec {
				v[i] = x * scale
			}
			b.AddInPlace(t, b.FromHost(v, len(v)))
			return t, nil
		},
	}
}

// Activation is a cached activation, copied to the host.
type Activation struct {
	Name  string
	Shape []int // TransformerLens order, e.g. [batch, pos, d_model]
	Data  []float32
}

func hookName(layer int, suffix string) string {
	return "blocks." + strconv.Itoa(layer) + "." + suffix
}

// blockHooks are the per-layer hook names, in the order a forward pass
// meets them. Names starting "attn." are inside the attention sublayer.
var blockHooks = []string{
	"hook_resid_pre", "ln1.hook_normalized",
	"attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_rot_q", "attn.hook_rot_k",
	"attn.hook_attn_scores", "attn.hook_pattern", "attn.hook_z", "attn.hook_result",
	"ln1_post.hook_normalized", "hook_attn_out", "hook_resid_mid", "ln2.hook_normalized",
	"mlp.hook_pre", "mlp.hook_pre_linear", "mlp.hook_post", "ln2_post.hook_normalized",
	"hook_mlp_out", "hook_resid_post",
}

// HookNames lists every hook point of the model in forward order.
func (m *Model) HookNames() []string {
	var names []string
	names = append(names, "hook_embed")
	if m.Config.Family == FamilyGPT2 {
		names = append(names, "hook_pos_embed")
	}
	for l := 0; l < m.Config.Layers; l++ {
		for _, s := range blockHooks {
			if !m.hasBlockHook(s) {
				continue
			}
			names = append(names, hookName(l, s))
		}
	}
	return append(names, "ln_final.hook_normalized", "logits")
}

// hasBlockHook says whether the family has a given block hook point.
func (m *Model) hasBlockHook(suffix string) bool {
	switch suffix {
	case "attn.hook_rot_q", "attn.hook_rot_k":
		return m.Config.Family != FamilyGPT2
	case "hook_resid_mid":
		return !m.Config.ParallelResidual
	case "mlp.hook_pre_linear":
		return m.Config.Family == FamilyLlama || m.Config.Family == FamilyGemma3
	case "ln1_post.hook_normalized", "ln2_post.hook_normalized":
		return m.Config.Family == FamilyGemma3
	}
	return true
}

// hookSet is a run's compiled Hooks: which names are cached, reduced or
// edited. A nil *hookSet does nothing.
type hookSet struct {
	hooks   *Hooks
	cache   map[string]*Activation
	reduce  []*Reduced
	memo    map[string]bool // name -> does any hook apply
	running []bool          // edits now running (a nested point skips them)
	pending []pendingCopy   // cache copies queued and not yet waited for
	// mask is the attention mask of the layer being run, for reductions of
	// a materialised pattern (relative spans need each query's position).
	mask compute.AttnMask
	// rowTotal > 0 while a chunked prefill runs: the pass holds queries
	// [rowBase, rowBase+T) of a prompt of rowTotal, and Reduction.Rows
	// count in the whole prompt.
	rowBase, rowTotal int
}

func newHookSet(h *Hooks) (*hookSet, error) {
	if h == nil || (len(h.Cache) == 0 && len(h.Reduce) == 0 && len(h.Edit) == 0) {
		return nil, nil
	}
	for _, p := range h.Cache {
		if _, err := path.Match(p, ""); err != nil {
			return nil, fmt.Errorf("hook pattern %q: %w", p, err)
		}
	}
	for _, r := range h.Reduce {
		if _, err := path.Match(r.Hook, ""); err != nil {
			return nil, fmt.Errorf("reduction pattern %q: %w", r.Hook, err)
		}
		if r.Op == TopK && r.K <= 0 {
			return nil, fmt.Errorf("top-k reduction on %q: K must be positive, got %d", r.Hook, r.K)
		}
		if r.Op == KeyMass && r.Keys == nil {
			return nil, fmt.Errorf("key-mass reduction on %q: no Keys function", r.Hook)
		}
		if r.Op < TopK || r.Op > KeyMass {
			return nil, fmt.Errorf("reduction on %q: unknown operation %d", r.Hook, r.Op)
		}
	}
	for _, e := range h.Edit {
		if _, err := path.Match(e.Hook, ""); err != nil {
			return nil, fmt.Errorf("edit pattern %q: %w", e.Hook, err)
		}
	}
	return &hookSet{hooks: h, cache: map[string]*Activation{}, memo: map[string]bool{}, running: make([]bool, len(h.Edit))}, nil
}

func match(pattern, name string) bool {
	ok, _ := path.Match(pattern, name)
	return ok
}

// active says whether any hook applies to name; callers use it to skip
// work that only a hook would need (such as per-head results).
func (hs *hookSet) active(name string) bool {
	if hs == nil {
		return false
	}
	if v, ok := hs.memo[name]; ok {
		return v
	}
	v := false
	for _, p := range hs.hooks.Cache {
		v = v || match(p, name)
	}
	for _, r := range hs.hooks.Reduce {
		v = v || match(r.Hook, name)
	}
	for _, e := range hs.hooks.Edit {
		v = v || match(e.Hook, name)
	}
	hs.memo[name] = v
	return v
}

// caches says whether a cache pattern matches name.
func (hs *hookSet) caches(name string) bool {
	if hs == nil {
		return false
	}
	for _, p := range hs.hooks.Cache {
		if match(p, name) {
			return true
		}
	}
	return false
}

// reduces says whether a reduction matches name.
func (hs *hookSet) reduces(name string) bool {
	if hs == nil {
		return false
	}
	for _, r := range hs.hooks.Reduce {
		if match(r.Hook, name) {
			return true
		}
	}
	return false
}

// record copies an activation to the cache. On a backend that copies to
// the host asynchronously (compute.HostCopier) the copy is only queued:
// the Activation gets its values in finish, at the end of the pass, so the
// device never waits for the host in the middle of one.
func (hs *hookSet) record(b compute.Backend, name string, t compute.Tensor, shape []int) {
	a := &Activation{Name: name, Shape: append([]int(nil), shape...)}
	hs.cache[name] = a
	hs.pending = append(hs.pending, pendingCopy{a, compute.ToHostLater(b, t)})
}

// pendingCopy is a cached activation whose values are still on their way.
type pendingCopy struct {
	a    *Activation
	wait func() ([]float32, error)
}

// finish waits for every cache copy the pass queued and fills their
// Activations; it returns the first copy's error (the pass then fails and
// returns no cache). The pass calls it once, at its end, error or not, so
// that nothing it queued is left in flight.
func (hs *hookSet) finish() error {
	if hs == nil {
		return nil
	}
	var first error
	for _, p := range hs.pending {
		data, err := p.wait()
		if err != nil && first == nil {
			first = fmt.Errorf("caching %s: %w", p.a.Name, err)
		}
		p.a.Data = data
	}
	hs.pending = nil
	return first
}

// edits says whether an edit applies to name.
func (hs *hookSet) edits(name string) bool {
	if hs == nil {
		return false
	}
	for _, e := range hs.hooks.Edit {
		if match(e.Hook, name) {
			return true
		}
	}
	return false
}

// point passes activation t through hook point name: edits first (in the
// order given), then reductions and caching see the edited value.
func (hs *hookSet) point(b compute.Backend, name string, t compute.Tensor, shape []int) (compute.Tensor, error) {
	if !hs.active(name) {
		return t, nil
	}
	for i, e := range hs.hooks.Edit {
		if hs.running[i] || !match(e.Hook, name) {
			continue
		}
		var out compute.Tensor
		var err error
		if e.FnPoint != nil {
			hs.running[i] = true
			out, err = e.FnPoint(b, name, t, shape, func(n string, t compute.Tensor, s []int) (compute.Tensor, error) {
				return hs.point(b, n, t, s)
			})
			hs.running[i] = false
		} else {
			out, err = e.Fn(b, name, t, shape)
		}
		if err != nil {
			return nil, fmt.Errorf("hook %s: %w", name, err)
		}
		if compute.Numel(out.Shape()) != compute.Numel(t.Shape()) {
			return nil, fmt.Errorf("hook %s: edit returned shape %v for %v", name, out.Shape(), t.Shape())
		}
		t = out
	}
	if strings.HasSuffix(name, "hook_pattern") && len(shape) == 4 {
		if err := hs.reducePatternOnHost(b, name, t, shape, hs.mask); err != nil {
			return nil, err
		}
	}
	for ri, r := range hs.hooks.Reduce {
		if !match(r.Hook, name) || strings.HasSuffix(name, "hook_pattern") && len(shape) == 4 {
			continue
		}
		if len(shape) != 4 || !strings.HasSuffix(name, "hook_attn_scores") {
			return nil, fmt.Errorf("reduction %s on %s: reductions apply to attention hooks [batch, head, query, key]", r.Op, name)
		}
		if r.Op == KeyMass || r.LoRelative || r.HiRelative || r.SumRows || r.Rows != nil {
			return nil, fmt.Errorf("reduction %s on %s: scores reduce by top-k, span mass or entropy over every row (key masses, relative spans, row choices and sums are for hook_pattern)", r.Op, name)
		}
		red := &Reduced{Hook: name, Op: r.Op, Shape: append([]int(nil), shape[:3]...), KeysLen: shape[3], reduction: ri}
		switch r.Op {
		case TopK:
			red.Index, red.Values = b.TopKRows(t, r.K)
			red.Shape = append(red.Shape, min(r.K, shape[3]))
		case SpanMass:
			lo, hi := max(r.Lo, 0), min(r.Hi, shape[3])
			if r.Hi <= 0 {
				hi = shape[3]
			}
			if lo > hi {
				lo = hi
			}
			red.Values = b.SpanMassRows(t, lo, hi)
		case Entropy:
			red.Values = b.EntropyRows(t)
		default:
			return nil, fmt.Errorf("hook %s: unknown reduction %d", name, r.Op)
		}
		hs.reduce = append(hs.reduce, red)
	}
	if hs.caches(name) {
		hs.record(b, name, t, shape)
	}
	return t, nil
}
