package compute

import (
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/loupe-dev/loupe/probe/compute/internal/gemm"
	"github.com/loupe-dev/loupe/probe/compute/internal/vmath"
)

// CPU is the float32 backend that runs on the host. Matrix products go to
// package gemm (AVX-512/AVX2 micro-kernels, split across goroutines when
// large); the element-wise work is split across GOMAXPROCS goroutines by
// rows.
type CPU struct {
	workers int
	rope    *ropeCache
}

// NewCPU makes a CPU backend using GOMAXPROCS goroutines.
func NewCPU() *CPU { return &CPU{workers: runtime.GOMAXPROCS(0), rope: &ropeCache{}} }

// cpuTensor is a CPU tensor: a shape and its row-major data.
type cpuTensor struct {
	shape []int
	data  []float32
}

func (t *cpuTensor) Shape() []int { return t.shape }

// Data exposes a CPU tensor's storage without a copy, for code that knows it
// runs on the CPU (tests, benchmarks). It panics on any other tensor.
func Data(t Tensor) []float32 { return t.(*cpuTensor).data }

func newCPU(shape []int) *cpuTensor {
	return &cpuTensor{shape: append([]int(nil), shape...), data: make([]float32, Numel(shape))}
}

func ct(t Tensor) *cpuTensor { return t.(*cpuTensor) }

// rowsCols views a tensor as a matrix whose columns are its last dimension.
func rowsCols(t *cpuTensor) (int, int) {
	c := t.shape[len(t.shape)-1]
	if c == 0 {
		return 0, 0
	}
	return len(t.data) / c, c
}

func (c *CPU) Name() string { return "cpu" }

func (c *CPU) FromHost(data []float32, shape ...int) Tensor {
	if Numel(shape) != len(data) {
		panic(fmt.Sprintf("compute: FromHost: %d values for shape %v", len(data), shape))
	}
	t := newCPU(shape)
	copy(t.data, data)
	return t
}

func (c *CPU) Zeros(shape ...int) Tensor { return newCPU(shape) }

func (c *CPU) ToHost(t Tensor) []float32 { return append([]float32(nil), ct(t).data...) }

func (c *CPU) Reshape(t Tensor, shape ...int) Tensor {
	x := ct(t)
	if Numel(shape) != len(x.data) {
		panic(fmt.Sprintf("compute: Reshape %v to %v", x.shape, shape))
	}
	return &cpuTensor{shape: append([]int(nil), shape...), data: x.data}
}

func (c *CPU) Rows(t Tensor, lo, hi int) Tensor {
	x := ct(t)
	_, cols := rowsCols(x)
	out := newCPU([]int{hi - lo, cols})
	copy(out.data, x.data[lo*cols:hi*cols])
	return out
}

func (c *CPU) GatherRows(t Tensor, rows []int) Tensor {
	x := ct(t)
	_, cols := rowsCols(x)
	out := newCPU([]int{len(rows), cols})
	for i, r := range rows {
		copy(out.data[i*cols:(i+1)*cols], x.data[r*cols:(r+1)*cols])
	}
	return out
}

func (c *CPU) CopyRowsInPlace(dst, src Tensor, off int) {
	d, s := ct(dst), ct(src)
	_, cols := rowsCols(d)
	copy(d.data[off*cols:], s.data)
}

func (c *CPU) Columns(t Tensor, lo, hi int) Tensor {
	x := ct(t)
	rows, cols := rowsCols(x)
	w := hi - lo
	out := newCPU([]int{rows, w})
	for r := 0; r < rows; r++ {
		copy(out.data[r*w:(r+1)*w], x.data[r*cols+lo:r*cols+hi])
	}
	return out
}

func (c *CPU) FillColumnsInPlace(t Tensor, lo, hi int, vals []float32) {
	x := ct(t)
	rows, cols := rowsCols(x)
	for r := 0; r < rows; r++ {
		copy(x.data[r*cols+lo:r*cols+hi], vals)
	}
}

func (c *CPU) Linear(x, w, bias Tensor) Tensor {
	xt, wt := ct(x), ct(w)
	m, k := rowsCols(xt)
	n := wt.shape[0]
	if wt.shape[1] != k {
		panic(fmt.Sprintf("compute: Linear x %v · wᵀ %v", xt.shape, wt.shape))
	}
	out := newCPU([]int{m, n})
	if m > 0 {
		gemm.MulNT(m, n, k, 1, xt.data, k, wt.data, k, 0, out.data, n)
	}
	if bias != nil {
		c.AddInPlace(out, bias)
	}
	return out
}

