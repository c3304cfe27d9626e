package codebook

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/loupe-dev/loupe/probe"
)

// The reference's own state measure. taufeeque9/codebook-features scores a
// code against a pattern (a state, found in the text by a regular
// expression) in code_search_utils.py: get_code_precision_and_recall counts,
// over every token of the dataset, where the code fires; its recall is the
// fraction of the pattern's tokens where it fires, its precision the
// fraction of its firings that are on the pattern, and codes of recall 1%
// or less are dropped. A neuron is scored at the code's recall
// (get_neuron_precision_and_recall, compare_codes_with_neurons): its
// threshold is the activation that keeps that fraction of the pattern's
// tokens, and its precision is that count over every token at or above the
// threshold. The measure is precision at a matched recall, over every token
// position, not an average precision over state-completing positions
// (MeasureStateAP): a state split over four pure codes by the digit before
// it scores its best code's precision, about 1, though that code's recall
// is about a quarter.
//
// Where the reference leaves a choice open, this follows Loupe's StateEval:
// a state's tokens are its last digits (the bold digit of the paper's
// "bigram (2nd pos.)" codes; the reference's regex marks one token per
// match), and the best code of a state is the most precise over every
// codebook (ties: the larger recall).

// StatePrecision is, per state, the most precise code (recall above 1%) and
// the most precise neuron at that code's recall, over every position.
type StatePrecision struct {
	Positions     int // every position of every sequence, BOS included
	CodePrecision []float64
	CodeRecall    []float64
	BestCode      []CodeRef
	// NeuronPrecision is the best neuron's precision at CodeRecall (0 where
	// no code passes the recall floor).
	NeuronPrecision []float64
	BestNeuron      []NeuronRef
}

// refRecallFloor is the reference's filter: codes of recall at most this are
// not candidates.
const refRecallFloor = 0.01

// bestCodeByPrecision picks, per state, the most precise code of recall
// above the floor. fired[c] counts c's firings over every position, hits[c]
// (nil when c never fires on a state) its firings per state, total[s] the
// state's positions. It is the reference's get_code_precision_and_recall
// followed by a maximum over codes.
func bestCodeByPrecision(fired []int, hits [][]int, total []int) (prec, recall []float64, best []int) {
	S := len(total)
	prec, recall, best = make([]float64, S), make([]float64, S), make([]int, S)
	for s := range best {
		best[s] = -1
	}
	for c, h := range hits {
		if h == nil || fired[c] == 0 {
			continue
		}
		for s := range S {
			if total[s] == 0 || h[s] == 0 {
				continue
			}
			r := float64(h[s]) / float64(total[s])
			if r <= refRecallFloor {
				continue
			}
			p := float64(h[s]) / float64(fired[c])
			if best[s] < 0 || p > prec[s] || p == prec[s] && r > recall[s] {
				prec[s], recall[s], best[s] = p, r, c
			}
		}
	}
	return prec, recall, best
}

// neuronPrecisionAtRecall is the reference's get_neuron_precision_and_recall
// for one neuron: pos holds its activations on the pattern's positions and
// sortedAll on every position, both ascending. The threshold is
// the int(recall·len(pos))-th largest of pos; the precision is that count
// over the positions at or above the threshold. It is 0 when the count is 0.
func neuronPrecisionAtRecall(pos []float32, sortedAll []float32, recall float64) float64 {
	m := int(recall * float64(len(pos)))
	if m <= 0 {
		return 0
	}
	thresh := pos[len(pos)-m]
	at := sort.Search(len(sortedAll), func(i int) bool { return sortedAll[i] >= thresh })
	return float64(m) / float64(len(sortedAll)-at)
}

// refCounts is one pass of ev through m with its codebooks: per position
// its state label (-1 where none completes), per state its positions, and
// per codebook each code's firings over every position and per state.
type refCounts struct {
	labels []int
	total  []int
	fired  [][]int   // per codebook, per code
	hits   [][][]int // per codebook, per code (nil: never on a state), per state
}

// forEachRow runs every batch of ev through m with its codebooks, caching
// cache, and hands each position's row of the result to visit in order.
func forEachRow(ctx context.Context, m *Model, ev *StateEval, cache []string, batch int, visit func(r *probe.Result, row int)) error {
	for lo := 0; lo < len(ev.Seqs); lo += batch {
		hi := min(lo+batch, len(ev.Seqs))
		sp, err := NewSplice(m.Set)
		if err != nil {
			return err
		}
		r, err := m.Forward(ctx, ev.Seqs[lo:hi], probe.Options{Logits: probe.LogitsNone,
			Hooks: &probe.Hooks{Edit: sp.Edits(), Cache: cache}})
		if err != nil {
			return err
		}
		for b := lo; b < hi; b++ {
			for p := range ev.States[b] {
				visit(r, (b-lo)*r.Len+r.Pad[b-lo]+p)
			}
		}
	}
	return nil
}

