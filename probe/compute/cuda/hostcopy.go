package cuda

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/loupe-dev/loupe/probe/compute"
)

// Copies to the host that do not stall the stream (compute.HostCopier),
// for hook caches. ToHost waits for everything queued before it and then
// copies from device memory to pageable Go memory, which the driver stages
// through a bounce buffer of its own: every cached activation stopped the
// GPU. Here instead, on the owner goroutine and without waiting:
//
//  1. the tensor is copied (as float32) into a staging block of device
//     memory on the compute stream, so later operations, in-place ones
//     included, cannot change what the host gets;
//  2. a second stream, the copy stream, waits for that (an event) and
//     copies the staging block to pinned host memory in chunks, on the
//     GPU's copy engine, while the compute stream goes on with the pass;
//  3. worker goroutines (each with the context current on its own OS
//     thread) wait for each chunk's event and copy it into the Go slice
//     the caller gets, then give the chunk and, after the last chunk, the
//     staging block back (the block through the orphan list, which the
//     owner adopts at its next allocation).
//
// The Go slice is made by a goroutine of its own as soon as the copy is
// asked for: make zeroes it, one thread a slice (37.7 MB a SmolLM2 layer
// at 64 x 256), and done there it overlaps the GPU's work on the layers
// after it instead of holding up the chunks that land in it.
//
// Pinned memory is pooled in chunks of hostChunkBytes, at most
// hostChunksMax of them: a pass caching more than that waits, on the owner
// goroutine, for workers to free chunks, while the GPU still has the work
// queued before it. When the host refuses pinned memory the copier makes
// do with the chunks it holds; with none, the copy fails with the driver's
// error, returned by its wait. The chunks are freed with the backend.

const (
	hostChunkBytes = 8 << 20
	hostChunksMax  = 64
	// CU_EVENT_BLOCKING_SYNC | CU_EVENT_DISABLE_TIMING: a worker waiting
	// for a chunk sleeps instead of spinning a core.
	hostEventFlags = 1 | 2
)

// hostCopier is the backend's copy stream, pinned chunks, events and
// workers, made on the first asynchronous copy.
type hostCopier struct {
	stream uintptr // the copy stream
	ready  uintptr // recorded on the compute stream after a staging copy
	chunk  int     // bytes per pinned chunk
	jobs   chan chunkJob
	wg     sync.WaitGroup
	mu     sync.Mutex
	cond   *sync.Cond // a pinned chunk came back
	// staged counts, by the pool's size class, the copies holding a
	// staging block: the owner adds, finish takes away and wakes
	// stagedBack. stagingWaits counts the owner's waits for one (tests).
	staged       map[int]int
	stagedBack   *sync.Cond
	stagingWaits int
	max          int       // most pinned chunks held at once
	held         int       // pinned chunks allocated
	free         []uintptr // pinned chunks not in use
	events       []uintptr // events not in use
}

// hostCopy is one tensor on its way to the host.
type hostCopy struct {
	hc        *hostCopier
	n         int     // float32 values
	stage     *buffer // the staging block on the device
	left      atomic.Int32
	data      []float32
	allocated chan struct{} // closed once data is made
	mu        sync.Mutex
	err       error
	done      chan struct{}
}

// chunkJob is one chunk of a copy, queued on the copy stream.
type chunkJob struct {
	c      *hostCopy
	host   uintptr // the pinned chunk
	off, n int     // bytes into the copy, bytes
	ev     uintptr // recorded on the copy stream after the chunk's copy
}

// SetAsyncHostCopies turns the asynchronous copies of ToHostLater on (the
// default; LOUPE_CUDA_HOSTCOPY=sync starts with them off) or off, when
// ToHostLater copies synchronously, as ToHost does. For measurements and
// tests: the results are the same to the bit.
func (b *Backend) SetAsyncHostCopies(on bool) { b.hostSync.Store(!on) }

