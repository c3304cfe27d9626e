package codebook

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"

	"github.com/loupe-dev/loupe/organism/tokfsm"
	"github.com/loupe-dev/loupe/probe"
)

// The TokFSM measures of the paper's section on finite state machines: how
// well single codes, and single neurons, detect the machine's state, and
// whether forcing a state's codes makes the model act as if in that state.

// StateEval is a seeded set of TokFSM sequences with their labels. A
// position is scored when it completes a state (its last digit): only
// there is the state fixed by the input.
type StateEval struct {
	FSM    *tokfsm.FSM
	Seqs   [][]int
	States [][]int // per position; -1 where not scored
}

// NewStateEval draws n sequences of seqLen tokens.
func NewStateEval(f *tokfsm.FSM, n, seqLen int, seed uint64) *StateEval {
	rng := rand.New(rand.NewPCG(seed, 0x7374617465)) // "state"
	ev := &StateEval{FSM: f}
	for range n {
		traj := f.Trajectory(rng, (seqLen+f.Digits-1)/f.Digits)
		seq := f.Sequence(traj, seqLen)
		state, digit := f.Label(seqLen, traj)
		for p := range state {
			if digit[p] != f.Digits-1 {
				state[p] = -1
			}
		}
		ev.Seqs = append(ev.Seqs, seq)
		ev.States = append(ev.States, state)
	}
	return ev
}

// CodeRef names one code: a layer's site, its group and the code id.
type CodeRef struct {
	Hook  string
	Group int
	ID    int
}

func (c CodeRef) String() string {
	if strings.HasSuffix(c.Hook, "attn.hook_z") {
		return fmt.Sprintf("%s[head %d]:%d", c.Hook, c.Group, c.ID)
	}
	return fmt.Sprintf("%s:%d", c.Hook, c.ID)
}

// NeuronRef names one neuron: a hook and a feature index.
type NeuronRef struct {
	Hook  string
	Index int
}

// StateAP is, per state, the best code's and the best neuron's average
// precision at detecting it over the scored positions.
type StateAP struct {
	Positions int
	CodeAP    []float64
	BestCode  []CodeRef
	// CodePrecision and CodeRecall are the best code's: the fraction of its
	// firings at the state, and of the state's positions where it fires.
	CodePrecision, CodeRecall []float64
	NeuronAP                  []float64
	BestNeuron                []NeuronRef
}

// MeanOf is the mean of v (0 for none).
func MeanOf(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(max(len(v), 1))
}

