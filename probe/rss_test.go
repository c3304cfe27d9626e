package probe

import (
	"context"
	"math/rand/v2"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/loupe-dev/loupe/probe/compute"
)

// TestLongForwardRSS measures the peak RSS of one SmolLM2 forward pass over
// LOUPE_RSS_TOKENS (default 8192) random tokens with the retrieval score's
// reductions (every layer's top-1 key of the last query), in the mode
// LOUPE_RSS_MODE names: "fused" (the fused attention), "unfused" (an
// identity edit on every pattern makes each layer build it) or "chunked"
// (fused, prefill in pieces of 1024). Peak RSS is per process, so
// scripts/bench-longctx.sh runs each mode in its own; without the variable
// the test skips.
func TestLongForwardRSS(t *testing.T) {
	mode := os.Getenv("LOUPE_RSS_MODE")
	if mode == "" {
		t.Skip("set LOUPE_RSS_MODE=fused|unfused|chunked (scripts/bench-longctx.sh)")
	}
	T := 8192
	if s := os.Getenv("LOUPE_RSS_TOKENS"); s != "" {
		T, _ = strconv.Atoi(s)
	}
	m := loadSmolLM2(t)
	rng := rand.New(rand.NewPCG(7, 7))
	ids := make([]int, T)
	for i := range ids {
		ids[i] = rng.IntN(m.Config.Vocab)
	}
	hooks := &Hooks{Reduce: []Reduction{{Hook: "blocks.*.attn.hook_pattern", Op: TopK, K: 1, Rows: []int{-1}}}}
	opt := Options{Hooks: hooks, Logits: LogitsLast}
	switch mode {
	case "unfused":
		hooks.Edit = []Edit{{Hook: "blocks.*.attn.hook_pattern", Fn: func(_ compute.Backend, _ string, t compute.Tensor, _ []int) (compute.Tensor, error) { return t, nil }}}
	case "chunked":
		opt.Chunk = 1024
	case "fused":
	default:
		t.Fatalf("LOUPE_RSS_MODE=%q: want fused, unfused or chunked", mode)
	}
	var before syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	start := time.Now()
	r, err := m.Forward(context.Background(), [][]int{ids}, opt)
	if err != nil {
		t.Fatal(err)
	}
	wall := time.Since(start)
	var after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	t.Logf("RSS %s T=%d: peak %.0f MiB (%.0f MiB before the pass), %d reductions, %.1f s, %.0f tokens/s",
		mode, T, float64(after.Maxrss)/1024, float64(before.Maxrss)/1024, len(r.Reduced), wall.Seconds(), float64(T)/wall.Seconds())
}
