package cuda

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/loupe-dev/loupe/probe/compute"
)

// Options configures a Backend.
type Options struct {
	// Device is the GPU's index (cuda:N).
	Device int
	// WeightDType is the dtype model weights are kept in (matrices only:
	// norm weights and biases stay float32). The zero value is F32, the
	// mode that is checked against the CPU and the references.
	WeightDType compute.DType
}

// Backend is a compute.Backend on one NVIDIA GPU. One goroutine, locked to
// its OS thread, owns the CUDA context, the stream and the cuBLAS handle;
// every operation is sent to it. Operations are queued on the stream and
// only ToHost, the reductions and the end of a pass wait for the GPU.
type Backend struct {
	opt  Options
	info DeviceInfo
	d    *driverAPI
	cb   *cublasAPI

	work chan work // in order: operations, then what waits for them
	// sync makes every operation wait for the owner goroutine, a hand-off
	// between OS threads per operation (LOUPE_CUDA_ASYNC=0). By default
	// operations are queued without waiting: the caller runs ahead and the
	// owner launches back to back, which is what small kernels need (a
	// decode step or SmolLM2 runs hundreds of them).
	sync  bool
	close sync.Once
	// flashOcc picks a build of the tensor-core attention kernel
	// (LOUPE_FLASH_OCC, for measurements; see flashVariant).
	flashOcc string
	// hostSync makes ToHostLater copy synchronously (SetAsyncHostCopies).
	hostSync atomic.Bool
	// hostChunk and hostChunks size the pinned memory of the asynchronous
	// copies (hostcopy.go); fixed before the first copy.
	hostChunk, hostChunks int

	// Owned by the goroutine that owns the context.
	ctx, stream, blas uintptr
	fn                map[string]uintptr
	pool              pool
	scopes            [][]*buffer
	err               error
	argv              [32]uint64
	argp              [32]uintptr
	dev               int32
	prof              *profiler   // nil unless ProfileStart was called
	lt                *ltState    // nil when cuBLASLt is not there (products go to GemmEx)
	flash3Err         error       // why flash3 is not loaded (nil when it is)
	hc                *hostCopier // the asynchronous copies to the host; nil until the first
}

// Tensor is a tensor in GPU memory.
type Tensor struct {
	shape []int
	dt    compute.DType
	buf   *buffer
	off   uintptr // bytes into buf: a view of rows of a weight (RowsView)
}

func (t *Tensor) Shape() []int         { return t.shape }
func (t *Tensor) DType() compute.DType { return t.dt }

// kernel names in kernels.cu and flash.cu.
var kernelNames = []string{"cvt_f32_bf16", "cvt_f32_f16", "cvt_bf16_f32", "cvt_f16_f32", "gather_rows", "embed",
	"columns", "fill_columns", "add", "add_bcast", "scale", "swiglu", "gelu", "rmsnorm", "layernorm", "softmax_rows",
	"argmax_rows", "topk_rows", "span_mass_rows", "entropy_rows", "rotary", "attn_scores", "attn_mix", "copy_seq_rows",
	"attn_probs", "span_rows", "keyset_rows", "mul"}

// New opens GPU opt.Device: it loads the driver, NVRTC and cuBLAS, makes
// the context and stream, and compiles the kernels (cached after the
// first run). The error says what is missing and where Loupe looked.
func New(opt Options) (*Backend, error) {
	devs, err := Devices()
	if err != nil {
		return nil, err
	}
	if opt.Device < 0 || opt.Device >= len(devs) {
		return nil, fmt.Errorf("cuda: no GPU %d: the driver sees %d", opt.Device, len(devs))
	}
	info := devs[opt.Device]
	if err := info.Usable(); err != nil {
		return nil, err
	}
	cb, err := loadCUBLAS()
	if err != nil {
		return nil, err
	}
	b := &Backend{opt: opt, info: info, d: &driver, cb: cb, work: make(chan work, 4096),
		fn: map[string]uintptr{}, pool: pool{free: map[int][]uintptr{}}}
	b.sync = os.Getenv("LOUPE_CUDA_ASYNC") == "0"
	b.flashOcc = os.Getenv("LOUPE_FLASH_OCC")
	b.hostSync.Store(os.Getenv("LOUPE_CUDA_HOSTCOPY") == "sync")
	b.hostChunk, b.hostChunks = hostChunkBytes, hostChunksMax
	for i := range b.argp {
		b.argp[i] = uintptr(unsafe.Pointer(&b.argv[i]))
	}
	started := make(chan error)
	go b.ownerLoop(started)
	if err := <-started; err != nil {
		return nil, err
	}
	return b, nil
}

