package sae

import (
	"encoding/json"
	"math"
	"os"
	"testing"
)

func loadRef(t *testing.T) []map[string]json.RawMessage {
	b, err := os.ReadFile("testdata/metrics_ref.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []map[string]json.RawMessage
	if err := json.Unmarshal(b, &cases); err != nil {
		t.Fatal(err)
	}
	return cases
}

func get[T any](t *testing.T, m map[string]json.RawMessage, key string) T {
	var v T
	if err := json.Unmarshal(m[key], &v); err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	return v
}

// fromSAELensLayout builds an SAE from weights in the SAELens layout.
func fromSAELensLayout(arch Arch, dIn, dSAE, k int, wenc, benc, wdec, bdec, thr []float32) *SAE {
	s := &SAE{Arch: arch, DIn: dIn, DSAE: dSAE, DOut: dIn, K: k, BEnc: benc, Dec: wdec, BDec: bdec,
		Threshold: thr, ApplyBDecToInput: true, InScale: 1, OutScale: 1, Enc: make([]float32, dIn*dSAE)}
	for i := 0; i < dIn; i++ {
		for j := 0; j < dSAE; j++ {
			s.Enc[j*dIn+i] = wenc[i*dSAE+j]
		}
	}
	return s
}

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol*(1+math.Abs(b)) }

// TestMetricsMatchNumpy checks encode, decode and every metric against the
// numpy transcription in testdata/make_metrics_ref.py.
func TestMetricsMatchNumpy(t *testing.T) {
	for _, c := range loadRef(t) {
		arch := get[string](t, c, "architecture")
		t.Run(arch, func(t *testing.T) {
			dIn, dSAE, n, k := get[int](t, c, "d_in"), get[int](t, c, "d_sae"), get[int](t, c, "n"), get[int](t, c, "k")
			a, err := ParseArch(arch)
			if err != nil {
				t.Fatal(err)
			}
			s := fromSAELensLayout(a, dIn, dSAE, k, get[[]float32](t, c, "W_enc"), get[[]float32](t, c, "b_enc"),
				get[[]float32](t, c, "W_dec"), get[[]float32](t, c, "b_dec"), get[[]float32](t, c, "threshold"))
			x := get[[]float32](t, c, "x")
			acc := NewAccumulator(s)
			f, xh := acc.Add(x, x, n)
			for i, want := range get[[]float32](t, c, "latents") {
				if !near(float64(f[i]), float64(want), 1e-5) {
					t.Fatalf("latent %d: %g, numpy %g", i, f[i], want)
				}
			}
			for i, want := range get[[]float32](t, c, "recon") {
				if !near(float64(xh[i]), float64(want), 1e-5) {
					t.Fatalf("reconstruction %d: %g, numpy %g", i, xh[i], want)
				}
			}
			m := acc.Metrics()
			ref := get[map[string]json.RawMessage](t, c, "metrics")
			for _, kv := range []struct {
				name string
				got  float64
			}{{"l0", m.L0}, {"fvu", m.FVU}, {"mse", m.MSE}, {"cosine", m.Cosine}, {"relative_bias", m.RelativeBias}, {"dead", m.Dead}} {
				if want := get[float64](t, ref, kv.name); !near(kv.got, want, 1e-5) {
					t.Errorf("%s: %.8g, numpy %.8g", kv.name, kv.got, want)
				}
			}
			for j, want := range get[[]float64](t, ref, "density") {
				if !near(m.Density[j], want, 1e-12) {
					t.Errorf("density %d: %g, numpy %g", j, m.Density[j], want)
				}
			}
			if m.DeadCount < 2 {
				t.Errorf("%d dead latents; the reference has at least 2", m.DeadCount)
			}
			hist := 0
			for _, h := range m.Histogram {
				hist += h
			}
			if hist+m.DeadCount != dSAE {
				t.Errorf("histogram holds %d + %d dead latents of %d", hist, m.DeadCount, dSAE)
			}
		})
	}
}
