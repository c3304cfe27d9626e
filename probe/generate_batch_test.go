package probe

import (
	"context"
	"slices"
	"testing"
)

// Batched generation with one KV cache equals generating each prompt alone,
// for prompts of different lengths (left padding), greedy and seeded
// sampling, and stops each sequence at its own stop token.
func TestGenerateBatchEqualsSingle(t *testing.T) {
	ctx := context.Background()
	for name := range testConfigs() {
		t.Run(name, func(t *testing.T) {
			m := newTestModel(name)
			prompts := [][]int{prompt, {5, 6, 7}, prompt[:8]}
			for _, s := range []Sampling{{}, {Temperature: 0.8, TopK: 20, Seed: 3}} {
				got, err := m.GenerateBatch(ctx, prompts, GenerateOptions{MaxTokens: 10, Sampling: s})
				if err != nil {
					t.Fatal(err)
				}
				for b, pr := range prompts {
					one := s
					one.Seed = s.Seed + uint64(b)
					want, err := m.Generate(ctx, pr, GenerateOptions{MaxTokens: 10, Sampling: one})
					if err != nil {
						t.Fatal(err)
					}
					if !slices.Equal(got[b], want) {
						t.Fatalf("sampling %+v, sequence %d: batched %v, alone %v", s, b, got[b], want)
					}
				}
			}
			// A stop token ends its own sequence only.
			alone, _ := m.Generate(ctx, prompts[1], GenerateOptions{MaxTokens: 10})
			got, err := m.GenerateBatch(ctx, prompts, GenerateOptions{MaxTokens: 10, Stop: []int{alone[2]}})
			if err != nil {
				t.Fatal(err)
			}
			if i := slices.Index(got[1], alone[2]); i < 0 || i != len(got[1])-1 {
				t.Fatalf("sequence 1 with stop %d: %v", alone[2], got[1])
			}
		})
	}
}