// own is the goroutine that owns the context.
func (b *Backend) ownerLoop(started chan<- error) {
	runtime.LockOSThread()
	if err := b.setup(); err != nil {
		started <- err
		return
	}
	started <- nil
	for w := range b.work {
		p := runWork(w.fn)
		if w.done != nil {
			w.done <- p
		} else if p != nil {
			// An operation queued without waiting failed: its error is
			// the backend's, reported at the next check.
			b.fail(fmt.Errorf("cuda: %v", p))
		}
	}
	b.teardown()
}

// work is one item for the owner goroutine; done, when set, receives nil or
// the panic the item raised.
type work struct {
	fn   func()
	done chan any
}

func runWork(f func()) (p any) {
	defer func() { p = recover() }()
	f()
	return nil
}

// do runs f on the owner goroutine after everything queued before it, and
// waits; a panic in f is raised again in the caller.
func (b *Backend) do(f func()) {
	done := make(chan any, 1)
	b.work <- work{fn: f, done: done}
	if p := <-done; p != nil {
		panic(p)
	}
}

// async queues f on the owner goroutine and returns at once. The stream and
// the queue keep operations in order, so callers wait only for results
// (ToHost, reductions, the end of a pass).
func (b *Backend) async(f func()) {
	if b.sync {
		b.do(f)
		return
	}
	b.work <- work{fn: f}
}

// produce returns a tensor of the given dtype and shape at once and queues
// fill, which runs on the owner after the tensor's memory is placed.
func (b *Backend) produce(dt compute.DType, shape []int, fill func(out *Tensor)) *Tensor {
	out := &Tensor{shape: append([]int(nil), shape...), dt: dt, buf: &buffer{scope: -1}}
	b.async(func() {
		b.place(out)
		if b.err == nil && !out.buf.failed {
			fill(out)
		}
	})
	return out
}

func (b *Backend) setup() error {
	d := b.d
	if err := d.check("cuDeviceGet", call(d.cuDeviceGet, uintptr(unsafe.Pointer(&b.dev)), uintptr(b.opt.Device))); err != nil {
		return err
	}
	if err := d.check("cuDevicePrimaryCtxRetain", call(d.cuDevicePrimaryCtxRetain, uintptr(unsafe.Pointer(&b.ctx)), uintptr(b.dev))); err != nil {
		return err
	}
	if err := d.check("cuCtxSetCurrent", call(d.cuCtxSetCurrent, b.ctx)); err != nil {
		return err
	}
	if err := d.check("cuStreamCreate", call(d.cuStreamCreate, uintptr(unsafe.Pointer(&b.stream)), 1)); err != nil { // CU_STREAM_NON_BLOCKING
		return err
	}
	if r := call(b.cb.create, uintptr(unsafe.Pointer(&b.blas))); r != 0 {
		return fmt.Errorf("cuda: cublasCreate: status %d (%s)", r, b.blasStatus(r))
	}
	if r := call(b.cb.setStream, b.blas, b.stream); r != 0 {
		return fmt.Errorf("cuda: cublasSetStream: status %d (%s)", r, b.blasStatus(r))
	}
	b.setupLt()
	arch := b.info.Major*10 + b.info.Minor
	for _, m := range []struct{ name, src string }{{"kernels", kernelSource + projSource}, {"flash", flashSource}} {
		bin, err := compile(m.name, m.src, arch)
		if err != nil {
			return err
		}
		var mod uintptr
		if err := d.check("cuModuleLoadData "+m.name, call(d.cuModuleLoadData, uintptr(unsafe.Pointer(&mod)), uintptr(unsafe.Pointer(&bin[0])))); err != nil {
			return err
		}
		for _, name := range slices.Concat(kernelNames, projNames, flashNames) {
			if _, ok := b.fn[name]; ok {
				continue
			}
			var f uintptr
			cn := cString(name)
			if call(d.cuModuleGetFunction, uintptr(unsafe.Pointer(&f)), mod, uintptr(unsafe.Pointer(&cn[0]))) == 0 {
				b.fn[name] = f
			}
		}
	}
	for _, name := range slices.Concat(kernelNames, projNames, flashNames) {
		if b.fn[name] == 0 {
			return fmt.Errorf("cuda: kernel %s missing from the compiled modules", name)
		}
	}
	if arch == 90 {
		// Hopper: the wgmma attention kernel, for sm_90a alone. Not
		// having it is no error (flash2 does the same work, slower);
		// flash3Err says why, for the tests.
		b.flash3Err = b.setupFlash3()
	} else {
		b.flash3Err = fmt.Errorf("cuda: flash3 needs an sm_90 GPU (Hopper), this is sm_%d", arch)
	}
	return b.setupFlash()
}

