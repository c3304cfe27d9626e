package cuda

import (
	"fmt"
	"sort"
	"unsafe"
)

// A profile of the GPU time each kernel (and each cuBLAS product shape)
// takes, measured with CUDA events around every launch on the stream.
// The events serialise nothing but cost a little host time per launch, so
// a profile is for finding where a pass spends its time, not for the
// speed figures themselves.

// KernelTime is one line of a profile: a kernel (or a GEMM shape), how
// often it ran and its GPU milliseconds in total.
type KernelTime struct {
	Name  string
	Calls int
	MS    float64
}

type profiler struct {
	free  []uintptr // events to reuse
	spans []profSpan
}

type profSpan struct {
	name       string
	start, end uintptr
}

// event gives a CUDA event (timing enabled).
func (p *profiler) event(b *Backend) uintptr {
	if n := len(p.free); n > 0 {
		e := p.free[n-1]
		p.free = p.free[:n-1]
		return e
	}
	var e uintptr
	b.fail(b.d.check("cuEventCreate", call(b.d.cuEventCreate, uintptr(unsafe.Pointer(&e)), 0)))
	return e
}

// span records an event now and returns the function that records the
// closing one after the launch.
func (p *profiler) span(b *Backend, name string) func() {
	start := p.event(b)
	b.fail(b.d.check("cuEventRecord", call(b.d.cuEventRecord, start, b.stream)))
	return func() {
		end := p.event(b)
		b.fail(b.d.check("cuEventRecord", call(b.d.cuEventRecord, end, b.stream)))
		p.spans = append(p.spans, profSpan{name, start, end})
	}
}

// ProfileStart begins recording every kernel's GPU time (replacing a
// profile in progress).
func (b *Backend) ProfileStart() {
	b.do(func() {
		if b.prof == nil {
			b.prof = &profiler{}
		}
		b.prof.spans = b.prof.spans[:0]
	})
}

// ProfileStop waits for the GPU and returns the recorded time per kernel
// name, the largest first; recording stops.
func (b *Backend) ProfileStop() ([]KernelTime, error) {
	var out []KernelTime
	var err error
	b.do(func() {
		p := b.prof
		b.prof = nil
		if p == nil {
			return
		}
		if err = b.d.check("cuStreamSynchronize", call(b.d.cuStreamSynchronize, b.stream)); err != nil {
			return
		}
		at := map[string]int{}
		for _, s := range p.spans {
			var ms float32
			if r := call(b.d.cuEventTime, uintptr(unsafe.Pointer(&ms)), s.start, s.end); r != 0 {
				err = fmt.Errorf("cuda: cuEventElapsedTime for %s: %s", s.name, b.d.errName(r))
				return
			}
			i, ok := at[s.name]
			if !ok {
				i = len(out)
				at[s.name] = i
				out = append(out, KernelTime{Name: s.name})
			}
			out[i].Calls++
			out[i].MS += float64(ms)
		}
		for _, s := range p.spans {
			call(b.d.cuEventDestroy, s.start)
			call(b.d.cuEventDestroy, s.end)
		}
		for _, e := range p.free {
			call(b.d.cuEventDestroy, e)
		}
	})
	sort.Slice(out, func(i, j int) bool { return out[i].MS > out[j].MS })
	return out, err
}
