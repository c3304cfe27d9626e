package cuda

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/loupe-dev/loupe/probe/compute"
)

// newCopyBackend is a backend of its own (closed at the test's end) whose
// pinned memory is chunks of chunk bytes, at most chunks of them.
func newCopyBackend(t *testing.T, chunk, chunks int) *Backend {
	t.Helper()
	testGPU(t) // skips without a GPU
	b, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	b.hostChunk, b.hostChunks = chunk, chunks
	t.Cleanup(b.Close)
	return b
}

// ToHostLater gives, to the bit, what ToHost gave at the time of the call,
// for sizes around and across the chunk size, float32 and bf16 tensors,
// with the tensors overwritten on the device before anyone waits; with
// three chunks of 4 KiB for 60 copies of up to 5 chunks, the copier waits
// for its workers and never holds more; every chunk is free again after
// the waits, and the synchronous mode gives the same values.
func TestToHostLaterEqualsToHost(t *testing.T) {
	const chunk = 4096
	b := newCopyBackend(t, chunk, 3)
	rng := rand.New(rand.NewPCG(11, 12))
	sizes := []int{1, 7, chunk / 4, chunk/4 + 1, 3*chunk/4 + 5, 5 * chunk / 4, 64 * 33}
	type job struct {
		x    compute.Tensor
		want []float32
		wait func() ([]float32, error)
	}
	var jobs []job
	for rep := 0; rep < 8; rep++ {
		for i, n := range sizes {
			data := randVec(rng, n)
			var x compute.Tensor
			if i%3 == 2 {
				x = b.FromHostAs(compute.BF16, data, n)
			} else {
				x = b.FromHost(data, n)
			}
			want := b.ToHost(x)
			jobs = append(jobs, job{x: x, want: want, wait: b.ToHostLater(x)})
			// Change the tensor on the device right away: the copy must
			// hold the values it had.
			if compute.DTypeOf(x) == compute.F32 {
				b.ScaleInPlace(x, -3)
			}
		}
	}
	empty := b.ToHostLater(b.FromHost(nil, 0, 5))
	for i, j := range jobs {
		got, err := j.wait()
		if err != nil {
			t.Fatalf("copy %d: %v", i, err)
		}
		if len(got) != len(j.want) || !slices.Equal(got, j.want) {
			t.Fatalf("copy %d (%d values, %s): differs from ToHost before the change (max diff %g)", i, len(j.want), compute.DTypeOf(j.x), maxAbsDiff(got, j.want))
		}
		if compute.DTypeOf(j.x) == compute.F32 && maxAbsDiff(b.ToHost(j.x), j.want) == 0 {
			t.Fatalf("copy %d: the tensor was not changed after its copy was queued (the test checks nothing)", i)
		}
	}
	if got, err := empty(); err != nil || got == nil || len(got) != 0 {
		t.Errorf("empty tensor: %v, %v; want an empty slice", got, err)
	}
	if held, free := b.HostCopyStats(); held == 0 || held > 3 || free != held {
		t.Errorf("pinned chunks: %d held (want 1-3), %d free after every wait", held, free)
	}
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	b.SetAsyncHostCopies(false)
	x := b.FromHost(randVec(rng, 5000), 50, 100)
	want := b.ToHost(x)
	if got, err := b.ToHostLater(x)(); err != nil || !slices.Equal(got, want) {
		t.Errorf("synchronous mode: %v, max diff %g", err, maxAbsDiff(got, want))
	}
	b.SetAsyncHostCopies(true)
	// A copy nobody has waited for when the backend closes still lands.
	wait := b.ToHostLater(x)
	b.Close()
	if got, err := wait(); err != nil || !slices.Equal(got, want) {
		t.Errorf("copy queued before Close: %v, max diff %g", err, maxAbsDiff(got, want))
	}
}

