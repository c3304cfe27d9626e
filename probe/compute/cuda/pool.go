package cuda

import (
	"fmt"

	"github.com/loupe-dev/loupe/probe/compute"
	"runtime"
	"sync"
	"time"
	"unsafe"
)

// buffer is one block of device memory from the pool. A tensor points to
// its buffer; views (Reshape) share one.
type buffer struct {
	ptr     uintptr // device address; 0 for an empty tensor or a failed allocation
	class   int     // bytes reserved (the pool's size class)
	scope   int     // index of the scope that owns it; -1 when owned by its tensors
	dead    bool    // returned to the pool: any further use is a bug
	failed  bool    // its allocation failed (the backend's error says why)
	cleanup runtime.Cleanup
	hasGC   bool
	// half is a copy of the elements in halfDT (a shadow: shadow.go),
	// released with this buffer.
	half   *buffer
	halfDT compute.DType
}

// orphan is an owned buffer whose tensors the garbage collector found
// unreachable; the owner goroutine takes it back into the pool.
type orphan struct {
	ptr   uintptr
	class int
}

// pool is a caching allocator: freed blocks are kept by size class and
// handed out again, so a forward pass that repeats the shapes of the last
// one allocates nothing from the driver.
type pool struct {
	free     map[int][]uintptr
	reserved int64 // bytes taken from the driver and not given back
	inUse    int64 // bytes handed out and not returned

	ownedSinceGC int64 // owned bytes handed out since the last forced collection

	orphanMu sync.Mutex
	orphans  []orphan
}

// sizeClass rounds a request up: powers of two to 1 MiB (at least 512
// bytes), then multiples of 2 MiB.
func sizeClass(n int) int {
	if n <= 0 {
		return 0
	}
	if n <= 1<<20 {
		c := 512
		for c < n {
			c <<= 1
		}
		return c
	}
	const big = 2 << 20
	return (n + big - 1) / big * big
}

// PoolStats reports the pool: bytes reserved from the driver and bytes in
// use by live tensors.
type PoolStats struct {
	Reserved, InUse int64
}

// alloc takes n bytes for a tensor described by what (for the error when
// the device is full). On failure it records the backend's error and
// returns a failed buffer.
func (b *Backend) alloc(n int, what func() string) *buffer {
	buf := &buffer{scope: -1}
	b.allocInto(buf, n, what)
	return buf
}

// allocInto gives buf n bytes (see alloc).
func (b *Backend) allocInto(buf *buffer, n int, what func() string) {
	if !b.takeBlock(buf, n, what) {
		return
	}
	if top := len(b.scopes) - 1; top >= 0 {
		buf.scope = top
		b.scopes[top] = append(b.scopes[top], buf)
	} else {
		b.own(buf)
	}
}

// takeBlock gives buf n bytes from the pool (or the driver), belonging to
// no scope and to no tensor: the caller returns it (release, or the
// orphan list from another goroutine). False when the allocation failed;
// the backend's error says why.
func (b *Backend) takeBlock(buf *buffer, n int, what func() string) bool {
	b.adoptOrphans()
	buf.class, buf.scope = sizeClass(n), -1
	if buf.class > 0 {
		p := &b.pool
		if len(p.free[buf.class]) == 0 && b.awaitStagingBlock(buf.class) {
			// The staging blocks of copies to the host in flight come
			// back when their copies land: wait for one of this class
			// rather than grow the pool, so that its size does not
			// depend on how fast the host takes the copies (hostcopy.go).
			b.adoptOrphans()
		}
		if l := p.free[buf.class]; len(l) > 0 {
			buf.ptr = l[len(l)-1]
			p.free[buf.class] = l[:len(l)-1]
		} else {
			var ptr uintptr
			r := call(b.d.cuMemAlloc, uintptr(unsafe.Pointer(&ptr)), uintptr(buf.class))
			if r == errOutOfMemory {
				// Owned tensors that Go no longer reaches may still hold
				// memory: collect them, then give the cached blocks back
				// to the driver and try again.
				b.collectOrphans()
				if l := p.free[buf.class]; len(l) > 0 {
					buf.ptr = l[len(l)-1]
					p.free[buf.class] = l[:len(l)-1]
					r = 0
				} else {
					b.trimPool()
					r = call(b.d.cuMemAlloc, uintptr(unsafe.Pointer(&ptr)), uintptr(buf.class))
				}
			}
			if r != 0 {
				var free, total uint64
				call(b.d.cuMemGetInfo, uintptr(unsafe.Pointer(&free)), uintptr(unsafe.Pointer(&total)))
				if r == errOutOfMemory {
					b.fail(fmt.Errorf("cuda: out of GPU memory for %s: %d bytes wanted, %d bytes free of %d on GPU %d (%d held by Loupe's tensors)",
						what(), n, free, total, b.info.Index, p.inUse))
				} else {
					b.fail(b.d.check(fmt.Sprintf("cuMemAlloc for %s (%d bytes)", what(), n), r))
				}
				buf.failed = true
				return false
			}
			if buf.ptr == 0 {
				buf.ptr = ptr
				p.reserved += int64(buf.class)
			}
		}
		p.inUse += int64(buf.class)
	}
	return true
}

