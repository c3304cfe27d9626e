package probe

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// The reference vectors in testdata/ref were written by
// testdata/ref/make_refs.py from Hugging Face transformers (float32, eager
// attention); testdata/ref/README.md describes every field.

type refArray struct {
	File  string `json:"file"`
	Shape []int  `json:"shape"`
}

func (a refArray) load(t *testing.T) []float32 {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata/ref", a.File))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, len(raw)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	n := 1
	for _, d := range a.Shape {
		n *= d
	}
	if n != len(out) {
		t.Fatalf("%s: %d values for shape %v", a.File, len(out), a.Shape)
	}
	return out
}

type tinyRefs struct {
	Models []struct {
		Name      string `json:"name"`
		Dir       string `json:"dir"`
		Sequences map[string]struct {
			IDs    []int    `json:"ids"`
			Logits refArray `json:"logits"`
		} `json:"sequences"`
		Batch struct {
			InputIDs [][]int `json:"input_ids"`
			Mask     [][]int `json:"attention_mask"`
			Rows     []struct {
				UnpaddedLen int      `json:"unpadded_len"`
				FirstReal   int      `json:"first_real"`
				Logits      refArray `json:"logits"`
			} `json:"rows"`
		} `json:"batch"`
		Greedy struct {
			Prompt []int `json:"prompt"`
			N      int   `json:"n"`
			Tokens []int `json:"tokens"`
		} `json:"greedy"`
	} `json:"models"`
}

// Tolerance of the issue: max |Loupe - transformers| over every logit.
const logitTol = 2e-3

// TestTinyModelsMatchTransformers runs the tiny random-weight models of
// every family: tiny.json (GPT-2, NeoX, Llama, Qwen2), families.json
// (Qwen3, Mistral, Phi-3, Gemma 3) and gguf.json (the Qwen2, Qwen3, Gemma 3
// and Phi-3 ones written as GGUF files, checked against the logits of the
// same weights in safetensors).
func TestTinyModelsMatchTransformers(t *testing.T) {
	for _, manifest := range []struct {
		file string
		min  int
	}{{"tiny.json", 6}, {"families.json", 5}, {"gguf.json", 4}} {
		t.Run(manifest.file, func(t *testing.T) { testTinyManifest(t, manifest.file, manifest.min) })
	}
}

func testTinyManifest(t *testing.T, file string, minModels int) {
	raw, err := os.ReadFile(filepath.Join("testdata/ref", file))
	if err != nil {
		t.Fatal(err)
	}
	var refs tinyRefs
	if err := json.Unmarshal(raw, &refs); err != nil {
		t.Fatal(err)
	}
	if len(refs.Models) < minModels {
		t.Fatalf("only %d reference models", len(refs.Models))
	}
	ctx := context.Background()
	for _, rm := range refs.Models {
		t.Run(rm.Name, func(t *testing.T) {
			m, wm, err := LoadModel(filepath.Join("testdata/ref", rm.Dir), testBackend())
			if err != nil {
				t.Fatal(err)
			}
			defer wm.Close()
			for name, seq := range rm.Sequences {
				r, err := m.Forward(ctx, [][]int{seq.IDs}, Options{})
				if err != nil {
					t.Fatal(err)
				}
				if d := maxDiff(r.Logits, seq.Logits.load(t)); d > logitTol {
					t.Errorf("%s: max |logit diff| %g > %g", name, d, logitTol)
				} else {
					t.Logf("%s: max |logit diff| %.2g", name, d)
				}
			}
			// Left-padded batch: each row's logits at its real positions.
			var batch [][]int
			for b, ids := range rm.Batch.InputIDs {
				batch = append(batch, ids[rm.Batch.Rows[b].FirstReal:])
			}
			r, err := m.Forward(ctx, batch, Options{})
			if err != nil {
				t.Fatal(err)
			}
			for b, row := range rm.Batch.Rows {
				want := row.Logits.load(t)
				V := row.Logits.Shape[1]
				for p := 0; p < row.UnpaddedLen; p++ {
					if d := maxDiff(r.LogitsAt(b, p), want[p*V:(p+1)*V]); d > logitTol {
						t.Errorf("batch row %d position %d: max |logit diff| %g", b, p, d)
					}
				}
			}
			got, err := m.Generate(ctx, rm.Greedy.Prompt, GenerateOptions{MaxTokens: rm.Greedy.N})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, rm.Greedy.Tokens) {
				t.Errorf("greedy: got %v, transformers %v", got, rm.Greedy.Tokens)
			}
		})
	}
}

// TestTinyGGUFConfigs checks that the config synthesized from each tiny
// GGUF's metadata is the config.json of the same model.
func TestTinyGGUFConfigs(t *testing.T) {
	raw, err := os.ReadFile("testdata/ref/gguf.json")
	if err != nil {
		t.Fatal(err)
	}
	var refs tinyRefs
	if err := json.Unmarshal(raw, &refs); err != nil {
		t.Fatal(err)
	}
	for _, rm := range refs.Models {
		t.Run(rm.Name, func(t *testing.T) {
			fromGGUF, wm, err := LoadModel(filepath.Join("testdata/ref", rm.Dir), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer wm.Close()
			fromHF, wm2, err := LoadModel(filepath.Join("testdata/ref/models", rm.Name), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer wm2.Close()
			g, h := fromGGUF.Config, fromHF.Config
			if math.Abs(g.QueryPreAttnScalar-h.QueryPreAttnScalar) < 1e-4 {
				g.QueryPreAttnScalar = h.QueryPreAttnScalar // stored as a float32 scale
			}
			g.MaxPos, h.MaxPos = 0, 0
			if float32(g.NormEps) == float32(h.NormEps) {
				g.NormEps = h.NormEps // GGUF stores eps as float32
			}
			if gj, hj := fmt.Sprintf("%+v", g), fmt.Sprintf("%+v", h); gj != hj {
				t.Errorf("config from the GGUF:\n%s\nfrom config.json:\n%s", gj, hj)
			}
		})
	}
}
