package cuda

import (
	"fmt"
	"strings"

	"github.com/loupe-dev/loupe/probe/compute"
)

// flashBuilds are the builds of the tensor-core attention (see
// flashVariant): flash.cu's flash2 _2 and _w4, and "wg", "wg2", "ws",
// "ws3" and "wsp", flash3.cu's wgmma kernels (Hopper, head dimension
// 128; flash2 elsewhere).
var flashBuilds = []string{"2", "w4", "wg", "wg2", "ws", "ws3", "wsp"}

// flash3Kernel is flash3.cu's kernel, and f3Shared its dynamic shared
// memory: the Q tile, three stages of K tiles and three of V tiles, each
// 128 rows × 128 bf16, plus 1024 bytes to align the swizzled tiles (225
// KB, a Hopper block's limit): build "wg", loading two tiles ahead.
// f3Shared2 is build "wg2" (flash3's _s2), one tile ahead with two K
// stages (193 KB), the default: as fast or faster (RESULTS.md, run 12).
const (
	flash3Kernel  = "flash3_bf16_d128"
	f3Shared      = 2*128*128*(1+3+3) + 1024
	f3Shared2     = 2*128*128*(1+2+3) + 1024
	f3TilesShared = 2*128*128*3 + 1024 // flash3_tiles: one Q, K and V tile
)

// flashNames are flash.cu's kernels.
var flashNames = func() []string {
	names := []string{"flash_attn_f32_d128", "flash_attn_f32_d256"}
	for _, k := range []string{"flash2", "flash2top"} {
		for _, d := range []int{64, 128} {
			for _, b := range flashBuilds[:2] { // flash2's builds ("wg", "wg2" are flash3)
				names = append(names, fmt.Sprintf("%s_bf16_d%d_%s", k, d, b))
			}
		}
	}
	return names
}()

const (
	faRows = 32 // query rows per block (flash.cu's FA_ROWS)
	faKeys = 32 // keys per tile (FA_KEYS)
	faMaxD = 256
)

// flashShared is the dynamic shared memory of flash_attn_f32 for a head
// dimension.
func flashShared(dh int) int { return 4 * (faRows*dh + 2*faKeys*(dh+1)) }

// f2Rows and f2Keys are flash2's query rows per block and keys per tile
// (flash.cu's F2_ROWS, F2_KEYS).
const (
	f2Rows = 128
	f2Keys = 64
)

// tcShared is the dynamic shared memory of flash2_bf16_d<dh>: the Q tile
// and two stages of K and V tiles, rows of dh+8 bf16 elements.
func tcShared(dh int) int { return 2 * (dh + 8) * (f2Rows + 4*f2Keys) }

func (b *Backend) setupFlash() error {
	need := map[string]int{"flash_attn_f32_d128": flashShared(128), "flash_attn_f32_d256": flashShared(256)}
	for _, name := range flashNames {
		if strings.HasPrefix(name, "flash2") {
			need[name] = tcShared(64)
			if strings.Contains(name, "_d128_") {
				need[name] = tcShared(128)
			}
		}
	}
	for name, n := range need {
		if n <= 48<<10 {
			continue
		}
		if n > b.info.MaxSharedPerBlock {
			return fmt.Errorf("cuda: %s needs %d bytes of shared memory per block; GPU %d allows %d", name, n, b.info.Index, b.info.MaxSharedPerBlock)
		}
		if err := b.d.check("cuFuncSetAttribute "+name, call(b.d.cuFuncSetAttribute, b.fn[name], funcAttrMaxDynamicShared, uintptr(n))); err != nil {
			return err
		}
	}
	return nil
}

// tensorCores says whether attention's products may run in bf16 on the
// tensor cores: in the bf16/f16 weight modes, for head dimensions 64 and
// 128 (and query heads in whole groups per key/value head, at most one
// block's rows of them). The fp32 mode never rounds.
func (b *Backend) tensorCores(s compute.AttnShape) bool {
	return b.opt.WeightDType != compute.F32 && (s.Dh == 64 || s.Dh == 128) &&
		s.Hkv > 0 && s.H%s.Hkv == 0 && s.H/s.Hkv <= f2Rows
}

