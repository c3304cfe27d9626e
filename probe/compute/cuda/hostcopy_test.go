package cuda

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

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
