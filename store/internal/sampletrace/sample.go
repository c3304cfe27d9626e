// Package sampletrace writes a small synthetic trace through the store
// writer, for tests and for the notebooks until `loupe trace` (which needs
// the probe) exists. The numbers are made up but have structure a notebook
// can show: head 1.2 is a previous-token head, head 2.1 an induction head,
// the logit lens sharpens with depth, and rollout is the real rollout of
// the stored patterns.
package sampletrace

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/loupe-dev/loupe/store"
)

// Config sizes the sample. The zero value gives the default below.
type Config struct {
	Layers, Heads, DModel, DMLP int
	LongPrompt                  int // length of the one long prompt stored as top-k attention
	Options                     store.Options
}

// Default sizes.
var Default = Config{Layers: 4, Heads: 4, DModel: 32, DMLP: 64, LongPrompt: 96}

var words = strings.Fields("the cat sat on mat . a dog ran to park and then Mary John gave book when")

// Prompts returns the sample's short prompts as words.
func Prompts() [][]string {
	return [][]string{
		strings.Fields("the cat sat on the mat . the cat sat on the"),
		strings.Fields("when Mary and John went to the park , John gave a book to"),
		strings.Fields("a dog ran to the park and then a dog ran to"),
	}
}

// Write writes the sample trace to path (its main file, the tokens table).
func Write(ctx context.Context, path string, cfg Config) error {
	if cfg.Layers == 0 {
		opts := cfg.Options
		cfg = Default
		cfg.Options = opts
	}
	run := store.RunInfo{
		ModelPath:    "sample://planted-4x4",
		ModelHash:    "sha256:" + strings.Repeat("0", 64),
		Architecture: "llama",
		Config:       json.RawMessage(fmt.Sprintf(`{"n_layers":%d,"n_heads":%d,"d_model":%d,"d_mlp":%d,"vocab_size":%d}`, cfg.Layers, cfg.Heads, cfg.DModel, cfg.DMLP, len(words)+2)),
		LoupeVersion: "dev",
		CommandLine:  []string{"sampletrace"},
		CreatedAt:    time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	w, err := store.Create(path, run, cfg.Options)
	if err != nil {
		return err
	}
	defer w.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	prompts := Prompts()
	long := make([]string, cfg.LongPrompt)
	for i := range long {
		long[i] = words[(i*7+i/5)%len(words)]
	}
	prompts = append(prompts, long)
	vocab := map[string]int{}
	for _, p := range prompts {
		for _, t := range p {
			if _, ok := vocab[t]; !ok {
				vocab[t] = len(vocab)
			}
		}
	}
	var scores []store.HeadScore
	prevScore := make([]float64, cfg.Layers*cfg.Heads)
	indScore := make([]float64, cfg.Layers*cfg.Heads)
	nShort := 0
	for pid, p := range prompts {
		if err := ctx.Err(); err != nil {
			return err
		}
		T := len(p)
		ids := make([]int, T)
		texts := make([]string, T)
		for i, t := range p {
			ids[i] = vocab[t]
			texts[i] = " " + t
		}
		if err := w.WriteTokens(store.Tokens{PromptID: pid, IDs: ids, Texts: texts}); err != nil {
			return err
		}
		short := T <= 64
		if short {
			nShort++
		}
		// Residual stream: a random walk over layers.
		resid := make([]float32, T*cfg.DModel)
		for i := range resid {
			resid[i] = float32(rng.NormFloat64())
		}
		rollout := identity(T)
		for l := 0; l < cfg.Layers; l++ {
			for i := range resid {
				resid[i] += 0.5 * float32(rng.NormFloat64())
			}
			if err := w.WriteActivation(store.Activation{Hook: fmt.Sprintf("blocks.%d.hook_resid_post", l), Layer: l, Head: -1,
				PromptID: pid, Shape: []int{cfg.DModel}, Values: resid}); err != nil {
				return err
			}
			mlp := make([]float32, T*cfg.DMLP)
			for i := range mlp {
				mlp[i] = float32(math.Max(0, rng.NormFloat64()))
			}
			if err := w.WriteActivation(store.Activation{Hook: fmt.Sprintf("blocks.%d.mlp.hook_post", l), Layer: l, Head: -1,
				PromptID: pid, Shape: []int{cfg.DMLP}, Values: mlp}); err != nil {
				return err
			}
			mean := make([]float32, T*T)
			for h := 0; h < cfg.Heads; h++ {
				pat := pattern(rng, l, h, ids)
				for i := range mean {
					mean[i] += pat[i] / float32(cfg.Heads)
				}
				if short {
					prevScore[l*cfg.Heads+h] += prevTokenScore(pat, T)
					indScore[l*cfg.Heads+h] += inductionScore(pat, ids)
					if err := w.WriteAttention(store.Attention{PromptID: pid, Layer: l, Head: h, Queries: T, Keys: T, Causal: true, Weights: pat}); err != nil {
						return err
					}
					z := make([]float32, T*(cfg.DModel/cfg.Heads))
					for i := range z {
						z[i] = float32(rng.NormFloat64())
					}
					if err := w.WriteActivation(store.Activation{Hook: fmt.Sprintf("blocks.%d.attn.hook_z", l), Layer: l, Head: h,
						PromptID: pid, Shape: []int{cfg.DModel / cfg.Heads}, Values: z}); err != nil {
						return err
					}
				} else {
					if err := w.WriteAttentionTopK(topK(pid, l, h, pat, T, 4)); err != nil {
						return err
					}
				}
			}
			rollout = rolloutStep(rollout, mean, T)
			if short {
				if err := w.WriteFlow(store.FlowMatrix{PromptID: pid, Method: "rollout", Layer: l, Head: store.HeadsAveraged, ToLayer: l + 1, Rows: T, Cols: T, Values: rollout}); err != nil {
					return err
				}
				if err := w.WriteLogitLens(logitLens(rng, pid, l, cfg.Layers, ids, p)); err != nil {
					return err
				}
			}
		}
	}
	for l := 0; l < cfg.Layers; l++ {
		for h := 0; h < cfg.Heads; h++ {
			pv, iv := prevScore[l*cfg.Heads+h]/float64(nShort), indScore[l*cfg.Heads+h]/float64(nShort)
			pl, il := "", ""
			if pv > 0.5 {
				pl = "previous-token head"
			}
			if iv > 0.4 {
				il = "induction head"
			}
			scores = append(scores,
				store.HeadScore{Layer: l, Head: h, Score: "prev_token", Value: pv, Label: pl,
					Details: json.RawMessage(fmt.Sprintf(`{"prompts":%d,"offset":-1}`, nShort))},
				store.HeadScore{Layer: l, Head: h, Score: "induction", Value: iv, Label: il,
					Details: json.RawMessage(fmt.Sprintf(`{"prompts":%d}`, nShort))})
		}
	}
	if err := w.WriteHeadScores(scores); err != nil {
		return err
	}
	// Two codebook codes, one labelled, one that never fired.
	if err := w.WriteCodes([]store.Code{
		{Source: "codebook", Hook: "blocks.0.hook_mlp_out", Code: 3, Count: 5, Positions: 40,
			TopTokens: []int32{1, 2}, TopCounts: []int32{4, 1}, TopTexts: []string{"a", "b"},
			ContextPrompts: []int32{0}, ContextPositions: []int32{2}, Contexts: []string{"x y «a»"},
			Label: "state 7", LabelPrecision: 0.8, LabelAP: 0.6},
		{Source: "codebook", Hook: "blocks.0.attn.hook_z", Group: 1, Code: 0, Positions: 40,
			TopTokens: []int32{}, TopCounts: []int32{}, TopTexts: []string{}, ContextPrompts: []int32{}, ContextPositions: []int32{}, Contexts: []string{}},
	}); err != nil {
		return err
	}
	return w.Commit(ctx)
}

// pattern makes one head's causal pattern: previous-token for 1.2,
// induction for 2.1, noisy local attention for the rest.
func pattern(rng *rand.Rand, l, h int, ids []int) []float32 {
	T := len(ids)
	out := make([]float32, T*T)
	for q := 0; q < T; q++ {
		row := out[q*T : q*T+q+1]
		target := -1
		switch {
		case l == 1 && h == 2 && q > 0:
			target = q - 1
		case l == 2 && h == 1:
			for k := q - 1; k > 0; k-- {
				if ids[k-1] == ids[q] {
					target = k
					break
				}
			}
		}
		var sum float32
		for k := range row {
			v := float32(math.Exp(rng.NormFloat64() * 0.5))
			if target >= 0 && k == target {
				v += 8 * float32(len(row))
			}
			row[k] = v
			sum += v
		}
		for k := range row {
			row[k] /= sum
		}
	}
	return out
}

func prevTokenScore(pat []float32, T int) float64 {
	var s float64
	for q := 1; q < T; q++ {
		s += float64(pat[q*T+q-1])
	}
	return s / float64(T-1)
}

func inductionScore(pat []float32, ids []int) float64 {
	T := len(ids)
	var s float64
	n := 0
	for q := 0; q < T; q++ {
		for k := q - 1; k > 0; k-- {
			if ids[k-1] == ids[q] {
				s += float64(pat[q*T+k])
				n++
				break
			}
		}
	}
	if n == 0 {
		return 0
	}
	return s / float64(n)
}

func topK(pid, l, h int, pat []float32, T, k int) store.AttentionTopK {
	out := store.AttentionTopK{PromptID: pid, Layer: l, Head: h, K: k}
	for q := 0; q < T; q++ {
		out.QueryPos = append(out.QueryPos, q)
		used := map[int]bool{}
		for j := 0; j < k; j++ {
			best := -1
			for key := 0; key <= q; key++ {
				if !used[key] && (best < 0 || pat[q*T+key] > pat[q*T+best]) {
					best = key
				}
			}
			if best < 0 {
				out.KeyPos = append(out.KeyPos, -1)
				out.Weight = append(out.Weight, 0)
				continue
			}
			used[best] = true
			out.KeyPos = append(out.KeyPos, int32(best))
			out.Weight = append(out.Weight, pat[q*T+best])
		}
	}
	return out
}

func identity(T int) []float32 {
	m := make([]float32, T*T)
	for i := 0; i < T; i++ {
		m[i*T+i] = 1
	}
	return m
}

// rolloutStep returns (0.5 A + 0.5 I) x prev, the attention rollout of
// Abnar & Zuidema (2020) one layer further.
func rolloutStep(prev, a []float32, T int) []float32 {
	out := make([]float32, T*T)
	for i := 0; i < T; i++ {
		for j := 0; j < T; j++ {
			var s float32
			for k := 0; k < T; k++ {
				w := 0.5 * a[i*T+k]
				if i == k {
					w += 0.5
				}
				s += w * prev[k*T+j]
			}
			out[i*T+j] = s
		}
	}
	return out
}

func logitLens(rng *rand.Rand, pid, l, L int, ids []int, p []string) store.LogitLens {
	const k = 3
	T := len(ids)
	out := store.LogitLens{PromptID: pid, Layer: l, K: k}
	conf := float64(l+1) / float64(L)
	for q := 0; q < T; q++ {
		out.Positions = append(out.Positions, q)
		if q+1 < T {
			tp := float32(0.05 + 0.9*conf*rng.Float64())
			out.TargetProb = append(out.TargetProb, tp)
			out.TopIDs = append(out.TopIDs, int32(ids[q+1]), int32((ids[q+1]+1)%len(words)), int32((ids[q+1]+2)%len(words)))
			out.TopProbs = append(out.TopProbs, tp, (1-tp)/2, (1-tp)/4)
			out.TopTexts = append(out.TopTexts, " "+p[q+1], " "+words[(ids[q+1]+1)%len(words)], " "+words[(ids[q+1]+2)%len(words)])
		} else {
			out.TargetProb = append(out.TargetProb, float32(math.NaN()))
			out.TopIDs = append(out.TopIDs, 0, 1, -1)
			out.TopProbs = append(out.TopProbs, 0.5, 0.3, 0)
			out.TopTexts = append(out.TopTexts, " "+words[0], " "+words[1], "")
		}
	}
	return out
}