// flashVariant is the tensor-core attention kernel for a head dimension
// dh, tq queries and tk keys per sequence, with its threads per block and
// dynamic shared memory: flash3 (Hopper, head dimension 128 only) as
// "wg2" or "wg" (two warpgroups on wgmma in step, loading one or two
// tiles ahead) or as flash3ws's warp-specialised "wsp", "ws" or "ws3" (a
// TMA producer warpgroup and two consumer warpgroups in turn; P through
// shared memory in wsp, in registers in the other two), else flash2 _2
// (8 warps of 16 rows, two blocks per multiprocessor, 128 registers) or
// _w4 (4 warps of 32 rows, two blocks). LOUPE_FLASH_OCC=2|w4|wg|wg2|ws|
// ws3|wsp overrides the default, for measurements. top asks for the
// build with the top-1 reduction, which flash3 does not have.
func (b *Backend) flashVariant(dh, tq, tk int, top bool) (string, int, int) {
	occ := b.flashOcc
	if occ == "" {
		// The fastest measured (RESULTS.md, runs 19-20): flash3ws with P
		// through shared memory where it runs (537-553 TFLOP/s at
		// 8K-32K against 391-426 for wg2, the fallback where the driver
		// has no tensor maps), else _w4 for d128 (310 at 32K against 266
		// for _2), _2 for d64. Short query blocks (decoding, tq below
		// f3WSMinQueries) keep wg2: with wsp a decoding step was about
		// 0.9 ms slower at batch 1 and 32 alike (run 20 against run 13),
		// a fixed cost per call (two tensor maps encoded on the host, the
		// producer's start) that a few keys per block do not repay.
		occ = "wsp"
		if tq < f3WSMinQueries {
			occ = "wg2"
		}
		if dh == 64 {
			occ = "2"
		}
	}
	f3 := occ == "wg" || occ == "wg2" || occ == "ws" || occ == "ws3" || occ == "wsp"
	if f3 && (dh != 128 || top || b.fn[flash3Kernel] == 0) {
		occ = "w4"
		if dh == 64 {
			occ = "2"
		}
	}
	if (occ == "ws" || occ == "ws3" || occ == "wsp") && (b.d.cuTensorMapEncodeTiled == 0 || tk == 0) {
		occ = "wg2" // no tensor maps from this driver (or no keys to map)
	}
	switch occ {
	case "wg":
		return flash3Kernel, 256, f3Shared
	case "wg2":
		return flash3Kernel + "_s2", 256, f3Shared2
	case "ws":
		return flash3WS, 384, f3WSShared
	case "ws3":
		return flash3WS3, 384, f3WS3Shared
	case "wsp":
		return flash3WSP, 384, f3WSPShared
	}
	threads := 256
	if occ == "w4" {
		threads = 128
	}
	name := "flash2"
	if top {
		name = "flash2top"
	}
	return fmt.Sprintf("%s_bf16_d%d_%s", name, dh, occ), threads, tcShared(dh)
}

// flashTCInto is the tensor-core flash attention (flash.cu's flash2) into
// z and z's bf16 shadow (the output projection's input). q, k and v are
// read in bf16: their shadows (shadow.go), made here unless they exist; a
// KV cache keeps its shadow across passes, so only appended rows are
// rounded again.
func (b *Backend) flashTCInto(zt, qt, kt, vt *Tensor, s compute.AttnShape, scale float32, mask compute.AttnMask) {
	b.flashTC(zt, nil, nil, qt, kt, vt, s, scale, mask)
}