// Pinned memory the host cannot give fails the copy (its wait returns the
// driver's error and no values), leaves the backend without an error and
// usable; a dead tensor's copy fails the same way instead of panicking.
func TestToHostLaterFailures(t *testing.T) {
	b := newCopyBackend(t, 1<<50, 1) // 1 PiB: more than any address space gives
	x := b.FromHost(randVec(rand.New(rand.NewPCG(1, 1)), 100), 100)
	got, err := b.ToHostLater(x)()
	if err == nil || got != nil || !strings.Contains(err.Error(), "cuMemAllocHost") || !strings.Contains(err.Error(), "pinned host memory") {
		t.Fatalf("a copy without pinned memory gave %d values and error %v; want no values and the cuMemAllocHost error", len(got), err)
	}
	if err := b.Err(); err != nil {
		t.Fatalf("the backend kept an error after a failed copy: %v", err)
	}
	if h := b.ToHost(x); len(h) != 100 {
		t.Fatalf("ToHost after the failed copy: %d values", len(h))
	}
	s := b.Mark()
	y := b.Zeros(4, 4)
	if err := b.Release(s); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ToHostLater(y)(); err == nil || !strings.Contains(err.Error(), "after the scope") {
		t.Fatalf("copy of a released tensor: error %v, want one saying it was used after its scope", err)
	}
}

// TestHostCopySpeed is a benchmark (it asserts nothing about time; run
// with LOUPE_BENCH_HOSTCOPY=1): what caching one activation per layer costs
// at SmolLM2's 64 x 256 x 576 float32 (37.7 MB, 30 layers), taken apart.
// One JSON line each, GB/s over the 30 layers' bytes: making the Go slices
// (make zeroes them), device-to-host copies into pinned memory and into
// pageable Go memory, copying pinned memory into Go slices (one thread
// and eight), pinning Go slices in place (cuMemHostRegister, the way to a
// pinned destination without a staging copy: register, copy, unregister),
// and ToHost and ToHostLater end to end.
func TestHostCopySpeed(t *testing.T) {
	if os.Getenv("LOUPE_BENCH_HOSTCOPY") == "" {
		t.Skip("a benchmark: set LOUPE_BENCH_HOSTCOPY=1")
	}
	g := testGPU(t)
	const n, layers = 64 * 256 * 576, 30
	const bytes = 4 * n
	x := g.FromHost(randVec(rand.New(rand.NewPCG(5, 5)), n), n)
	emit := func(what string, sec float64) {
		fmt.Printf(`{"kind":"hostcopy","what":%q,"layers":%d,"bytes":%d,"seconds":%g,"GB_per_s":%g}`+"\n", what, layers, layers*bytes, sec, float64(layers*bytes)/sec/1e9)
	}
	timed := func(f func()) float64 {
		t0 := time.Now()
		f()
		return time.Since(t0).Seconds()
	}
	slicesOf := func() [][]float32 {
		out := make([][]float32, layers)
		for i := range out {
			out[i] = make([]float32, n)
		}
		return out
	}
	runtime.GC()
	emit("make 30 Go slices (zeroed), one goroutine", timed(func() { _ = slicesOf() }))
	dst := slicesOf()
	var pinned uintptr
	g.do(func() {
		if err := g.d.check("cuMemAllocHost", call(g.d.cuMemAllocHost, uintptr(unsafe.Pointer(&pinned)), bytes)); err != nil {
			t.Error(err)
		}
	})
	if pinned == 0 {
		return
	}
	defer g.do(func() { call(g.d.cuMemFreeHost, pinned) })
	dtoh := func(dst uintptr) {
		g.do(func() {
			for range layers {
				g.fail(g.d.check("cuMemcpyDtoHAsync", call(g.d.cuMemcpyDtoHAsync, dst, x.(*Tensor).ptr(), bytes, g.stream)))
			}
			g.fail(g.d.check("cuStreamSynchronize", call(g.d.cuStreamSynchronize, g.stream)))
		})
	}
	dtoh(pinned)
	emit("device to pinned host memory", timed(func() { dtoh(pinned) }))
	emit("device to pageable Go memory", timed(func() {
		for i := range dst {
			g.do(func() { g.download(unsafe.Pointer(&dst[i][0]), x.(*Tensor).ptr(), bytes) })
		}
	}))
	src := pinnedFloats(pinned, n)
	emit("pinned to Go slices, one goroutine", timed(func() {
		for i := range dst {
			copy(dst[i], src)
		}
	}))
	emit("pinned to Go slices, eight goroutines", timed(func() {
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range dst {
					lo, hi := w*n/8, (w+1)*n/8
					copy(dst[i][lo:hi], src[lo:hi])
				}
			}()
		}
		wg.Wait()
	}))
	want := g.ToHost(x)
	if !slices.Equal(dst[0], want) {
		t.Error("a copy differs from ToHost")
	}
	emit("ToHost, 30 tensors", timed(func() {
		for range layers {
			_ = g.ToHost(x)
		}
	}))
	// Warm: the first copy makes the copier (its stream, workers and, as
	// copies need them, its pinned chunks; run 2 timed that too).
	warm := make([]func() ([]float32, error), 0, 2*layers)
	for range 2 * layers {
		warm = append(warm, g.ToHostLater(x))
	}
	for _, w := range warm {
		if _, err := w(); err != nil {
			t.Fatal(err)
		}
	}
	emit("ToHostLater, 30 tensors queued, then waited for", timed(func() {
		var waits []func() ([]float32, error)
		for range layers {
			waits = append(waits, g.ToHostLater(x))
		}
		for _, w := range waits {
			if _, err := w(); err != nil {
				t.Fatal(err)
			}
		}
	}))
	// Last: pinning Go memory in place may be refused (a sandbox); that is
	// reported, not failed.
	var reg, copyReg, unreg float64
	fresh := slicesOf()
	var regErr error
	g.do(func() {
		for i := range fresh {
			p := uintptr(unsafe.Pointer(&fresh[i][0]))
			t0 := time.Now()
			if regErr = g.d.check("cuMemHostRegister", call(g.d.cuMemHostRegister, p, bytes, 0)); regErr != nil {
				return
			}
			t1 := time.Now()
			regErr = g.d.check("cuMemcpyDtoHAsync", call(g.d.cuMemcpyDtoHAsync, p, x.(*Tensor).ptr(), bytes, g.stream))
			if regErr == nil {
				regErr = g.d.check("cuStreamSynchronize", call(g.d.cuStreamSynchronize, g.stream))
			}
			t2 := time.Now()
			call(g.d.cuMemHostUnregister, p)
			t3 := time.Now()
			reg, copyReg, unreg = reg+t1.Sub(t0).Seconds(), copyReg+t2.Sub(t1).Seconds(), unreg+t3.Sub(t2).Seconds()
			if regErr != nil {
				return
			}
		}
	})
	if regErr != nil {
		fmt.Printf(`{"kind":"hostcopy","what":"cuMemHostRegister","error":%q}`+"\n", regErr.Error())
		return
	}
	emit("cuMemHostRegister of fresh Go slices", reg)
	emit("device to registered Go slices", copyReg)
	emit("cuMemHostUnregister", unreg)
	if !slices.Equal(fresh[layers-1], want) {
		t.Error("the copy into a registered slice differs from ToHost")
	}
}

