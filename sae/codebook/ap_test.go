package codebook

import (
	"encoding/json"
	"math"
	"os"
	"testing"
)

// Average precision against scikit-learn's average_precision_score
// (testdata/make_ap_refs.py), continuous, tied and binary scores.
func TestAveragePrecisionMatchesSklearn(t *testing.T) {
	data, err := os.ReadFile("testdata/ap_ref.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Cases []struct {
			Kind   string
			Scores []float32
			Labels []bool
			AP     float64
		}
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	for i, c := range f.Cases {
		got := AveragePrecision(c.Scores, c.Labels)
		if math.Abs(got-c.AP) > 1e-12 {
			t.Errorf("case %d (%s): AP %.15f, sklearn %.15f", i, c.Kind, got, c.AP)
		}
		if c.Kind != "binary" {
			continue
		}
		fired, hits, total := 0, 0, 0
		for j, s := range c.Scores {
			if s == 1 {
				fired++
				if c.Labels[j] {
					hits++
				}
			}
			if c.Labels[j] {
				total++
			}
		}
		if b := BinaryAveragePrecision(fired, hits, total, len(c.Scores)); math.Abs(b-c.AP) > 1e-12 {
			t.Errorf("case %d: binary AP %.15f, sklearn %.15f", i, b, c.AP)
		}
	}
}

// The steering measure's Jensen-Shannon divergence against the reference's
// JSD transcribed in PyTorch (testdata/make_js_refs.py), float64.
func TestJSDivergenceMatchesReference(t *testing.T) {
	data, err := os.ReadFile("testdata/js_ref.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Cases []struct {
			Logits1, Logits2 []float64
			JS               float64
		}
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	probs := func(l []float64) []float64 {
		mx := l[0]
		for _, v := range l {
			mx = math.Max(mx, v)
		}
		p, s := make([]float64, len(l)), 0.0
		for i, v := range l {
			p[i] = math.Exp(v - mx)
			s += p[i]
		}
		for i := range p {
			p[i] /= s
		}
		return p
	}
	if len(f.Cases) == 0 {
		t.Fatal("no reference cases")
	}
	for i, c := range f.Cases {
		if got := jsDivergence(probs(c.Logits1), probs(c.Logits2)); math.Abs(got-c.JS) > 1e-12 {
			t.Errorf("case %d: JS divergence %.15g, the reference's %.15g", i, got, c.JS)
		}
	}
}