// setupFlash3 compiles and loads flash3.cu for sm_90a.
func (b *Backend) setupFlash3() error {
	bin, err := compileFor("flash3", flash3Source, "90a")
	if err != nil {
		return err
	}
	var mod, f uintptr
	if err := b.d.check("cuModuleLoadData flash3", call(b.d.cuModuleLoadData, uintptr(unsafe.Pointer(&mod)), uintptr(unsafe.Pointer(&bin[0])))); err != nil {
		return err
	}
	fns := map[string]uintptr{}
	for name, shared := range flash3Kernels() {
		cn := cString(name)
		if err := b.d.check("cuModuleGetFunction "+name, call(b.d.cuModuleGetFunction, uintptr(unsafe.Pointer(&f)), mod, uintptr(unsafe.Pointer(&cn[0])))); err != nil {
			return err
		}
		if shared > b.info.MaxSharedPerBlock {
			return fmt.Errorf("cuda: %s needs %d bytes of shared memory per block; GPU %d allows %d", name, shared, b.info.Index, b.info.MaxSharedPerBlock)
		}
		if err := b.d.check("cuFuncSetAttribute "+name, call(b.d.cuFuncSetAttribute, f, funcAttrMaxDynamicShared, uintptr(shared))); err != nil {
			return err
		}
		fns[name] = f
	}
	for name, f := range fns {
		b.fn[name] = f
	}
	return nil
}

func (b *Backend) blasStatus(r uint32) string {
	if b.cb.errString == 0 {
		return "cuBLAS error"
	}
	s, _, _ := callRaw(b.cb.errString, uintptr(r))
	return goString(s)
}

func (b *Backend) teardown() {
	call(b.d.cuStreamSynchronize, b.stream)
	b.teardownHostCopies()
	b.adoptOrphans() // the last copies' staging blocks, so that trimPool frees them too
	b.trimPool()
	b.teardownLt()
	call(b.d.cuDevicePrimaryCtxRelease, uintptr(b.dev))
}

// Close ends the owner goroutine and gives the pool's memory back. The
// backend's tensors are unusable afterwards.
func (b *Backend) Close() {
	b.close.Do(func() { close(b.work) })
}

// Info describes the GPU.
func (b *Backend) Info() DeviceInfo { return b.info }

func (b *Backend) Name() string {
	return fmt.Sprintf("cuda:%d (%s, weights %s)", b.opt.Device, b.info.Name, b.opt.WeightDType)
}

// ---- helpers run on the owner goroutine ---------------------------------

func pArg(p uintptr) uint64 { return uint64(p) }
func iArg(v int) uint64     { return uint64(uint32(int32(v))) }
func lArg(v int) uint64     { return uint64(int64(v)) }
func fArg(v float32) uint64 { return uint64(math.Float32bits(v)) }

// launch queues kernel name on the stream.
func (b *Backend) launch(name string, grid, block [3]int, shmem int, args ...uint64) {
	if b.err != nil {
		return
	}
	copy(b.argv[:], args)
	f := b.fn[name]
	if b.prof != nil {
		defer b.prof.span(b, name)()
	}
	r := call(b.d.cuLaunchKernel, f, uintptr(grid[0]), uintptr(grid[1]), uintptr(grid[2]),
		uintptr(block[0]), uintptr(block[1]), uintptr(block[2]), uintptr(shmem), b.stream,
		uintptr(unsafe.Pointer(&b.argp[0])), 0)
	b.fail(b.d.check("launch "+name, r))
}

