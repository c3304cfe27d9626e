package cuda

import (
	"fmt"

	"github.com/loupe-dev/loupe/probe/compute"
)

var flashNames = []string{"flash_attn_f32_d128", "flash_attn_f32_d256"}

const (
	faRows = 32 // query rows per block (flash.cu's FA_ROWS)
	faKeys = 32 // keys per tile (FA_KEYS)
	faMaxD = 256
)

// flashShared is the dynamic shared memory of flash_attn_f32 for a head
// dimension.
func flashShared(dh int) int { return 4 * (faRows*dh + 2*faKeys*(dh+1)) }

func (b *Backend) setupFlash() error {
	need := flashShared(faMaxD)
	if need > 48<<10 {
		if need > b.info.MaxSharedPerBlock {
			return fmt.Errorf("cuda: flash attention needs %d bytes of shared memory per block; GPU %d allows %d", need, b.info.Index, b.info.MaxSharedPerBlock)
		}
		for _, name := range flashNames {
			if err := b.d.check("cuFuncSetAttribute "+name, call(b.d.cuFuncSetAttribute, b.fn[name], funcAttrMaxDynamicShared, uintptr(need))); err != nil {
				return err
			}
		}
	}
	return nil
}

// maskWindow is the mask's sliding window (0: none).
func maskWindow(mask compute.AttnMask) int { return mask.Window }

// FlashAttention computes z = softmax(scale·q·kᵀ + mask)·v without the
// Tq×Tk scores (online softmax over key tiles), and each row's log-sum-exp
// [B, H, Tq] on the device when lse is asked. Head dimension up to 256.
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
	mustF32("FlashAttention", qt, kt, vt)
	if s.Dh > faMaxD {
		panic(fmt.Sprintf("cuda: flash attention takes head dimensions up to %d, got %d", faMaxD, s.Dh))
	}
	zt := b.newTensor(compute.F32, s.B*s.Tq, s.H*s.Dh)
	var lt *Tensor
	if withLSE {
		lt = b.newTensor(compute.F32, s.B, s.H, s.Tq)
	}
	if zt.numel() == 0 {
		return zt, lt
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
		fArg(scale), iArg(mask.Past), boolArg(mask.Causal), iArg(maskWindow(mask)), maskPtr(mk))
	if mk != nil {
		b.releaseTemp(mk)
	}
	return zt, lt
}