// ownedGCBytes is how much memory owned tensors may take between
// collections. Go's collector sees only the small Tensor structs, not the
// device memory behind them, so code that makes tensors outside any scope
// in a loop (training, say) would otherwise grow device memory until a
// collection happened to run.
const ownedGCBytes = 1 << 30

// own makes buf owned by its tensors: when the garbage collector finds
// none left, its memory goes back to the pool.
func (b *Backend) own(buf *buffer) {
	buf.scope = -1
	if buf.ptr == 0 || buf.hasGC {
		return
	}
	if b.pool.ownedSinceGC += int64(buf.class); b.pool.ownedSinceGC > ownedGCBytes {
		b.pool.ownedSinceGC = 0
		runtime.GC()
	}
	p := &b.pool
	buf.cleanup = runtime.AddCleanup(buf, func(o orphan) {
		p.orphanMu.Lock()
		p.orphans = append(p.orphans, o)
		p.orphanMu.Unlock()
	}, orphan{buf.ptr, buf.class})
	buf.hasGC = true
}

// release returns buf to the pool now.
func (b *Backend) release(buf *buffer) {
	if buf.dead {
		return
	}
	buf.dead = true
	if buf.half != nil {
		// Not releaseTemp: Release may be walking the scope's list; a dead
		// entry left in a list is skipped when the scope ends.
		b.release(buf.half)
		buf.half = nil
	}
	if buf.hasGC {
		buf.cleanup.Stop()
		buf.hasGC = false
	}
	if buf.ptr != 0 {
		b.pool.free[buf.class] = append(b.pool.free[buf.class], buf.ptr)
		b.pool.inUse -= int64(buf.class)
	}
}

// releaseTemp returns a buffer that one operation used internally. The
// stream runs in order, so the next user of the block runs after this
// operation's kernels.
func (b *Backend) releaseTemp(buf *buffer) {
	if buf.scope >= 0 && buf.scope < len(b.scopes) {
		l := b.scopes[buf.scope]
		for i := len(l) - 1; i >= 0; i-- {
			if l[i] == buf {
				b.scopes[buf.scope] = append(l[:i], l[i+1:]...)
				break
			}
		}
	}
	b.release(buf)
}

