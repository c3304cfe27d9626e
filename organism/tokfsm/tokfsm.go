// Package tokfsm is the TokFSM language of Tamkin, Taufeeque and Goodman
// (2023, "Codebook features"): rollouts of a random finite state machine
// written as digits. The machine has N states and every state has E distinct
// out-neighbours, chosen uniformly at random, each taken with probability
// 1/E. A state is written as its base-B numeral padded to D = ceil(log_B N)
// digits, so with the paper's N = 100, E = 10, B = 10 every state is two
// digit tokens, "07" "42" "13" ..., and a sequence is the beginning-of-text
// token followed by the digits of a trajectory. A model that predicts the
// next digit well must know which state it is in and which digit of that
// state comes next: the latent structure is known, which is what lets the
// paper score codes and neurons as state detectors.
//
// The reference (codebook_features/train_fsm_model.py) draws the machine with
// NumPy's generator; this package draws it with its own seeded PCG, so the
// machine of a seed is Loupe's own and is saved with every model trained on
// it (fsm.json) rather than re-drawn.
package tokfsm

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/loupe-dev/loupe/internal/atomicfile"
)

// FSM is a finite state machine with uniform transitions.
type FSM struct {
	States int     `json:"states"`
	Edges  int     `json:"edges"` // out-neighbours of every state
	Base   int     `json:"base"`  // digits 0..Base-1 are tokens 0..Base-1
	Digits int     `json:"digits"`
	Seed   uint64  `json:"seed"`
	Next   [][]int `json:"next"` // Next[s]: the out-neighbours of s, ascending
}

// New draws a machine of n states with e out-neighbours each, written in the
// given base. The same arguments give the same machine.
func New(n, e, base int, seed uint64) (*FSM, error) {
	if n < 2 || e < 1 || e > n || base < 2 {
		return nil, fmt.Errorf("tokfsm: need 2 <= states, 1 <= edges <= states, base >= 2; got states %d, edges %d, base %d", n, e, base)
	}
	digits := 1
	for p := base; p < n; p *= base {
		digits++
	}
	f := &FSM{States: n, Edges: e, Base: base, Digits: digits, Seed: seed, Next: make([][]int, n)}
	rng := rand.New(rand.NewPCG(seed, 0x746f6b66736d)) // "tokfsm"
	for s := range f.Next {
		f.Next[s] = slices.Sorted(slices.Values(rng.Perm(n)[:e]))
	}
	return f, nil
}

// Vocab is the model's vocabulary size: the digits plus beginning-of-text.
func (f *FSM) Vocab() int { return f.Base + 1 }

// BOS is the beginning-of-text token (the reference's <|endoftext|>).
func (f *FSM) BOS() int { return f.Base }

// Check says whether f is a well-formed machine (for one read from a file).
func (f *FSM) Check() error {
	if f.States < 2 || f.Base < 2 || f.Edges < 1 || len(f.Next) != f.States {
		return fmt.Errorf("tokfsm: machine has %d states, %d rows of neighbours, base %d, %d edges", f.States, len(f.Next), f.Base, f.Edges)
	}
	max := 1
	for range f.Digits {
		max *= f.Base
	}
	if max < f.States {
		return fmt.Errorf("tokfsm: %d digits of base %d cannot write %d states", f.Digits, f.Base, f.States)
	}
	for s, next := range f.Next {
		if len(next) != f.Edges {
			return fmt.Errorf("tokfsm: state %d has %d out-neighbours, want %d", s, len(next), f.Edges)
		}
		for i, t := range next {
			if t < 0 || t >= f.States || i > 0 && next[i-1] >= t {
				return fmt.Errorf("tokfsm: state %d: neighbours %v are not distinct ascending states", s, next)
			}
		}
	}
	return nil
}

// Allowed says whether s -> t is a transition of the machine.
func (f *FSM) Allowed(s, t int) bool {
	_, ok := slices.BinarySearch(f.Next[s], t)
	return ok
}

// Tokens writes state s as its Digits digit tokens, most significant first.
func (f *FSM) Tokens(s int) []int {
	out := make([]int, f.Digits)
	for i := f.Digits - 1; i >= 0; i-- {
		out[i] = s % f.Base
		s /= f.Base
	}
	return out
}

// String writes state s the way the reference does ("07").
func (f *FSM) String(s int) string {
	var b strings.Builder
	for _, d := range f.Tokens(s) {
		b.WriteString(strconv.Itoa(d))
	}
	return b.String()
}

// Trajectory is a walk of length states from a uniformly random start.
func (f *FSM) Trajectory(rng *rand.Rand, length int) []int {
	traj := make([]int, length)
	if length == 0 {
		return traj
	}
	traj[0] = rng.IntN(f.States)
	for i := 1; i < length; i++ {
		next := f.Next[traj[i-1]]
		traj[i] = next[rng.IntN(len(next))]
	}
	return traj
}

// Sequence is the model input of a trajectory: BOS then every state's
// digits, cut to seqLen tokens when seqLen > 0 (the reference cuts its
// 128-token sequences mid-state).
func (f *FSM) Sequence(traj []int, seqLen int) []int {
	seq := []int{f.BOS()}
	for _, s := range traj {
		seq = append(seq, f.Tokens(s)...)
	}
	if seqLen > 0 && len(seq) > seqLen {
		seq = seq[:seqLen]
	}
	return seq
}

// Label says, for every position of a Sequence, which state's digits it is
// in and which digit (0 is the first) it is; the BOS position gets state -1.
func (f *FSM) Label(seqLen int, traj []int) (state, digit []int) {
	n := 1 + len(traj)*f.Digits
	if seqLen > 0 && n > seqLen {
		n = seqLen
	}
	state, digit = make([]int, n), make([]int, n)
	state[0], digit[0] = -1, -1
	for p := 1; p < n; p++ {
		state[p] = traj[(p-1)/f.Digits]
		digit[p] = (p - 1) % f.Digits
	}
	return state, digit
}

// Save writes the machine as JSON, atomically.
func (f *FSM) Save(path string) error {
	data, err := json.MarshalIndent(f, "", " ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(path, append(data, '\n')); err != nil {
		return fmt.Errorf("save fsm %s: %w", path, err)
	}
	return nil
}

// Load reads a machine written by Save and checks it.
func Load(path string) (*FSM, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f := &FSM{}
	if err := json.Unmarshal(data, f); err != nil {
		return nil, fmt.Errorf("fsm %s: %w", path, err)
	}
	if err := f.Check(); err != nil {
		return nil, fmt.Errorf("fsm %s: %w", path, err)
	}
	return f, nil
}
