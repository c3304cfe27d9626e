package probe

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/loupe-dev/loupe/probe/compute/cuda"
)

// TestGPULongContext is the Loupe side of issue 11's GPU figure (a
// benchmark, not a timed test; scripts/gpu/bench-longctx.sh runs it): a
// Llama-3-8B shape with random bf16 weights (LOUPE_BENCH_8B, written by
// scripts/gpu/make_random_model.py), one prompt of each length in
// LOUPE_BENCH_LONG (comma-separated token counts), prefilled in chunks of
// LOUPE_BENCH_CHUNK positions (default 8192; 0: one pass) with the top-1
// reduction of every head's pattern on every query row. One JSON line per
// length: tokens/s, the GPU memory the pass held at its peak (the pool's
// reserve, weights included, after the pool was trimmed before the pass)
// a check that every layer's reduction covers every row, and the GPU's
// busy time (CUDA events around every launch) with its largest kernels.
func TestGPULongContext(t *testing.T) {
	dir, lens := os.Getenv("LOUPE_BENCH_8B"), os.Getenv("LOUPE_BENCH_LONG")
	if !onGPU() || dir == "" || lens == "" {
		t.Skip("a benchmark: set LOUPE_TEST_DEVICE=cuda, LOUPE_BENCH_8B and LOUPE_BENCH_LONG (scripts/gpu/bench-longctx.sh)")
	}
	cb, ok := testBackend().(*cuda.Backend)
	if !ok {
		t.Skip("needs the CUDA backend")
	}
	chunk := 8192
	if s := os.Getenv("LOUPE_BENCH_CHUNK"); s != "" {
		var err error
		if chunk, err = strconv.Atoi(s); err != nil {
			t.Fatalf("LOUPE_BENCH_CHUNK=%q: %v", s, err)
		}
	}
	m, wm, err := LoadModel(dir, cb)
	if err != nil {
		t.Fatal(err)
	}
	defer wm.Close()
	emit := func(kv map[string]any) {
		kv["impl"] = "loupe"
		b, _ := json.Marshal(kv)
		fmt.Println(string(b))
	}
	cb.TrimPool()
	weights := cb.PoolStats().Reserved
	emit(map[string]any{"kind": "weights", "model": "llama3-8b", "bytes": weights})
	rng := rand.New(rand.NewPCG(3, 4))
	hooks := &Hooks{Reduce: []Reduction{{Hook: "blocks.*.attn.hook_pattern", Op: TopK, K: 1}}}
	for _, f := range strings.Split(lens, ",") {
		T, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			t.Fatalf("LOUPE_BENCH_LONG: %v", err)
		}
		ids := make([]int, T)
		for i := range ids {
			ids[i] = rng.IntN(m.Config.Vocab)
		}
		cb.TrimPool()
		cb.ProfileStart()
		t0 := time.Now()
		res, err := m.Forward(context.Background(), [][]int{ids}, Options{Logits: LogitsLast, Hooks: hooks, Chunk: chunk, MemoryLimit: 1 << 50})
		sec := time.Since(t0).Seconds()
		peak := cb.PoolStats().Reserved
		// The GPU's busy time (kernels and products, from CUDA events)
		// against the wall time: what the host side costs.
		prof, perr := cb.ProfileStop()
		gpuMS, top := 0.0, []string{}
		for i, p := range prof {
			gpuMS += p.MS
			if i < 4 {
				top = append(top, fmt.Sprintf("%s %.0f ms", p.Name, p.MS))
			}
		}
		if perr != nil {
			t.Fatal(perr)
		}
		if err != nil {
			emit(map[string]any{"kind": "longctx", "T": T, "chunk": chunk, "error": err.Error(), "seconds": sec, "peak_bytes": peak})
			continue
		}
		full := 0
		for _, r := range res.Reduced {
			if len(r.Shape) == 4 && r.Shape[0] == 1 && r.Shape[1] == m.Config.Heads && r.Shape[2] == T && r.Shape[3] == 1 && len(r.Index) == m.Config.Heads*T {
				full++
			}
		}
		if full != m.Config.Layers {
			t.Errorf("T=%d: %d of %d layers have a top-1 reduction of every row", T, full, m.Config.Layers)
		}
		emit(map[string]any{"kind": "longctx", "T": T, "chunk": chunk, "seconds": sec, "tokens_per_s": float64(T) / sec,
			"peak_bytes": peak, "peak_gib": float64(peak) / (1 << 30), "weights_gib": float64(weights) / (1 << 30), "layers_reduced": full,
			"gpu_busy_s": gpuMS / 1e3, "top_kernels": top})
	}
}
