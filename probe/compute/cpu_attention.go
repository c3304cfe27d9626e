package compute

import (
	"fmt"
	"math"
	"sync"

	"github.com/loupe-dev/loupe/probe/compute/internal/gemm"
)

// Block sizes of the CPU's fused attention: a job is one (sequence, head,
// block of flashQBlock queries); it walks the keys in blocks of flashKBlock,
// so its scratch is flashQBlock×flashKBlock scores plus flashQBlock×Dh
// accumulators, whatever the context length.
const (
	flashQBlock = 64
	flashKBlock = 256
)

// Attention is the fused attention operation; attention.go states its
// contract. With neither scores nor pattern asked it runs flash-style:
// per query block an online softmax over key blocks (running max m, running
// sum l, z accumulated and rescaled as m grows), then lse = m + log l; the
// reductions are a second pass over the key blocks of the asked rows that
// recomputes the scores and weighs them by exp(s − lse).
func (c *CPU) Attention(q, k, v Tensor, s AttnShape, scale float32, mask AttnMask, spec AttnSpec) AttnResult {
	checkAttnSpec(s, spec)
	qt, kt, vt := ct(q), ct(k), ct(v)
	z := newCPU([]int{s.B * s.Tq, s.H * s.Dh})
	lse := make([]float32, s.B*s.H*s.Tq)
	// z always comes from the flash path, so that caching a pattern never
	// changes a run's numbers.
	c.flashForward(qt.data, kt.data, vt.data, s, scale, mask, z.data, lse)
	if spec.Scores || spec.Pattern {
		res := c.attentionMaterialised(q, k, s, scale, mask, spec)
		res.Z = z
		return res
	}
	res := AttnResult{Z: z}
	if spec.LSE {
		res.LSE = lse
	}
	if spec.Reductions() {
		c.reduceFused(qt.data, kt.data, s, scale, mask, spec, lse, &res)
	}
	return res
}

func checkAttnSpec(s AttnShape, spec AttnSpec) {
	for i, r := range spec.Rows {
		if r < 0 || r >= s.Tq || (i > 0 && r <= spec.Rows[i-1]) {
			panic(fmt.Sprintf("compute: Attention: rows %v are not ascending in [0, %d)", spec.Rows, s.Tq))
		}
	}
	R := s.Tq
	if spec.Rows != nil {
		R = len(spec.Rows)
	}
	for i, ks := range spec.KeySets {
		if len(ks.Off) != s.B*R+1 || ks.Off[0] != 0 || int(ks.Off[s.B*R]) > len(ks.Keys) {
			panic(fmt.Sprintf("compute: Attention: key set %d has %d offsets for %d sequences × %d rows", i, len(ks.Off), s.B, R))
		}
	}
}

// flashScratch is one worker's buffers for a query block.
type flashScratch struct {
	s    []float32 // scores, then weights, of a query block × key block
	o    []float32 // the block's z accumulators
	m, l []float64 // running max and running sum of each row
}

var flashPool sync.Pool

func getFlashScratch(dh int) *flashScratch {
	fs, _ := flashPool.Get().(*flashScratch)
	if fs == nil {
		fs = &flashScratch{}
	}
	fs.s = grow32(fs.s, flashQBlock*flashKBlock)
	fs.o = grow32(fs.o, flashQBlock*dh)
	if len(fs.m) < flashQBlock {
		fs.m, fs.l = make([]float64, flashQBlock), make([]float64, flashQBlock)
	}
	return fs
}

func grow32(b []float32, n int) []float32 {
	if cap(b) < n {
		return make([]float32, n)
	}
	return b[:n]
}

// flashJobs lists the (sequence, head, query block) jobs, the blocks with
// the most keys first so that the workers finish together.
func flashJobs(s AttnShape) [][3]int {
	var jobs [][3]int
	nb := (s.Tq + flashQBlock - 1) / flashQBlock
	for qb := nb - 1; qb >= 0; qb-- {
		for b := 0; b < s.B; b++ {
			for h := 0; h < s.H; h++ {
				jobs = append(jobs, [3]int{b, h, qb})
			}
		}
	}
	return jobs
}

