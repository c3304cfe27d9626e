package heads

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/loupe-dev/loupe/probe"
	"github.com/loupe-dev/loupe/probe/compute"
)

// SuccessorTask is an ordinal sequence of single tokens: Tokens[i+1] is the
// successor of Tokens[i]; when Cyclic the first follows the last (days,
// months).
type SuccessorTask struct {
	Name   string
	Tokens []int
	Words  []string
	Cyclic bool
}

// successor gives the index of item i's successor, or −1.
func (t SuccessorTask) successor(i int) int {
	switch {
	case i+1 < len(t.Tokens):
		return i + 1
	case t.Cyclic:
		return 0
	}
	return -1
}

// SuccessorWordLists are the ordinal sequences of the default task (the
// kinds Gould et al. use: numbers, number words, ordinals, days, months and
// their abbreviations, letters, plus roman numerals).
var SuccessorWordLists = []struct {
	Name   string
	Words  []string
	Cyclic bool
}{
	{"digits", strings.Fields("0 1 2 3 4 5 6 7 8 9"), false},
	{"numbers", numberStrings(10, 100), false},
	{"number_words", strings.Fields("one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty"), false},
	{"ordinals", strings.Fields("first second third fourth fifth sixth seventh eighth ninth tenth"), false},
	{"days", strings.Fields("Monday Tuesday Wednesday Thursday Friday Saturday Sunday"), true},
	{"day_prefixes", strings.Fields("Mon Tue Wed Thu Fri Sat Sun"), true},
	{"months", strings.Fields("January February March April May June July August September October November December"), true},
	{"month_prefixes", strings.Fields("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec"), true},
	{"letters", strings.Fields("A B C D E F G H I J K L M N O P Q R S T U V W X Y Z"), false},
	{"roman", strings.Fields("I II III IV V VI VII VIII IX X XI XII"), false},
}

func numberStrings(lo, hi int) []string {
	var s []string
	for i := lo; i <= hi; i++ {
		s = append(s, strconv.Itoa(i))
	}
	return s
}

// SuccessorTasks tokenizes the word lists. Each word is tried with a
// leading space (" Monday", as in running text) and bare; a task takes the
// variant under which more of its words are single tokens and keeps the
// longest run of consecutive single-token words from the start (a gap
// would break succession). Tasks left with fewer than three items are
// dropped and named in the second result.
func SuccessorTasks(tok Tokenizer) ([]SuccessorTask, []string, error) {
	var tasks []SuccessorTask
	var dropped []string
	for _, wl := range SuccessorWordLists {
		var best SuccessorTask
		for _, sp := range []string{" ", ""} {
			t := SuccessorTask{Name: wl.Name, Cyclic: wl.Cyclic}
			for _, w := range wl.Words {
				ids, err := tok.Encode(sp+w, false)
				if err != nil {
					return nil, nil, fmt.Errorf("successor task %s: %q: %w", wl.Name, w, err)
				}
				if len(ids) != 1 {
					break
				}
				t.Tokens = append(t.Tokens, ids[0])
				t.Words = append(t.Words, sp+w)
			}
			if len(t.Tokens) < len(wl.Words) {
				t.Cyclic = false // a cut cycle has no wrap-around
			}
			if len(t.Tokens) > len(best.Tokens) {
				best = t
			}
		}
		if len(best.Tokens) < 3 {
			dropped = append(dropped, wl.Name)
			continue
		}
		tasks = append(tasks, best)
	}
	return tasks, dropped, nil
}

// SuccessionCount scores one head on one task from its OV scores:
// scores[i][j] is the effective OV circuit's logit for task token j when
// the head attends to task token i. Item i is right when its largest score
// is at its successor. It returns the items right and the items that have
// a successor.
func SuccessionCount(t SuccessorTask, scores [][]float64) (right, total int) {
	for i := range t.Tokens {
		s := t.successor(i)
		if s < 0 {
			continue
		}
		total++
		best := 0
		for j, v := range scores[i] {
			if v > scores[i][best] {
				best = j
			}
		}
		if best == s {
			right++
		}
	}
	return right, total
}

