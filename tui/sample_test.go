package tui

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loupe-dev/loupe/store"
)

// The sample is two small, deterministic files written with the store
// writer, so that the golden frames depend on nothing but this package:
//
//	trace.arrow  tokens of three prompts, resid_post activations, full
//	             attention of every head, logit lens, rollout and flow
//	heads.arrow  head scores (main table head_scores), with details and an
//	             ablation result
//
// They are opened together, as `loupe tui trace.arrow heads.arrow` would.
const (
	sampleLayers = 6
	sampleHeads  = 6
	sampleDModel = 8
)

var samplePrompts = [][]string{
	strings.Split("<s>|The| cat| sat| on| the| mat|.| The| cat| sat| on| the", "|"),
	strings.Split("<s>|The| secret| code| of| Paris| is| 4| 7| 1|.| Remember| it| well|,| because| later| you| will| be| asked| for| it|.| Many| other| facts| follow| here|:| the| sky| is| blue|,| water| is| wet|.| What| is| the| secret| code| of| Paris|?", "|"),
	strings.Split("<s>|Monday|,| Tuesday|,| Wednesday|,", "|"),
}

// writeSample writes the two files into dir and returns their paths.
func writeSample(t testing.TB, dir string) (trace, heads string) {
	t.Helper()
	ctx := context.Background()
	run := store.RunInfo{ModelPath: "sample", Architecture: "llama",
		Config:    json.RawMessage(`{"n_layers":6,"n_heads":6}`),
		CreatedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	rng := rand.New(rand.NewPCG(7, 11))

	trace = filepath.Join(dir, "trace.arrow")
	w, err := store.Create(trace, run, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for p, toks := range samplePrompts {
		T := len(toks)
		ids := make([]int, T)
		for i := range ids {
			ids[i] = 100 + p*50 + i
		}
		must(t, w.WriteTokens(store.Tokens{PromptID: p, IDs: ids, Texts: toks}))
		for l := range sampleLayers {
			vals := make([]float32, T*sampleDModel)
			for i := range vals {
				// Norms grow with depth and vary by token, as they do.
				vals[i] = float32(rng.NormFloat64() * (1 + float64(l)) * (1 + float64(i/sampleDModel%3)))
			}
			must(t, w.WriteActivation(store.Activation{Hook: hookName(l), Layer: l, Head: -1, PromptID: p,
				Shape: []int{sampleDModel}, Values: vals}))
		}
		for l := range sampleLayers {
			for h := range sampleHeads {
				must(t, w.WriteAttention(store.Attention{PromptID: p, Layer: l, Head: h, Queries: T, Keys: T, Causal: true,
					Weights: samplePattern(toks, l, h, rng)}))
			}
		}
		for l := range sampleLayers {
			lens := store.LogitLens{PromptID: p, Layer: l, K: 3}
			for pos := range T {
				lens.Positions = append(lens.Positions, pos)
				tp := float32(math.NaN())
				if pos+1 < T {
					tp = float32(l+1) / float32(sampleLayers+1)
				}
				lens.TargetProb = append(lens.TargetProb, tp)
				for j := range 3 {
					next := toks[(pos+1+j)%T]
					lens.TopIDs = append(lens.TopIDs, int32(ids[(pos+1+j)%T]))
					lens.TopProbs = append(lens.TopProbs, float32(l+1)/float32(sampleLayers+1)/float32(j+1))
					lens.TopTexts = append(lens.TopTexts, next)
				}
			}
			must(t, w.WriteLogitLens(lens))
		}
		if p <= 1 {
			for _, method := range []string{"rollout", "flow"} {
				vals := make([]float32, T)
				var sum float32
				for i := range vals {
					vals[i] = float32(rng.Float64())
					if method == "flow" && i%5 == 0 {
						vals[i] *= 3
					}
					sum += vals[i]
				}
				for i := range vals {
					vals[i] /= sum
				}
				must(t, w.WriteFlow(store.FlowMatrix{PromptID: p, Method: method, Layer: -1, Head: store.HeadsAveraged, ToLayer: sampleLayers,
					Outputs: []int{T - 1}, Rows: 1, Cols: T, Values: vals}))
			}
		}
	}
	must(t, w.Commit(ctx))

	heads = filepath.Join(dir, "heads.arrow")
	hw, err := store.Create(heads, run, store.Options{MainTable: string(store.KindHeadScores)})
	if err != nil {
		t.Fatal(err)
	}
	defer hw.Close()
	var rows []store.HeadScore
	names := []string{"prev_token", "induction", "sink", "retrieval"}
	for l := range sampleLayers {
		for h := range sampleHeads {
			for si, name := range names {
				v := math.Round(rng.Float64()*0.3*1000) / 1000
				s := store.HeadScore{Layer: l, Head: h, Score: name, Value: v,
					Details: json.RawMessage(`{"rank":` + itoa(l*sampleHeads+h+1) + `,"source":"sample"}`)}
				switch {
				case si == 0 && h == 0:
					s.Value, s.Label = 0.9-0.1*float64(l), "previous-token head"
				case si == 1 && h == 1 && l >= 2:
					s.Value, s.Label = 0.5+0.08*float64(l), "induction head"
				case si == 2 && h == 2:
					s.Value, s.Label = 0.95, "sink head"
				case si == 3 && l == 4 && h == 3:
					s.Value, s.Label = 0.875, "retrieval head"
					s.Details = json.RawMessage(`{"needle_tokens":[" 4"," 7"," 1"],"copied":7,"of":8,"rank":1,"source":"sample"}`)
				}
				if l == 5 && h == 5 && name == "retrieval" {
					s.Value = math.NaN() // a score that could not be measured
				}
				rows = append(rows, s)
			}
		}
	}
	rows = append(rows, store.HeadScore{Layer: 4, Head: 3, Score: "ablation_niah", Value: 0.25, Label: "",
		Details: json.RawMessage(`{"baseline":0.875,"ablated":0.25,"random":[0.85,0.875,0.8125]}`)})
	must(t, hw.WriteHeadScores(rows))
	must(t, hw.Commit(ctx))
	return trace, heads
}

func hookName(l int) string { return "blocks." + itoa(l) + ".hook_resid_post" }

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

// samplePattern gives each head a recognisable causal pattern: head 0 looks
// at the previous token, head 1 at the token after the last occurrence of
// the current one (induction), head 2 at the first token (sink), the others
// spread noise.
func samplePattern(toks []string, l, h int, rng *rand.Rand) []float32 {
	T := len(toks)
	out := make([]float32, T*T)
	for q := range T {
		row := out[q*T : q*T+q+1]
		for k := range row {
			row[k] = float32(rng.Float64() * 0.2)
		}
		switch h {
		case 0:
			row[max(q-1, 0)] += 4
		case 1:
			for k := q - 1; k >= 1; k-- {
				if toks[k-1] == toks[q] {
					row[k] += 4
					break
				}
			}
		case 2:
			row[0] += 4
		}
		var sum float32
		for _, v := range row {
			sum += v
		}
		for k := range row {
			row[k] /= sum
		}
	}
	return out
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
