package probe

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/loupe-dev/loupe/probe/compute/cuda"
)

// TestGPUSpeed is the Loupe side of the GPU speed benchmark (not a timed
// test: it asserts nothing about time and runs only when asked). It runs
// the workloads of scripts/gpu/bench_torch.py on the same random weights
// (scripts/gpu/make_random_model.py) and prints one JSON line each:
// LOUPE_BENCH_8B and LOUPE_BENCH_SMOL name the model folders;
// LOUPE_BENCH_PARTS (default "prefill,decode,smol,profile") picks the
// workloads ("prefill" includes the 8 x 1024 batch). "profile"
// adds, for the 2K and 8K prefills and SmolLM2, one pass
// profiled by kernel (CUDA events around every launch: "kind":"profile"
// lines, the GPU milliseconds per kernel name).
func TestGPUSpeed(t *testing.T) {
	big, small := os.Getenv("LOUPE_BENCH_8B"), os.Getenv("LOUPE_BENCH_SMOL")
	if !onGPU() || (big == "" && small == "") {
		t.Skip("a benchmark: set LOUPE_TEST_DEVICE=cuda and LOUPE_BENCH_8B / LOUPE_BENCH_SMOL (scripts/gpu-test.sh bench)")
	}
	ctx := context.Background()
	parts := os.Getenv("LOUPE_BENCH_PARTS")
	if parts == "" {
		parts = "prefill,decode,smol,profile"
	}
	want := func(p string) bool { return strings.Contains(parts, p) }
	emit := func(kv map[string]any) {
		kv["impl"] = "loupe"
		b, _ := json.Marshal(kv)
		fmt.Println(string(b))
	}
	rng := rand.New(rand.NewPCG(7, 8))
	randIDs := func(B, T, V int) [][]int {
		out := make([][]int, B)
		for b := range out {
			out[b] = make([]int, T)
			for i := range out[b] {
				out[b][i] = rng.IntN(V)
			}
		}
		return out
	}
	timed := func(reps int, f func()) float64 {
		f()
		best := 1e9
		for range reps {
			t0 := time.Now()
			f()
			best = min(best, time.Since(t0).Seconds())
		}
		return best
	}
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	// profile runs f once with every kernel timed and emits the table.
	profile := func(model string, T int, f func()) {
		cb, ok := testBackend().(*cuda.Backend)
		if !ok || !want("profile") {
			return
		}
		cb.ProfileStart()
		f()
		prof, err := cb.ProfileStop()
		must(err)
		total := 0.0
		for _, p := range prof {
			total += p.MS
		}
		for _, p := range prof {
			emit(map[string]any{"kind": "profile", "model": model, "T": T, "name": p.Name, "calls": p.Calls, "ms": p.MS, "share": p.MS / total})
		}
		emit(map[string]any{"kind": "profile", "model": model, "T": T, "name": "total", "ms": total})
	}
	if big != "" {
		t0 := time.Now()
		m, wm, err := LoadModel(big, testBackend())
		must(err)
		emit(map[string]any{"kind": "load", "model": "llama3-8b", "seconds": time.Since(t0).Seconds()})
		V := m.Config.Vocab
		for _, T := range []int{2048, 8192, 32768} {
			if !want("prefill") {
				break
			}
			ids := randIDs(1, T, V)
			pass := func() {
				_, err := m.Forward(ctx, ids, Options{Logits: LogitsLast})
				must(err)
			}
			sec := timed(2, pass)
			emit(map[string]any{"kind": "prefill", "model": "llama3-8b", "B": 1, "T": T, "seconds": sec, "tokens_per_s": float64(T) / sec})
			if T == 2048 || T == 8192 {
				profile("llama3-8b", T, pass)
			}
		}
		if want("prefill") {
			// The batched prefill: 8 sequences of 1024.
			ids := randIDs(8, 1024, V)
			sec := timed(2, func() {
				_, err := m.Forward(ctx, ids, Options{Logits: LogitsLast})
				must(err)
			})
			emit(map[string]any{"kind": "prefill", "model": "llama3-8b", "B": 8, "T": 1024, "seconds": sec, "tokens_per_s": 8 * 1024 / sec})
		}
		for _, B := range []int{1, 32} {
			if !want("decode") {
				break
			}
			const prompt, n = 128, 64
			ids := randIDs(B, prompt, V)
			sec := timed(1, func() {
				_, err := m.GenerateBatch(ctx, ids, GenerateOptions{MaxTokens: n})
				must(err)
			})
			emit(map[string]any{"kind": "decode", "model": "llama3-8b", "B": B, "prompt": prompt, "new": n, "seconds": sec, "tokens_per_s": float64(B*n) / sec})
		}
		wm.Close()
		m = nil
	}
	if small != "" && want("smol") {
		m, wm, err := LoadModel(small, testBackend())
		must(err)
		defer wm.Close()
		ids := randIDs(64, 256, m.Config.Vocab)
		resid := &Hooks{Cache: []string{"blocks.*.hook_resid_post"}}
		cb, _ := testBackend().(*cuda.Backend)
		for _, h := range []struct {
			name  string
			hooks *Hooks
			sync  bool // the copies to the host synchronous (the path before hostcopy.go)
		}{{"none", nil, false}, {"resid_post to host", resid, false}, {"resid_post to host, synchronous copies", resid, true}} {
			if cb != nil {
				cb.SetAsyncHostCopies(!h.sync)
			}
			pass := func() {
				_, err := m.Forward(ctx, ids, Options{Logits: LogitsLast, Hooks: h.hooks})
				must(err)
			}
			sec := timed(5, pass)
			emit(map[string]any{"kind": "prefill", "model": "smollm2", "B": 64, "T": 256, "hooks": h.name, "seconds": sec, "tokens_per_s": 64 * 256 / sec})
			if h.hooks == nil {
				profile("smollm2", 256, pass)
			}
		}
		if cb != nil {
			cb.SetAsyncHostCopies(true)
		}
	}
}