func (c *CPU) flashForward(q, k, v []float32, s AttnShape, scale float32, mask AttnMask, z, lse []float32) {
	jobs := flashJobs(s)
	group := s.H / s.Hkv
	qStride, kvStride := s.H*s.Dh, s.Hkv*s.Dh
	c.parallelJobs(len(jobs), func(job int) {
		b, h, qb := jobs[job][0], jobs[job][1], jobs[job][2]
		kh := h / group
		q0 := qb * flashQBlock
		q1 := min(q0+flashQBlock, s.Tq)
		nq := q1 - q0
		fs := getFlashScratch(s.Dh)
		defer flashPool.Put(fs)
		o := fs.o[:nq*s.Dh]
		clear(o)
		for r := 0; r < nq; r++ {
			fs.m[r], fs.l[r] = math.Inf(-1), 0
		}
		klo, khi := mask.keyRange(s.Tk, mask.Past+q0, mask.Past+q1)
		qBase := (b*s.Tq+q0)*qStride + h*s.Dh
		kvBase := b*s.Tcap*kvStride + kh*s.Dh
		for k0 := klo; k0 < khi; k0 += flashKBlock {
			k1 := min(k0+flashKBlock, khi)
			nk := k1 - k0
			sc := fs.s[:nq*flashKBlock]
			gemm.MulNT(nq, nk, s.Dh, scale, q[qBase:], qStride, k[kvBase+k0*kvStride:], kvStride, 0, sc, flashKBlock)
			any := false
			for r := 0; r < nq; r++ {
				row := sc[r*flashKBlock : r*flashKBlock+nk]
				maskRow(row, mask, b, s.Tk, mask.Past+q0+r, k0)
				mx := negInf32
				for _, x := range row {
					mx = max(mx, x)
				}
				if mx == negInf32 {
					clear(row) // nothing allowed in this block
					continue
				}
				any = true
				mOld := fs.m[r]
				mNew := math.Max(mOld, float64(mx))
				m32 := float32(mNew)
				var sum float64
				for j, x := range row {
					e := exp32(x - m32)
					row[j] = e
					sum += float64(e)
				}
				if mOld != mNew && !math.IsInf(mOld, -1) {
					alpha := exp32(float32(mOld) - m32)
					fs.l[r] *= float64(alpha)
					orow := o[r*s.Dh : (r+1)*s.Dh]
					for d := range orow {
						orow[d] *= alpha
					}
				}
				fs.l[r] += sum
				fs.m[r] = mNew
			}
			if any {
				gemm.MulNN(nq, s.Dh, nk, 1, sc, flashKBlock, v[kvBase+k0*kvStride:], kvStride, 1, o, s.Dh)
			}
		}
		for r := 0; r < nq; r++ {
			zrow := z[(b*s.Tq+q0+r)*qStride+h*s.Dh:][:s.Dh]
			li := ((b*s.H+h)*s.Tq + q0 + r)
			if fs.l[r] == 0 {
				clear(zrow)
				lse[li] = negInf32
				continue
			}
			inv := float32(1 / fs.l[r])
			for d, x := range o[r*s.Dh : (r+1)*s.Dh] {
				zrow[d] = x * inv
			}
			lse[li] = float32(fs.m[r] + math.Log(fs.l[r]))
		}
	})
}

// maskRow sets to -Inf the scores of row (query at absolute position p of
// sequence b, keys k0 .. k0+len(row)) that the mask forbids.
func maskRow(row []float32, mask AttnMask, b, Tk, p, k0 int) {
	nk := len(row)
	if mask.Causal {
		for j := max(p+1-k0, 0); j < nk; j++ {
			row[j] = negInf32
		}
	}
	if mask.Window > 0 {
		for j := 0; j < min(p-mask.Window+1-k0, nk); j++ {
			row[j] = negInf32
		}
	}
	if mask.KeyValid != nil {
		valid := mask.KeyValid[b*Tk+k0 : b*Tk+k0+nk]
		for j, ok := range valid {
			if !ok {
				row[j] = negInf32
			}
		}
	}
}