// MeasureStateAP runs ev through m with its codebooks and scores every code
// of every codebook (its score at a position: 1 when chosen there, else 0)
// and every neuron of neuronHooks (glob; its score: the activation) as a
// detector of each state, keeping the best of each per state.
func MeasureStateAP(ctx context.Context, m *Model, ev *StateEval, neuronHooks string, batch int) (*StateAP, error) {
	S := ev.FSM.States
	type codeStats struct {
		fired []int   // per code
		hits  [][]int // per code, per state
	}
	codes := map[string]*codeStats{}
	for _, l := range m.Set.Layers {
		cs := &codeStats{fired: make([]int, l.Groups*l.NumCodes), hits: make([][]int, l.Groups*l.NumCodes)}
		codes[l.Hook] = cs
	}
	neurons := map[string][]float32{} // hook -> [positions, width]
	widths := map[string]int{}
	var labels []int
	for lo := 0; lo < len(ev.Seqs); lo += batch {
		hi := min(lo+batch, len(ev.Seqs))
		sp, err := NewSplice(m.Set)
		if err != nil {
			return nil, err
		}
		r, err := m.Forward(ctx, ev.Seqs[lo:hi], probe.Options{Logits: probe.LogitsNone,
			Hooks: &probe.Hooks{Edit: sp.Edits(), Cache: []string{"*" + IDsSuffix, neuronHooks}}})
		if err != nil {
			return nil, err
		}
		for b := lo; b < hi; b++ {
			for p, s := range ev.States[b] {
				if s < 0 {
					continue
				}
				row := (b-lo)*r.Len + r.Pad[b-lo] + p
				labels = append(labels, s)
				for _, l := range m.Set.Layers {
					ids := r.Cache[IDsHook(l.Hook)].Data[row*l.Groups*l.K : (row+1)*l.Groups*l.K]
					cs := codes[l.Hook]
					for i, v := range ids {
						if v < 0 {
							continue
						}
						c := i/l.K*l.NumCodes + int(v)
						cs.fired[c]++
						if cs.hits[c] == nil {
							cs.hits[c] = make([]int, S)
						}
						cs.hits[c][s]++
					}
				}
				for name, a := range r.Cache {
					if strings.HasSuffix(name, IDsSuffix) {
						continue
					}
					w := a.Shape[len(a.Shape)-1]
					widths[name] = w
					neurons[name] = append(neurons[name], a.Data[row*w:(row+1)*w]...)
				}
			}
		}
	}
	n := len(labels)
	total := make([]int, S)
	for _, s := range labels {
		total[s]++
	}
	res := &StateAP{Positions: n, CodeAP: make([]float64, S), BestCode: make([]CodeRef, S),
		CodePrecision: make([]float64, S), CodeRecall: make([]float64, S),
		NeuronAP: make([]float64, S), BestNeuron: make([]NeuronRef, S)}
	for _, l := range m.Set.Layers {
		cs := codes[l.Hook]
		for c, hits := range cs.hits {
			if hits == nil {
				continue
			}
			for s := range S {
				if ap := BinaryAveragePrecision(cs.fired[c], hits[s], total[s], n); ap > res.CodeAP[s] {
					res.CodeAP[s], res.BestCode[s] = ap, CodeRef{Hook: l.Hook, Group: c / l.NumCodes, ID: c % l.NumCodes}
					res.CodePrecision[s] = float64(hits[s]) / float64(cs.fired[c])
					res.CodeRecall[s] = float64(hits[s]) / float64(max(total[s], 1))
				}
			}
		}
	}
	positive := make([][]bool, S)
	for s := range S {
		positive[s] = make([]bool, n)
	}
	for i, s := range labels {
		positive[s][i] = true
	}
	names := make([]string, 0, len(neurons))
	for name := range neurons {
		names = append(names, name)
	}
	sort.Strings(names)
	scores := make([]float32, n)
	order := make([]int, n)
	for _, name := range names {
		w, data := widths[name], neurons[name]
		for j := range w {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			for i := range n {
				scores[i] = data[i*w+j]
				order[i] = i
			}
			slices.SortStableFunc(order, func(a, b int) int {
				switch {
				case scores[a] > scores[b]:
					return -1
				case scores[a] < scores[b]:
					return 1
				}
				return 0
			})
			for s := range S {
				if ap := apSorted(order, scores, positive[s], total[s]); ap > res.NeuronAP[s] {
					res.NeuronAP[s], res.BestNeuron[s] = ap, NeuronRef{Hook: name, Index: j}
				}
			}
		}
	}
	return res, nil
}

// SteerResult is the outcome of forcing states' codes.
//
// Two measures. The paper's (the reference's tutorials/tokfsm.ipynb): the
// Jensen-Shannon divergence between the steered next-token distribution
// and b's own (the clean run on b's prompt), over the whole vocabulary,
// normalised by the divergence between a's and b's clean distributions:
// 0 when the model acts as if in b, 1 when steering does nothing.
// NextToken counts the trials whose steered next-token distribution is
// closer (JS) to b's than to a's. Success, stricter and Loupe's own, asks
// that the most likely next state, over both of its digits, be one of b's
// out-neighbours (the codes are forced at the prompt's last position only,
// so the second digit's position reads a's history as well).
type SteerResult struct {
	Sites    []string
	Trials   int
	Success  int     // trials whose most likely next state is one of b's
	MassOnB  float64 // mean probability of b's out-neighbours
	Baseline int     // the same count without the intervention
	CleanA   int     // trials where, unsteered, the most likely next state is one of a's
	// NextToken: trials whose steered next-token distribution is closer
	// to b's than to a's (unsteered it is a's own: never).
	NextToken int
	// JSToB and JSAB are the mean JS divergences (nats) of the steered
	// next-token distribution from b's, and of a's clean one from b's.
	JSToB, JSAB float64
}

// Rate is Success / Trials.
func (r *SteerResult) Rate() float64 { return float64(r.Success) / float64(max(r.Trials, 1)) }

// NextTokenRate is NextToken / Trials.
func (r *SteerResult) NextTokenRate() float64 {
	return float64(r.NextToken) / float64(max(r.Trials, 1))
}

// NormalizedJS is the paper's figure: JSToB / JSAB.
func (r *SteerResult) NormalizedJS() float64 { return r.JSToB / max(r.JSAB, 1e-300) }

// jsDivergence is the Jensen-Shannon divergence of p and q in nats.
func jsDivergence(p, q []float64) float64 {
	d := 0.0
	for i := range p {
		m := 0.5 * (p[i] + q[i])
		if p[i] > 0 {
			d += 0.5 * p[i] * math.Log(p[i]/m)
		}
		if q[i] > 0 {
			d += 0.5 * q[i] * math.Log(q[i]/m)
		}
	}
	return d
}

