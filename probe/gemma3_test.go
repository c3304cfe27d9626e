package probe

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/loupe-dev/loupe/probe/tokenizer"
)

// gemma3Path finds the Gemma 3 270M Q4_K_M GGUF: $LOUPE_GEMMA3_GGUF, else
// the Loupe cache; the test skips without it (scripts/test.sh fetches it).
func gemma3Path(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("LOUPE_GEMMA3_GGUF"); p != "" {
		return p
	}
	cache := os.Getenv("LOUPE_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "loupe")
	}
	p := filepath.Join(cache, "gemma-3-270m-q4_k_m.gguf")
	if _, err := os.Stat(p); err != nil {
		tb.Skipf("Gemma 3 GGUF not found at %s: run scripts/fetch-gemma3.sh (the test script does)", p)
	}
	return p
}

type gemmaRefs struct {
	Config struct {
		SlidingWindow int      `json:"sliding_window"`
		LayerTypes    []string `json:"layer_types"`
	} `json:"config"`
	SampleIDs []int `json:"sample_ids"`
	Cases     []struct {
		Name      string   `json:"name"`
		Text      string   `json:"text"`
		IDs       []int    `json:"ids"`
		Positions []int    `json:"positions"`
		Sampled   refArray `json:"sampled_logits"`
		TopK      struct {
			IDs    [][]int     `json:"ids"`
			Values [][]float64 `json:"values"`
		} `json:"topk"`
		LogitSum []float64 `json:"logit_sum"`
		Greedy   struct {
			Tokens  []int     `json:"tokens"`
			Margins []float64 `json:"margins"`
		} `json:"greedy"`
	} `json:"cases"`
}

// TestGemma3MatchesTransformers runs Gemma 3 270M from the Q4_K_M GGUF on
// eight prompts, two longer than its 512-token sliding window, against
// transformers run on the same dequantized weights in float32: at every
// checked position the top-100 logits and 1024 sampled vocabulary entries
// to 2e-3, the whole row's mean, and 32 greedy tokens (KV cache). The
// prompts' token ids are checked against Hugging Face tokenizers too.
func TestGemma3MatchesTransformers(t *testing.T) {
	m, wm, err := LoadModel(gemma3Path(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wm.Close()
	raw, err := os.ReadFile("testdata/ref/gemma3.json")
	if err != nil {
		t.Fatal(err)
	}
	var refs gemmaRefs
	if err := json.Unmarshal(raw, &refs); err != nil {
		t.Fatal(err)
	}
	if len(refs.Cases) < 8 {
		t.Fatalf("%d cases, want 8", len(refs.Cases))
	}
	// The layer pattern as transformers read it from the same file.
	for i, typ := range refs.Config.LayerTypes {
		want := 0
		if typ == "sliding_attention" {
			want = refs.Config.SlidingWindow
		}
		if got := m.Config.Window(i); got != want {
			t.Fatalf("layer %d: window %d, transformers has %s (%d)", i, got, typ, want)
		}
	}
	// The prompts' ids: Loupe's tokenizer from the GGUF vocabulary against
	// Hugging Face tokenizers (make_refs.py, gemma_tokenizer), BOS included.
	tk, err := tokenizer.FromVocab(wm.Vocab)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	worst, long := 0.0, 0
	for _, c := range refs.Cases {
		t.Run(c.Name, func(t *testing.T) {
			if ids, err := tk.Encode(c.Text, true); err != nil || !slices.Equal(ids, c.IDs) {
				t.Errorf("tokenizer: %v %v, Hugging Face %v", ids, err, c.IDs)
			}
			if len(c.IDs) > refs.Config.SlidingWindow {
				long++
			}
			r, err := m.Forward(ctx, [][]int{c.IDs}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			sampled := c.Sampled.load(t)
			S := len(refs.SampleIDs)
			caseWorst := 0.0
			for j, p := range c.Positions {
				row := r.LogitsAt(0, p)
				for i, id := range refs.SampleIDs {
					caseWorst = max(caseWorst, math.Abs(float64(row[id]-sampled[j*S+i])))
				}
				for i, id := range c.TopK.IDs[j] {
					caseWorst = max(caseWorst, math.Abs(float64(row[id])-c.TopK.Values[j][i]))
				}
				var s float64
				for _, v := range row {
					s += float64(v)
				}
				if d := math.Abs(s-c.LogitSum[p]) / float64(len(row)); d > logitTol {
					t.Errorf("position %d: mean logit off by %g", p, d)
				}
			}
			if caseWorst > logitTol {
				t.Errorf("max |logit diff| %g > %g", caseWorst, logitTol)
			}
			worst = max(worst, caseWorst)
			t.Logf("%d tokens, %d positions: max |logit diff| %.2g", len(c.IDs), len(c.Positions), caseWorst)
			r = nil

			got, err := m.Generate(ctx, c.IDs, GenerateOptions{MaxTokens: len(c.Greedy.Tokens)})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, c.Greedy.Tokens) {
				t.Errorf("greedy tokens differ:\n got  %v\n want %v\n margins %v", got, c.Greedy.Tokens, c.Greedy.Margins)
			}
		})
	}
	if long < 2 {
		t.Errorf("%d prompts longer than the sliding window, want 2", long)
	}
	t.Logf("max |logit diff| over every case: %.2g (tolerance %g)", worst, logitTol)
}
