package compute

import (
	"math"
	"sync"

	"github.com/loupe-dev/loupe/probe/compute/internal/gemm"
	"github.com/loupe-dev/loupe/probe/compute/internal/vmath"
)

// The tiled flash path: the first pass of the fused attention for prompts
// (many queries), run on gemm's micro-kernel with every operand packed once
// instead of once per product.
//
// A job is (sequence, KV head, block of queries) as in flashForward, its
// rows (group × queries, each head's queries padded to a whole panel) cut
// into panels of NR rows. The scores are computed transposed, S^T = K·Q^T,
// a tile of MR keys × NR queries at a time, into a buffer of [keys][NR]:
// that is exactly the packed form of the right-hand operand of the second
// product written transposed, O^T = V^T·P^T, so the probabilities go
// from the exponential straight into the micro-kernel with no packing. The
// keys (MR-key panels) and values (MR-wide panels of V^T) of a sequence's
// KV head are packed once per call, each panel's queries once per job.
// The softmax runs down the columns: each query is a lane, with its own
// running maximum (vmath.ColMax, ColExpShiftSum).
//
// The running maximum is raised lazily: a block whose scores exceed a
// lane's maximum by at most flashSlack keeps it, so that its exponentials
// reach at most e^flashSlack (far from fp32's range) and the rescaling of
// the accumulators, a pass over a panel of O^T, is rare. The result is the
// same softmax: every exponent is taken against the maximum the lane holds
// when it is taken, and the sum and accumulators are rescaled together.

// flashSlack is how far (in nats) a block's scores may exceed a lane's
// running maximum before the maximum is raised.
const flashSlack = 8

// tiledMinQueries: calls with fewer queries (decoding steps) take
// flashForward, whose per-call cost does not include packing the whole
// KV cache.
const tiledMinQueries = 16

// flashKeysTiled is the key block of the tiled path, a whole number of
// MR-key panels near 256.
// (96, 128 and 192 measured the same at 2048 tokens.)
func flashKeysTiled(mr int) int { return max(mr, 256/mr*mr) }

// tiledScratch is one worker's buffers for a job of the tiled path.
type tiledScratch struct {
	qp    []float32 // packed queries [panels][Dh][NR]
	sc    []float32 // one panel's scores, then weights, [keys][NR]
	ot    []float32 // O^T accumulators [ndp·MR][rows]
	m     []float32 // running maximum of each row
	l     []float64 // running sum of each row
	lane  []float32 // per-lane scratch: block maximum, shift, sums, factors
	alpha []float32
}

var tiledPool sync.Pool

func getTiledScratch(panels, dh, kb, ndp, mr, nr int) *tiledScratch {
	rows := panels * nr
	ts, _ := tiledPool.Get().(*tiledScratch)
	if ts == nil {
		ts = &tiledScratch{}
	}
	grow := func(b []float32, n int) []float32 {
		if cap(b) < n {
			return make([]float32, n)
		}
		return b[:n]
	}
	ts.qp = grow(ts.qp, panels*dh*nr)
	ts.sc = grow(ts.sc, kb*nr)
	ts.ot = grow(ts.ot, ndp*mr*rows)
	ts.m = grow(ts.m, rows)
	ts.lane = grow(ts.lane, 3*nr)
	ts.alpha = grow(ts.alpha, nr)
	if cap(ts.l) < rows {
		ts.l = make([]float64, rows)
	}
	ts.l = ts.l[:rows]
	return ts
}

// packedKV holds the keys and values of every (sequence, KV head), packed
// for the micro-kernel: kp [B·Hkv][nkp][Dh][MR] (MR consecutive keys per
// panel, one depth after another), vp [B·Hkv][ndp][kpad][MR] (for each key,
// MR consecutive dimensions of its value), zero past the last key and the
// last dimension.
type packedKV struct {
	kp, vp   []float32
	nkp      int // key panels
	kpad     int // nkp·MR
	ndp      int // value-dimension panels
	mr, dh   int
	perHead  int // floats of kp per (sequence, KV head)
	perHeadV int
}