// rowReducer accumulates one (sequence, head, asked row)'s reductions as
// the second pass walks its keys in ascending order.
type rowReducer struct {
	spec    AttnSpec
	p       int     // the query's absolute position
	lse     float32 // its log-sum-exp
	k       int     // K'
	idx     []int32
	val     []float32
	n       int // entries of idx/val filled
	spans   []float64
	entropy float64
}

// add takes the scores of keys k0 .. k0+len(row) (masked ones -Inf).
func (rr *rowReducer) add(row []float32, k0 int) {
	for si, sp := range rr.spec.Spans {
		lo, hi := sp.Lo, sp.Hi
		if sp.Relative {
			lo, hi = rr.p+lo, rr.p+hi
		}
		lo, hi = max(lo, k0), min(hi, k0+len(row))
		var m float64
		for j := lo; j < hi; j++ {
			if x := row[j-k0]; x != negInf32 {
				m += float64(exp32(x - rr.lse))
			}
		}
		rr.spans[si] += m
	}
	if !rr.spec.Entropy && rr.k == 0 {
		return
	}
	for j, x := range row {
		if x == negInf32 {
			continue
		}
		w := exp32(x - rr.lse)
		if rr.spec.Entropy && w > 0 {
			rr.entropy -= float64(w) * float64(x-rr.lse)
		}
		if rr.k > 0 {
			rr.insert(int32(k0+j), w)
		}
	}
}

// insert keeps the k largest weights, ties in ascending key order (keys
// arrive ascending, so an equal weight goes after those already kept).
func (rr *rowReducer) insert(key int32, w float32) {
	k := rr.k
	if rr.n == k && w <= rr.val[k-1] {
		return
	}
	p := min(rr.n, k-1)
	for p > 0 && rr.val[p-1] < w {
		rr.val[p], rr.idx[p] = rr.val[p-1], rr.idx[p-1]
		p--
	}
	rr.val[p], rr.idx[p] = w, key
	if rr.n < k {
		rr.n++
	}
}

// finishTopK completes a row with fewer than k positive weights with the
// lowest keys not already listed, at weight 0 (see the contract).
func (rr *rowReducer) finishTopK() {
	pos := 0
	for pos < rr.n && rr.val[pos] > 0 {
		pos++
	}
	if pos == rr.k {
		return
	}
	listed := rr.idx[:pos]
	j := int32(0)
	for slot := pos; slot < rr.k; slot++ {
		for containsKey(listed, j) {
			j++
		}
		rr.idx[slot], rr.val[slot] = j, 0
		j++
	}
	rr.n = rr.k
}

func containsKey(keys []int32, j int32) bool {
	for _, x := range keys {
		if x == j {
			return true
		}
	}
	return false
}

// reductionOut allocates a result's reduction slices for R rows.
func reductionOut(s AttnShape, spec AttnSpec, R int, res *AttnResult) (kk int) {
	rows := s.B * s.H * R
	if spec.TopK > 0 {
		kk = min(spec.TopK, s.Tk)
		res.TopIdx, res.TopVal = make([]int32, rows*kk), make([]float32, rows*kk)
	}
	res.SpanMass = make([][]float32, len(spec.Spans))
	for i := range res.SpanMass {
		res.SpanMass[i] = make([]float32, rows)
	}
	res.SetMass = make([][]float32, len(spec.KeySets))
	for i := range res.SetMass {
		res.SetMass[i] = make([]float32, rows)
	}
	if spec.Entropy {
		res.Entropy = make([]float32, rows)
	}
	if len(spec.Spans) == 0 {
		res.SpanMass = nil
	}
	if len(spec.KeySets) == 0 {
		res.SetMass = nil
	}
	return kk
}

// askedRows gives the rows a spec covers.
func askedRows(s AttnShape, spec AttnSpec) []int {
	if spec.Rows != nil {
		return spec.Rows
	}
	rows := make([]int, s.Tq)
	for i := range rows {
		rows[i] = i
	}
	return rows
}

