package sae

import (
	"context"
	"math"
	"testing"

	"github.com/loupe-dev/loupe/organism"
	"github.com/loupe-dev/loupe/organism/corpus"
	"github.com/loupe-dev/loupe/sae/activations"
)

// TestFeaturesAgreeWithEvaluation: the feature scan's densities are the
// evaluation's on the same tokens, its top examples are each latent's
// largest activations in order (the largest is max_act), every window
// holds its activation at its token, and the logit table is W_dec·W_U
// computed here directly.
func TestFeaturesAgreeWithEvaluation(t *testing.T) {
	m, err := organism.Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	g := corpus.New(5)
	docs := make([]string, 60)
	for i := range docs {
		docs[i] = g.Document()
	}
	d := &Data{Model: m, Docs: docs, HeldOut: 0.5, ContextSize: 33, Hook: activations.HookPoint{Name: "blocks.1.hook_resid_post", Head: -1}, SeqsPerForward: 4}
	s, err := New(TopK, m.Config.DModel, 128, m.Config.DModel, 6, 3)
	if err != nil {
		t.Fatal(err)
	}
	const tokens = 32 * 12
	fs, err := Features(context.Background(), s, d, FeatureConfig{Tokens: tokens, TopK: 5, QuantileBins: 4, PerQuantile: 1, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	_, evalDocs := d.split()
	src, _, _, err := d.source(evalDocs, tokens)
	if err != nil {
		t.Fatal(err)
	}
	met, err := Evaluate(context.Background(), s, src, tokens)
	if err != nil {
		t.Fatal(err)
	}
	if fs.Tokens != met.Tokens {
		t.Fatalf("features scanned %d tokens, evaluation %d", fs.Tokens, met.Tokens)
	}
	wu, _ := m.Param("unembed.W_U")
	for j, f := range fs.Features {
		if math.Abs(f.Density-met.Density[j]) > 1e-12 {
			t.Fatalf("latent %d: density %g, evaluation %g", j, f.Density, met.Density[j])
		}
		// logit table: the first top entry is the largest of W_U·d_j
		best, arg := math.Inf(-1), -1
		for v := 0; v < wu.Shape[0]; v++ {
			var dot float64
			for i := 0; i < s.DOut; i++ {
				dot += float64(wu.Data[v*s.DOut+i]) * float64(s.Dec[j*s.DOut+i])
			}
			if dot > best {
				best, arg = dot, v
			}
		}
		if int(f.TopIDs[0]) != arg || math.Abs(float64(f.TopValues[0])-best) > 1e-4 {
			t.Fatalf("latent %d: top token %d (%g), direct %d (%g)", j, f.TopIDs[0], f.TopValues[0], arg, best)
		}
	}
	prev := map[int]float32{}
	var firing int
	for _, e := range fs.Examples {
		if e.Kind == "top" {
			if p, ok := prev[e.Latent]; ok && e.Activation > p {
				t.Fatalf("latent %d: top examples out of order", e.Latent)
			}
			prev[e.Latent] = e.Activation
			if e.Activation > fs.Features[e.Latent].MaxAct || (e.Rank == 0 && e.Activation != fs.Features[e.Latent].MaxAct) {
				t.Fatalf("latent %d: top example %g, max %g", e.Latent, e.Activation, fs.Features[e.Latent].MaxAct)
			}
			firing++
		}
		if e.Acts[e.Position-e.WindowStart] != e.Activation {
			t.Fatalf("latent %d: window value at the example's token %g, activation %g", e.Latent, e.Acts[e.Position-e.WindowStart], e.Activation)
		}
	}
	if firing == 0 {
		t.Fatal("no top examples")
	}
}