// ToHostLater queues a float32 copy of x to the host (compute.HostCopier).
func (b *Backend) ToHostLater(x compute.Tensor) func() ([]float32, error) {
	if b.hostSync.Load() {
		data := b.ToHost(x)
		return func() ([]float32, error) { return data, nil }
	}
	n := compute.Numel(tensorOf("ToHostLater", x).shape)
	c := &hostCopy{n: n, done: make(chan struct{}), allocated: make(chan struct{})}
	go func() {
		c.data = make([]float32, n)
		close(c.allocated)
	}()
	b.async(func() { b.queueHostCopy(c, x) })
	return func() ([]float32, error) {
		<-c.done
		if c.err != nil {
			return nil, c.err
		}
		return c.data, nil
	}
}

// getForCopy is b.get with its panic (a tensor of another backend, or one
// used after its scope) turned into an error.
func (b *Backend) getForCopy(x compute.Tensor) (t *Tensor, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%v", p)
		}
	}()
	return b.get(x), nil
}

// queueHostCopy runs on the owner goroutine: steps 1 and 2 above.
func (b *Backend) queueHostCopy(c *hostCopy, x compute.Tensor) {
	t, err := b.getForCopy(x)
	if err != nil {
		c.fail(err)
		c.complete()
		return
	}
	if c.n == 0 || b.err != nil {
		// Zeros when the backend has failed, as ToHost gives: the pass
		// reports the failure itself.
		c.complete()
		return
	}
	hc, err := b.hostCopies()
	if err != nil {
		c.fail(err)
		c.complete()
		return
	}
	bytes := 4 * c.n
	c.stage = &buffer{scope: -1}
	if !b.takeBlock(c.stage, bytes, func() string {
		return fmt.Sprintf("the staging copy of a %s tensor %v on its way to the host", t.dt, t.shape)
	}) {
		c.stage = nil
		c.fail(b.err)
		c.complete()
		return
	}
	c.hc = hc
	hc.mu.Lock()
	hc.staged[c.stage.class]++
	hc.mu.Unlock()
	if t.dt == compute.F32 {
		b.copyDtoD(c.stage.ptr, t.ptr(), bytes)
	} else {
		k := "cvt_bf16_f32"
		if t.dt == compute.F16 {
			k = "cvt_f16_f32"
		}
		b.launch(k, grid1(c.n), block256, 0, pArg(t.ptr()), pArg(c.stage.ptr), lArg(c.n))
	}
	if err := b.err; err != nil {
		c.fail(err)
		c.finish(b)
		return
	}
	if err := b.d.check("cuEventRecord", call(b.d.cuEventRecord, hc.ready, b.stream)); err != nil {
		c.fail(err)
		c.finish(b)
		return
	}
	if err := b.d.check("cuStreamWaitEvent", call(b.d.cuStreamWaitEvent, hc.stream, hc.ready, 0)); err != nil {
		c.fail(err)
		c.finish(b)
		return
	}
	chunks := (bytes + hc.chunk - 1) / hc.chunk
	c.left.Store(int32(chunks))
	for i := 0; i < chunks; i++ {
		off := i * hc.chunk
		n := min(hc.chunk, bytes-off)
		host, ev, err := hc.queueChunk(b, c.stage.ptr+uintptr(off), n)
		if err != nil {
			// The chunks from this one on are never queued: count them
			// out; the workers finish the copy if chunks before it are
			// still in flight.
			c.fail(err)
			if c.left.Add(-int32(chunks-i)) == 0 {
				c.finish(b)
			}
			return
		}
		hc.jobs <- chunkJob{c: c, host: host, off: off, n: n, ev: ev}
	}
}

// queueChunk copies n bytes at src to a pinned chunk on the copy stream
// and records an event after it.
func (hc *hostCopier) queueChunk(b *Backend, src uintptr, n int) (host, ev uintptr, err error) {
	host, err = hc.take(b)
	if err != nil {
		return 0, 0, err
	}
	if ev, err = hc.event(b); err == nil {
		err = b.d.check("cuMemcpyDtoHAsync", call(b.d.cuMemcpyDtoHAsync, host, src, uintptr(n), hc.stream))
		if err == nil {
			err = b.d.check("cuEventRecord", call(b.d.cuEventRecord, ev, hc.stream))
		}
		if err != nil {
			hc.putEvent(ev)
		}
	}
	if err != nil {
		hc.put(host)
		return 0, 0, err
	}
	return host, ev, nil
}