// grid1 is a grid-stride launch over n elements.
func grid1(n int) [3]int { return [3]int{max(1, min((n+255)/256, 132*16)), 1, 1} }

var block256 = [3]int{256, 1, 1}

// newTensor allocates a tensor (a scope's temporary inside a scope).
func (b *Backend) newTensor(dt compute.DType, shape ...int) *Tensor {
	t := &Tensor{shape: append([]int(nil), shape...), dt: dt, buf: &buffer{scope: -1}}
	b.place(t)
	return t
}

// place gives t's buffer its memory (nothing when the backend has failed).
func (b *Backend) place(t *Tensor) {
	if b.err != nil {
		t.buf.failed = true
		return
	}
	n := compute.Numel(t.shape) * t.dt.Size()
	b.allocInto(t.buf, n, func() string { return fmt.Sprintf("a %s tensor %v", t.dt, t.shape) })
}

// get checks a tensor handed to an operation.
func (b *Backend) get(x compute.Tensor) *Tensor {
	t, ok := x.(*Tensor)
	if !ok {
		panic(fmt.Sprintf("cuda: a %T tensor given to the GPU backend", x))
	}
	if t.buf.dead {
		panic(fmt.Sprintf("cuda: tensor %v used after the scope (forward pass or block) that made it ended, or after Free", t.shape))
	}
	if t.buf.failed && b.err == nil {
		b.fail(fmt.Errorf("cuda: tensor %v is unusable: its allocation failed earlier", t.shape))
	}
	return t
}

func (t *Tensor) ptr() uintptr { return t.buf.ptr + t.off }

func (t *Tensor) numel() int { return compute.Numel(t.shape) }

// rowsCols views a tensor as a matrix whose columns are its last dimension.
func rowsCols(t *Tensor) (int, int) {
	c := t.shape[len(t.shape)-1]
	if c == 0 {
		return 0, 0
	}
	return t.numel() / c, c
}

// upload copies host bytes to device memory (the host buffer may be reused
// as soon as this returns: the driver stages pageable memory).
func (b *Backend) upload(dst uintptr, src unsafe.Pointer, n int) {
	if b.err != nil || n == 0 {
		return
	}
	b.fail(b.d.check("cuMemcpyHtoDAsync", call(b.d.cuMemcpyHtoDAsync, dst, uintptr(src), uintptr(n), b.stream)))
}

// download copies device bytes to host memory and waits for them.
func (b *Backend) download(dst unsafe.Pointer, src uintptr, n int) {
	if b.err != nil || n == 0 {
		return
	}
	b.fail(b.d.check("cuMemcpyDtoHAsync", call(b.d.cuMemcpyDtoHAsync, uintptr(dst), src, uintptr(n), b.stream)))
	b.fail(b.d.check("cuStreamSynchronize", call(b.d.cuStreamSynchronize, b.stream)))
}

func (b *Backend) copyDtoD(dst, src uintptr, n int) {
	if b.err != nil || n == 0 {
		return
	}
	b.fail(b.d.check("cuMemcpyDtoDAsync", call(b.d.cuMemcpyDtoDAsync, dst, src, uintptr(n), b.stream)))
}

// uploadInts puts int32 copies of v in a temporary device buffer; the
// caller releases it with releaseTemp.
func (b *Backend) uploadInts(v []int) *buffer {
	h := make([]int32, len(v))
	for i, x := range v {
		h[i] = int32(x)
	}
	buf := b.alloc(4*len(h), func() string { return fmt.Sprintf("%d indices", len(h)) })
	if len(h) > 0 {
		b.upload(buf.ptr, unsafe.Pointer(&h[0]), 4*len(h))
	}
	return buf
}

func (b *Backend) uploadFloats(v []float32) *buffer {
	buf := b.alloc(4*len(v), func() string { return fmt.Sprintf("%d values", len(v)) })
	if len(v) > 0 {
		b.upload(buf.ptr, unsafe.Pointer(&v[0]), 4*len(v))
	}
	return buf
}

