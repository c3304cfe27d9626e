package probe

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/loupe-dev/loupe/probe/compute"
	"github.com/loupe-dev/loupe/probe/compute/cuda"
)

// The probe's tests run on the CPU, or on a GPU when LOUPE_TEST_DEVICE is
// cuda or cuda:N (scripts/gpu-test.sh sets it; LOUPE_TEST_DTYPE picks the
// weights' dtype, f32 by default, the mode the references are checked in).
// The same tests then check the GPU backend against the same references:
// nothing is copied. Without a usable GPU the whole run is skipped, and
// says why.
var testDevice compute.Backend

func TestMain(m *testing.M) {
	if dev := os.Getenv("LOUPE_TEST_DEVICE"); dev != "" && dev != "cpu" {
		b, err := openTestDevice(dev, os.Getenv("LOUPE_TEST_DTYPE"))
		if err != nil {
			fmt.Printf("SKIP: probe tests on %s skipped: %v\n", dev, err)
			os.Exit(0)
		}
		testDevice = b
		fmt.Printf("probe tests on %s\n", b.Name())
	}
	os.Exit(m.Run())
}

func openTestDevice(dev, dtype string) (compute.Backend, error) {
	n := 0
	if rest, ok := strings.CutPrefix(dev, "cuda:"); ok {
		var err error
		if n, err = strconv.Atoi(rest); err != nil {
			return nil, fmt.Errorf("LOUPE_TEST_DEVICE=%q: want cpu, cuda or cuda:N", dev)
		}
	} else if dev != "cuda" {
		return nil, fmt.Errorf("LOUPE_TEST_DEVICE=%q: want cpu, cuda or cuda:N", dev)
	}
	dt := compute.F32
	if dtype != "" {
		var ok bool
		if dt, ok = compute.ParseDType(dtype); !ok {
			return nil, fmt.Errorf("LOUPE_TEST_DTYPE=%q: want f32, bf16 or f16", dtype)
		}
	}
	return cuda.New(cuda.Options{Device: n, WeightDType: dt})
}

// testBackend is the backend a test model is built on.
func testBackend() compute.Backend {
	if testDevice != nil {
		return testDevice
	}
	return compute.NewCPU()
}

// onGPU says whether the tests run on a GPU backend.
func onGPU() bool { return testDevice != nil }

// poolStats is what a pooled backend reports of its memory.
type poolStats interface {
	PoolStats() cuda.PoolStats
}

// A forward pass returns its temporaries to the pool: 10,000 passes take no
// more device memory than the first one did.
func TestGPUPoolDoesNotGrowOverPasses(t *testing.T) {
	if !onGPU() {
		t.Skip("needs LOUPE_TEST_DEVICE=cuda (scripts/gpu-test.sh)")
	}
	m := newTestModel("llama")
	ps := m.Backend().(poolStats)
	hooks := &Hooks{Cache: []string{"blocks.*.hook_resid_post"}, Reduce: []Reduction{{Hook: "blocks.*.attn.hook_pattern", Op: TopK, K: 3}}}
	run := func() {
		if _, err := m.Forward(context.Background(), [][]int{prompt, prompt[:5]}, Options{Hooks: hooks}); err != nil {
			t.Fatal(err)
		}
	}
	run()
	first := ps.PoolStats()
	passes := 10000
	if n, err := strconv.Atoi(os.Getenv("LOUPE_POOL_PASSES")); err == nil && n > 0 {
		passes = n // a shorter run while debugging
	}
	for i := 0; i < passes; i++ {
		run()
	}
	last := ps.PoolStats()
	t.Logf("pool after 1 pass %+v, after 10,001 %+v", first, last)
	if last.Reserved > first.Reserved || last.InUse > first.InUse {
		t.Fatalf("device memory grew over 10,000 passes: %+v -> %+v", first, last)
	}
}

// Running out of device memory inside a pass ends that pass with an error
// naming the tensor and the bytes; the model stays usable and gives the
// same logits as before.
func TestGPUOutOfMemoryLeavesModelUsable(t *testing.T) {
	if !onGPU() {
		t.Skip("needs LOUPE_TEST_DEVICE=cuda (scripts/gpu-test.sh)")
	}
	m := newTestModel("llama")
	before := forward(t, m, [][]int{prompt}, nil)
	greedy := Edit{Hook: "blocks.1.hook_resid_mid", Fn: func(b compute.Backend, _ string, x compute.Tensor, _ []int) (compute.Tensor, error) {
		b.Zeros(1<<20, 1<<20) // 4 TiB
		return x, nil
	}}
	_, err := m.Forward(context.Background(), [][]int{prompt}, Options{Hooks: &Hooks{Edit: []Edit{greedy}}})
	if err == nil || !strings.Contains(err.Error(), "out of GPU memory") || !strings.Contains(err.Error(), "bytes wanted") {
		t.Fatalf("a 4 TiB allocation in a pass gave %v", err)
	}
	t.Logf("error: %v", err)
	after := forward(t, m, [][]int{prompt}, nil)
	if d := maxDiff(before.Logits, after.Logits); d != 0 {
		t.Fatalf("logits after the failed pass differ by %g", d)
	}
}