func (c *hostCopy) fail(err error) {
	c.mu.Lock()
	if c.err == nil && err != nil {
		c.err = fmt.Errorf("cuda: copy of a tensor to the host: %w", err)
	}
	c.mu.Unlock()
}

func (c *hostCopy) failed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err != nil
}

// finish ends a copy whose chunks are all done (or were never queued):
// the staging block goes back to the pool and the waiter wakes.
func (c *hostCopy) finish(b *Backend) {
	if s := c.stage; s != nil && s.ptr != 0 {
		p := &b.pool
		p.orphanMu.Lock()
		p.orphans = append(p.orphans, orphan{s.ptr, s.class})
		p.orphanMu.Unlock()
	}
	if hc := c.hc; hc != nil { // set once c.stage holds its block
		class := c.stage.class
		hc.mu.Lock()
		if hc.staged[class]--; hc.staged[class] == 0 {
			delete(hc.staged, class)
		}
		hc.mu.Unlock()
		hc.stagedBack.Broadcast()
	}
	c.complete()
}

// complete wakes the waiter, once the slice is made (the waiter reads
// it); a failed copy returns no values.
func (c *hostCopy) complete() {
	<-c.allocated
	if c.failed() {
		c.data = nil
	}
	close(c.done)
}

// awaitStagingBlock waits, when copies to the host in flight hold staging
// blocks of the size class, until one of them lands and gives its block
// back (to the orphan list); false when none held one (owner goroutine).
// Copies holding blocks of other classes are not waited for: their blocks
// would not serve this allocation.
func (b *Backend) awaitStagingBlock(class int) bool {
	hc := b.hc
	if hc == nil {
		return false
	}
	hc.mu.Lock()
	defer hc.mu.Unlock()
	n := hc.staged[class]
	if n == 0 {
		return false
	}
	hc.stagingWaits++
	// Only the owner adds, and it is here: the count can only fall.
	for hc.staged[class] >= n {
		hc.stagedBack.Wait()
	}
	return true
}

// hostCopies gives the backend's copier, making it on first use (owner
// goroutine).
func (b *Backend) hostCopies() (*hostCopier, error) {
	if b.hc != nil {
		return b.hc, nil
	}
	hc := &hostCopier{chunk: b.hostChunk, max: b.hostChunks, staged: map[int]int{}}
	hc.cond = sync.NewCond(&hc.mu)
	hc.stagedBack = sync.NewCond(&hc.mu)
	if err := b.d.check("cuStreamCreate", call(b.d.cuStreamCreate, uintptr(unsafe.Pointer(&hc.stream)), 1)); err != nil { // CU_STREAM_NON_BLOCKING
		return nil, err
	}
	if err := b.d.check("cuEventCreate", call(b.d.cuEventCreate, uintptr(unsafe.Pointer(&hc.ready)), hostEventFlags)); err != nil {
		call(b.d.cuStreamDestroy, hc.stream)
		return nil, err
	}
	hc.jobs = make(chan chunkJob, hc.max)
	workers := min(8, max(2, runtime.NumCPU()/2))
	hc.wg.Add(workers)
	for range workers {
		go b.hostCopyWorker(hc)
	}
	b.hc = hc
	return hc, nil
}