func (c *CPU) Add(a, b Tensor) Tensor {
	at, bt := ct(a), ct(b)
	out := newCPU(at.shape)
	for i, v := range at.data {
		out.data[i] = v + bt.data[i]
	}
	return out
}

func (c *CPU) Mul(a, b Tensor) Tensor {
	at, bt := ct(a), ct(b)
	out := newCPU(at.shape)
	for i, v := range at.data {
		out.data[i] = v * bt.data[i]
	}
	return out
}

func (c *CPU) AddInPlace(a, b Tensor) {
	at, bt := ct(a), ct(b)
	if len(bt.data) == len(at.data) {
		for i, v := range bt.data {
			at.data[i] += v
		}
		return
	}
	rows, cols := rowsCols(at)
	if len(bt.data) != cols {
		panic(fmt.Sprintf("compute: AddInPlace %v += %v", at.shape, bt.shape))
	}
	for r := 0; r < rows; r++ {
		row := at.data[r*cols : (r+1)*cols]
		for i, v := range bt.data {
			row[i] += v
		}
	}
}

func (c *CPU) ScaleInPlace(a Tensor, s float32) {
	for i := range ct(a).data {
		ct(a).data[i] *= s
	}
}

// parallelRows runs f over [0, rows) split into contiguous chunks.
func (c *CPU) parallelRows(rows, costPerRow int, f func(lo, hi int)) {
	workers := c.workers
	if rows*costPerRow < 1<<15 || workers < 2 {
		f(0, rows)
		return
	}
	if workers > rows {
		workers = rows
	}
	var wg sync.WaitGroup
	chunk := (rows + workers - 1) / workers
	for lo := 0; lo < rows; lo += chunk {
		hi := min(lo+chunk, rows)
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(lo, hi)
		}()
	}
	wg.Wait()
}

func (c *CPU) RMSNorm(x, w Tensor, eps float32) Tensor {
	xt, wt := ct(x), ct(w)
	rows, cols := rowsCols(xt)
	out := newCPU(xt.shape)
	c.parallelRows(rows, cols, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			in := xt.data[r*cols : (r+1)*cols]
			var ss float64
			for _, v := range in {
				ss += float64(v) * float64(v)
			}
			inv := float32(1 / math.Sqrt(ss/float64(cols)+float64(eps)))
			o := out.data[r*cols : (r+1)*cols]
			for i, v := range in {
				o[i] = v * inv * wt.data[i]
			}
		}
	})
	return out
}

func (c *CPU) LayerNorm(x, w, b Tensor, eps float32) Tensor {
	xt, wt, bt := ct(x), ct(w), ct(b)
	rows, cols := rowsCols(xt)
	out := newCPU(xt.shape)
	c.parallelRows(rows, cols, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			in := xt.data[r*cols : (r+1)*cols]
			var mean float64
			for _, v := range in {
				mean += float64(v)
			}
			mean /= float64(cols)
			var vs float64
			for _, v := range in {
				d := float64(v) - mean
				vs += d * d
			}
			inv := 1 / math.Sqrt(vs/float64(cols)+float64(eps))
			o := out.data[r*cols : (r+1)*cols]
			for i, v := range in {
				o[i] = float32((float64(v)-mean)*inv)*wt.data[i] + bt.data[i]
			}
		}
	})
	return out
}

func (c *CPU) SwiGLU(gate, up Tensor) Tensor {
	g, u := ct(gate), ct(up)
	out := newCPU(g.shape)
	rows, cols := rowsCols(g)
	c.parallelRows(rows, cols*8, func(lo, hi int) {
		// e^(−g) by the vector loop, a row at a time, into out.
		for r := lo; r < hi; r++ {
			gr, ur, or := g.data[r*cols:(r+1)*cols], u.data[r*cols:(r+1)*cols], out.data[r*cols:(r+1)*cols]
			for i, v := range gr {
				or[i] = -v
			}
			vmath.ExpShiftSum(or, 0)
			for i, v := range gr {
				or[i] = v / (1 + or[i]) * ur[i]
			}
		}
	})
	return out
}

func (c *CPU) GELU(x Tensor, tanh bool) Tensor {
	xt := ct(x)
	out := newCPU(xt.shape)
	rows, cols := rowsCols(xt)
	c.parallelRows(rows, cols*8, func(lo, hi int) {
		for i := lo * cols; i < hi*cols; i++ {
			v := float64(xt.data[i])
			if tanh {
				out.data[i] = float32(0.5 * v * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(v+0.044715*v*v*v))))
			} else {
				out.data[i] = float32(0.5 * v * (1 + math.Erf(v/math.Sqrt2)))
			}
		}
	})
	return out
}