// flashTC is flashTCInto that also writes, when lse is not nil, each
// row's log-sum-exp and, when top is not nil, each row's most attended key
// (top[0], int32) and its weight (top[1]), all [B, H, Tq], from the same
// pass.
func (b *Backend) flashTC(zt, lse *Tensor, top *[2]*buffer, qt, kt, vt *Tensor, s compute.AttnShape, scale float32, mask compute.AttnMask) {
	mustF32("FlashAttention", qt, kt, vt)
	if zt.numel() == 0 || b.err != nil {
		return
	}
	q16 := b.rounded(qt, compute.BF16)
	k16 := b.rounded(kt, compute.BF16)
	v16 := b.rounded(vt, compute.BF16)
	mk := b.uploadMask(mask.KeyValid)
	perBlock := f2Rows / (s.H / s.Hkv) // query positions per block
	grid := [3]int{s.B * s.Hkv, (s.Tq + perBlock - 1) / perBlock, 1}
	var lp uint64
	if lse != nil {
		lp = pArg(lse.ptr())
	}
	tail := []uint64{iArg(s.Tq), iArg(s.Tk), iArg(s.Tcap), iArg(s.H), iArg(s.Hkv),
		fArg(scale), iArg(mask.Past), boolArg(mask.Causal), iArg(mask.Window), maskPtr(mk)}
	zp, zh := pArg(zt.ptr()), b.shadowPtr(zt)
	if top != nil {
		if plain, threads, shmem := b.flashVariant(s.Dh, s.Tq, s.Tk, false); strings.HasPrefix(plain, "flash3") {
			// z must not depend on what the hooks ask (fused.go): it comes
			// from flash3, as in a pass without reductions, and flash2top's
			// own z goes to scratch.
			if isFlash3WS(plain) {
				b.launchFlash3WS(plain, grid, shmem, q16, k16, v16, zp, zh, 0, s, scale, mask, mk)
			} else {
				args := append([]uint64{pArg(q16.ptr()), pArg(k16.ptr()), pArg(v16.ptr()), zp, zh, 0}, tail...)
				b.launch(plain, grid, [3]int{threads, 1, 1}, shmem, args...)
			}
			scratch := b.newTensor(compute.F32, s.B*s.Tq, s.H*s.Dh)
			defer b.releaseTemp(scratch.buf)
			zp, zh = pArg(scratch.ptr()), 0
		}
	}
	args := []uint64{pArg(q16.ptr()), pArg(k16.ptr()), pArg(v16.ptr()), zp, zh, lp}
	kernel, threads, shmem := b.flashVariant(s.Dh, s.Tq, s.Tk, top != nil)
	if top != nil {
		args = append(args, pArg(top[0].ptr), pArg(top[1].ptr))
	}
	args = append(args, tail...)
	if isFlash3WS(kernel) { // tensor maps for K and V
		b.launchFlash3WS(kernel, grid, shmem, q16, k16, v16, zp, zh, lp, s, scale, mask, mk)
	} else {
		b.launch(kernel, grid, [3]int{threads, 1, 1}, shmem, args...)
	}
	if mk != nil {
		b.releaseTemp(mk)
	}
}

// FlashAttention computes z = softmax(scale·q·kᵀ + mask)·v without the
// Tq×Tk scores (online softmax over key tiles, fp32), and each row's
// log-sum-exp [B, H, Tq] on the device when lse is asked. Head dimension up
// to 256.
func (b *Backend) FlashAttention(q, k, v compute.Tensor, s compute.AttnShape, scale float32, mask compute.AttnMask, withLSE bool) (z, lse compute.Tensor) {
	var zt, lt *Tensor
	b.do(func() {
		zt, lt = b.flash(b.get(q), b.get(k), b.get(v), s, scale, mask, withLSE)
	})
	if lt == nil {
		return zt, nil
	}
	return zt, lt
}

func (b *Backend) flash(qt, kt, vt *Tensor, s compute.AttnShape, scale float32, mask compute.AttnMask, withLSE bool) (*Tensor, *Tensor) {
	zt := b.newTensor(compute.F32, s.B*s.Tq, s.H*s.Dh)
	var lt *Tensor
	if withLSE {
		lt = b.newTensor(compute.F32, s.B, s.H, s.Tq)
	}
	b.flashInto(zt, lt, qt, kt, vt, s, scale, mask)
	return zt, lt
}

// flashInto runs the fp32 flash kernel into z [B*Tq, H*Dh] and, when lt is
// not nil, the rows' log-sum-exp [B, H, Tq].
func (b *Backend) flashInto(zt, lt, qt, kt, vt *Tensor, s compute.AttnShape, scale float32, mask compute.AttnMask) {
	mustF32("FlashAttention", qt, kt, vt)
	if s.Dh > faMaxD {
		panic(fmt.Sprintf("cuda: flash attention takes head dimensions up to %d, got %d", faMaxD, s.Dh))
	}
	if zt.numel() == 0 || b.err != nil {
		return
	}
	mk := b.uploadMask(mask.KeyValid)
	var lp uint64
	if lt != nil {
		lp = pArg(lt.ptr())
	}
	grid := [3]int{(s.Tq + faRows - 1) / faRows, s.H, s.B}
	kernel := "flash_attn_f32_d128"
	if s.Dh > 128 {
		kernel = "flash_attn_f32_d256"
	}
	b.launch(kernel, grid, [3]int{128, 1, 1}, flashShared(s.Dh),
		pArg(qt.ptr()), pArg(kt.ptr()), pArg(vt.ptr()), pArg(zt.ptr()), lp,
		iArg(s.B), iArg(s.Tq), iArg(s.Tk), iArg(s.Tcap), iArg(s.H), iArg(s.Hkv), iArg(s.Dh),
		fArg(scale), iArg(mask.Past), boolArg(mask.Causal), iArg(mask.Window), maskPtr(mk))
	if mk != nil {
		b.releaseTemp(mk)
	}
}
