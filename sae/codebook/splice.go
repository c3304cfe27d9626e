package codebook

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/loupe-dev/loupe/probe"
	"github.com/loupe-dev/loupe/probe/compute"
)

// IDsSuffix is appended to a layer's site to name its nested hook point.
const IDsSuffix = ".hook_codebook_ids"

// IDsHook is the nested hook point of the layer at site.
func IDsHook(site string) string { return site + IDsSuffix }

// Sites are the hook points a codebook layer can sit at, by their suffix
// after "blocks.L.".
var Sites = []string{"attn.hook_z", "hook_attn_out", "hook_mlp_out", "hook_resid_post"}

// SiteWidth checks that site is a codebook site of a model of config cfg
// and gives the width of its activation.
func SiteWidth(cfg probe.Config, site string) (int, error) {
	rest, ok := strings.CutPrefix(site, "blocks.")
	layerStr, suffix, ok2 := strings.Cut(rest, ".")
	layer, err := strconv.Atoi(layerStr)
	if !ok || !ok2 || err != nil || !slices.Contains(Sites, suffix) {
		return 0, fmt.Errorf("codebook site %q: want blocks.L.S with S one of %v", site, Sites)
	}
	if layer < 0 || layer >= cfg.Layers {
		return 0, fmt.Errorf("codebook site %q: layer %d outside the model's %d layers", site, layer, cfg.Layers)
	}
	if suffix == "attn.hook_z" {
		return cfg.Heads * cfg.HeadDim, nil
	}
	return cfg.DModel, nil
}

// CheckModel checks every layer of s against a model's config: the site
// exists and the widths agree (and at attn.hook_z, a grouped codebook has
// one group per head).
func (s *Set) CheckModel(cfg probe.Config) error {
	for _, l := range s.Layers {
		w, err := SiteWidth(cfg, l.Hook)
		if err != nil {
			return err
		}
		if l.Width() != w {
			return fmt.Errorf("codebook %s reads %d features (%d groups of %d), the model's activation there has %d", l.Hook, l.Width(), l.Groups, l.Dim, w)
		}
		if strings.HasSuffix(l.Hook, "attn.hook_z") && l.Groups != 1 && l.Groups != cfg.Heads {
			return fmt.Errorf("codebook %s has %d groups; at hook_z a codebook has one group per head (%d) or one for all", l.Hook, l.Groups, cfg.Heads)
		}
	}
	return nil
}

// Intervention forces or disables codes of one layer at chosen positions.
type Intervention struct {
	Hook  string // the layer's site
	Group int    // the head at attn.hook_z; 0 elsewhere
	// Positions are positions in the sequence (counted over every forward
	// of a generation, so the prompt's come first); nil means every one.
	// They count the slots of the batch as the forward pass lays it out, so
	// in a left-padded batch (sequences of different lengths) a sequence's
	// own position p is slot p + its padding: give such batches per-slot
	// positions, or run sequences of one length together. KeepFrom counts
	// slots the same way.
	Positions []int
	// Force puts these ids in the first len(Force) of the k slots, or with
	// AtEnd in the last ones, the first id in the k-th slot, the next in
	// the one before (the reference's patch_in_codes with code_pos -1, -2,
	// ...: the least similar of the chosen codes give way).
	Force []int32
	AtEnd bool
	// Disable keeps these codes from being chosen (the next most similar
	// are taken instead).
	Disable []int32
}

func (iv *Intervention) at(pos int) bool {
	return iv.Positions == nil || slices.Contains(iv.Positions, pos)
}

// forceSlots puts force into the k chosen ids of one row and group: the
// first slots, or with atEnd the last ones, force[0] in the last.
func forceSlots(slot, force []int32, atEnd bool) {
	if !atEnd {
		copy(slot, force)
		return
	}
	for j, id := range force {
		slot[len(slot)-1-j] = id
	}
}

// Splice is a set of codebooks running in a forward pass or a generation.
// Make one per run: it counts positions across the forwards of a
// generation. Its Edits go into probe.Hooks.Edit.
type Splice struct {
	Set           *Set
	Interventions []Intervention
	// Only, when not nil, runs just the layers whose sites it lists.
	Only []string
	// Usage, when not nil, receives every chosen id: Usage[site][g*C+id]++.
	Usage map[string][]int64
	// KeepFrom: positions before it keep their activation (1 leaves the BOS
	// position alone, as frozen-model codebooks are trained).
	KeepFrom int

	seen map[string]int // site -> positions per sequence already run
}

