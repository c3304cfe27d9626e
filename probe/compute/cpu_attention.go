package compute

import (
	"fmt"
	"math"
	"sync"

	"github.com/loupe-dev/loupe/probe/compute/internal/gemm"
	"github.com/loupe-dev/loupe/probe/compute/internal/vmath"
)

// Block sizes of the CPU's fused attention: a job is one (sequence, KV
// head, block of up to flashQBlock queries) with the query heads that share
// the KV head; it walks the keys in blocks of flashKBlock, so its scratch
// is rows×flashKBlock scores plus rows×Dh accumulators (rows = query heads
// per KV head × queries), whatever the context length. The QK and PV
// products go to package gemm, the softmax's max and exp-and-sum to the
// vector loops of package vmath.
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
	lse := make([]float64, s.B*s.H*s.Tq)
	// z always comes from the flash path, so that caching a pattern never
	// changes a run's numbers.
	if s.Tq >= tiledMinQueries {
		c.flashTiled(qt.data, kt.data, vt.data, s, scale, mask, z.data, lse)
	} else {
		c.flashForward(qt.data, kt.data, vt.data, s, scale, mask, z.data, lse)
	}
	if spec.Scores || spec.Pattern {
		res := c.attentionMaterialised(q, k, s, scale, mask, spec)
		res.Z = z
		return res
	}
	res := AttnResult{Z: z}
	if spec.LSE {
		res.LSE = make([]float32, len(lse))
		for i, x := range lse {
			res.LSE[i] = float32(x)
		}
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

// queryBlock is the number of queries of a job: 64, fewer when many query
// heads share a KV head, so that a job's rows (group × queries) stay near
// 256 and its scratch in cache.
func queryBlock(group int) int {
	return max(8, min(flashQBlock, 4*flashQBlock/group))
}

// flashScratch is one worker's buffers for a job.
type flashScratch struct {
	q    []float32 // the job's query rows, packed [rows, Dh]
	s    []float32 // scores, then weights, of the rows × a key block
	o    []float32 // the rows' z accumulators [rows, Dh]
	m, l []float64 // running max and running sum of each row
}

func newFlashScratch(rows, dh int) *flashScratch {
	return &flashScratch{q: make([]float32, rows*dh), s: make([]float32, rows*flashKBlock),
		o: make([]float32, rows*dh), m: make([]float64, rows), l: make([]float64, rows)}
}

var flashPool sync.Pool

func getFlashScratch(rows, dh int) *flashScratch {
	fs, _ := flashPool.Get().(*flashScratch)
	if fs == nil || len(fs.m) < rows || len(fs.o) < rows*dh {
		return newFlashScratch(rows, dh)
	}
	return fs
}

// flashJob is one (sequence, KV head, query block): the query heads that
// share the KV head run together, so each key block is read once for all
// of them.
type flashJob struct{ b, kh, q0, q1 int }

// flashJobs lists the jobs, the query blocks with the most keys first so
// that the workers finish together.
func flashJobs(s AttnShape, nq int) []flashJob {
	var jobs []flashJob
	nb := (s.Tq + nq - 1) / nq
	for qb := nb - 1; qb >= 0; qb-- {
		for b := 0; b < s.B; b++ {
			for kh := 0; kh < s.Hkv; kh++ {
				jobs = append(jobs, flashJob{b, kh, qb * nq, min(qb*nq+nq, s.Tq)})
			}
		}
	}
	return jobs
}

// packQueries copies the job's query rows into qp: row g·n+i is query
// q0+i of head kh·group+g.
func packQueries(qp, q []float32, s AttnShape, j flashJob) {
	group, n := s.H/s.Hkv, j.q1-j.q0
	for g := 0; g < group; g++ {
		h := j.kh*group + g
		for i := 0; i < n; i++ {
			copy(qp[(g*n+i)*s.Dh:(g*n+i+1)*s.Dh], q[(j.b*s.Tq+j.q0+i)*s.H*s.Dh+h*s.Dh:])
		}
	}
}

// allowedRange gives the keys [lo, hi) of block [k0, k0+nk) that the
// causal and window parts of the mask let the query at position p see, as
// offsets in the block (padding aside).
func allowedRange(mask AttnMask, p, k0, nk int) (lo, hi int) {
	hi = nk
	if mask.Causal {
		hi = min(nk, p+1-k0)
	}
	if mask.Window > 0 {
		lo = max(0, p-mask.Window+1-k0)
	}
	return lo, max(lo, hi)
}

// maskPadding sets to -Inf the scores of padding keys in row (keys
// k0 .. k0+len(row) of sequence b).
func maskPadding(row []float32, mask AttnMask, b, Tk, k0 int) {
	if mask.KeyValid == nil {
		return
	}
	for j, ok := range mask.KeyValid[b*Tk+k0 : b*Tk+k0+len(row)] {
		if !ok {
			row[j] = negInf32
		}
	}
}

func (c *CPU) flashForward(q, k, v []float32, s AttnShape, scale float32, mask AttnMask, z []float32, lse []float64) {
	group := s.H / s.Hkv
	nqMax := queryBlock(group)
	jobs := flashJobs(s, nqMax)
	qStride, kvStride := s.H*s.Dh, s.Hkv*s.Dh
	c.parallelJobs(len(jobs), func(ji int) {
		j := jobs[ji]
		nq := j.q1 - j.q0
		rows := group * nq
		fs := getFlashScratch(group*nqMax, s.Dh)
		defer flashPool.Put(fs)
		packQueries(fs.q, q, s, j)
		o := fs.o[:rows*s.Dh]
		clear(o)
		for r := 0; r < rows; r++ {
			fs.m[r], fs.l[r] = math.Inf(-1), 0
		}
		klo, khi := mask.keyRange(s.Tk, mask.Past+j.q0, mask.Past+j.q1)
		kvBase := j.b*s.Tcap*kvStride + j.kh*s.Dh
		for k0 := klo; k0 < khi; k0 += flashKBlock {
			nk := min(k0+flashKBlock, khi) - k0
			sc := fs.s[:rows*flashKBlock]
			gemm.MulNT(rows, nk, s.Dh, scale, fs.q, s.Dh, k[kvBase+k0*kvStride:], kvStride, 0, sc, flashKBlock)
			used := 0 // keys of the block that some row attends to
			for r := 0; r < rows; r++ {
				row := sc[r*flashKBlock : r*flashKBlock+nk]
				lo, hi := allowedRange(mask, mask.Past+j.q0+r%nq, k0, nk)
				maskPadding(row[lo:hi], mask, j.b, s.Tk, k0+lo)
				mx := vmath.Max(row[lo:hi])
				if mx == negInf32 {
					clear(row) // nothing allowed in this block
					continue
				}
				clear(row[:lo])
				clear(row[hi:])
				used = max(used, hi)
				mOld := fs.m[r]
				mNew := math.Max(mOld, float64(mx))
				sum := vmath.ExpShiftSum(row[lo:hi], float32(mNew))
				if mOld != mNew && !math.IsInf(mOld, -1) {
					alpha := exp32(float32(mOld - mNew))
					fs.l[r] *= float64(alpha)
					orow := o[r*s.Dh : (r+1)*s.Dh]
					for d := range orow {
						orow[d] *= alpha
					}
				}
				fs.l[r] += float64(sum)
				fs.m[r] = mNew
			}
			if used > 0 {
				gemm.MulNN(rows, s.Dh, used, 1, sc, flashKBlock, v[kvBase+k0*kvStride:], kvStride, 1, o, s.Dh)
			}
		}
		for r := 0; r < rows; r++ {
			g, i := r/nq, r%nq
			h := j.kh*group + g
			zrow := z[(j.b*s.Tq+j.q0+i)*qStride+h*s.Dh:][:s.Dh]
			li := (j.b*s.H+h)*s.Tq + j.q0 + i
			if fs.l[r] == 0 {
				clear(zrow)
				lse[li] = math.Inf(-1)
				continue
			}
			inv := float32(1 / fs.l[r])
			for d, x := range o[r*s.Dh : (r+1)*s.Dh] {
				zrow[d] = x * inv
			}
			lse[li] = fs.m[r] + math.Log(fs.l[r])
		}
	})
}

// rowReducer accumulates one (sequence, head, asked row)'s reductions as
// the second pass walks its keys in ascending order. Top-k runs on the raw
// scores (the softmax is monotone) and turns the k scores into weights at
// the end; spans and entropy weigh keys by e^(s − lse32) from the vector
// loop, times corr = e^(lse32 − lse) at the end, which restores the
// float64 log-sum-exp's precision.
type rowReducer struct {
	spec    AttnSpec
	p       int     // the query's absolute position
	lse     float64 // its log-sum-exp
	lse32   float32
	k       int // K'
	idx     []int32
	val     []float32 // raw scores until finish, then weights
	n       int       // entries of idx/val filled
	spans   []float64
	entropy float64 // −Σ w·(s − lse), before corr
}

func newRowReducer(spec AttnSpec, p int, lse float64, k int) rowReducer {
	return rowReducer{spec: spec, p: p, lse: lse, lse32: float32(lse), k: k, spans: make([]float64, len(spec.Spans))}
}

// add takes the scores of keys k0 .. k0+len(row), of which only [lo, hi)
// are allowed (padding among them already -Inf); w is scratch of at least
// hi−lo floats.
func (rr *rowReducer) add(row []float32, lo, hi, k0 int, w []float32) {
	// A block whose largest score does not beat the k-th kept one adds
	// nothing to the top k: one vector max skips it.
	if rr.k > 0 && (rr.n < rr.k || vmath.Max(row[lo:hi]) > rr.val[rr.k-1]) {
		for j := lo; j < hi; j++ {
			if x := row[j]; x != negInf32 {
				rr.insert(int32(k0+j), x)
			}
		}
	}
	if len(rr.spec.Spans) == 0 && !rr.spec.Entropy {
		return
	}
	w = w[:hi-lo]
	copy(w, row[lo:hi])
	vmath.ExpShiftSum(w, rr.lse32)
	for si, sp := range rr.spec.Spans {
		slo, shi := sp.Bounds(rr.p)
		a, e := min(max(slo-k0-lo, 0), len(w)), min(max(shi-k0-lo, 0), len(w))
		var m float64
		for _, x := range w[a:max(a, e)] {
			m += float64(x)
		}
		rr.spans[si] += m
	}
	if rr.spec.Entropy {
		var e float64
		for j, x := range row[lo:hi] {
			if w[j] > 0 {
				e -= float64(w[j]) * (float64(x) - rr.lse)
			}
		}
		rr.entropy += e
	}
}

// insert keeps the k largest scores, ties in ascending key order (keys
// arrive ascending, so an equal score goes after those already kept).
func (rr *rowReducer) insert(key int32, x float32) {
	k := rr.k
	if rr.n == k && x <= rr.val[k-1] {
		return
	}
	p := min(rr.n, k-1)
	for p > 0 && rr.val[p-1] < x {
		rr.val[p], rr.idx[p] = rr.val[p-1], rr.idx[p-1]
		p--
	}
	rr.val[p], rr.idx[p] = x, key
	if rr.n < k {
		rr.n++
	}
}

// finish turns the accumulators into the reductions' values.
func (rr *rowReducer) finish() {
	if math.IsInf(rr.lse, -1) {
		// A row that sees no key (a padded query): its pattern row is all
		// zeros, as SoftmaxRows makes it, so its masses and entropy are 0
		// (e^(lse32 − lse) would be NaN here).
		clear(rr.spans)
		rr.entropy = 0
		if rr.k > 0 {
			rr.finishTopK()
		}
		return
	}
	corr := math.Exp(float64(rr.lse32) - rr.lse)
	for si := range rr.spans {
		rr.spans[si] *= corr
	}
	rr.entropy *= corr
	if rr.k == 0 {
		return
	}
	for i := 0; i < rr.n; i++ {
		rr.val[i] = float32(math.Exp(float64(rr.val[i]) - rr.lse))
	}
	rr.finishTopK()
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
// blocks the rows can reach and reduces e^(s − lse). Key sets need no pass:
// their few keys' scores are dot products.
func (c *CPU) reduceFused(q, k []float32, s AttnShape, scale float32, mask AttnMask, spec AttnSpec, lse []float64, res *AttnResult) {
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
			red[r] = newRowReducer(spec, mask.Past+i, lse[(b*s.H+h)*s.Tq+i], kk)
			if kk > 0 {
				out := ((b*s.H+h)*R + r0 + r) * kk
				red[r].idx, red[r].val = res.TopIdx[out:out+kk], res.TopVal[out:out+kk]
			}
		}
		if needPass {
			klo, khi := mask.keyRange(s.Tk, mask.Past+rows[r0], mask.Past+rows[r1-1]+1)
			sc := make([]float32, nr*flashKBlock)
			w := make([]float32, flashKBlock)
			for k0 := klo; k0 < khi; k0 += flashKBlock {
				nk := min(k0+flashKBlock, khi) - k0
				gemm.MulNT(nr, nk, s.Dh, scale, qrows, s.Dh, k[kvBase+k0*kvStride:], kvStride, 0, sc, flashKBlock)
				for r := range red {
					if math.IsInf(red[r].lse, -1) {
						continue
					}
					row := sc[r*flashKBlock : r*flashKBlock+nk]
					lo, hi := allowedRange(mask, red[r].p, k0, nk)
					maskPadding(row[lo:hi], mask, b, s.Tk, k0+lo)
					red[r].add(row, lo, hi, k0, w)
				}
			}
		}
		for r := range red {
			out := (b*s.H+h)*R + r0 + r
			rr := &red[r]
			rr.finish()
			for si, m := range rr.spans {
				res.SpanMass[si][out] = float32(m)
			}
			if spec.Entropy {
				res.Entropy[out] = float32(rr.entropy)
			}
			if math.IsInf(rr.lse, -1) {
				continue
			}
			qr := qrows[r*s.Dh : (r+1)*s.Dh]
			for si, ks := range spec.KeySets {
				var m float64
				for _, j := range ks.Keys[ks.Off[b*R+r0+r]:ks.Off[b*R+r0+r+1]] {
					if j < 0 || int(j) >= s.Tk || !mask.allowed(b, s.Tk, rr.p, int(j)) {
						continue
					}
					// An fp32 dot product, like the scores the lse was
					// built from: a float64 one is further from the exact
					// mass (SmolLM2 at 4096 tokens: 6.8e-6 against 4.7e-6),
					// since the error of a dominant key's score cancels
					// against the same error inside the lse only when both
					// are rounded alike.
					kr := k[kvBase+int(j)*kvStride:][:s.Dh]
					var dot float32
					for d, x := range qr {
						dot += x * kr[d]
					}
					m += math.Exp(float64(dot*scale) - rr.lse)
				}
				res.SetMass[si][out] = float32(m)
			}
		}
	})
	if spec.SumRows {
		SumRowsPerHead(res, s, R)
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
					lo, hi := sp.Bounds(p)
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
		SumRowsPerHead(res, s, R)
	}
}
