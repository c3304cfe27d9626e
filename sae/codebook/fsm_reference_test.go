package codebook

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// The reference's precision-at-recall measure against a transcription of
// codebook-features' code_search_utils (testdata/ref_state_precision.py):
// the most precise code per state and every neuron's precision at that
// code's recall.
func TestStatePrecisionMatchesReference(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "ref_state_precision.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref struct {
		IDs, Labels            []int
		Acts                   []float32
		Codes, States, Neurons int
		Want                   []struct {
			State, Code       int
			Precision, Recall float64
			NeuronPrecision   []float64 `json:"neuron_precision"`
		}
	}
	if err := json.Unmarshal(data, &ref); err != nil {
		t.Fatal(err)
	}
	fired := make([]int, ref.Codes)
	hits := make([][]int, ref.Codes)
	total := make([]int, ref.States)
	for i, c := range ref.IDs {
		fired[c]++
		if s := ref.Labels[i]; s >= 0 {
			total[s]++
			if hits[c] == nil {
				hits[c] = make([]int, ref.States)
			}
			hits[c][s]++
		}
	}
	prec, recall, best := bestCodeByPrecision(fired, hits, total)
	n := len(ref.Labels)
	for _, w := range ref.Want {
		s := w.State
		if best[s] != w.Code || math.Abs(prec[s]-w.Precision) > 1e-12 || math.Abs(recall[s]-w.Recall) > 1e-12 {
			t.Errorf("state %d: best code %d precision %g recall %g, reference %d %g %g", s, best[s], prec[s], recall[s], w.Code, w.Precision, w.Recall)
		}
		for j := range ref.Neurons {
			all := make([]float32, n)
			var pos []float32
			for k := range n {
				all[k] = ref.Acts[k*ref.Neurons+j]
				if ref.Labels[k] == s {
					pos = append(pos, all[k])
				}
			}
			slices.Sort(all)
			slices.Sort(pos)
			// The reference divides in float32 (torch).
			if got := neuronPrecisionAtRecall(pos, all, w.Recall); math.Abs(got-w.NeuronPrecision[j]) > 1e-6 {
				t.Errorf("state %d neuron %d: precision at recall %g is %g, reference %g", s, j, w.Recall, got, w.NeuronPrecision[j])
			}
		}
	}
}

// A planted case: the precision denominators count every position, the
// recall floor drops a rare perfect code, and a neuron's threshold keeps
// int(recall·positives) positives.
func TestStatePrecisionPlanted(t *testing.T) {
	// Ten positions, state 0 at 1, 3, 5, 7 (four positions); code 2 fires at
	// 1, 3 and 8 (precision 2/3, recall 1/2); code 1 fires at 5 and 7 only
	// (precision 1, recall 1/2).
	fired := []int{5, 2, 3}
	hits := [][]int{{0}, {2}, {2}}
	prec, recall, best := bestCodeByPrecision(fired, hits, []int{4})
	if best[0] != 1 || prec[0] != 1 || recall[0] != 0.5 {
		t.Fatalf("best code %d precision %g recall %g, want code 1, 1, 0.5", best[0], prec[0], recall[0])
	}
	// 1 hit of 200 positives is recall 0.005, under the 1% floor.
	prec, _, best = bestCodeByPrecision([]int{1, 100}, [][]int{{1}, {50}}, []int{200})
	if best[0] != 1 || prec[0] != 0.5 {
		t.Fatalf("best code %d precision %g: want the rare code dropped (code 1, 0.5)", best[0], prec[0])
	}
	// Positives 4, 3, 2, 1; at recall 0.5 the threshold is 3; the positions
	// at or above 3 are 3, 4, 3.5 and 9: precision 2/4.
	all := []float32{0, 1, 2, 3, 3.5, 4, 9, -1}
	slices.Sort(all)
	if got := neuronPrecisionAtRecall([]float32{1, 2, 3, 4}, all, 0.5); got != 0.5 {
		t.Fatalf("neuron precision %g, want 0.5", got)
	}
}

// The shipped TokFSM model on the reference's measure (figures with 200
// sequences in organism/tokfsm/model/README.md): its best codes are nearly
// pure, and at their recall the best MLP neuron is less precise.
func TestTokFSMStatePrecision(t *testing.T) {
	if testing.Short() {
		t.Skip("TokFSM measures take a few seconds")
	}
	m, f := loadTokFSMMachine(t)
	sp, err := MeasureStatePrecision(context.Background(), m, NewStateEval(f, 48, 64, 1), []string{"blocks.*.mlp.hook_post"}, 16)
	if err != nil {
		t.Fatal(err)
	}
	code, neuron := MeanOf(sp.CodePrecision), MeanOf(sp.NeuronPrecision)
	t.Logf("over %d positions: best code precision %.3f (recall %.3f), best neuron at its recall %.3f (paper 0.971, 0.705)",
		sp.Positions, code, MeanOf(sp.CodeRecall), neuron)
	if code < 0.9 || neuron >= code {
		t.Errorf("best code precision %.3f, neuron %.3f: want codes >= 0.9 and above neurons", code, neuron)
	}
}

// Every code of the layer-1 MLP codebook against its own most frequent
// state (the reference's compare_codes_with_neurons over a whole codebook):
// the rows are well-formed and the neuron scored at each code's recall.
func TestTokFSMCodePrecision(t *testing.T) {
	if testing.Short() {
		t.Skip("TokFSM measures take a few seconds")
	}
	m, f := loadTokFSMMachine(t)
	rows, err := MeasureCodePrecision(context.Background(), m, NewStateEval(f, 24, 64, 1), "blocks.1.hook_mlp_out", []string{"blocks.*.hook_attn_out", "blocks.*.hook_mlp_out"}, 16)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) < 50 {
		t.Fatalf("%d codes scored: want the layer-1 MLP codebook's many live codes", len(rows))
	}
	var p, np []float64
	for _, r := range rows {
		if r.Precision <= 0 || r.Precision > 1 || r.Recall <= refRecallFloor || r.Recall > 1 || r.NeuronPrecision <= 0 || r.NeuronPrecision > 1 {
			t.Fatalf("code %v state %d: precision %g recall %g neuron precision %g", r.Code, r.State, r.Precision, r.Recall, r.NeuronPrecision)
		}
		p, np = append(p, r.Precision), append(np, r.NeuronPrecision)
	}
	t.Logf("%d codes: mean precision %.3f, best neuron at their recall %.3f", len(rows), MeanOf(p), MeanOf(np))
	if _, err := MeasureCodePrecision(context.Background(), m, NewStateEval(f, 2, 64, 1), "blocks.9.hook_mlp_out", nil, 16); err == nil {
		t.Error("a hook without a codebook: no error")
	}
}
