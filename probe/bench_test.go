package probe

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/loupe-dev/loupe/probe/compute"
)

// smolLM2Path finds the SmolLM2 GGUF: $LOUPE_SMOLLM2_GGUF, else the cache
// that scripts/fetch-smollm2.sh fills.
func smolLM2Path(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("LOUPE_SMOLLM2_GGUF"); p != "" {
		return p
	}
	cache := os.Getenv("LOUPE_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "loupe")
	}
	p := filepath.Join(cache, "SmolLM2-135M-Instruct.Q4_1.gguf")
	if _, err := os.Stat(p); err != nil {
		tb.Skipf("SmolLM2 GGUF not found at %s: run scripts/fetch-smollm2.sh (the test script does)", p)
	}
	return p
}

var smolOnce struct {
	m   *Model
	err error
}

func loadSmolLM2(tb testing.TB) *Model {
	tb.Helper()
	if smolOnce.m == nil && smolOnce.err == nil {
		smolOnce.m, _, smolOnce.err = LoadModel(smolLM2Path(tb), testBackend())
	}
	if smolOnce.err != nil {
		tb.Fatal(smolOnce.err)
	}
	return smolOnce.m
}

// BenchmarkPrefill reports SmolLM2 prefill tokens/s: a plain forward (last
// position's logits) and one caching every hook_resid_post. 8192 tokens
// run with -bench 'Prefill/T=8192' (scripts/bench-prefill.sh).
func BenchmarkPrefill(b *testing.B) {
	m := loadSmolLM2(b)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, T := range []int{128, 512, 2048, 8192} {
		ids := make([]int, T)
		for i := range ids {
			ids[i] = rng.IntN(m.Config.Vocab)
		}
		for _, mode := range []string{"nohooks", "resid_post"} {
			var h *Hooks
			if mode == "resid_post" {
				h = &Hooks{Cache: []string{"blocks.*.hook_resid_post"}}
			}
			b.Run(fmt.Sprintf("T=%d/%s", T, mode), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					if _, err := m.Forward(context.Background(), [][]int{ids}, Options{Hooks: h, Logits: LogitsLast}); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(T*b.N)/b.Elapsed().Seconds(), "tokens/s")
			})
		}
	}
}

// BenchmarkHookPointsIdle compares a plain forward with one whose hooks
// match no hook point at all: the price of the hook points themselves.
func BenchmarkHookPointsIdle(b *testing.B) {
	m := loadSmolLM2(b)
	ids := make([]int, 256)
	for i := range ids {
		ids[i] = (i * 7919) % m.Config.Vocab
	}
	for _, mode := range []string{"nil", "unmatched"} {
		var h *Hooks
		if mode == "unmatched" {
			h = &Hooks{Cache: []string{"no.such.hook"}}
		}
		b.Run(mode, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := m.Forward(context.Background(), [][]int{ids}, Options{Hooks: h, Logits: LogitsLast}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMatMul reports the GFLOP/s of the CPU backend's Linear at the
// shapes SmolLM2's prefill uses.
func BenchmarkMatMul(b *testing.B) {
	cpu := compute.NewCPU()
	for _, s := range []struct{ M, N, K int }{{512, 576, 576}, {512, 1536, 576}, {512, 576, 1536}, {2048, 1536, 576}} {
		x := cpu.FromHost(randn(s.M*s.K), s.M, s.K)
		w := cpu.FromHost(randn(s.N*s.K), s.N, s.K)
		b.Run(fmt.Sprintf("%dx%dx%d", s.M, s.N, s.K), func(b *testing.B) {
			start := time.Now()
			for i := 0; i < b.N; i++ {
				cpu.Linear(x, w, nil)
			}
			b.ReportMetric(2*float64(s.M*s.N*s.K)*float64(b.N)/time.Since(start).Seconds()/1e9, "GFLOP/s")
		})
	}
}

func randn(n int) []float32 {
	rng := rand.New(rand.NewPCG(3, 4))
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(rng.NormFloat64())
	}
	return out
}