func (c *CPU) Embed(table Tensor, ids []int) Tensor { return c.GatherRows(table, ids) }

func (c *CPU) RotaryInPlace(x Tensor, heads, headDim, rotDim int, pos []int, invFreq []float32) {
	xt := ct(x)
	rows, cols := rowsCols(xt)
	half := rotDim / 2
	invFreq = invFreq[:half]
	maxPos := 0
	for _, p := range pos[:rows] {
		maxPos = max(maxPos, p)
	}
	tab := c.rope.table(invFreq, maxPos+1)
	c.parallelRows(rows, cols*4, func(lo, hi int) {
		cos := make([]float32, half)
		sin := make([]float32, half)
		for r := lo; r < hi; r++ {
			cr, sr := cos, sin
			if p := pos[r]; p >= 0 && p < tab.n {
				cr, sr = tab.cos[p*half:(p+1)*half], tab.sin[p*half:(p+1)*half]
			} else {
				ropeAngles(cos, sin, p, invFreq)
			}
			row := xt.data[r*cols : (r+1)*cols]
			for h := 0; h < heads; h++ {
				v := row[h*headDim : h*headDim+rotDim]
				for i := 0; i < half; i++ {
					x1, x2 := v[i], v[i+half]
					v[i] = x1*cr[i] - x2*sr[i]
					v[i+half] = x2*cr[i] + x1*sr[i]
				}
			}
		}
	})
}

// causalBlock is the query block size of the causal attention products.
const causalBlock = 64

func (c *CPU) AttentionScores(q, k Tensor, s AttnShape, scale float32, mask AttnMask) Tensor {
	qt, kt := ct(q), ct(k)
	out := newCPU([]int{s.B, s.H, s.Tq, s.Tk})
	group := s.H / s.Hkv
	qStride, kStride := s.H*s.Dh, s.Hkv*s.Dh
	negInf := float32(math.Inf(-1))
	c.parallelJobs(s.B*s.H, func(job int) {
		b, h := job/s.H, job%s.H
		kh := h / group
		dst := out.data[job*s.Tq*s.Tk : (job+1)*s.Tq*s.Tk]
		// Causal attention: query block [q0, q1) needs keys below Past+q1
		// only, which halves the work of a long prompt.
		for q0 := 0; q0 < s.Tq; q0 += causalBlock {
			q1 := min(q0+causalBlock, s.Tq)
			nk := s.Tk
			if mask.Causal {
				nk = min(s.Tk, mask.Past+q1)
			}
			gemm.MulNT(q1-q0, nk, s.Dh, scale,
				qt.data[(b*s.Tq+q0)*qStride+h*s.Dh:], qStride,
				kt.data[b*s.Tcap*kStride+kh*s.Dh:], kStride,
				0, dst[q0*s.Tk:], s.Tk)
		}
		for i := 0; i < s.Tq; i++ {
			row := dst[i*s.Tk : (i+1)*s.Tk]
			if mask.Causal {
				for j := mask.Past + i + 1; j < s.Tk; j++ {
					row[j] = negInf
				}
			}
			if mask.Window > 0 {
				// keys j <= p - Window fall out of the window
				for j := range min(s.Tk, max(0, mask.Past+i-mask.Window+1)) {
					row[j] = negInf
				}
			}
			if mask.KeyValid != nil {
				valid := mask.KeyValid[b*s.Tk : (b+1)*s.Tk]
				for j, ok := range valid {
					if !ok {
						row[j] = negInf
					}
				}
			}
		}
	})
	return out
}

// parallelJobs runs f(0..n-1) on the backend's workers. Each job may itself
// call gemm, which parallelises only large products.
func (c *CPU) parallelJobs(n int, f func(job int)) {
	workers := min(c.workers, n)
	if workers < 2 {
		for j := 0; j < n; j++ {
			f(j)
		}
		return
	}
	var wg sync.WaitGroup
	next := make(chan int, n)
	for j := 0; j < n; j++ {
		next <- j
	}
	close(next)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range next {
				f(j)
			}
		}()
	}
	wg.Wait()
}

func (c *CPU) SoftmaxRows(x Tensor) Tensor {
	xt := ct(x)
	out := newCPU(xt.shape)
	rows, cols := rowsCols(xt)
	c.parallelRows(rows, cols*4, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			in := xt.data[r*cols : (r+1)*cols]
			o := out.data[r*cols : (r+1)*cols]
			softmax(o, in)
		}
	})
	return out
}

var negInf32 = float32(math.Inf(-1))