func countRef(ctx context.Context, m *Model, ev *StateEval, batch int) (*refCounts, error) {
	S := ev.FSM.States
	rc := &refCounts{total: make([]int, S)}
	for _, st := range ev.States {
		for _, s := range st {
			rc.labels = append(rc.labels, s)
			if s >= 0 {
				rc.total[s]++
			}
		}
	}
	for _, l := range m.Set.Layers {
		rc.fired = append(rc.fired, make([]int, l.Groups*l.NumCodes))
		rc.hits = append(rc.hits, make([][]int, l.Groups*l.NumCodes))
	}
	i := 0
	err := forEachRow(ctx, m, ev, []string{"*" + IDsSuffix}, batch, func(r *probe.Result, row int) {
		s := rc.labels[i]
		i++
		for li, l := range m.Set.Layers {
			ids := r.Cache[IDsHook(l.Hook)].Data[row*l.Groups*l.K : (row+1)*l.Groups*l.K]
			for j, v := range ids {
				if v < 0 {
					continue
				}
				c := j/l.K*l.NumCodes + int(v)
				rc.fired[li][c]++
				if s < 0 {
					continue
				}
				if rc.hits[li][c] == nil {
					rc.hits[li][c] = make([]int, S)
				}
				rc.hits[li][c][s]++
			}
		}
	})
	return rc, err
}

// neuronColumns caches each glob of neuronHooks in turn and hands every
// neuron's activations to visit: per state, its activations on the state's
// positions (ascending), and on every position (ascending).
func neuronColumns(ctx context.Context, m *Model, ev *StateEval, rc *refCounts, neuronHooks []string, batch int, visit func(n NeuronRef, pos [][]float32, all []float32)) error {
	S := len(rc.total)
	for _, glob := range neuronHooks {
		acts := map[string][]float32{}
		widths := map[string]int{}
		err := forEachRow(ctx, m, ev, []string{glob}, batch, func(r *probe.Result, row int) {
			for name, a := range r.Cache {
				w := a.Shape[len(a.Shape)-1]
				widths[name] = w
				acts[name] = append(acts[name], a.Data[row*w:(row+1)*w]...)
			}
		})
		if err != nil {
			return err
		}
		if len(acts) == 0 {
			return fmt.Errorf("state precision: no activation matches %q", glob)
		}
		names := make([]string, 0, len(acts))
		for name := range acts {
			names = append(names, name)
		}
		sort.Strings(names)
		n := len(rc.labels)
		all := make([]float32, n)
		pos := make([][]float32, S)
		for _, name := range names {
			w, data := widths[name], acts[name]
			for j := range w {
				if err := ctx.Err(); err != nil {
					return err
				}
				for s := range pos {
					pos[s] = pos[s][:0]
				}
				for k := range n {
					v := data[k*w+j]
					all[k] = v
					if s := rc.labels[k]; s >= 0 {
						pos[s] = append(pos[s], v)
					}
				}
				slices.Sort(all)
				for s := range pos {
					slices.Sort(pos[s])
				}
				visit(NeuronRef{Hook: name, Index: j}, pos, all)
			}
		}
	}
	return nil
}