// hostCopyWorker is step 3 above.
func (b *Backend) hostCopyWorker(hc *hostCopier) {
	defer hc.wg.Done()
	// The thread keeps the context current until it ends (a goroutine that
	// exits locked takes its thread with it).
	runtime.LockOSThread()
	ctxErr := b.d.check("cuCtxSetCurrent", call(b.d.cuCtxSetCurrent, b.ctx))
	for j := range hc.jobs {
		err := ctxErr
		if err == nil {
			err = b.d.check("cuEventSynchronize", call(b.d.cuEventSynchronize, j.ev))
		}
		c := j.c
		if err == nil && !c.failed() {
			<-c.allocated
			copy(c.data[j.off/4:(j.off+j.n)/4], pinnedFloats(j.host, j.n/4))
		}
		hc.put(j.host)
		hc.putEvent(j.ev)
		c.fail(err)
		if c.left.Add(-1) == 0 {
			c.finish(b)
		}
	}
}

// pinnedFloats views n float32 values of pinned host memory at p.
func pinnedFloats(p uintptr, n int) []float32 {
	ptr := *(*unsafe.Pointer)(unsafe.Pointer(&p))
	return unsafe.Slice((*float32)(ptr), n)
}

// take gives a pinned chunk: a free one, a new one while fewer than max
// are held, else the next one a worker frees.
func (hc *hostCopier) take(b *Backend) (uintptr, error) {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	for {
		if n := len(hc.free); n > 0 {
			h := hc.free[n-1]
			hc.free = hc.free[:n-1]
			return h, nil
		}
		if hc.held < hc.max {
			var h uintptr
			r := call(b.d.cuMemAllocHost, uintptr(unsafe.Pointer(&h)), uintptr(hc.chunk))
			if r == 0 {
				hc.held++
				return h, nil
			}
			if hc.held == 0 {
				return 0, fmt.Errorf("pinned host memory for the copy (%d bytes): %w", hc.chunk, b.d.check("cuMemAllocHost", r))
			}
			hc.max = hc.held // the host gives no more: make do with these
		}
		hc.cond.Wait()
	}
}

func (hc *hostCopier) put(h uintptr) {
	hc.mu.Lock()
	hc.free = append(hc.free, h)
	hc.mu.Unlock()
	hc.cond.Signal()
}

func (hc *hostCopier) event(b *Backend) (uintptr, error) {
	hc.mu.Lock()
	if n := len(hc.events); n > 0 {
		e := hc.events[n-1]
		hc.events = hc.events[:n-1]
		hc.mu.Unlock()
		return e, nil
	}
	hc.mu.Unlock()
	var e uintptr
	err := b.d.check("cuEventCreate", call(b.d.cuEventCreate, uintptr(unsafe.Pointer(&e)), hostEventFlags))
	return e, err
}

func (hc *hostCopier) putEvent(e uintptr) {
	hc.mu.Lock()
	hc.events = append(hc.events, e)
	hc.mu.Unlock()
}

// teardownHostCopies waits for the copies in flight, then frees the
// pinned chunks, the events and the copy stream (owner goroutine, at
// Close).
func (b *Backend) teardownHostCopies() {
	hc := b.hc
	if hc == nil {
		return
	}
	b.hc = nil
	close(hc.jobs)
	hc.wg.Wait()
	call(b.d.cuStreamSynchronize, hc.stream)
	for _, h := range hc.free {
		call(b.d.cuMemFreeHost, h)
	}
	for _, e := range append(hc.events, hc.ready) {
		call(b.d.cuEventDestroy, e)
	}
	call(b.d.cuStreamDestroy, hc.stream)
}

// StagingWaits is how many times an allocation waited for a copy to the
// host to give back a staging block of its size class, for tests.
func (b *Backend) StagingWaits() (n int) {
	b.do(func() {
		if hc := b.hc; hc != nil {
			hc.mu.Lock()
			n = hc.stagingWaits
			hc.mu.Unlock()
		}
	})
	return n
}

// HostCopyStats reports the pinned chunks the asynchronous copies hold
// (allocated, and of those free now), for tests.
func (b *Backend) HostCopyStats() (held, free int) {
	b.do(func() {
		if hc := b.hc; hc != nil {
			hc.mu.Lock()
			held, free = hc.held, len(hc.free)
			hc.mu.Unlock()
		}
	})
	return held, free
}
