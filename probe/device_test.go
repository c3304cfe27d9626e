package probe

import (
	"context"
	"fmt"
	"os"
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
	for i := 0; i < 10000; i++ {
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
