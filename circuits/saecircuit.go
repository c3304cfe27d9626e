package circuits

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/loupe-dev/loupe/probe"
)

// # SAE circuit identification (O'Neill and Bui 2024)
//
// The method of "Sparse Autoencoders Enable Scalable and Reliable Circuit
// Identification in Language Models", as its code (charlieoneill11/
// sae-circuits) defines it:
//
//   - features: each head's hook_result averaged over the prompt's
//     positions, one d_model vector per (example, head); positives are
//     prompts the model can complete, negatives prompts it cannot (a task
//     file's clean and corrupted prompts);
//   - one sparse autoencoder shared by every head, trained on a handful of
//     examples (10, drawn from positives and negatives together): ReLU +
//     L1, 200 latents, L1 coefficient 0.02, Adam at 1e-3, 500 full-batch
//     epochs (SAEDefaults);
//   - discretisation: each (example, head) becomes its argmax latent, its
//     code;
//   - node score: how many distinct codes a head shows on positives and
//     never on negatives;
//   - edge score: for an ordered head pair, how many code pairs (c1, c2)
//     co-occur on some positive example and on no negative one; the code's
//     edge-based node ranking counts how often a head appears among the
//     first k components of the pairs sorted by that score, k = n_heads²/2.
//
// The scoring here is checked against a numpy transcription of that code on
// fixed codes (testdata/sae_scores.json, made by testdata/sae_scores.py).

// SAEConfig holds the method's hyperparameters.
type SAEConfig struct {
	Latents  int     // 200
	L1       float64 // 0.02
	LR       float64 // 1e-3
	Epochs   int     // 500 full-batch epochs
	Examples int     // 10 training examples
	Seed     uint64
}

// SAEDefaults are the paper's code's settings.
func SAEDefaults() SAEConfig {
	return SAEConfig{Latents: 200, L1: 0.02, LR: 1e-3, Epochs: 500, Examples: 10}
}

// withDefaults fills the zero fields of c from SAEDefaults, keeping what
// the caller set (the seed among them), and refuses settings that train
// nothing.
func (c SAEConfig) withDefaults() (SAEConfig, error) {
	d := SAEDefaults()
	if c.Latents == 0 {
		c.Latents = d.Latents
	}
	if c.L1 == 0 {
		c.L1 = d.L1
	}
	if c.LR == 0 {
		c.LR = d.LR
	}
	if c.Epochs == 0 {
		c.Epochs = d.Epochs
	}
	if c.Examples == 0 {
		c.Examples = d.Examples
	}
	if c.Latents < 0 || c.L1 < 0 || c.LR < 0 || c.Epochs < 0 || c.Examples < 0 {
		return c, fmt.Errorf("sae circuit settings: latents %d, L1 %g, learning rate %g, epochs %d, examples %d: none may be negative",
			c.Latents, c.L1, c.LR, c.Epochs, c.Examples)
	}
	return c, nil
}

// HeadFeatures runs the prompts and returns every head's hook_result
// averaged over each prompt's own positions (pool "mean", the paper's) or
// at its last position (pool "last", the reference code's other option):
// [len(prompts), layers·heads, d_model], heads in (layer, head) order.
func HeadFeatures(ctx context.Context, m *probe.Model, prompts [][]int, batch int, pool string) ([]float32, error) {
	if pool != "mean" && pool != "last" {
		return nil, fmt.Errorf("sae features: position pooling %q: want mean or last", pool)
	}
	c := m.Config
	H, D := c.Layers*c.Heads, c.DModel
	if batch <= 0 {
		batch = 32
	}
	out := make([]float32, len(prompts)*H*D)
	for start := 0; start < len(prompts); start += batch {
		part := prompts[start:min(start+batch, len(prompts))]
		r, err := m.Forward(ctx, part, probe.Options{Hooks: &probe.Hooks{Cache: []string{"blocks.*.attn.hook_result"}}, Logits: probe.LogitsNone})
		if err != nil {
			return nil, fmt.Errorf("sae features: %w", err)
		}
		for l := 0; l < c.Layers; l++ {
			a := r.Cache[fmt.Sprintf("blocks.%d.attn.hook_result", l)].Data // [B, T, heads, D]
			for b := range part {
				e := start + b
				from, n := r.Pad[b], r.Len-r.Pad[b]
				if pool == "last" {
					from, n = r.Len-1, 1
				}
				for t := from; t < r.Len; t++ {
					for h := 0; h < c.Heads; h++ {
						src := a[((b*r.Len+t)*c.Heads+h)*D:][:D]
						dst := out[(e*H+l*c.Heads+h)*D:][:D]
						for d, v := range src {
							dst[d] += v / float32(n)
						}
					}
				}
			}
		}
	}
	return out, nil
}