// reduceFused is the second pass: for blocks of up to flashQBlock asked
// rows of one (sequence, head) it recomputes the scores over the key
// blocks the rows can reach and reduces exp(s − lse).
func (c *CPU) reduceFused(q, k []float32, s AttnShape, scale float32, mask AttnMask, spec AttnSpec, lse []float32, res *AttnResult) {
	rows := askedRows(s, spec)
	R := len(rows)
	kk := reductionOut(s, spec, R, res)
	group := s.H / s.Hkv
	qStride, kvStride := s.H*s.Dh, s.Hkv*s.Dh
	needPass := spec.TopK > 0 || len(spec.Spans) > 0 || spec.Entropy
	nrb := (R + flashQBlock - 1) / flashQBlock
	c.parallelJobs(s.B*s.H*nrb, func(job int) {
		b, h, rb := job/(s.H*nrb), job/nrb%s.H, job%nrb
		kh := h / group
		r0, r1 := rb*flashQBlock, min(rb*flashQBlock+flashQBlock, R)
		nr := r1 - r0
		kvBase := b*s.Tcap*kvStride + kh*s.Dh
		qrows := make([]float32, nr*s.Dh)
		for r := 0; r < nr; r++ {
			copy(qrows[r*s.Dh:(r+1)*s.Dh], q[(b*s.Tq+rows[r0+r])*qStride+h*s.Dh:][:s.Dh])
		}
		red := make([]rowReducer, nr)
		for r := range red {
			i := rows[r0+r]
			red[r] = rowReducer{spec: spec, p: mask.Past + i, lse: lse[(b*s.H+h)*s.Tq+i], k: kk,
				spans: make([]float64, len(spec.Spans))}
			if kk > 0 {
				out := ((b*s.H+h)*R + r0 + r) * kk
				red[r].idx, red[r].val = res.TopIdx[out:out+kk], res.TopVal[out:out+kk]
			}
		}
		if needPass {
			klo, khi := mask.keyRange(s.Tk, mask.Past+rows[r0], mask.Past+rows[r1-1]+1)
			sc := make([]float32, nr*flashKBlock)
			for k0 := klo; k0 < khi; k0 += flashKBlock {
				nk := min(k0+flashKBlock, khi) - k0
				gemm.MulNT(nr, nk, s.Dh, scale, qrows, s.Dh, k[kvBase+k0*kvStride:], kvStride, 0, sc, flashKBlock)
				for r := range red {
					if red[r].lse == negInf32 {
						continue
					}
					row := sc[r*flashKBlock : r*flashKBlock+nk]
					maskRow(row, mask, b, s.Tk, red[r].p, k0)
					red[r].add(row, k0)
				}
			}
		}
		for r := range red {
			out := (b*s.H+h)*R + r0 + r
			rr := &red[r]
			if kk > 0 {
				rr.finishTopK()
			}
			for si, m := range rr.spans {
				res.SpanMass[si][out] = float32(m)
			}
			if spec.Entropy {
				res.Entropy[out] = float32(rr.entropy)
			}
			if rr.lse == negInf32 {
				continue
			}
			qr := qrows[r*s.Dh : (r+1)*s.Dh]
			for si, ks := range spec.KeySets {
				var m float64
				for _, j := range ks.Keys[ks.Off[b*R+r0+r]:ks.Off[b*R+r0+r+1]] {
					if j < 0 || int(j) >= s.Tk || !mask.allowed(b, s.Tk, rr.p, int(j)) {
						continue
					}
					kr := k[kvBase+int(j)*kvStride:][:s.Dh]
					var dot float32
					for d, x := range qr {
						dot += x * kr[d]
					}
					m += float64(exp32(dot*scale - rr.lse))
				}
				res.SetMass[si][out] = float32(m)
			}
		}
	})
	if spec.SumRows {
		sumRows(res, s, R)
	}
}