// f32 gives t as float32: t itself, or a converted temporary (second
// result true: release it after use).
func (b *Backend) f32(t *Tensor) (*Tensor, bool) {
	if t.dt == compute.F32 {
		return t, false
	}
	out := b.newTensor(compute.F32, t.shape...)
	k := "cvt_bf16_f32"
	if t.dt == compute.F16 {
		k = "cvt_f16_f32"
	}
	n := t.numel()
	b.launch(k, grid1(n), block256, 0, pArg(t.ptr()), pArg(out.ptr()), lArg(n))
	return out, true
}

// to16 converts a float32 tensor to dt (bf16 or f16) in a temporary.
func (b *Backend) to16(t *Tensor, dt compute.DType) *Tensor {
	out := b.newTensor(dt, t.shape...)
	k := "cvt_f32_bf16"
	if dt == compute.F16 {
		k = "cvt_f32_f16"
	}
	n := t.numel()
	b.launch(k, grid1(n), block256, 0, pArg(t.ptr()), pArg(out.ptr()), lArg(n))
	return out
}

func mustF32(op string, ts ...*Tensor) {
	for _, t := range ts {
		if t.dt != compute.F32 {
			panic(fmt.Sprintf("cuda: %s needs float32 tensors, got %s %v", op, t.dt, t.shape))
		}
	}
}

// ---- compute.Backend ------------------------------------------------------

func (b *Backend) FromHost(data []float32, shape ...int) compute.Tensor {
	if compute.Numel(shape) != len(data) {
		panic(fmt.Sprintf("cuda: FromHost: %d values for shape %v", len(data), shape))
	}
	var t *Tensor
	b.do(func() {
		t = b.newTensor(compute.F32, shape...)
		if len(data) > 0 {
			b.upload(t.ptr(), unsafe.Pointer(&data[0]), 4*len(data))
		}
	})
	return t
}

// FromHostWeight stores a weight: matrices in the backend's weight dtype,
// vectors in float32 (compute.WeightStore).
func (b *Backend) FromHostWeight(data []float32, shape ...int) compute.Tensor {
	if len(shape) != 2 {
		return b.FromHost(data, shape...)
	}
	return b.FromHostAs(b.opt.WeightDType, data, shape...)
}

// FromHostAs stores data in dtype dt (rounded to nearest even).
func (b *Backend) FromHostAs(dt compute.DType, data []float32, shape ...int) compute.Tensor {
	if dt == compute.F32 {
		return b.FromHost(data, shape...)
	}
	if compute.Numel(shape) != len(data) {
		panic(fmt.Sprintf("cuda: FromHostWeight: %d values for shape %v", len(data), shape))
	}
	var t *Tensor
	b.do(func() {
		// Convert in slices of 64 Mi values so the float32 staging copy
		// stays small next to a large embedding.
		t = b.newTensor(dt, shape...)
		const chunk = 64 << 20
		stage := b.alloc(4*min(chunk, len(data)), func() string { return fmt.Sprintf("the float32 staging copy of a weight %v", shape) })
		k := "cvt_f32_bf16"
		if dt == compute.F16 {
			k = "cvt_f32_f16"
		}
		for lo := 0; lo < len(data); lo += chunk {
			n := min(chunk, len(data)-lo)
			b.upload(stage.ptr, unsafe.Pointer(&data[lo]), 4*n)
			b.launch(k, grid1(n), block256, 0, pArg(stage.ptr), pArg(t.ptr()+uintptr(2*lo)), lArg(n))
		}
		b.releaseTemp(stage)
	})
	return t
}

// ToHost copies a tensor out as float32 (zeros when the backend has
// failed: the failure is reported at the end of the pass).
func (b *Backend) ToHost(x compute.Tensor) []float32 {
	var out []float32
	b.do(func() {
		t := b.get(x)
		out = make([]float32, t.numel())
		if len(out) == 0 || b.err != nil {
			return
		}
		f, tmp := b.f32(t)
		b.download(unsafe.Pointer(&out[0]), f.ptr(), 4*len(out))
		if tmp {
			b.releaseTemp(f.buf)
		}
	})
	return out
}

func (b *Backend) Reshape(x compute.Tensor, shape ...int) compute.Tensor {
	t := x.(*Tensor)
	if compute.Numel(shape) != t.numel() {
		panic(fmt.Sprintf("cuda: Reshape %v to %v", t.shape, shape))
	}
	return &Tensor{shape: append([]int(nil), shape...), dt: t.dt, buf: t.buf, off: t.off}
}