// NewSplice prepares a run of s with the given interventions, checked
// against the set: known sites, groups in range, code ids in range.
func NewSplice(s *Set, ivs ...Intervention) (*Splice, error) {
	for _, iv := range ivs {
		l := s.Layer(iv.Hook)
		if l == nil {
			return nil, fmt.Errorf("intervention at %s: no codebook there (codebooks at %s)", iv.Hook, strings.Join(s.Sites(), ", "))
		}
		if iv.Group < 0 || iv.Group >= l.Groups {
			return nil, fmt.Errorf("intervention at %s: group %d outside [0, %d)", iv.Hook, iv.Group, l.Groups)
		}
		if len(iv.Force) > l.K {
			return nil, fmt.Errorf("intervention at %s: %d forced codes, k is %d", iv.Hook, len(iv.Force), l.K)
		}
		for _, id := range slices.Concat(iv.Force, iv.Disable) {
			if id < 0 || int(id) >= l.NumCodes {
				return nil, fmt.Errorf("intervention at %s: code id %d out of range [0, %d)", iv.Hook, id, l.NumCodes)
			}
		}
		for _, p := range iv.Positions {
			if p < 0 {
				return nil, fmt.Errorf("intervention at %s: position %d is negative", iv.Hook, p)
			}
		}
	}
	return &Splice{Set: s, Interventions: ivs, seen: map[string]int{}}, nil
}

// Sites lists the set's layer sites in order.
func (s *Set) Sites() []string {
	var out []string
	for _, l := range s.Layers {
		out = append(out, l.Hook)
	}
	return out
}

// Edits are the probe edits that run the codebooks.
func (sp *Splice) Edits() []probe.Edit {
	var out []probe.Edit
	for _, l := range sp.Set.Layers {
		if sp.Only != nil && !slices.Contains(sp.Only, l.Hook) {
			continue
		}
		out = append(out, probe.Edit{Hook: l.Hook, FnPoint: func(b compute.Backend, name string, t compute.Tensor, shape []int, point probe.PointFunc) (compute.Tensor, error) {
			return sp.run(l, b, t, shape, point)
		}})
	}
	return out
}

// run applies layer l to activation t (TransformerLens shape shape: [B, T,
// ...]), passes the ids through the nested hook point and returns the codes.
func (sp *Splice) run(l *Layer, b compute.Backend, t compute.Tensor, shape []int, point probe.PointFunc) (compute.Tensor, error) {
	B, T := shape[0], shape[1]
	x := t
	if sh := t.Shape(); len(sh) != 2 {
		x = b.Reshape(t, B*T, compute.Numel(sh)/(B*T))
	}
	past := sp.seen[l.Hook]
	var ivs []*Intervention
	for i := range sp.Interventions {
		if sp.Interventions[i].Hook == l.Hook {
			ivs = append(ivs, &sp.Interventions[i])
		}
	}
	var disabled func(row, g int) []int32
	if len(ivs) > 0 {
		disabled = func(row, g int) []int32 {
			var off []int32
			for _, iv := range ivs {
				if iv.Group == g && len(iv.Disable) > 0 && iv.at(past+row%T) {
					off = append(off, iv.Disable...)
				}
			}
			return off
		}
	}
	tabs := sp.Set.tables(l, b)
	ids, err := l.Select(b, x, tabs, disabled)
	if err != nil {
		return nil, err
	}
	for _, iv := range ivs {
		if len(iv.Force) == 0 {
			continue
		}
		for r := 0; r < B*T; r++ {
			if !iv.at(past + r%T) {
				continue
			}
			forceSlots(ids[(r*l.Groups+iv.Group)*l.K:(r*l.Groups+iv.Group+1)*l.K], iv.Force, iv.AtEnd)
		}
	}
	idShape := []int{B, T, l.K}
	if l.Groups > 1 {
		idShape = []int{B, T, l.Groups, l.K}
	}
	asF := make([]float32, len(ids))
	for i, id := range ids {
		asF[i] = float32(id)
	}
	back, err := point(IDsHook(l.Hook), b.FromHost(asF, B*T, l.Groups*l.K), idShape)
	if err != nil {
		return nil, err
	}
	for i, v := range b.ToHost(back) {
		id := int32(v)
		if float32(id) != v || id < -1 || int(id) >= l.NumCodes {
			return nil, fmt.Errorf("codebook %s: %s gave code id %g, outside [0, %d) (or -1 for none)", l.Hook, IDsHook(l.Hook), v, l.NumCodes)
		}
		ids[i] = id
	}
	// The output is gathered where the activation lives: only the ids
	// travel between the host and the device.
	out, err := l.DecodeOn(b, ids, B*T, tabs)
	if err != nil {
		return nil, err
	}
	if past < sp.KeepFrom {
		for r := 0; r < B*T; r++ {
			if past+r%T < sp.KeepFrom {
				b.CopyRowsInPlace(out, b.Rows(x, r, r+1), r)
				for i := r * l.Groups * l.K; i < (r+1)*l.Groups*l.K; i++ {
					ids[i] = -1 // nothing chosen there
				}
			}
		}
	}
	if sp.Usage != nil {
		u := sp.Usage[l.Hook]
		if u == nil {
			u = make([]int64, l.Groups*l.NumCodes)
			sp.Usage[l.Hook] = u
		}
		for i, id := range ids {
			if id >= 0 {
				u[(i/l.K)%l.Groups*l.NumCodes+int(id)]++
			}
		}
	}
	sp.seen[l.Hook] = past + T
	return b.Reshape(out, t.Shape()...), nil
}
