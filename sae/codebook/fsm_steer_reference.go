package codebook

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"

	"github.com/loupe-dev/loupe/organism/tokfsm"
	"github.com/loupe-dev/loupe/probe"
)

// The reference's TokFSM steering measure, transcribed from its tutorial
// (taufeeque9/codebook-features, tutorials/tokfsm.ipynb, "Steering the
// Network by Intervening on the State Codes"), which is where the paper's
// claim comes from ("changing every state code in the MLP layer shifts the
// network's decision almost entirely to that of the activated code"):
//
//   - the inputs are every state a, as BOS, a random walk of prefix states
//     that leads to a (drawn backwards through the machine; a uniform
//     number of its first states, 0 to prefix, dropped), then a's digits.
//     The tutorial runs prefix 0 (BOS and a alone) and says 62 reproduces
//     the paper;
//   - for every state b, the codes that b's own input (BOS and b, no
//     prefix) chooses at its last position are forced at the last position
//     of every input a, at the codebooks of a patching;
//   - the measure is the JS divergence of each patched next-token
//     distribution from b's, summed over every a (b's own input included)
//     and divided by N-1, then averaged over b; "none" is the same with the
//     unpatched distributions of the states' inputs without prefix;
//   - the bars are those averages divided by the largest of them (the
//     "none" bar in practice).
//
// The prefixes are drawn by Loupe's generator, not NumPy's, so with prefix
// > 0 the walks differ from the reference's (same distribution); prefix 0
// is deterministic and checked against a PyTorch transcription
// (testdata/make_steer_ref.py, which wrote testdata/steer_ref.json).

// Patching is one of the tutorial's groups of codebooks.
type Patching struct {
	Name  string   // the tutorial's label: "none", "l0_attn", "l1_mlp", "all_attn", "all_mlp", "all_attn_mlp"
	Sites []string // the codebooks forced (nil for none)
}

// TutorialPatchings are the tutorial's six bars on a model with codebooks
// at every layer's attn.hook_z and hook_mlp_out.
func TutorialPatchings(set *Set) []Patching {
	var attn, mlp []string
	for _, l := range set.Layers {
		switch {
		case strings.HasSuffix(l.Hook, "attn.hook_z"):
			attn = append(attn, l.Hook)
		case strings.HasSuffix(l.Hook, "hook_mlp_out"):
			mlp = append(mlp, l.Hook)
		}
	}
	out := []Patching{{Name: "none"}}
	if len(attn) > 0 {
		out = append(out, Patching{"l0_attn", attn[:1]})
	}
	if len(mlp) > 1 {
		out = append(out, Patching{"l1_mlp", mlp[1:2]})
	}
	out = append(out, Patching{"all_attn", attn}, Patching{"all_mlp", mlp}, Patching{"all_attn_mlp", append(append([]string{}, attn...), mlp...)})
	return out
}

// RefSteerRow is one patching's outcome.
type RefSteerRow struct {
	Name  string   `json:"name"`
	Sites []string `json:"sites"`
	// MeanJS is the tutorial's average (nats); Normalized divides it by the
	// largest row's, as the tutorial's bars do.
	MeanJS     float64 `json:"mean_js"`
	Normalized float64 `json:"normalized_js"`
	// CloserToB: of the pairs a != b, the fraction whose patched
	// distribution is closer (JS) to b's than to a's own unpatched one
	// (Loupe's addition: "follows b" as a rate; for none it is 0).
	CloserToB float64 `json:"closer_to_b"`
}

// RefSteerReport is SteerReference's result.
type RefSteerReport struct {
	Prefix  int           `json:"prefix_states"`
	States  int           `json:"states"`
	Targets int           `json:"target_states"`
	Rows    []RefSteerRow `json:"rows"`
}

// refInputs are the tutorial's inputs: for each state, BOS, the walk
// prefix leading to it, and its digits.
func refInputs(f *tokfsm.FSM, prefix int, seed uint64) [][]int {
	prev := make([][]int, f.States)
	for s, next := range f.Next {
		for _, t := range next {
			prev[t] = append(prev[t], s)
		}
	}
	rng := rand.New(rand.NewPCG(seed, 0x72656673)) // "refs"
	out := make([][]int, f.States)
	for a := range f.States {
		// generate_trajectories on the reversed machine: prefix steps back
		// from a, reversed; then the first hide states are dropped.
		walk := make([]int, prefix)
		s := a
		for i := range prefix {
			if len(prev[s]) == 0 { // no way in: the walk is shorter
				walk = walk[prefix-i:]
				break
			}
			s = prev[s][rng.IntN(len(prev[s]))]
			walk[prefix-1-i] = s
		}
		hide := rng.IntN(len(walk) + 1)
		out[a] = f.Sequence(append(walk[hide:], a), 0)
	}
	return out
}

