//go:build linux

package probe

import (
	"context"
	"math/rand/v2"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// processCPU is the process's CPU time so far (user + system).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestPrefillCPUTime measures SmolLM2 prefill by CPU time on one thread
// (GOMAXPROCS 1), 512 and 8192 tokens interleaved, LOUPE_PREFILL_CPU
// rounds (say 2): the work a token costs at each length, which a machine
// shared with other work measures far more steadily than wall time (other
// processes take wall time, not this process's CPU time). Its ratio is
// the 8192 ÷ 512 tokens/s ratio an idle machine would show if both
// lengths used its cores equally well. A measurement, not a check.
func TestPrefillCPUTime(t *testing.T) {
	rounds := 0
	if s := os.Getenv("LOUPE_PREFILL_CPU"); s != "" {
		for _, c := range s {
			rounds = rounds*10 + int(c-'0')
		}
	}
	if rounds <= 0 {
		t.Skip("a measurement; LOUPE_PREFILL_CPU=2 runs two rounds")
	}
	m := loadSmolLM2(t)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	rng := rand.New(rand.NewPCG(1, 2))
	lengths := map[int]int{512: 8, 8192: 1} // forwards per round
	best := map[int]time.Duration{}
	for r := 0; r < rounds; r++ {
		for _, T := range []int{512, 8192} {
			ids := make([]int, T)
			for i := range ids {
				ids[i] = rng.IntN(m.Config.Vocab)
			}
			if _, err := m.Forward(context.Background(), [][]int{ids}, Options{Logits: LogitsLast}); err != nil { // warm
				t.Fatal(err)
			}
			n := lengths[T]
			c0, w0 := processCPU(), time.Now()
			for range n {
				if _, err := m.Forward(context.Background(), [][]int{ids}, Options{Logits: LogitsLast}); err != nil {
					t.Fatal(err)
				}
			}
			perTok := (processCPU() - c0) / time.Duration(n*T)
			t.Logf("round %d T=%d: %v CPU a token (%.0f tokens per CPU-second), wall %.1f s for %d forwards",
				r, T, perTok, 1/perTok.Seconds(), time.Since(w0).Seconds(), n)
			if b, ok := best[T]; !ok || perTok < b {
				best[T] = perTok
			}
		}
	}
	t.Logf("best CPU time a token: 512 %v, 8192 %v; tokens/s ratio 8192÷512 at equal use of the cores: %.3f",
		best[512], best[8192], best[512].Seconds()/best[8192].Seconds())
}