func (c *CPU) packKV(k, v []float32, s AttnShape, keys, mr int) *packedKV {
	nkp := (keys + mr - 1) / mr
	ndp := (s.Dh + mr - 1) / mr
	p, _ := packedPool.Get().(*packedKV)
	if p == nil {
		p = &packedKV{}
	}
	p.nkp, p.kpad, p.ndp, p.mr, p.dh = nkp, nkp*mr, ndp, mr, s.Dh
	p.perHead = nkp * s.Dh * mr
	p.perHeadV = ndp * p.kpad * mr
	p.kp = growZero(p.kp, s.B*s.Hkv*p.perHead)
	p.vp = growZero(p.vp, s.B*s.Hkv*p.perHeadV)
	kvStride := s.Hkv * s.Dh
	c.parallelJobs(s.B*s.Hkv, func(job int) {
		b, kh := job/s.Hkv, job%s.Hkv
		kp := p.kp[job*p.perHead : (job+1)*p.perHead]
		vp := p.vp[job*p.perHeadV : (job+1)*p.perHeadV]
		base := b*s.Tcap*kvStride + kh*s.Dh
		// Keys: each panel of mr keys transposed to [Dh][mr].
		for j0 := 0; j0 < keys; j0 += mr {
			n := min(mr, keys-j0)
			gemm.Transpose(n, s.Dh, k[base+j0*kvStride:], kvStride, kp[j0*s.Dh:], mr)
		}
		// Values: for each key, mr dimensions of its value per panel.
		for dp := 0; dp < ndp; dp++ {
			d0, d1 := dp*mr, min(dp*mr+mr, s.Dh)
			dst := vp[dp*p.kpad*mr:]
			for j := 0; j < keys; j++ {
				copy(dst[j*mr:j*mr+d1-d0], v[base+j*kvStride+d0:base+j*kvStride+d1])
			}
		}
	})
	return p
}

var packedPool sync.Pool

// growZero returns b resized to n floats, all zero (the packed panels'
// padding must be zero: it multiplies real operands).
func growZero(b []float32, n int) []float32 {
	if cap(b) < n {
		return make([]float32, n)
	}
	b = b[:n]
	clear(b)
	return b
}

// flashTiled is the first pass for calls with many queries; flashForward's
// contract (z and the float64 lse of every row).
func (c *CPU) flashTiled(q, k, v []float32, s AttnShape, scale float32, mask AttnMask, z []float32, lse []float64) {
	tl := gemm.Tile()
	MR, NR := tl.MR, tl.NR
	group := s.H / s.Hkv
	nq := queryBlock(group)
	kb := flashKeysTiled(MR)
	_, keys := mask.keyRange(s.Tk, mask.Past, mask.Past+s.Tq)
	if keys == 0 {
		// No query sees a key: every z is 0 and every lse -Inf.
		clear(z)
		for i := range lse {
			lse[i] = math.Inf(-1)
		}
		return
	}
	pk := c.packKV(k, v, s, keys, MR)
	defer packedPool.Put(pk)
	jobs := flashJobs(s, nq)
	qStride := s.H * s.Dh
	negInf := float32(math.Inf(-1))
	c.parallelJobs(len(jobs), func(ji int) {
		j := jobs[ji]
		n := j.q1 - j.q0
		npad := (n + NR - 1) / NR * NR // each head's query slots
		perHead := npad / NR           // panels per head
		panels := group * perHead
		rows := panels * NR
		ts := getTiledScratch(panels, s.Dh, kb, pk.ndp, MR, NR)
		defer tiledPool.Put(ts)
		// Pack the queries: panel P holds head g = P/perHead, queries
		// i0 .. i0+NR of the job, each depth's NR values together.
		for P := 0; P < panels; P++ {
			g, i0 := P/perHead, P%perHead*NR
			h := j.kh*group + g
			dst := ts.qp[P*s.Dh*NR : (P+1)*s.Dh*NR]
			live := min(NR, n-i0)
			gemm.Transpose(live, s.Dh, q[(j.b*s.Tq+j.q0+i0)*qStride+h*s.Dh:], qStride, dst, NR)
			for d := 0; live < NR && d < s.Dh; d++ {
				clear(dst[d*NR+live : (d+1)*NR]) // lanes past the last query
			}
		}
		ot := ts.ot
		clear(ot)
		for r := range ts.m {
			ts.m[r], ts.l[r] = negInf, 0
		}
		bmax, shift, sums := ts.lane[:NR], ts.lane[NR:2*NR], ts.lane[2*NR:3*NR]
		alpha := ts.alpha[:NR]
		klo, khi := mask.keyRange(s.Tk, mask.Past+j.q0, mask.Past+j.q1)
		klo = klo / MR * MR
		bkh := j.b*s.Hkv + j.kh
		kpH := pk.kp[bkh*pk.perHead : (bkh+1)*pk.perHead]
		vpH := pk.vp[bkh*pk.perHeadV : (bkh+1)*pk.perHeadV]
		for k0 := klo; k0 < khi; k0 += kb {
			nk := min(kb, khi-k0)
			for P := 0; P < panels; P++ {
				i0 := P % perHead * NR
				base := mask.Past + j.q0 + i0 // lane 0's position; lane c's is base+c
				live := min(NR, n-i0)         // lanes holding queries
				nkP := nk
				if mask.Causal {
					nkP = min(nk, base+live-k0) // keys past the panel's last query
				}
				if nkP <= 0 {
					continue
				}
				nkt := (nkP + MR - 1) / MR * MR
				sc := ts.sc[:nkt*NR]
				qp := ts.qp[P*s.Dh*NR : (P+1)*s.Dh*NR]
				for t := 0; t < nkt/MR; t++ {
					tl.Mul(s.Dh, kpH[(k0/MR+t)*s.Dh*MR:], qp, sc[t*MR*NR:], NR, scale, 0)
				}
				maskTiled(sc, nkP, nkt, NR, k0, base, mask, j.b, s.Tk)
				// Running maxima, raised lazily (see flashSlack).
				for cl := range bmax {
					bmax[cl] = negInf
				}
				vmath.ColMax(sc, nkt, NR, bmax)
				m := ts.m[P*NR : (P+1)*NR]
				l := ts.l[P*NR : (P+1)*NR]
				rescale := false
				for cl := 0; cl < NR; cl++ {
					alpha[cl] = 1
					if bmax[cl] > m[cl]+flashSlack || m[cl] == negInf && bmax[cl] != negInf {
						if m[cl] != negInf {
							alpha[cl] = exp32(m[cl] - bmax[cl])
							l[cl] *= float64(alpha[cl])
							rescale = true
						}
						m[cl] = bmax[cl]
					}
					shift[cl] = m[cl]
					if m[cl] == negInf {
						shift[cl] = 0 // nothing seen yet: every weight is e^-Inf = 0
					}
					sums[cl] = 0
				}
				if rescale {
					for d := 0; d < s.Dh; d++ {
						row := ot[d*rows+P*NR : d*rows+P*NR+NR]
						for cl, a := range alpha {
							row[cl] *= a
						}
					}
				}
				vmath.ColExpShiftSum(sc, nkt, NR, shift, sums)
				for cl := 0; cl < NR; cl++ {
					l[cl] += float64(sums[cl])
				}
				for dp := 0; dp < pk.ndp; dp++ {
					tl.Mul(nkt, vpH[(dp*pk.kpad+k0)*MR:], sc, ot[dp*MR*rows+P*NR:], rows, 1, 1)
				}
			}
		}
		for P := 0; P < panels; P++ {
			g, i0 := P/perHead, P%perHead*NR
			h := j.kh*group + g
			live := min(NR, n-i0)
			zb := (j.b*s.Tq+j.q0+i0)*qStride + h*s.Dh
			gemm.Transpose(s.Dh, live, ot[P*NR:], rows, z[zb:], qStride)
			for cl := 0; cl < live; cl++ {
				r := P*NR + cl
				zrow := z[zb+cl*qStride:][:s.Dh]
				li := (j.b*s.H+h)*s.Tq + j.q0 + i0 + cl
				if ts.l[r] == 0 {
					clear(zrow)
					lse[li] = math.Inf(-1)
					continue
				}
				inv := float32(1 / ts.l[r])
				for d := range zrow {
					zrow[d] *= inv
				}
				lse[li] = float64(ts.m[r]) + math.Log(ts.l[r])
			}
		}
	})
}