// sumRows folds [B, H, R] masses and entropies into [B, H].
func sumRows(res *AttnResult, s AttnShape, R int) {
	fold := func(x []float32) []float32 {
		out := make([]float32, s.B*s.H)
		for bh := range out {
			var t float64
			for _, v := range x[bh*R : (bh+1)*R] {
				t += float64(v)
			}
			out[bh] = float32(t)
		}
		return out
	}
	for i := range res.SpanMass {
		res.SpanMass[i] = fold(res.SpanMass[i])
	}
	for i := range res.SetMass {
		res.SetMass[i] = fold(res.SetMass[i])
	}
	if res.Entropy != nil {
		res.Entropy = fold(res.Entropy)
	}
}

// attentionMaterialised is the path for a spec that asks for the full
// scores or pattern: it builds them, and reads the reductions off the
// pattern. (z comes from the flash path.)
func (c *CPU) attentionMaterialised(q, k Tensor, s AttnShape, scale float32, mask AttnMask, spec AttnSpec) AttnResult {
	scores := c.AttentionScores(q, k, s, scale, mask)
	pattern := c.SoftmaxRows(scores)
	var res AttnResult
	if spec.Scores {
		res.Scores = scores
	}
	if spec.Pattern {
		res.Pattern = pattern
	}
	sd, pd := ct(scores).data, ct(pattern).data
	if spec.LSE {
		res.LSE = make([]float32, s.B*s.H*s.Tq)
		for r := range res.LSE {
			res.LSE[r] = rowLSE(sd[r*s.Tk : (r+1)*s.Tk])
		}
	}
	if spec.Reductions() {
		ReducePattern(pd, s, mask, spec, &res)
	}
	return res
}

// rowLSE is log Σ exp(x) over a row of scores (-Inf when all are -Inf).
func rowLSE(row []float32) float32 {
	m := math.Inf(-1)
	for _, x := range row {
		m = math.Max(m, float64(x))
	}
	if math.IsInf(m, -1) {
		return negInf32
	}
	var sum float64
	for _, x := range row {
		sum += math.Exp(float64(x) - m)
	}
	return float32(m + math.Log(sum))
}

// ReducePattern computes spec's reductions from a materialised pattern
// [B, H, Tq, Tk] on the host, into res: the definition that the fused
// second pass must reproduce (tests compare the two; backends may use it
// for the Pattern path).
func ReducePattern(pattern []float32, s AttnShape, mask AttnMask, spec AttnSpec, res *AttnResult) {
	rows := askedRows(s, spec)
	R := len(rows)
	kk := reductionOut(s, spec, R, res)
	for b := 0; b < s.B; b++ {
		for h := 0; h < s.H; h++ {
			for r, i := range rows {
				row := pattern[((b*s.H+h)*s.Tq+i)*s.Tk:][:s.Tk]
				out := (b*s.H+h)*R + r
				p := mask.Past + i
				if kk > 0 {
					topK(row, res.TopIdx[out*kk:(out+1)*kk], res.TopVal[out*kk:(out+1)*kk])
				}
				for si, sp := range spec.Spans {
					lo, hi := sp.Lo, sp.Hi
					if sp.Relative {
						lo, hi = p+lo, p+hi
					}
					var m float64
					for j := max(lo, 0); j < min(hi, s.Tk); j++ {
						m += float64(row[j])
					}
					res.SpanMass[si][out] = float32(m)
				}
				for si, ks := range spec.KeySets {
					var m float64
					for _, j := range ks.Keys[ks.Off[b*R+r]:ks.Off[b*R+r+1]] {
						if j >= 0 && int(j) < s.Tk {
							m += float64(row[j])
						}
					}
					res.SetMass[si][out] = float32(m)
				}
				if spec.Entropy {
					var e float64
					for _, w := range row {
						if w > 0 {
							e -= float64(w) * math.Log(float64(w))
						}
					}
					res.Entropy[out] = float32(e)
				}
			}
		}
	}
	if spec.SumRows {
		sumRows(res, s, R)
	}
}