// cudaType is the cudaDataType of a dtype.
func cudaType(dt compute.DType) uintptr {
	switch dt {
	case compute.BF16:
		return 14 // CUDA_R_16BF
	case compute.F16:
		return 2 // CUDA_R_16F
	}
	return 0 // CUDA_R_32F
}

const computeF32 = 68 // CUBLAS_COMPUTE_32F: float32 accumulation, no TF32

// gemmNT computes c[M,N] = alpha·a[M,K]·w[N,K]ᵀ + beta·c with a and w of
// the same dtype, c float32 (row-major; cuBLAS sees the transposes).
func (b *Backend) gemmNT(m, n, k int, a, w uintptr, lda, ldw int, dt compute.DType, c uintptr, ldc int, beta float32) {
	b.gemmNTC(m, n, k, a, w, lda, ldw, dt, c, c, ldc, beta)
}

// gemmNTC computes d[M,N] = a[M,K]·w[N,K]ᵀ + beta·c, c and d float32 of
// the same layout (c may be d): through cuBLASLt, whose epilogue reads c
// and writes d in the product's own pass, else GemmEx (after copying c
// into d when they differ).
func (b *Backend) gemmNTC(m, n, k int, a, w uintptr, lda, ldw int, dt compute.DType, c, d uintptr, ldc int, beta float32) {
	if b.err != nil || m == 0 || n == 0 {
		return
	}
	if b.prof != nil {
		label := fmt.Sprintf("gemm %s M=%d N=%d K=%d", dt, m, n, k)
		if beta != 0 && c != d {
			label += " +C"
		}
		defer b.prof.span(b, label)()
	}
	if b.gemmLt(m, n, k, a, w, lda, ldw, dt, c, d, ldc, beta) {
		return
	}
	if beta != 0 && c != d {
		b.copyDtoD(d, c, 4*m*ldc)
	}
	alpha := float32(1)
	r := call(b.cb.gemmEx, b.blas, 1, 0, uintptr(n), uintptr(m), uintptr(k),
		uintptr(unsafe.Pointer(&alpha)), w, cudaType(dt), uintptr(ldw), a, cudaType(dt), uintptr(lda),
		uintptr(unsafe.Pointer(&beta)), d, 0, uintptr(ldc), computeF32, ^uintptr(0)) // CUBLAS_GEMM_DEFAULT = -1
	if r != 0 {
		b.fail(fmt.Errorf("cuda: cublasGemmEx %dx%dx%d %s: status %d (%s)", m, n, k, dt, r, b.blasStatus(r)))
	}
}

// vec gives a float32 vector operand (norm weights may have been stored
// in another dtype by a caller).
func (b *Backend) vec(x compute.Tensor) (*Tensor, bool) { return b.f32(b.get(x)) }

// uploadMask puts a key-validity mask on the device (nil when none).
func (b *Backend) uploadMask(valid []bool) *buffer {
	if valid == nil {
		return nil
	}
	h := make([]byte, len(valid))
	for i, v := range valid {
		if v {
			h[i] = 1
		}
	}
	buf := b.alloc(len(h), func() string { return fmt.Sprintf("a mask of %d keys", len(h)) })
	if len(h) > 0 {
		b.upload(buf.ptr, unsafe.Pointer(&h[0]), len(h))
	}
	return buf
}

func maskPtr(buf *buffer) uint64 {
	if buf == nil {
		return 0
	}
	return pArg(buf.ptr)
}

func boolArg(v bool) uint64 {
	if v {
		return 1
	}
	return 0
}

func (b *Backend) scoresInto(out, qt, kt *Tensor, s compute.AttnShape, scale float32, mask compute.AttnMask) {
	if out.numel() == 0 || b.err != nil {
		return
	}
	mk := b.uploadMask(mask.KeyValid)
	grid := [3]int{(s.Tk + 31) / 32, (s.Tq + 31) / 32, s.B * s.H}
	b.launch("attn_scores", grid, [3]int{32, 8, 1}, 0, pArg(qt.ptr()), pArg(kt.ptr()), pArg(out.ptr()),
		iArg(s.B), iArg(s.Tq), iArg(s.Tk), iArg(s.Tcap), iArg(s.H), iArg(s.Hkv), iArg(s.Dh),
		fArg(scale), iArg(mask.Past), boolArg(mask.Causal), iArg(mask.Window), maskPtr(mk))
	if mk != nil {
		b.releaseTemp(mk)
	}
}