// maskTiled sets to -Inf the scores of a panel ([keys][nr], keys k0 ..
// k0+nkt, lane c the query at position base+c) that the mask forbids:
// the tile rows past the nkP keys computed for the panel, keys after a
// lane's position (causal), keys that fell out of its window, padding keys.
func maskTiled(sc []float32, nkP, nkt, nr, k0, base int, mask AttnMask, b, Tk int) {
	negInf := float32(math.Inf(-1))
	for p := nkP; p < nkt; p++ {
		row := sc[p*nr : (p+1)*nr]
		for c := range row {
			row[c] = negInf
		}
	}
	if mask.Causal {
		// Key j is after lanes c < j − base: from key base+1 on.
		for p := max(0, base+1-k0); p < nkP; p++ {
			row := sc[p*nr : (p+1)*nr]
			for c := range row[:min(nr, k0+p-base)] {
				row[c] = negInf
			}
		}
	}
	if w := mask.Window; w > 0 {
		// Key j is out of the window of lanes c ≥ j + w − base: only keys
		// below base + nr − w have such lanes.
		for p := 0; p < min(nkP, base+nr-w-k0); p++ {
			row := sc[p*nr : (p+1)*nr]
			for c := max(0, k0+p+w-base); c < nr; c++ {
				row[c] = negInf
			}
		}
	}
	if mask.KeyValid != nil {
		for p := 0; p < nkP && k0+p < Tk; p++ {
			if !mask.KeyValid[b*Tk+k0+p] {
				row := sc[p*nr : (p+1)*nr]
				for c := range row {
					row[c] = negInf
				}
			}
		}
	}
}