// SteerReference runs the tutorial's measure for each patching, over the
// target states b in targets (nil: every state, as the tutorial; every a is
// always an input).
func SteerReference(ctx context.Context, m *Model, f *tokfsm.FSM, patchings []Patching, prefix int, seed uint64, targets []int) (*RefSteerReport, error) {
	if f.Digits != 2 {
		return nil, fmt.Errorf("steer reference: the tutorial's inputs are two-digit states; this machine writes %d digits", f.Digits)
	}
	if prefix < 0 {
		return nil, fmt.Errorf("steer reference: prefix %d: want 0 or more states", prefix)
	}
	for _, p := range patchings {
		for _, s := range p.Sites {
			if m.Set.Layer(s) == nil {
				return nil, fmt.Errorf("steer reference: patching %s: no codebook at %s", p.Name, s)
			}
		}
	}
	N := f.States
	if targets == nil {
		for b := range N {
			targets = append(targets, b)
		}
	}
	for _, b := range targets {
		if b < 0 || b >= N {
			return nil, fmt.Errorf("steer reference: target state %d outside [0, %d)", b, N)
		}
	}
	plain := make([][]int, N)
	for s := range N {
		plain[s] = f.Sequence([]int{s}, 0)
	}
	inputs := refInputs(f, prefix, seed)
	var cache []string
	for _, l := range m.Set.Layers {
		cache = append(cache, IDsHook(l.Hook))
	}
	run := func(batch [][]int, ivs []Intervention, withCache bool) (*probe.Result, error) {
		sp, err := NewSplice(m.Set, ivs...)
		if err != nil {
			return nil, err
		}
		h := &probe.Hooks{Edit: sp.Edits()}
		if withCache {
			h.Cache = cache
		}
		return m.Forward(ctx, batch, probe.Options{Logits: probe.LogitsLast, Hooks: h})
	}
	// b's own distributions and codes (inputs without prefix: all of one length).
	rb, err := run(plain, nil, true)
	if err != nil {
		return nil, err
	}
	lastB := make([][]float64, N)
	for b := range N {
		lastB[b] = softmax(rb.LogitsAt(b, -1))
	}
	// a's own unpatched distributions with its prefix.
	ra, err := run(inputs, nil, false)
	if err != nil {
		return nil, err
	}
	ownA := make([][]float64, N)
	for a := range N {
		ownA[a] = softmax(ra.LogitsAt(a, -1))
	}
	rep := &RefSteerReport{Prefix: prefix, States: N, Targets: len(targets)}
	T := 0
	for _, in := range inputs {
		T = max(T, len(in))
	}
	for _, p := range patchings {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		row := RefSteerRow{Name: p.Name, Sites: p.Sites}
		closer := 0
		for _, b := range targets {
			var dists [][]float64
			if len(p.Sites) == 0 {
				dists = make([][]float64, N)
				for a := range N {
					dists[a] = lastB[a] // the tutorial's none: the states' inputs without prefix
				}
			} else {
				var ivs []Intervention
				for _, site := range p.Sites {
					l := m.Set.Layer(site)
					ids := rb.Cache[IDsHook(site)].Data
					// b's row in the cached batch, at its last position
					// (plain inputs are unpadded, all of length 3).
					base := (b*len(plain[b]) + len(plain[b]) - 1) * l.Groups * l.K
					for g := range l.Groups {
						force := make([]int32, l.K)
						for k := range l.K {
							force[k] = int32(ids[base+g*l.K+k])
						}
						// every input's last token sits in the last slot of
						// the left-padded batch
						ivs = append(ivs, Intervention{Hook: site, Group: g, Positions: []int{T - 1}, Force: force})
					}
				}
				r, err := run(inputs, ivs, false)
				if err != nil {
					return nil, err
				}
				dists = make([][]float64, N)
				for a := range N {
					dists[a] = softmax(r.LogitsAt(a, -1))
				}
			}
			sum := 0.0
			for a := range N {
				sum += jsDivergence(dists[a], lastB[b])
			}
			row.MeanJS += sum / float64(N-1) / float64(len(targets))
			if len(p.Sites) == 0 {
				continue
			}
			for a := range N {
				if a != b && jsDivergence(dists[a], lastB[b]) < jsDivergence(dists[a], ownA[a]) {
					closer++
				}
			}
		}
		if len(p.Sites) > 0 {
			row.CloserToB = float64(closer) / float64(len(targets)*(N-1))
		}
		rep.Rows = append(rep.Rows, row)
	}
	mx := 0.0
	for _, r := range rep.Rows {
		mx = max(mx, r.MeanJS)
	}
	for i := range rep.Rows {
		rep.Rows[i].Normalized = rep.Rows[i].MeanJS / max(mx, 1e-300)
	}
	return rep, nil
}

// Print writes the report as the tutorial's bars.
func (r *RefSteerReport) Print(w io.Writer) {
	fmt.Fprintf(w, "steering, the reference tutorial's measure (tutorials/tokfsm.ipynb): %d target states, inputs with %d random prefix states\n", r.Targets, r.Prefix)
	fmt.Fprintf(w, "  b's codes forced at the last position of every state's input; JS divergence to b's next-token distribution, normalised by the largest bar\n")
	for _, row := range r.Rows {
		fmt.Fprintf(w, "  %-13s normalised JS %.3f (%.4f nats)  closer to b than to a's own in %5.1f%% of pairs\n", row.Name, row.Normalized, row.MeanJS, 100*row.CloserToB)
	}
}