// rowResult runs a one-block-per-row kernel writing per 4-byte values a
// row and downloads them.
func (b *Backend) rowResult(x compute.Tensor, per int, run func(t *Tensor, rows, cols int, out uintptr)) ([]byte, int, int) {
	var host []byte
	var rows, cols int
	b.do(func() {
		t := b.get(x)
		mustF32("a row reduction", t)
		rows, cols = rowsCols(t)
		host = make([]byte, 4*rows*per)
		if rows == 0 || per == 0 {
			return
		}
		buf := b.alloc(len(host), func() string { return fmt.Sprintf("a reduction of %d rows", rows) })
		run(t, rows, cols, buf.ptr)
		b.download(unsafe.Pointer(&host[0]), buf.ptr, len(host))
		b.releaseTemp(buf)
	})
	return host, rows, cols
}

func (b *Backend) ArgmaxRows(x compute.Tensor) []int {
	host, rows, _ := b.rowResult(x, 1, func(t *Tensor, rows, cols int, out uintptr) {
		b.launch("argmax_rows", [3]int{rows, 1, 1}, block256, 0, pArg(t.ptr()), pArg(out), iArg(cols))
	})
	v := unsafe.Slice((*int32)(unsafe.Pointer(unsafe.SliceData(host))), rows)
	out := make([]int, rows)
	for i, x := range v {
		out[i] = int(x)
	}
	return out
}

func (b *Backend) TopKRows(x compute.Tensor, k int) ([]int32, []float32) {
	var idx []int32
	var val []float32
	b.do(func() {
		t := b.get(x)
		mustF32("TopKRows", t)
		rows, cols := rowsCols(t)
		k = min(k, cols)
		idx, val = make([]int32, rows*k), make([]float32, rows*k)
		if rows*k == 0 {
			return
		}
		ib := b.alloc(4*rows*k, func() string { return "top-k indices" })
		vb := b.alloc(4*rows*k, func() string { return "top-k values" })
		b.launch("topk_rows", [3]int{rows, 1, 1}, block256, 0, pArg(t.ptr()), pArg(ib.ptr), pArg(vb.ptr), iArg(cols), iArg(k))
		b.download(unsafe.Pointer(&idx[0]), ib.ptr, 4*rows*k)
		b.download(unsafe.Pointer(&val[0]), vb.ptr, 4*rows*k)
		b.releaseTemp(ib)
		b.releaseTemp(vb)
	})
	return idx, val
}

func floats(host []byte, n int) []float32 {
	out := make([]float32, n)
	if n > 0 {
		copy(out, unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(host))), n))
	}
	return out
}

func (b *Backend) SpanMassRows(x compute.Tensor, lo, hi int) []float32 {
	host, rows, _ := b.rowResult(x, 1, func(t *Tensor, rows, cols int, out uintptr) {
		h := min(hi, cols)
		l := min(lo, h)
		b.launch("span_mass_rows", [3]int{rows, 1, 1}, block256, 0, pArg(t.ptr()), pArg(out), iArg(cols), iArg(l), iArg(h))
	})
	return floats(host, rows)
}

func (b *Backend) EntropyRows(x compute.Tensor) []float32 {
	host, rows, _ := b.rowResult(x, 1, func(t *Tensor, rows, cols int, out uintptr) {
		b.launch("entropy_rows", [3]int{rows, 1, 1}, block256, 0, pArg(t.ptr()), pArg(out), iArg(cols))
	})
	return floats(host, rows)
}

var (
	_ compute.Backend      = (*Backend)(nil)
	_ compute.Scoped       = (*Backend)(nil)
	_ compute.WeightStore  = (*Backend)(nil)
	_ compute.DeviceMemory = (*Backend)(nil)
	_ compute.SeqRowCopier = (*Backend)(nil)
	_ compute.HostCopier   = (*Backend)(nil)
)

// Synchronize waits for every operation queued so far and returns the
// first failure since the last check.
func (b *Backend) Synchronize() error {
	var err error
	b.do(func() { err = b.takeErr() })
	return err
}