// softmax writes softmax(in) to out; an all -Inf row gives zeros. Causal
// rows end in a run of -Inf (the keys after the query), which is cleared
// without the arithmetic.
func softmax(out, in []float32) {
	n := len(in)
	for n > 0 && in[n-1] == negInf32 {
		n--
	}
	clear(out[n:])
	in, out = in[:n], out[:n]
	m := negInf32
	for _, v := range in {
		if v > m {
			m = v
		}
	}
	if m == negInf32 {
		clear(out)
		return
	}
	var sum float64
	for i, v := range in {
		if v == negInf32 { // padding keys inside the row
			out[i] = 0
			continue
		}
		e := exp32(v - m)
		out[i] = e
		sum += float64(e)
	}
	inv := float32(1 / sum)
	for i := range out {
		out[i] *= inv
	}
}

func (c *CPU) AttentionMix(pattern, v Tensor, s AttnShape) Tensor {
	pt, vt := ct(pattern), ct(v)
	out := newCPU([]int{s.B * s.Tq, s.H * s.Dh})
	group := s.H / s.Hkv
	vStride, zStride := s.Hkv*s.Dh, s.H*s.Dh
	c.parallelJobs(s.B*s.H, func(job int) {
		b, h := job/s.H, job%s.H
		kh := h / group
		// Rows of a causal pattern are zero past the diagonal; the product
		// skips the zero tail of each block (found by a scan, so an edited
		// pattern that attends ahead is still mixed exactly).
		for q0 := 0; q0 < s.Tq; q0 += causalBlock {
			q1 := min(q0+causalBlock, s.Tq)
			nk := usedKeys(pt.data[job*s.Tq*s.Tk:], s.Tk, q0, q1)
			if nk == 0 {
				continue // z stays zero
			}
			gemm.MulNN(q1-q0, s.Dh, nk, 1,
				pt.data[job*s.Tq*s.Tk+q0*s.Tk:], s.Tk,
				vt.data[b*s.Tcap*vStride+kh*s.Dh:], vStride,
				0, out.data[(b*s.Tq+q0)*zStride+h*s.Dh:], zStride)
		}
	})
	return out
}

// usedKeys gives 1 + the last column holding a non-zero entry in rows
// [q0, q1) of a pattern with tk columns.
func usedKeys(p []float32, tk, q0, q1 int) int {
	n := 0
	for r := q0; r < q1; r++ {
		row := p[r*tk : (r+1)*tk]
		for j := tk - 1; j >= n; j-- {
			if row[j] != 0 {
				n = j + 1
				break
			}
		}
	}
	return n
}

func (c *CPU) ArgmaxRows(x Tensor) []int {
	xt := ct(x)
	rows, cols := rowsCols(xt)
	out := make([]int, rows)
	for r := range out {
		row := xt.data[r*cols : (r+1)*cols]
		best := 0
		for i, v := range row {
			if v > row[best] {
				best = i
			}
		}
		out[r] = best
	}
	return out
}

func (c *CPU) TopKRows(x Tensor, k int) ([]int32, []float32) {
	xt := ct(x)
	rows, cols := rowsCols(xt)
	k = min(k, cols)
	idx := make([]int32, rows*k)
	val := make([]float32, rows*k)
	c.parallelRows(rows, cols, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			topK(xt.data[r*cols:(r+1)*cols], idx[r*k:(r+1)*k], val[r*k:(r+1)*k])
		}
	})
	return idx, val
}

// topK fills idx/val with row's len(idx) largest entries, largest first;
// ties keep the lower index first.
func topK(row []float32, idx []int32, val []float32) {
	k := len(idx)
	n := 0
	for j, v := range row {
		if n == k && v <= val[k-1] {
			continue
		}
		p := min(n, k-1)
		for p > 0 && val[p-1] < v {
			if p < k {
				val[p], idx[p] = val[p-1], idx[p-1]
			}
			p--
		}
		val[p], idx[p] = v, int32(j)
		if n < k {
			n++
		}
	}
}

func (c *CPU) SpanMassRows(x Tensor, lo, hi int) []float32 {
	xt := ct(x)
	rows, cols := rowsCols(xt)
	out := make([]float32, rows)
	hi = min(hi, cols)
	for r := range out {
		var s float64
		for _, v := range xt.data[r*cols+lo : r*cols+hi] {
			s += float64(v)
		}
		out[r] = float32(s)
	}
	return out
}

func (c *CPU) EntropyRows(x Tensor) []float32 {
	xt := ct(x)
	rows, cols := rowsCols(xt)
	out := make([]float32, rows)
	for r := range out {
		var h float64
		for _, p := range xt.data[r*cols : (r+1)*cols] {
			if p > 0 {
				h -= float64(p) * math.Log(float64(p))
			}
		}
		out[r] = float32(h)
	}
	return out
}