// Successor scores every head's succession score (Gould et al. 2023) from
// the weights: the fraction of task tokens whose effective-OV top token
// within their task is their successor (see the package doc for the
// circuit). The detail "<task>" holds each task's fraction.
func Successor(ctx context.Context, m *probe.Model, tasks []SuccessorTask) (*Score, error) {
	if len(tasks) == 0 {
		return nil, fmt.Errorf("successor: no tasks")
	}
	cfg := m.Config
	L, H := cfg.Layers, cfg.Heads
	var toks []int
	for _, t := range tasks {
		toks = append(toks, t.Tokens...)
	}
	ov, err := NewOVCircuit(ctx, m, toks)
	if err != nil {
		return nil, fmt.Errorf("successor: %w", err)
	}
	sc := &Score{Name: ScoreSuccessor, Values: NewMap(L, H), Threshold: 0.5,
		Source: "Gould et al. 2023 succession score on the effective OV circuit W_U·W_OV·MLP0(W_E); threshold 0.5 (Loupe)"}
	totalItems := 0
	for _, t := range tasks {
		_, n := SuccessionCount(t, make([][]float64, len(t.Tokens)))
		totalItems += n
	}
	for l := 0; l < L; l++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		for h := 0; h < H; h++ {
			right, off := 0, 0
			for _, t := range tasks {
				idx := make([]int, len(t.Tokens))
				for i := range idx {
					idx[i] = off + i
				}
				scores, err := ov.Scores(l, h, idx, t.Tokens)
				if err != nil {
					return nil, fmt.Errorf("successor: %w", err)
				}
				r, n := SuccessionCount(t, scores)
				right += r
				sc.detail(t.Name).Set(l, h, float64(r)/float64(n))
				off += len(t.Tokens)
			}
			sc.Values.Set(l, h, float64(right)/float64(totalItems))
		}
	}
	var names []string
	for _, t := range tasks {
		names = append(names, t.Name+":"+strconv.Itoa(len(t.Tokens)))
	}
	sc.setInfo("tasks", strings.Join(names, ","))
	sc.setInfo("items", strconv.Itoa(totalItems))
	return sc, nil
}

// OVCircuit evaluates heads' effective OV circuits on a fixed list of
// source tokens:
//
//	OV_{l,h}(t) = W_U · norm_f( W_O^h W_V^h · norm1_l( W_E[t] + MLP_0(norm2_0(W_E[t])) ) )
//
// without biases (the norms keep their affine weights; norm1 its bias).
type OVCircuit struct {
	m      *probe.Model
	src    []int
	x      []float32 // extended embeddings [len(src), D]
	wu     []float32
	lnf    *norm
	layer  int
	normed [][]float64 // norm1 of the current layer
	wv, wo []float32
}

// NewOVCircuit prepares the circuit for the source tokens src.
func NewOVCircuit(ctx context.Context, m *probe.Model, src []int) (*OVCircuit, error) {
	for _, id := range src {
		if id < 0 || id >= m.Config.Vocab {
			return nil, fmt.Errorf("token %d outside the vocabulary of %d", id, m.Config.Vocab)
		}
	}
	x, err := extendedEmbedding(ctx, m, src)
	if err != nil {
		return nil, err
	}
	wu, err := m.Param("unembed.W_U")
	if err != nil {
		return nil, err
	}
	lnf, err := newNorm(m, "ln_final")
	if err != nil {
		return nil, err
	}
	return &OVCircuit{m: m, src: src, x: x, wu: wu.Data, lnf: lnf, layer: -1}, nil
}

func (c *OVCircuit) setLayer(l int) error {
	if c.layer == l {
		return nil
	}
	D := c.m.Config.DModel
	ln1, err := newNorm(c.m, "blocks."+strconv.Itoa(l)+".ln1")
	if err != nil {
		return err
	}
	wv, err := c.m.Param("blocks." + strconv.Itoa(l) + ".attn.W_V")
	if err != nil {
		return err
	}
	wo, err := c.m.Param("blocks." + strconv.Itoa(l) + ".attn.W_O")
	if err != nil {
		return err
	}
	c.normed = make([][]float64, len(c.src))
	for i := range c.src {
		c.normed[i] = ln1.apply(c.x[i*D:(i+1)*D], true)
	}
	c.wv, c.wo, c.layer = wv.Data, wo.Data, l
	return nil
}