// Codes discretises features [n, d] through an encoder (the SAE's, which
// returns [n, latents] activations) to each row's argmax latent, the first
// one on ties, as numpy's argmax.
func Codes(encode func(x []float32, n int) []float32, feats []float32, n, latents int) []int {
	codes, _ := argmaxCodes(encode(feats, n), n, latents)
	return codes
}

// argmaxCodes is each row's argmax latent and the number of rows whose
// every latent is zero (ReLU off): their code is latent 0, numpy's argmax
// of a zero row, one code shared by every head the SAE leaves silent.
func argmaxCodes(acts []float32, n, latents int) (codes []int, silent int) {
	codes = make([]int, n)
	for i := range codes {
		row := acts[i*latents : (i+1)*latents]
		best := 0
		for j, v := range row {
			if v > row[best] {
				best = j
			}
		}
		codes[i] = best
		if row[best] <= 0 {
			silent++
		}
	}
	return codes, silent
}

// SAENodeScores counts, for each head, the codes seen on positive examples
// and never on negative ones. codes is [examples, heads].
func SAENodeScores(codes []int, heads int, positive []bool) []float64 {
	out := make([]float64, heads)
	for h := 0; h < heads; h++ {
		pos, neg := map[int]bool{}, map[int]bool{}
		for e, p := range positive {
			if p {
				pos[codes[e*heads+h]] = true
			} else {
				neg[codes[e*heads+h]] = true
			}
		}
		for c := range pos {
			if !neg[c] {
				out[h]++
			}
		}
	}
	return out
}

// SAEEdgeScores is [heads, heads]: for h1 ≠ h2, the number of code pairs
// (code of h1, code of h2) that co-occur in some positive example and in
// no negative one.
func SAEEdgeScores(codes []int, heads int, positive []bool) []float64 {
	out := make([]float64, heads*heads)
	type pair struct{ a, b int }
	for h1 := 0; h1 < heads; h1++ {
		for h2 := 0; h2 < heads; h2++ {
			if h1 == h2 {
				continue
			}
			pos, neg := map[pair]bool{}, map[pair]bool{}
			for e, p := range positive {
				k := pair{codes[e*heads+h1], codes[e*heads+h2]}
				if p {
					pos[k] = true
				} else {
					neg[k] = true
				}
			}
			for k := range pos {
				if !neg[k] {
					out[h1*heads+h2]++
				}
			}
		}
	}
	return out
}

// SAEEdgeNodeScores is the code's edge-based node ranking: sort the head
// pairs by edge score, largest first (ties in numpy's order: a stable
// ascending sort, reversed), list both heads of each pair in turn and count
// each head's appearances among the first k entries.
func SAEEdgeNodeScores(edge []float64, heads, k int) []float64 {
	idx := make([]int, len(edge))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		switch {
		case edge[a] < edge[b]:
			return -1
		case edge[a] > edge[b]:
			return 1
		}
		return 0
	})
	slices.Reverse(idx)
	var comps []int
	for _, i := range idx {
		comps = append(comps, i/heads, i%heads)
	}
	out := make([]float64, heads)
	for _, h := range comps[:min(k, len(comps))] {
		out[h]++
	}
	return out
}