// promptTo is BOS then the digits of a random walk of length states that
// ends at state end (drawn backwards through the machine's in-edges).
func promptTo(f *tokfsm.FSM, prev [][]int, rng *rand.Rand, end, length int) []int {
	traj := []int{end}
	for len(traj) < length {
		p := prev[traj[0]]
		if len(p) == 0 {
			break
		}
		traj = append([]int{p[rng.IntN(len(p))]}, traj...)
	}
	return f.Sequence(traj, 0)
}

// nextStateProbs gives the model's distribution over the next state after
// prompt (which ends a state): P(d1)·P(d2 | d1) from two forwards, with sp
// (made fresh per forward by mk) spliced in; and its next-token
// distribution over the whole vocabulary.
func nextStateProbs(ctx context.Context, m *Model, f *tokfsm.FSM, prompt []int, mk func() (*Splice, error)) (states, next []float64, err error) {
	if f.Digits != 2 {
		return nil, nil, fmt.Errorf("steering measures two-digit states; this machine writes %d digits", f.Digits)
	}
	batch := make([][]int, f.Base)
	for d := range f.Base {
		batch[d] = append(slices.Clone(prompt), d)
	}
	sp, err := mk()
	if err != nil {
		return nil, nil, err
	}
	r, err := m.Forward(ctx, batch, probe.Options{Hooks: &probe.Hooks{Edit: sp.Edits()}})
	if err != nil {
		return nil, nil, err
	}
	probs := make([]float64, f.States)
	p1 := softmax(r.LogitsAt(0, len(prompt)-1)[:f.Base])
	for d := range f.Base {
		p2 := softmax(r.LogitsAt(d, len(prompt))[:f.Base])
		for e := range f.Base {
			if s := d*f.Base + e; s < f.States {
				probs[s] = p1[d] * p2[e]
			}
		}
	}
	return probs, softmax(r.LogitsAt(0, len(prompt)-1)), nil
}

// Steer measures, over trials pairs of states (a, b) whose out-neighbours
// are disjoint, whether forcing at the last position of a prompt ending in
// a the codes that the sites chose at the last position of a prompt ending
// in b makes the most likely next state one of b's out-neighbours.
func Steer(ctx context.Context, m *Model, f *tokfsm.FSM, sites []string, trials, promptStates int, seed uint64) (*SteerResult, error) {
	for _, s := range sites {
		if m.Set.Layer(s) == nil {
			return nil, fmt.Errorf("steer: no codebook at %s", s)
		}
	}
	prev := make([][]int, f.States)
	for s, next := range f.Next {
		for _, t := range next {
			prev[t] = append(prev[t], s)
		}
	}
	rng := rand.New(rand.NewPCG(seed, 0x7374656572)) // "steer"
	res := &SteerResult{Sites: sites}
	plain := func() (*Splice, error) { return NewSplice(m.Set) }
	for res.Trials < trials {
		a, b := rng.IntN(f.States), rng.IntN(f.States)
		if a == b || slices.ContainsFunc(f.Next[a], func(t int) bool { return f.Allowed(b, t) }) {
			continue
		}
		pa := promptTo(f, prev, rng, a, promptStates)
		pb := promptTo(f, prev, rng, b, promptStates)
		// The codes b's prompt chooses at its last position, and its
		// next-token distribution.
		sp, _ := NewSplice(m.Set)
		r, err := m.Forward(ctx, [][]int{pb}, probe.Options{Logits: probe.LogitsLast,
			Hooks: &probe.Hooks{Edit: sp.Edits(), Cache: []string{"*" + IDsSuffix}}})
		if err != nil {
			return nil, err
		}
		nextB := softmax(r.LogitsAt(0, len(pb)-1))
		var ivs []Intervention
		for _, site := range sites {
			l := m.Set.Layer(site)
			ids := r.Cache[IDsHook(site)].Data
			last := len(pb) - 1
			for g := range l.Groups {
				force := make([]int32, l.K)
				for k := range l.K {
					force[k] = int32(ids[(last*l.Groups+g)*l.K+k])
				}
				ivs = append(ivs, Intervention{Hook: site, Group: g, Positions: []int{len(pa) - 1}, Force: force})
			}
		}
		steered, nextSteered, err := nextStateProbs(ctx, m, f, pa, func() (*Splice, error) { return NewSplice(m.Set, ivs...) })
		if err != nil {
			return nil, err
		}
		clean, nextA, err := nextStateProbs(ctx, m, f, pa, plain)
		if err != nil {
			return nil, err
		}
		res.Trials++
		toB, toA, ab := jsDivergence(nextSteered, nextB), jsDivergence(nextSteered, nextA), jsDivergence(nextA, nextB)
		res.JSToB += toB / float64(trials)
		res.JSAB += ab / float64(trials)
		if toB < toA {
			res.NextToken++
		}

		top, ctop := argmax(steered), argmax(clean)
		if f.Allowed(b, top) {
			res.Success++
		}
		if f.Allowed(b, ctop) {
			res.Baseline++
		}
		if f.Allowed(a, ctop) {
			res.CleanA++
		}
		mass := 0.0
		for _, t := range f.Next[b] {
			mass += steered[t]
		}
		res.MassOnB += mass / float64(trials)
	}
	return res, nil
}

