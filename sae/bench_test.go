package sae

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/loupe-dev/loupe/sae/activations"
)

// BenchmarkStep times one training step (forward, backward, Adam) at
// SmolLM2's width: go test ./sae -run XXX -bench Step -benchtime 5x.
// Tokens per second = batch / (ns/op).
func BenchmarkStep(b *testing.B) {
	for _, tc := range []struct {
		arch      Arch
		d, exp, k int
	}{{TopK, 576, 8, 32}, {TopK, 576, 16, 32}, {BatchTopK, 576, 16, 32}, {Standard, 576, 8, 0}} {
		b.Run(fmt.Sprintf("%s/d%d/x%d/k%d", tc.arch, tc.d, tc.exp, tc.k), func(b *testing.B) {
			const n = 1024
			s, err := New(tc.arch, tc.d, tc.d*tc.exp, tc.d, max(tc.k, 1), 1)
			if err != nil {
				b.Fatal(err)
			}
			tr := NewTrainable(s, TrainConfig{DeadWindow: 1 << 40})
			rng := rand.New(rand.NewPCG(1, 2))
			batch := &activations.Batch{Rows: n, Width: tc.d, X: make([]float32, n*tc.d)}
			for i := range batch.X {
				batch.X[i] = float32(rng.NormFloat64())
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := tr.Backward(batch, i); err != nil {
					b.Fatal(err)
				}
				tr.AfterUpdate()
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "tok/s")
		})
	}
}