// collectOrphans runs the garbage collector and takes back the memory of
// the owned tensors it finds unreachable (their cleanups run on another
// goroutine, so it waits a little for them).
func (b *Backend) collectOrphans() {
	runtime.GC()
	for i := 0; i < 20; i++ {
		b.pool.orphanMu.Lock()
		n := len(b.pool.orphans)
		b.pool.orphanMu.Unlock()
		if n > 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	b.adoptOrphans()
}

func (b *Backend) adoptOrphans() {
	p := &b.pool
	p.orphanMu.Lock()
	os := p.orphans
	p.orphans = nil
	p.orphanMu.Unlock()
	for _, o := range os {
		p.free[o.class] = append(p.free[o.class], o.ptr)
		p.inUse -= int64(o.class)
	}
}

// trimPool gives every cached free block back to the driver. The stream
// is drained first: a block freed by an operation may still be in use by
// a kernel in flight.
func (b *Backend) trimPool() {
	call(b.d.cuStreamSynchronize, b.stream)
	for c, l := range b.pool.free {
		for _, ptr := range l {
			call(b.d.cuMemFree, ptr)
			b.pool.reserved -= int64(c)
		}
		delete(b.pool.free, c)
	}
}

// Mark opens a scope (compute.Scoped).
func (b *Backend) Mark() int {
	var s int
	b.do(func() {
		s = len(b.scopes)
		b.scopes = append(b.scopes, nil)
	})
	return s
}

// Release closes scope s and those inside it (compute.Scoped).
func (b *Backend) Release(s int, keep ...compute.Tensor) error {
	var err error
	b.do(func() {
		if s < 0 || s >= len(b.scopes) {
			err = b.takeErr()
			return
		}
		kept := map[*buffer]bool{}
		for _, t := range keep {
			if t != nil {
				buf := t.(*Tensor).buf
				kept[buf] = true
				if buf.half != nil {
					kept[buf.half] = true // a shadow goes where its tensor goes
				}
			}
		}
		var moved []*buffer
		for lvl := len(b.scopes) - 1; lvl >= s; lvl-- {
			for _, buf := range b.scopes[lvl] {
				if kept[buf] {
					moved = append(moved, buf)
				} else {
					b.release(buf)
				}
			}
		}
		b.scopes = b.scopes[:s]
		for _, buf := range moved {
			if s > 0 {
				buf.scope = s - 1
				b.scopes[s-1] = append(b.scopes[s-1], buf)
			} else {
				b.own(buf)
			}
		}
		if s == 0 {
			err = b.takeErr()
		} else {
			err, b.err = b.err, nil
		}
	})
	return err
}

// Err returns and clears the first failure (compute.Scoped).
func (b *Backend) Err() error {
	var err error
	b.do(func() { err = b.takeErr() })
	return err
}

// Free returns owned tensors' memory now (compute.Scoped).
func (b *Backend) Free(ts ...compute.Tensor) {
	b.do(func() {
		for _, t := range ts {
			if t == nil {
				continue
			}
			buf := t.(*Tensor).buf
			if buf.scope < 0 {
				b.release(buf)
			}
		}
	})
}

// PoolStats reports the memory pool's bytes (see PoolStats).
func (b *Backend) PoolStats() PoolStats {
	var s PoolStats
	b.do(func() {
		b.adoptOrphans()
		s = PoolStats{Reserved: b.pool.reserved, InUse: b.pool.inUse}
	})
	return s
}

func (b *Backend) fail(err error) {
	if b.err == nil && err != nil {
		b.err = err
	}
}

func (b *Backend) takeErr() error {
	// Errors of kernels in flight surface at a synchronisation.
	b.fail(b.d.check("stream", call(b.d.cuStreamSynchronize, b.stream)))
	err := b.err
	b.err = nil
	return err
}

// CheckFit refuses weights that cannot fit in the GPU's free memory plus
// the pool's cached blocks (compute.Budgeted): matrices in the weight
// dtype, vectors in float32, as FromHostWeight stores them.
func (b *Backend) CheckFit(shapes [][]int) error {
	var need int64
	for _, s := range shapes {
		es := 4
		if len(s) == 2 {
			es = b.opt.WeightDType.Size()
		}
		need += int64(sizeClass(compute.Numel(s) * es))
	}
	var err error
	b.do(func() {
		var free, total uint64
		call(b.d.cuMemGetInfo, uintptr(unsafe.Pointer(&free)), uintptr(unsafe.Pointer(&total)))
		cached := b.pool.reserved - b.pool.inUse
		if need > int64(free)+cached {
			err = fmt.Errorf("cuda: the model's weights need %d bytes (%.2f GiB, matrices in %s) on GPU %d, which has %d bytes free (%.2f GiB) of %d; try --weight-dtype bf16, a smaller model, or the CPU",
				need, float64(need)/(1<<30), b.opt.WeightDType, b.info.Index, int64(free)+cached, float64(int64(free)+cached)/(1<<30), total)
		}
	})
	return err
}

// TrimPool gives the pool's cached free blocks back to the driver (after
// the GPU has finished with them): the memory a long-running program
// holds drops to what its live tensors use.
func (b *Backend) TrimPool() {
	b.do(func() {
		b.adoptOrphans()
		b.trimPool()
	})
}

// FreeBytes is what the GPU can still give this backend: the driver's free
// memory plus the pool's cached blocks (compute.DeviceMemory).
func (b *Backend) FreeBytes() uint64 {
	var free uint64
	b.do(func() {
		b.adoptOrphans()
		var f, total uint64
		call(b.d.cuMemGetInfo, uintptr(unsafe.Pointer(&f)), uintptr(unsafe.Pointer(&total)))
		free = f + uint64(b.pool.reserved-b.pool.inUse)
	})
	return free
}
