package cuda

import (
	"fmt"
	"runtime"
	"unsafe"

	"github.com/loupe-dev/loupe/probe/compute"
)

// flash3.cu's warp-specialised builds (flash3ws): a producer warpgroup
// brings K and V by TMA through tensor maps made here, two consumer
// warpgroups take turns at the tensor cores. "ws" keeps two stages of K
// and of V, "ws3" three, both with P in registers for P·V; "wsp" two, with
// P through shared memory (P·V's operands both from shared memory).
const (
	flash3WS    = flash3Kernel + "_ws"
	flash3WS3   = flash3Kernel + "_ws3"
	f3WSShared  = 2*128*128*(1+2*2) + 1024 // Q, 2 K and 2 V stages, alignment (161 KB)
	f3WS3Shared = 2*128*128*(1+2*3) + 1024 // 3 + 3 stages (225 KB)
	flash3WSP   = flash3Kernel + "_wsp"
	f3WSPShared = 2*128*128*(1+2*2) + 4*64*128*2 + 1024 // 2 + 2 stages and two P tiles per consumer (225 KB)
)

// f3WSMinQueries is the fewest queries per sequence for which the
// default attention build is flash3ws (wsp) rather than wg2 (see
// flashVariant): wsp's kernel was faster than wg2's at every prefill
// length measured (2K-32K, runs 19-20; 1.18x-1.37x), while decoding with
// it ran slower (run 20 against run 13).
const f3WSMinQueries = 256

// isFlash3WS says whether a kernel is one of flash3ws's builds, which
// take tensor maps (launchFlash3WS) instead of K and V pointers.
func isFlash3WS(kernel string) bool {
	return kernel == flash3WS || kernel == flash3WS3 || kernel == flash3WSP
}

// flash3Kernels are flash3.cu's kernels and their dynamic shared memory.
func flash3Kernels() map[string]int {
	return map[string]int{flash3Kernel: f3Shared, flash3Kernel + "_s2": f3Shared2, "flash3_tiles": f3TilesShared,
		flash3WS: f3WSShared, flash3WS3: f3WS3Shared, flash3WSP: f3WSPShared}
}

// The cuTensorMapEncodeTiled arguments flash3ws's maps use (cuda.h's
// enums CUtensorMapDataType, ...Swizzle, ...L2promotion, ...FloatOOBfill).
const (
	tmaBF16       = 9 // CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
	tmaSwizzle128 = 3 // CU_TENSOR_MAP_SWIZZLE_128B
	tmaL2Promo256 = 3 // CU_TENSOR_MAP_L2_PROMOTION_L2_256B
	tmaOOBZero    = 0 // CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE: out-of-bounds elements read as zeros
)

// tmaMap is a CUtensorMap: 128 opaque bytes that the driver wants 64-byte
// aligned. The Go heap does not move objects, so an aligned window into
// a larger array stays aligned.
type tmaMap struct {
	raw [24]uint64
}

func (m *tmaMap) ptr() unsafe.Pointer {
	p := unsafe.Pointer(&m.raw[0])
	return unsafe.Add(p, (64-uintptr(p)%64)%64)
}

// kvTensorMap encodes the map of a bf16 K or V [B, Tcap, Hkv, 128] for
// flash3ws: dimensions (innermost first) d, head, position, batch, with
// the position's extent Tk (so that rows from Tk on, a KV cache's spare
// capacity among them, read as zeros), and a box of one 64-d × 128-key
// panel in the 128-byte swizzle.
func (b *Backend) kvTensorMap(ptr uintptr, s compute.AttnShape) (*tmaMap, error) {
	m := new(tmaMap)
	dims := [4]uint64{128, uint64(s.Hkv), uint64(s.Tk), uint64(s.B)}
	strides := [3]uint64{2 * 128, uint64(2 * 128 * s.Hkv), uint64(2 * 128 * s.Hkv * s.Tcap)}
	box := [4]uint32{64, 1, 128, 1}
	estr := [4]uint32{1, 1, 1, 1}
	r := call(b.d.cuTensorMapEncodeTiled, uintptr(m.ptr()), tmaBF16, 4, ptr,
		uintptr(unsafe.Pointer(&dims[0])), uintptr(unsafe.Pointer(&strides[0])),
		uintptr(unsafe.Pointer(&box[0])), uintptr(unsafe.Pointer(&estr[0])),
		0, tmaSwizzle128, tmaL2Promo256, tmaOOBZero)
	if err := b.d.check(fmt.Sprintf("cuTensorMapEncodeTiled (K/V [%d %d %d 128] bf16)", s.B, s.Tcap, s.Hkv), r); err != nil {
		return nil, err
	}
	return m, nil
}

// launchFlash3WS queues a flash3ws build: its first two parameters are
// the K and V tensor maps, passed by value (128 bytes each), then q, z,
// z's bf16 copy, lse and the shape and mask arguments.
func (b *Backend) launchFlash3WS(kernel string, grid [3]int, shmem int, q16, k16, v16 *Tensor, zp, zh, lp uint64,
	s compute.AttnShape, scale float32, mask compute.AttnMask, mk *buffer) {
	if b.err != nil {
		return
	}
	if b.d.cuTensorMapEncodeTiled == 0 {
		b.fail(fmt.Errorf("cuda: %s needs cuTensorMapEncodeTiled, which %s lacks", kernel, b.d.path))
		return
	}
	km, err := b.kvTensorMap(k16.ptr(), s)
	if err != nil {
		b.fail(err)
		return
	}
	vm, err := b.kvTensorMap(v16.ptr(), s)
	if err != nil {
		b.fail(err)
		return
	}
	args := []uint64{pArg(q16.ptr()), zp, zh, lp, iArg(s.Tq), iArg(s.Tk), iArg(s.H), iArg(s.Hkv),
		fArg(scale), iArg(mask.Past), boolArg(mask.Causal), iArg(mask.Window), maskPtr(mk)}
	// The values go into the backend's own argument block, as b.launch's
	// do: args may sit on the goroutine's stack, which can move (grow)
	// before the driver reads through the addresses stored in params.
	copy(b.argv[:], args)
	params := make([]uintptr, 2+len(args))
	params[0], params[1] = uintptr(km.ptr()), uintptr(vm.ptr())
	copy(params[2:], b.argp[:len(args)])
	if b.prof != nil {
		defer b.prof.span(b, kernel)()
	}
	r := call(b.d.cuLaunchKernel, b.fn[kernel], uintptr(grid[0]), uintptr(grid[1]), uintptr(grid[2]),
		384, 1, 1, uintptr(shmem), b.stream, uintptr(unsafe.Pointer(&params[0])), 0)
	// The launch copies the parameters; until it returns they must live.
	runtime.KeepAlive(km)
	runtime.KeepAlive(vm)
	b.fail(b.d.check("launch "+kernel, r))
}
