//go:build linux

package compute

import (
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// threadCPU is the calling OS thread's CPU time, from
// CLOCK_THREAD_CPUTIME_ID (nanosecond resolution, where getrusage's
// thread figures move in scheduler ticks).
func threadCPU() time.Duration {
	var ts syscall.Timespec
	const clockThreadCPUTime = 3
	if _, _, e := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTime, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		return 0
	}
	return time.Duration(ts.Nano())
}

// TestFlashSpeed compares the two first-pass implementations of the fused
// attention side by side, at SmolLM2's shape (9 query heads, 3 KV heads,
// d_head 64, causal): flashForward (gemm products per key block, what
// decoding steps use) and flashTiled (packed operands on the micro-kernel,
// what prompts use). One worker on a locked thread, timed by the thread's
// CPU time, interleaved, best of several: on a machine shared with other
// work, wall time measures the neighbours. LOUPE_FLASH_SPEED=1 to run.
func TestFlashSpeed(t *testing.T) {
	if os.Getenv("LOUPE_FLASH_SPEED") == "" {
		t.Skip("a measurement; LOUPE_FLASH_SPEED=1 to run")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c := &CPU{workers: 1, rope: &ropeCache{}}
	rng := rand.New(rand.NewPCG(1, 1))
	for _, T := range flashSpeedLengths() {
		s := AttnShape{B: 1, Tq: T, Tk: T, Tcap: T, H: 9, Hkv: 3, Dh: 64}
		q := randData(rng, T*s.H*s.Dh)
		k := randData(rng, T*s.Hkv*s.Dh)
		v := randData(rng, T*s.Hkv*s.Dh)
		z := make([]float32, T*s.H*s.Dh)
		lse := make([]float64, s.H*T)
		mask := AttnMask{Causal: true}
		best := [2]time.Duration{1 << 62, 1 << 62}
		reps, calls := 8, max(1, 4096*4096/(T*T)) // calls per timing: about 30 ms each
		if T > 4096 {
			reps = 3
		}
		for r := 0; r < reps; r++ {
			for which := range best {
				t0 := threadCPU()
				for range calls {
					if which == 0 {
						c.flashForward(q, k, v, s, 0.125, mask, z, lse)
					} else {
						c.flashTiled(q, k, v, s, 0.125, mask, z, lse)
					}
				}
				best[which] = min(best[which], (threadCPU()-t0)/time.Duration(calls))
			}
		}
		flops := 4 * float64(s.H) * float64(T) * float64(T) / 2 * float64(s.Dh) // QK and PV, causal half
		t.Logf("T=%d: per-block products %v (%.0f GFLOP/s), tiled %v (%.0f GFLOP/s): %.2fx",
			T, best[0], flops/best[0].Seconds()/1e9, best[1], flops/best[1].Seconds()/1e9, best[0].Seconds()/best[1].Seconds())
	}
}

// flashSpeedLengths: LOUPE_FLASH_SPEED=1 measures 512, 2048 and 8192
// tokens; a number measures that length alone.
func flashSpeedLengths() []int {
	if n, err := strconv.Atoi(os.Getenv("LOUPE_FLASH_SPEED")); err == nil && n > 1 {
		return []int{n}
	}
	return []int{512, 2048, 8192}
}