// MeasureStatePrecision runs ev through m with its codebooks and scores
// codes and the neurons of neuronHooks (each a hook name or glob, cached
// one at a time to bound memory) as the reference does (see above), per
// state.
func MeasureStatePrecision(ctx context.Context, m *Model, ev *StateEval, neuronHooks []string, batch int) (*StatePrecision, error) {
	rc, err := countRef(ctx, m, ev, batch)
	if err != nil {
		return nil, err
	}
	S := len(rc.total)
	res := &StatePrecision{Positions: len(rc.labels), CodePrecision: make([]float64, S), CodeRecall: make([]float64, S),
		BestCode: make([]CodeRef, S), NeuronPrecision: make([]float64, S), BestNeuron: make([]NeuronRef, S)}
	for li, l := range m.Set.Layers {
		p, r, best := bestCodeByPrecision(rc.fired[li], rc.hits[li], rc.total)
		for s := range S {
			if best[s] >= 0 && (p[s] > res.CodePrecision[s] || p[s] == res.CodePrecision[s] && r[s] > res.CodeRecall[s]) {
				res.CodePrecision[s], res.CodeRecall[s] = p[s], r[s]
				res.BestCode[s] = CodeRef{Hook: l.Hook, Group: best[s] / l.NumCodes, ID: best[s] % l.NumCodes}
			}
		}
	}
	err = neuronColumns(ctx, m, ev, rc, neuronHooks, batch, func(n NeuronRef, pos [][]float32, all []float32) {
		for s := range S {
			if res.CodeRecall[s] == 0 {
				continue
			}
			if p := neuronPrecisionAtRecall(pos[s], all, res.CodeRecall[s]); p > res.NeuronPrecision[s] {
				res.NeuronPrecision[s], res.BestNeuron[s] = p, n
			}
		}
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// CodePrecisionRow is one code scored against the state it fires on most
// (at state-completing positions), as the reference's
// compare_codes_with_neurons scores a list of codes, each against its own
// pattern: the code's precision and recall, and the best neuron's
// precision at that recall.
type CodePrecisionRow struct {
	Code            CodeRef
	State           int
	Precision       float64
	Recall          float64
	NeuronPrecision float64
	Neuron          NeuronRef
}

// MeasureCodePrecision scores every code of the codebook at hook whose
// recall on its most frequent state is above 1%, as CodePrecisionRow says:
// the population of the reference's comparison when its list of codes is a
// whole codebook.
func MeasureCodePrecision(ctx context.Context, m *Model, ev *StateEval, hook string, neuronHooks []string, batch int) ([]CodePrecisionRow, error) {
	li := slices.IndexFunc(m.Set.Layers, func(l *Layer) bool { return l.Hook == hook })
	if li < 0 {
		return nil, fmt.Errorf("code precision: no codebook at %s", hook)
	}
	l := m.Set.Layers[li]
	rc, err := countRef(ctx, m, ev, batch)
	if err != nil {
		return nil, err
	}
	var rows []CodePrecisionRow
	for c, h := range rc.hits[li] {
		if h == nil {
			continue
		}
		s := 0
		for t := range h {
			if h[t] > h[s] {
				s = t
			}
		}
		r := float64(h[s]) / float64(max(rc.total[s], 1))
		if r <= refRecallFloor {
			continue
		}
		rows = append(rows, CodePrecisionRow{Code: CodeRef{Hook: hook, Group: c / l.NumCodes, ID: c % l.NumCodes}, State: s,
			Precision: float64(h[s]) / float64(rc.fired[li][c]), Recall: r})
	}
	err = neuronColumns(ctx, m, ev, rc, neuronHooks, batch, func(n NeuronRef, pos [][]float32, all []float32) {
		for i := range rows {
			if p := neuronPrecisionAtRecall(pos[rows[i].State], all, rows[i].Recall); p > rows[i].NeuronPrecision {
				rows[i].NeuronPrecision, rows[i].Neuron = p, n
			}
		}
	})
	if err != nil {
		return nil, err
	}
	return rows, nil
}

// RefStateReport is the reference's measure in `loupe codebook eval`: per
// state the most precise code and, at its recall, the most precise neuron
// of each neuron set.
type RefStateReport struct {
	Positions         int            `json:"positions"`
	MeanCodePrecision float64        `json:"mean_best_code_precision"`
	MeanCodeRecall    float64        `json:"mean_best_code_recall"`
	Neurons           []RefNeuronRow `json:"neurons"`
}

// RefNeuronRow is one neuron set's mean best precision at the codes' recall.
type RefNeuronRow struct {
	Hooks         []string `json:"hooks"`
	MeanPrecision float64  `json:"mean_best_neuron_precision"`
}

// refNeuronSets are the neurons the reference's measure is reported for:
// the MLP hidden units (MeasureStateAP's), and the attention and MLP
// outputs, the reference's own neurons (as cached here: after the
// codebooks, since a probe cache sees the edited value).
var refNeuronSets = [][]string{
	{"blocks.*.mlp.hook_post"},
	{"blocks.*.hook_attn_out", "blocks.*.hook_mlp_out"},
}

// EvaluateStatePrecision is the reference's measure on ev, for every
// neuron set of refNeuronSets.
func EvaluateStatePrecision(ctx context.Context, m *Model, ev *StateEval) (*RefStateReport, error) {
	rep := &RefStateReport{}
	for _, hooks := range refNeuronSets {
		sp, err := MeasureStatePrecision(ctx, m, ev, hooks, 16)
		if err != nil {
			return nil, err
		}
		rep.Positions, rep.MeanCodePrecision, rep.MeanCodeRecall = sp.Positions, MeanOf(sp.CodePrecision), MeanOf(sp.CodeRecall)
		rep.Neurons = append(rep.Neurons, RefNeuronRow{Hooks: hooks, MeanPrecision: MeanOf(sp.NeuronPrecision)})
	}
	return rep, nil
}

// Print writes the reference's measure beside the paper's figures.
func (r *RefStateReport) Print(w io.Writer) {
	fmt.Fprintf(w, "the reference's measure (codebook-features code_search_utils): precision at a matched recall over all %d positions\n", r.Positions)
	fmt.Fprintf(w, "    most precise code (recall > 1%%)              %.3f   %.3f   (its recall %.3f)\n", r.MeanCodePrecision, PaperCodeAP, r.MeanCodeRecall)
	for _, n := range r.Neurons {
		fmt.Fprintf(w, "    best neuron at that recall                   %.3f   %.3f   (%s)\n", n.MeanPrecision, PaperNeuronAP, strings.Join(n.Hooks, " "))
	}
}
