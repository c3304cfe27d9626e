package heads

import (
	"context"
	"math"
	"os"
	"testing"

	"github.com/loupe-dev/loupe/probe"
	"github.com/loupe-dev/loupe/probe/compute/cuda"
)

// Head scores on the GPU equal the CPU's: SmolLM2 on both backends (the
// GPU in its f32 mode), every score but the slow temporal one, every head
// to 1e-3. Runs only with LOUPE_TEST_DEVICE=cuda (scripts/gpu-test.sh) and
// the SmolLM2 GGUF.
func TestClassifyGPUMatchesCPU(t *testing.T) {
	if os.Getenv("LOUPE_TEST_DEVICE") != "cuda" {
		t.Skip("needs LOUPE_TEST_DEVICE=cuda (scripts/gpu-test.sh)")
	}
	cpu := smolLM2(t)
	g, err := cuda.New(cuda.Options{})
	if err != nil {
		t.Skipf("no usable GPU: %v", err)
	}
	defer g.Close()
	gm, err := probe.Load(cpu.Weights.Path, g)
	if err != nil {
		t.Fatal(err)
	}
	defer gm.Close()
	s := smolSuite(t, cpu, []int{256}, []float64{0.5})
	names := []string{ScorePreviousToken, ScoreDuplicate, ScoreInduction, ScoreSink, ScoreStreaming, ScoreRetrieval, ScoreSuccessor}
	ctx := context.Background()
	want, err := Classify(ctx, cpu.Model, s, names, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Classify(ctx, gm.Model, s, names, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range want {
		worst := 0.0
		for h, v := range w.Values.Values {
			d := math.Abs(got[i].Values.Values[h] - v)
			if math.IsNaN(v) && math.IsNaN(got[i].Values.Values[h]) {
				continue
			}
			worst = max(worst, d)
		}
		t.Logf("%s: max |GPU - CPU| over %d heads %.2g", w.Name, len(w.Values.Values), worst)
		if worst > 1e-3 || math.IsNaN(worst) {
			t.Errorf("%s: GPU and CPU head scores differ by %g", w.Name, worst)
		}
	}
}