func argmax(p []float64) int {
	best := 0
	for i, v := range p {
		if v > p[best] {
			best = i
		}
	}
	return best
}

func softmax(logits []float32) []float64 {
	mx := float64(logits[0])
	for _, v := range logits {
		mx = max(mx, float64(v))
	}
	out := make([]float64, len(logits))
	sum := 0.0
	for i, v := range logits {
		out[i] = math.Exp(float64(v) - mx)
		sum += out[i]
	}
	for i := range out {
		out[i] /= sum
	}
	return out
}

// The paper's TokFSM figures (Tamkin, Taufeeque and Goodman 2023): mean
// over states of the best code's and the best neuron's average precision.
const (
	PaperCodeAP   = 0.971
	PaperNeuronAP = 0.705
)

// TokFSMReport is `loupe codebook eval` on a TokFSM model.
type TokFSMReport struct {
	Sequences  int     `json:"sequences"`
	Positions  int     `json:"positions"`
	MeanCodeAP float64 `json:"mean_best_code_ap"`
	// The best codes' mean precision and recall: which of the two holds
	// the AP down (a state split over several codes has a low recall).
	MeanCodePrecision float64    `json:"mean_best_code_precision"`
	MeanCodeRecall    float64    `json:"mean_best_code_recall"`
	MeanNeuronAP      float64    `json:"mean_best_neuron_ap"`
	PaperCodeAP       float64    `json:"paper_code_ap"`
	PaperNeuronAP     float64    `json:"paper_neuron_ap"`
	NeuronHooks       string     `json:"neuron_hooks"`
	States            []StateRow `json:"states"`
	Steering          []SteerRow `json:"steering"`

	// Reference is the reference repository's measure (fsm_reference.go):
	// precision at a matched recall over every position.
	Reference *RefStateReport `json:"reference_measure"`
}

// StateRow is one state's best code and best neuron.
type StateRow struct {
	State    int     `json:"state"`
	CodeAP   float64 `json:"code_ap"`
	Code     string  `json:"code"`
	CodeP    float64 `json:"code_precision"`
	CodeR    float64 `json:"code_recall"`
	NeuronAP float64 `json:"neuron_ap"`
	Neuron   string  `json:"neuron"`
}

// SteerRow is one steering configuration's outcome.
type SteerRow struct {
	Name     string   `json:"name"`
	Sites    []string `json:"sites"`
	Trials   int      `json:"trials"`
	Rate     float64  `json:"success_rate"`
	MassOnB  float64  `json:"mean_mass_on_target_transitions"`
	Baseline float64  `json:"unsteered_rate"`
	CleanA   float64  `json:"unsteered_follows_own_state"`
	// The paper's measure on the next token (SteerResult).
	NextTokenRate float64 `json:"next_token_closer_to_target_rate"`
	NormalizedJS  float64 `json:"normalized_js_divergence"`
	JSToB         float64 `json:"mean_js_steered_to_target"`
	JSAB          float64 `json:"mean_js_clean_to_target"`
}

