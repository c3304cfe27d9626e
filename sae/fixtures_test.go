package sae

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/loupe-dev/loupe/sae/activations"
	"github.com/loupe-dev/loupe/sae/internal/st"
)

// TestWriteSAELensFixtures trains a small SAE of every architecture (and two
// transcoders) on planted data, exports each as a SAELens folder under
// $LOUPE_SAE_FIXTURES and adds loupe_io.safetensors: raw inputs x and
// Loupe's latents and reconstructions of them. notebooks/check_saelens.py
// (in the test command) reads them as SAELens v6 does. Skips without the
// variable.
func TestWriteSAELensFixtures(t *testing.T) {
	root := os.Getenv("LOUPE_SAE_FIXTURES")
	if root == "" {
		t.Skip("LOUPE_SAE_FIXTURES not set")
	}
	const d, atoms, rows = 16, 32, 4096
	x, _ := planted(2, rows, d, atoms, 3.0/atoms)
	y := make([]float32, rows*12) // a transcoder target: a fixed linear map of x
	for r := 0; r < rows; r++ {
		for o := 0; o < 12; o++ {
			var v float32
			for i := 0; i < d; i++ {
				v += x[r*d+i] * float32((i*7+o*3)%5-2) * 0.3
			}
			y[r*12+o] = v
		}
	}
	for _, tc := range []struct {
		name       string
		arch       Arch
		transcoder bool
	}{
		{"standard", Standard, false}, {"topk", TopK, false}, {"batchtopk", BatchTopK, false},
		{"jumprelu", JumpReLU, false}, {"matryoshka", Matryoshka, false},
		{"transcoder", Standard, true}, {"jumprelu_transcoder", JumpReLU, true},
	} {
		var yy []float32
		tw := 0
		if tc.transcoder {
			yy, tw = y, 12
		}
		src, err := activations.NewSliceSource(x, d, yy, tw, 512, true)
		if err != nil {
			t.Fatal(err)
		}
		pipe, _ := activations.NewPipeline(src, activations.Config{BatchRows: 128, BufferRows: 2048, Seed: 1})
		sp := TrainSpec{Arch: tc.arch, DSAE: 64, K: 3, Tokens: 128 * 150, BatchRows: 128, LR: 3e-3, Seed: 2,
			Loss: TrainConfig{L1: 1, DeadWindow: 5000}, Normalize: true,
			Meta: Metadata{ModelName: "planted", HookName: "blocks.0.hook_resid_post", ContextSize: 64, PrependBOS: true, DatasetPath: "planted"}}
		if tc.transcoder {
			sp.Meta.HookName, sp.Meta.TargetHookName = "blocks.0.ln2.hook_normalized", "blocks.0.hook_mlp_out"
		}
		s, _, _, err := Train(context.Background(), pipe, sp)
		if err != nil {
			t.Fatal(err)
		}
		const n = 200
		acc := NewAccumulator(s)
		target := x[:n*d]
		if tc.transcoder {
			target = y[:n*12]
		}
		f, rec := acc.Add(x[:n*d], target, n)
		dir := filepath.Join(root, tc.name)
		if err := s.Export(dir, acc.Metrics().Density); err != nil {
			t.Fatal(err)
		}
		if err := st.Write(filepath.Join(dir, "loupe_io.safetensors"), []st.Tensor{
			{Name: "x", Shape: []int{n, d}, Data: x[:n*d]},
			{Name: "latents", Shape: []int{n, s.DSAE}, Data: f},
			{Name: "recon", Shape: []int{n, s.DOut}, Data: rec}}, nil); err != nil {
			t.Fatal(err)
		}
	}
}
