package codebook

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"testing"
)

// SteerReference against a PyTorch transcription of the reference
// tutorial's steering cell (testdata/make_steer_ref.py, float64) on the
// shipped TokFSM model, at the tutorial's own prefix 0 and ten target
// states: every patching's mean JS divergence, its normalised bar and the
// closer-to-b rate. Then the claim on the shipped model: forcing
// every MLP codebook's codes (the paper's "shifts the network's decision
// almost entirely") makes the next-token distribution closer to b's than
// to a's own in at least 80% of the pairs.
func TestSteerReferenceMatchesTutorial(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the TokFSM model 600 times")
	}
	raw, err := os.ReadFile("testdata/steer_ref.json")
	if err != nil {
		t.Fatal(err)
	}
	var ref struct {
		Targets []int `json:"targets"`
		Rows    []struct {
			Name       string  `json:"name"`
			MeanJS     float64 `json:"mean_js"`
			Normalized float64 `json:"normalized_js"`
			Closer     float64 `json:"closer_to_b"`
		} `json:"rows"`
	}
	if err := json.Unmarshal(raw, &ref); err != nil {
		t.Fatal(err)
	}
	m, f := loadTokFSMMachine(t)
	rep, err := SteerReference(context.Background(), m, f, TutorialPatchings(m.Set), 0, 1, ref.Targets)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) != len(ref.Rows) {
		t.Fatalf("%d patchings, the reference has %d", len(rep.Rows), len(ref.Rows))
	}
	for i, r := range rep.Rows {
		want := ref.Rows[i]
		t.Logf("%-13s mean JS %.5f (ref %.5f)  normalised %.4f (ref %.4f)  closer to b %.4f (ref %.4f)",
			r.Name, r.MeanJS, want.MeanJS, r.Normalized, want.Normalized, r.CloserToB, want.Closer)
		if r.Name != want.Name {
			t.Fatalf("row %d is %s, the reference's %s", i, r.Name, want.Name)
		}
		// float32 against float64: a tie flipped between two codes would
		// move a row by far more than this
		if math.Abs(r.MeanJS-want.MeanJS) > 2e-4 || math.Abs(r.Normalized-want.Normalized) > 1e-3 ||
			math.Abs(r.CloserToB-want.Closer) > 2.0/990 {
			t.Errorf("%s: mean JS %.6f, normalised %.5f, closer %.4f; the reference %.6f, %.5f, %.4f",
				r.Name, r.MeanJS, r.Normalized, r.CloserToB, want.MeanJS, want.Normalized, want.Closer)
		}
		if r.Name == "all_mlp" && r.CloserToB < 0.8 {
			t.Errorf("every MLP codebook forced: closer to b in %.1f%% of pairs, want >= 80%%", 100*r.CloserToB)
		}
	}
}

func TestSteerReferenceBadInput(t *testing.T) {
	m, f := loadTokFSMMachine(t)
	ctx := context.Background()
	if _, err := SteerReference(ctx, m, f, []Patching{{"x", []string{"blocks.9.hook_mlp_out"}}}, 0, 1, []int{0}); err == nil {
		t.Error("a patching at a site without a codebook: no error")
	}
	if _, err := SteerReference(ctx, m, f, TutorialPatchings(m.Set), 0, 1, []int{100}); err == nil {
		t.Error("target state 100 of 100: no error")
	}
	if _, err := SteerReference(ctx, m, f, TutorialPatchings(m.Set), -1, 1, []int{0}); err == nil {
		t.Error("prefix -1: no error")
	}
}