// Scores gives head (l, h)'s OV logits: row i is source token src[rows[i]],
// column j the logit of token targets[j].
func (c *OVCircuit) Scores(l, h int, rows []int, targets []int) ([][]float64, error) {
	cfg := c.m.Config
	if l < 0 || l >= cfg.Layers || h < 0 || h >= cfg.Heads {
		return nil, fmt.Errorf("head %d.%d outside the model", l, h)
	}
	if err := c.setLayer(l); err != nil {
		return nil, err
	}
	H, Hkv, Dh, D := cfg.Heads, cfg.KVHeads, cfg.HeadDim, cfg.DModel
	kv := h / (H / Hkv)
	out := make([][]float64, len(rows))
	for i, r := range rows {
		n := c.normed[r]
		v := make([]float64, Dh)
		for d := 0; d < Dh; d++ {
			row := c.wv[(kv*Dh+d)*D : (kv*Dh+d+1)*D]
			s := 0.0
			for k, w := range row {
				s += float64(w) * n[k]
			}
			v[d] = s
		}
		o := make([]float32, D)
		for k := 0; k < D; k++ {
			cols := c.wo[k*H*Dh+h*Dh : k*H*Dh+(h+1)*Dh]
			s := 0.0
			for d, w := range cols {
				s += float64(w) * v[d]
			}
			o[k] = float32(s)
		}
		f := c.lnf.apply(o, false)
		out[i] = make([]float64, len(targets))
		for j, tgt := range targets {
			u := c.wu[tgt*D : (tgt+1)*D]
			s := 0.0
			for k, w := range u {
				s += float64(w) * f[k]
			}
			out[i][j] = s
		}
	}
	return out, nil
}

// extendedEmbedding runs each token alone through block 0 with the
// position embedding and the attention output zeroed, and returns the
// residual stream after block 0: W_E[t] + MLP_0(norm2(W_E[t])), for the
// listed tokens, [len(toks), d_model].
func extendedEmbedding(ctx context.Context, m *probe.Model, toks []int) ([]float32, error) {
	zero := func(b compute.Backend, _ string, t compute.Tensor, _ []int) (compute.Tensor, error) {
		return b.Zeros(t.Shape()...), nil
	}
	batch := make([][]int, len(toks))
	for i, t := range toks {
		batch[i] = []int{t}
	}
	edits := []probe.Edit{{Hook: "blocks.0.hook_attn_out", Fn: zero}}
	if m.Config.Family == probe.FamilyGPT2 {
		edits = append(edits, probe.Edit{Hook: "hook_pos_embed", Fn: zero})
	}
	const hook = "blocks.0.hook_resid_post"
	r, err := m.Forward(ctx, batch, probe.Options{Hooks: &probe.Hooks{Cache: []string{hook}, Edit: edits}, Logits: probe.LogitsNone})
	if err != nil {
		return nil, fmt.Errorf("successor: extended embedding: %w", err)
	}
	return r.Cache[hook].Data, nil
}

// norm is a model's RMSNorm or LayerNorm, applied on the host.
type norm struct {
	w, b  []float32
	layer bool // LayerNorm (centre, then scale); else RMSNorm
	eps   float64
}

func newNorm(m *probe.Model, prefix string) (*norm, error) {
	w, err := m.Param(prefix + ".w")
	if err != nil {
		return nil, fmt.Errorf("successor: %w", err)
	}
	n := &norm{w: w.Data, layer: m.Config.LayerNorm(), eps: m.Config.NormEps}
	if b, err := m.Param(prefix + ".b"); err == nil {
		n.b = b.Data
	}
	return n, nil
}

// apply normalises x; the bias is added only when withBias is set.
func (n *norm) apply(x []float32, withBias bool) []float64 {
	D := len(x)
	mu := 0.0
	if n.layer {
		for _, v := range x {
			mu += float64(v)
		}
		mu /= float64(D)
	}
	ss := 0.0
	for _, v := range x {
		d := float64(v) - mu
		ss += d * d
	}
	inv := 1 / math.Sqrt(ss/float64(D)+n.eps)
	out := make([]float64, D)
	for i, v := range x {
		out[i] = (float64(v) - mu) * inv * float64(n.w[i])
		if withBias && n.b != nil {
			out[i] += float64(n.b[i])
		}
	}
	return out
}