// EvaluateTokFSM measures the state average precision of codes and neurons
// (MLP neurons, mlp.hook_post of every layer) on seqs sequences, the
// reference repository's precision at a matched recall on the same
// sequences (EvaluateStatePrecision), and the
// steering success rate over trials pairs for three groups of sites: every
// MLP codebook, every codebook, and one middle layer's MLP codebook.
func EvaluateTokFSM(ctx context.Context, m *Model, f *tokfsm.FSM, seqs, trials int) (*TokFSMReport, error) {
	const neuronHooks = "blocks.*.mlp.hook_post"
	ev := NewStateEval(f, seqs, m.Config.MaxPos, 1)
	ap, err := MeasureStateAP(ctx, m, ev, neuronHooks, 16)
	if err != nil {
		return nil, err
	}
	ref, err := EvaluateStatePrecision(ctx, m, ev)
	if err != nil {
		return nil, err
	}
	rep := &TokFSMReport{Reference: ref, Sequences: seqs, Positions: ap.Positions, MeanCodeAP: MeanOf(ap.CodeAP), MeanNeuronAP: MeanOf(ap.NeuronAP),
		MeanCodePrecision: MeanOf(ap.CodePrecision), MeanCodeRecall: MeanOf(ap.CodeRecall),
		PaperCodeAP: PaperCodeAP, PaperNeuronAP: PaperNeuronAP, NeuronHooks: neuronHooks}
	for s := range f.States {
		rep.States = append(rep.States, StateRow{State: s, CodeAP: ap.CodeAP[s], Code: ap.BestCode[s].String(),
			CodeP: ap.CodePrecision[s], CodeR: ap.CodeRecall[s],
			NeuronAP: ap.NeuronAP[s], Neuron: fmt.Sprintf("%s[%d]", ap.BestNeuron[s].Hook, ap.BestNeuron[s].Index)})
	}
	var mlp, all []string
	for _, l := range m.Set.Layers {
		all = append(all, l.Hook)
		if strings.HasSuffix(l.Hook, "hook_mlp_out") {
			mlp = append(mlp, l.Hook)
		}
	}
	groups := []struct {
		name  string
		sites []string
	}{{"every MLP codebook", mlp}, {"every codebook (heads and MLPs)", all}}
	if len(mlp) > 1 {
		groups = append(groups, struct {
			name  string
			sites []string
		}{"layer " + strings.Split(mlp[1], ".")[1] + " MLP codebook", mlp[1:2]})
	}
	for i, g := range groups {
		if len(g.sites) == 0 {
			continue
		}
		r, err := Steer(ctx, m, f, g.sites, trials, 8, uint64(100+i))
		if err != nil {
			return nil, err
		}
		n := float64(r.Trials)
		rep.Steering = append(rep.Steering, SteerRow{Name: g.name, Sites: g.sites, Trials: r.Trials, Rate: r.Rate(),
			MassOnB: r.MassOnB, Baseline: float64(r.Baseline) / n, CleanA: float64(r.CleanA) / n,
			NextTokenRate: r.NextTokenRate(), NormalizedJS: r.NormalizedJS(), JSToB: r.JSToB, JSAB: r.JSAB})
	}
	return rep, nil
}

// Print writes the report as the paper's table and the steering rates.
func (r *TokFSMReport) Print(w io.Writer) {
	fmt.Fprintf(w, "TokFSM state detection, %d sequences, %d state-completing positions\n", r.Sequences, r.Positions)
	fmt.Fprintf(w, "  mean over states of the best average precision   Loupe   paper\n")
	fmt.Fprintf(w, "    best code                                    %.3f   %.3f   (its precision %.3f, recall %.3f)\n",
		r.MeanCodeAP, r.PaperCodeAP, r.MeanCodePrecision, r.MeanCodeRecall)
	fmt.Fprintf(w, "    best single neuron (%s) %.3f   %.3f\n", r.NeuronHooks, r.MeanNeuronAP, r.PaperNeuronAP)
	if ref := r.Reference; ref != nil {
		ref.Print(w)
	}
	fmt.Fprintf(w, "steering: force the codes of state b at the last position of a prompt ending in a\n")
	fmt.Fprintf(w, "  next state over two digits (Loupe's): most likely next state one of b's out-neighbours\n")
	for _, s := range r.Steering {
		fmt.Fprintf(w, "  %-34s success %5.1f%% (%d trials)  mass on b's transitions %.3f  unsteered: follows b %4.1f%%, follows a %5.1f%%\n",
			s.Name, 100*s.Rate, s.Trials, s.MassOnB, 100*s.Baseline, 100*s.CleanA)
	}
	fmt.Fprintf(w, "  next token (the paper's): JS divergence to b's next-token distribution, normalised by a's to b's (0: as if in b, 1: no effect)\n")
	for _, s := range r.Steering {
		fmt.Fprintf(w, "  %-34s normalised JS %.3f (%.4f / %.4f nats)  closer to b than to a in %5.1f%% of trials\n",
			s.Name, s.NormalizedJS, s.JSToB, s.JSAB, 100*s.NextTokenRate)
	}
}