// An allocation whose size class has no free block waits for a copy to the
// host only when that copy's staging block is of its class (it comes back
// and serves it, so the pool does not grow); a copy in flight holding a
// block of another class does not hold it up. The copy is 256 MiB, so it
// is still in flight when the next allocations are made.
func TestStagingWaitsOnlyForItsClass(t *testing.T) {
	b := newCopyBackend(t, 8<<20, 64)
	const n = 64 << 20 // float32 values: 256 MiB
	before := b.PoolStats().Reserved
	big := b.Zeros(n)
	wait := b.ToHostLater(big) // its staging block: a second 256 MiB block
	small := b.Zeros(1 << 18)  // 1 MiB, a class the pool has no block of
	if w := b.StagingWaits(); w != 0 {
		t.Fatalf("a 1 MiB allocation waited %d times for a 256 MiB copy's staging block", w)
	}
	again := b.Zeros(n) // the class of the staging block: waits for it, or finds it back
	if w := b.StagingWaits(); w > 1 {
		t.Fatalf("a 256 MiB allocation waited %d times for one copy", w)
	}
	got, err := wait()
	if err != nil || len(got) != n {
		t.Fatalf("the copy: %d values, %v", len(got), err)
	}
	want := int64(2*sizeClass(4*n) + sizeClass(4<<18))
	if grew := b.PoolStats().Reserved - before; grew != want {
		t.Errorf("pool reserved %d more bytes, want %d (two 256 MiB blocks, the staging one reused, and the 1 MiB one)", grew, want)
	}
	t.Logf("waits for a staging block: %d (0 when the copy had landed first)", b.StagingWaits())
	runtime.KeepAlive(big)
	runtime.KeepAlive(small)
	runtime.KeepAlive(again)
}