// SAEResult is the SAE method's output.
type SAEResult struct {
	NodeScores map[Node]float64 // every head: its count of positive-only codes
	EdgeScores map[Edge]float64 // head → later head: positive-only code pairs
	// EdgeNodeScores is the code's edge-based node ranking.
	EdgeNodeScores map[Node]float64
	// Nodes are the heads scoring at least half the top head's score
	// (Loupe's cut: the paper ranks, it does not cut).
	Nodes []Node
	Codes []int // [examples, heads], positives first
	// Silent counts the (example, head) rows on which every latent is
	// zero: they all take code 0.
	Silent int
	Train  []int // the examples the SAE was trained on
	Passes int   // forward passes made (for the features)
}

// SAECircuit runs the method on a task: the clean prompts are the
// positives, the corrupted ones the negatives. train fits the SAE on the
// chosen examples' features ([n, d_model]) and returns its encoder.
func SAECircuit(ctx context.Context, m *probe.Model, prompts []Prompt, cfg SAEConfig,
	train func(ctx context.Context, feats []float32, n, d int, cfg SAEConfig) (func(x []float32, n int) []float32, error)) (*SAEResult, error) {
	c := m.Config
	H, D := c.Layers*c.Heads, c.DModel
	var all [][]int
	for _, q := range prompts {
		all = append(all, q.Clean)
	}
	for _, q := range prompts {
		all = append(all, q.Corrupt)
	}
	E := len(all)
	if cfg.Examples <= 0 || cfg.Examples > E {
		return nil, fmt.Errorf("sae method: %d training examples from %d prompts", cfg.Examples, E)
	}
	const batch = 32
	feats, err := HeadFeatures(ctx, m, all, batch, "mean")
	if err != nil {
		return nil, err
	}
	// The paper's code trains on the first examples of a random
	// permutation of positives and negatives together.
	perm := rand.New(rand.NewPCG(cfg.Seed, 0x5ae)).Perm(E)[:cfg.Examples]
	slices.Sort(perm)
	trainFeats := make([]float32, 0, cfg.Examples*H*D)
	for _, e := range perm {
		trainFeats = append(trainFeats, feats[e*H*D:(e+1)*H*D]...)
	}
	enc, err := train(ctx, trainFeats, cfg.Examples*H, D, cfg)
	if err != nil {
		return nil, fmt.Errorf("sae method: %w", err)
	}
	codes, silent := argmaxCodes(enc(feats, E*H), E*H, cfg.Latents)
	positive := make([]bool, E)
	for i := range prompts {
		positive[i] = true
	}
	node := SAENodeScores(codes, H, positive)
	edge := SAEEdgeScores(codes, H, positive)
	edgeNode := SAEEdgeNodeScores(edge, H, H*H/2)
	res := &SAEResult{NodeScores: map[Node]float64{}, EdgeScores: map[Edge]float64{}, EdgeNodeScores: map[Node]float64{},
		Codes: codes, Silent: silent, Train: perm, Passes: (E + batch - 1) / batch}
	head := func(i int) Node { return HeadNode(i/c.Heads, i%c.Heads) }
	for i := 0; i < H; i++ {
		res.NodeScores[head(i)] = node[i]
		res.EdgeNodeScores[head(i)] = edgeNode[i]
		for j := 0; j < H; j++ {
			if a, b := head(i), head(j); a.Layer < b.Layer {
				res.EdgeScores[Edge{a, b}] = edge[i*H+j]
			}
		}
	}
	top := slices.Max(node)
	for i := 0; i < H; i++ {
		if top > 0 && node[i] >= top/2 {
			res.Nodes = append(res.Nodes, head(i))
		}
	}
	return res, nil
}
