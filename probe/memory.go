package probe

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/loupe-dev/loupe/probe/compute"
)

// A pass that cannot fit is refused before it allocates, with the figures
// and the longest prompt that would fit: Go has no recoverable
// out-of-memory, so an estimate up front is the only clear error there is.

// passMemory estimates the bytes one forward pass allocates on the
// backend and the host for B sequences of T new positions after past
// cached ones: the KV cache (kv > 0: its capacity in positions), one
// layer's activations (of chunk positions when chunked), every full
// attention score or pattern that the hooks make a layer build, the
// activations the hooks cache, and the logits of mode. It leaves out the
// weights, which are already loaded. The figures are the CPU backend's
// (host memory).
func (m *Model) passMemory(hs *hookSet, mode LogitMode, B, T, past, kv, chunk int) uint64 {
	c := m.Config
	const f = 4 // bytes per float32
	var total uint64
	if kv > 0 {
		total += uint64(c.Layers) * uint64(B) * uint64(kv) * uint64(2*c.KVHeads*c.HeadDim) * f
	}
	n := T // positions in flight
	if chunk > 0 && chunk < T {
		n = chunk
	}
	perPos := uint64(4*c.DModel + 2*c.Heads*c.HeadDim + 2*c.KVHeads*c.HeadDim + 3*c.DMLP)
	total += uint64(B) * uint64(n) * perPos * f
	// The CPU's fused attention packs one layer's keys and values (every
	// cached position) for its micro-kernel, each head's width rounded up
	// to the kernel's tile (at most 12 more floats).
	total += uint64(B) * uint64(past+T) * uint64(2*c.KVHeads*(c.HeadDim+12)) * f
	switch mode {
	case LogitsAll:
		total += 2 * uint64(B) * uint64(T) * uint64(c.Vocab) * f // the device's and the host's
	case LogitsLast:
		total += 2 * uint64(B) * uint64(c.Vocab) * f
	}
	if hs == nil {
		return total
	}
	Tk := uint64(past + T)
	attn := uint64(B) * uint64(c.Heads) * uint64(n) * Tk * f // one [B, H, Tq, Tk] tensor
	built := false
	for l := 0; l < c.Layers; l++ {
		scores, pattern := hookName(l, "attn.hook_attn_scores"), hookName(l, "attn.hook_pattern")
		if hs.edits(scores) || hs.edits(pattern) || hs.reduces(scores) {
			built = true // scores and pattern of one layer at a time
		}
		for _, name := range []string{scores, pattern} {
			if hs.caches(name) {
				total += 2 * attn // kept, plus the layer's own copy while it runs
			}
		}
	}
	if built {
		// Scores, pattern and the host copy a reduction reads, for one
		// layer at a time; times two, as the collector lets the heap grow to
		// twice what is live before it collects the last layer's (seen: a
		// SmolLM2 pass over 8192 tokens passed 12.8 GB on these figures).
		total += 2 * 3 * attn
	}
	for _, name := range m.HookNames() {
		if !hs.caches(name) || strings.HasSuffix(name, "hook_attn_scores") || strings.HasSuffix(name, "hook_pattern") {
			continue
		}
		total += uint64(B) * uint64(T) * m.hookWidth(name) * f
	}
	return total
}

// hookWidth is the number of floats per position of an activation.
func (m *Model) hookWidth(name string) uint64 {
	c := m.Config
	switch {
	case name == "logits":
		return uint64(c.Vocab)
	case strings.HasSuffix(name, "hook_q"), strings.HasSuffix(name, "hook_rot_q"), strings.HasSuffix(name, "hook_z"):
		return uint64(c.Heads * c.HeadDim)
	case strings.HasSuffix(name, "hook_k"), strings.HasSuffix(name, "hook_rot_k"), strings.HasSuffix(name, "hook_v"):
		return uint64(c.KVHeads * c.HeadDim)
	case strings.HasSuffix(name, "hook_result"):
		return uint64(c.Heads * c.DModel)
	case strings.Contains(name, "mlp.hook_pre"), strings.HasSuffix(name, "mlp.hook_post"):
		return uint64(c.DMLP)
	}
	return uint64(c.DModel)
}

// checkMemory refuses a pass whose estimate exceeds limit (0: what the
// backend's device can still allocate, for a GPU; else the host's
// available memory; no check where that is unknown), saying how long a
// prompt would fit.
func (m *Model) checkMemory(hs *hookSet, mode LogitMode, limit uint64, B, T, past, kv, chunk int) error {
	if limit == 0 {
		if free, ok := compute.FreeBytes(m.backend); ok {
			limit = free // the pass's tensors live there, not in the host's memory
		} else {
			limit = availableMemory()
		}
		if limit == 0 {
			return nil
		}
	}
	need := m.passMemory(hs, mode, B, T, past, kv, chunk)
	if need <= limit {
		return nil
	}
	grow := kv - (past + T) // the KV cache's room beyond the prompt
	fits := func(t int) bool {
		k := 0
		if kv > 0 {
			k = past + t + grow
		}
		return m.passMemory(hs, mode, B, t, past, k, chunk) <= limit
	}
	lo, hi := 0, T // the longest fitting prompt, by bisection
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if fits(mid) {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	msg := fmt.Sprintf("a pass over %d sequence(s) of %d tokens needs about %s, more than the %s available", B, T, gib(need), gib(limit))
	if lo > 0 {
		msg += fmt.Sprintf("; with these hooks a prompt of up to %d tokens would fit", lo)
	} else {
		msg += "; not even one token fits with these hooks"
	}
	if hs != nil {
		msg += " (caching or editing attention scores or patterns costs batch×heads×T² floats a layer; reductions do not)"
	}
	return fmt.Errorf("%s", msg)
}

func gib(b uint64) string { return strconv.FormatFloat(float64(b)/(1<<30), 'f', 2, 64) + " GiB" }

// availableMemory reads MemAvailable from /proc/meminfo (Linux); 0 when
// unknown.
func availableMemory() uint64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemAvailable:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}
