package gputest

import (
	"fmt"
	"github.com/loupe-dev/loupe/sae"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/loupe-dev/loupe/probe/compute/cuda"
	"github.com/loupe-dev/loupe/sae/activations"
	"github.com/loupe-dev/loupe/sae/train"
)

// TestGPUSpeed measures TopK training steps on the GPU (forward, backward,
// Adam, unit-norm decoder, a statistics download per step) on batches that
// are already on the device, at the sizes of the table. It prints
// one line per size: "sae-bench d x k batch dtype tok/s fraction", where
// fraction is of the encoder GEMM's limit at 790 TFLOP/s (2·d·latents
// FLOPs a token). Set LOUPE_SAE_BENCH=1 (scripts/gpu/sae-bench.sh does,
// beside the PyTorch and sparsify trainers of scripts/gpu/bench_sae_torch.py;
// LOUPE_SAE_BENCH=quick leaves out fp32 at the 65,536-token batches).
func TestGPUSpeed(t *testing.T) {
	if os.Getenv("LOUPE_SAE_BENCH") == "" {
		t.Skip("set LOUPE_SAE_BENCH=1 to measure (on a GPU machine: scripts/gpu/sae-bench.sh)")
	}
	b := gpuForTest(t)
	type size struct{ d, x, k, n int }
	sizes := []size{{576, 16, 32, 4096}, {576, 16, 32, 65536}, {4096, 16, 64, 4096}, {4096, 16, 64, 65536}}
	mode := os.Getenv("LOUPE_SAE_BENCH")
	if mode == "small" {
		sizes = sizes[:1]
	}
	for _, sz := range sizes {
		for _, bf16 := range []bool{false, true} {
			if mode == "quick" && !bf16 && sz.n > 4096 {
				continue // quick: fp32 at the 4,096-token batches only
			}
			rate, err := benchTopK(b, sz.d, sz.x*sz.d, sz.k, sz.n, bf16)
			dt := "fp32"
			if bf16 {
				dt = "bf16"
			}
			if err != nil {
				t.Errorf("d %d x%d k %d batch %d %s: %v", sz.d, sz.x, sz.k, sz.n, dt, err)
				continue
			}
			limit := 790e12 / (2 * float64(sz.d) * float64(sz.x*sz.d))
			fmt.Printf("sae-bench loupe d=%d x=%d k=%d batch=%d %s tok/s=%.0f limit_fraction=%.3f\n", sz.d, sz.x, sz.k, sz.n, dt, rate, rate/limit)
		}
	}
}

// fillNormal fills v with standard normal values (in parallel: the large
// sizes have 2^28 of them).
func fillNormal(v []float32, seed uint64) {
	w := runtime.GOMAXPROCS(0)
	step := (len(v) + w - 1) / w
	var wg sync.WaitGroup
	for c := 0; c*step < len(v); c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(c)))
			for i := c * step; i < min(len(v), (c+1)*step); i++ {
				v[i] = float32(rng.NormFloat64())
			}
		}(c)
	}
	wg.Wait()
}

// benchTopK gives the tokens per second of TopK steps of an SAE with d_in
// d, S latents, k active, on n-row batches (a few distinct ones, rotated,
// so that no batch stays in the cache).
func benchTopK(gb *cuda.Backend, d, S, k, n int, bf16 bool) (float64, error) {
	s := &sae.SAE{Arch: sae.TopK, DIn: d, DSAE: S, DOut: d, K: k, Enc: make([]float32, S*d), BEnc: make([]float32, S),
		Dec: make([]float32, S*d), BDec: make([]float32, d), ApplyBDecToInput: true, InScale: 1, OutScale: 1}
	fillNormal(s.Dec, 1)
	for j := 0; j < S; j++ {
		row := s.Dec[j*d : (j+1)*d]
		var ss float64
		for _, v := range row {
			ss += float64(v) * float64(v)
		}
		inv := float32(1 / math.Sqrt(ss))
		for i := range row {
			row[i] *= inv
		}
	}
	copy(s.Enc, s.Dec)
	// sparsify's dead-feature window (10M tokens): no latent dies in a
	// benchmark, in either trainer
	tr := sae.NewTrainable(s, sae.TrainConfig{DeadWindow: 10_000_000})
	g, err := sae.NewGPUTrainable(gb, tr, n, bf16)
	if err != nil {
		return 0, err
	}
	defer g.Close()
	nb := 4
	if n*d > 1<<26 {
		nb = 2
	}
	batches := make([]*activations.Batch, nb)
	host := make([]float32, n*d)
	for i := range batches {
		fillNormal(host, uint64(10+i))
		batches[i] = &activations.Batch{Rows: n, Width: d, DX: gb.FromHost(host, n, d)}
	}
	adam := train.NewAdam(g.Params(), 0, 0, 0)
	step := func(i int) error {
		if _, err := g.Backward(batches[i%nb], i); err != nil {
			return err
		}
		adam.T++
		return g.Update(adam, 1e-4)
	}
	for i := 0; i < 3; i++ {
		if err := step(i); err != nil {
			return 0, err
		}
	}
	steps := max(5, min(200, (1<<22)/n))
	if d*S > 1<<25 && n > 8192 {
		steps = 6
	}
	start := time.Now()
	for i := 0; i < steps; i++ {
		if err := step(i); err != nil {
			return 0, err
		}
	}
	if err := gb.Synchronize(); err != nil {
		return 0, err
	}
	secs := time.Since(start).Seconds()
	for _, bt := range batches {
		gb.Free(bt.DX)
	}
	return float64(steps*n) / secs, nil
}