// bf16 mode against transformers: Loupe's bf16 error against transformers'
// float32 logits is no worse than transformers' own bf16 run, both
// measured in one GPU run by scripts/gpu-test.sh (which sets
// LOUPE_BF16_REFS to the folder scripts/gpu/hf_bf16.py wrote).
func TestSmolLM2BF16NoWorseThanTransformers(t *testing.T) {
	dir := os.Getenv("LOUPE_BF16_REFS")
	if dir == "" || !onGPU() {
		t.Skip("needs LOUPE_TEST_DEVICE=cuda, LOUPE_TEST_DTYPE=bf16 and LOUPE_BF16_REFS (scripts/gpu-test.sh)")
	}
	raw, err := os.ReadFile(filepath.Join(dir, "hf_bf16.json"))
	if err != nil {
		t.Fatal(err)
	}
	type metric struct {
		MaxAbs float64 `json:"max_abs"`
		MeanKL float64 `json:"mean_kl"`
		Top1   float64 `json:"top1"`
	}
	var hf struct {
		Cases map[string]struct {
			Tokens int    `json:"tokens"`
			HF     metric `json:"hf_bf16"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(raw, &hf); err != nil {
		t.Fatal(err)
	}
	m := loadSmolLM2(t)
	refs := readSmolRefs(t)
	V := m.Config.Vocab
	for _, c := range refs.Cases {
		want, ok := hf.Cases[c.Name]
		if !ok {
			t.Fatalf("%s: not in hf_bf16.json", c.Name)
		}
		f32 := readF32(t, filepath.Join(dir, c.Name+".f32"), len(c.IDs)*V)
		r, err := m.Forward(context.Background(), [][]int{c.IDs}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		var got metric
		agree := 0
		for p := range c.IDs {
			ref, row := f32[p*V:(p+1)*V], r.LogitsAt(0, p)
			got.MaxAbs = max(got.MaxAbs, maxDiff(ref, row))
			got.MeanKL += klDiv(ref, row)
			if argmax32(ref) == argmax32(row) {
				agree++
			}
		}
		got.MeanKL /= float64(len(c.IDs))
		got.Top1 = float64(agree) / float64(len(c.IDs))
		t.Logf("%-16s %4d tokens: Loupe bf16 max|d| %.4f KL %.2e top-1 %.4f | transformers bf16 max|d| %.4f KL %.2e top-1 %.4f",
			c.Name, len(c.IDs), got.MaxAbs, got.MeanKL, got.Top1, want.HF.MaxAbs, want.HF.MeanKL, want.HF.Top1)
		if got.MaxAbs > want.HF.MaxAbs || got.MeanKL > want.HF.MeanKL || got.Top1 < want.HF.Top1 {
			t.Errorf("%s: Loupe's bf16 error is worse than transformers' own bf16 run", c.Name)
		}
	}
}

func readF32(t *testing.T, path string, n int) []float32 {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) != 4*n {
		t.Fatalf("%s: %d bytes, want %d", path, len(raw), 4*n)
	}
	out := make([]float32, n)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	return out
}

// klDiv is KL(softmax(p) || softmax(q)) in nats.
func klDiv(p, q []float32) float64 {
	lp, lq := logSoftmax(p), logSoftmax(q)
	kl := 0.0
	for i := range lp {
		kl += math.Exp(lp[i]) * (lp[i] - lq[i])
	}
	return kl
}

func logSoftmax(x []float32) []float64 {
	m := math.Inf(-1)
	for _, v := range x {
		m = math.Max(m, float64(v))
	}
	s := 0.0
	for _, v := range x {
		s += math.Exp(float64(v) - m)
	}
	ls := m + math.Log(s)
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v) - ls
	}
	return out
}

func argmax32(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}

// tinyGPU is a CPU backend that says it has a small device memory, as a
// GPU would.
type tinyGPU struct {
	*compute.CPU
	free int64
}

func (g tinyGPU) CheckFit(shapes [][]int) error {
	var need int64
	for _, s := range shapes {
		need += 4 * int64(compute.Numel(s))
	}
	if need > g.free {
		return fmt.Errorf("weights need %d bytes, %d free", need, g.free)
	}
	return nil
}

// A model that cannot fit on its device is refused before loading, with
// the figures; one that fits loads.
func TestModelTooBigForDeviceIsRefused(t *testing.T) {
	c := testConfigs()["llama"]
	ts := randomTensors(c, 1)
	if _, err := New(c, ts, tinyGPU{compute.NewCPU(), 1000}); err == nil || !strings.Contains(err.Error(), "bytes, 1000 free") {
		t.Fatalf("a model too big for the device gave %v", err)
	}
	if _, err := New(c, ts, tinyGPU{compute.NewCPU(), 1 << 30}); err != nil {
		t.Fatal(err)
	}
}
