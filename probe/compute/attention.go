package compute

// This file defines the one fused attention operation, Backend.Attention
// (DESIGN decision 8). Every backend implements it to this contract; the
// probe's forward pass calls it for every layer whose scores or pattern no
// hook edits.
//
// The contract, in full, for a backend author:
//
// Inputs are those of AttentionScores/AttentionMix (see the package
// conventions): q [B*Tq, H*Dh], k and v [B*Tcap, Hkv*Dh] of which the first
// Tk rows of each sequence are valid, query head h reading key/value head
// h/(H/Hkv). Query i of a sequence sits at absolute key position
// p = mask.Past + i. Query i may attend to key j when all of these hold:
//   - mask.Causal is false or j <= p;
//   - mask.Window is 0 or p - j < mask.Window (a sliding window of Window
//     keys, the current one included; with Causal this is keys
//     p-Window+1 .. p);
//   - mask.KeyValid is nil or mask.KeyValid[b*Tk+j] (padding keys).
// The score of an allowed pair is s = scale · q_i·k_j (accumulated in at
// least fp32); the row's log-sum-exp is lse_i = log Σ_allowed exp(s), and
// the attention weight is P[i,j] = exp(s - lse_i) on allowed keys, 0
// elsewhere. A row with no allowed key (a padding query) has lse = -Inf,
// P = 0 everywhere and z = 0.
//
// Z, always returned, is [B*Tq, H*Dh] with z_i = Σ_j P[i,j]·v_j.
//
// Z must not depend on the spec: asking for the pattern or reductions
// observes a run without changing its numbers (the probe's tests compare
// the logits of hooked and unhooked runs bit for bit).
//
// Scores and Pattern, when spec asks, are the full [B, H, Tq, Tk] tensors:
// scores hold s on allowed pairs and -Inf elsewhere (as AttentionScores),
// the pattern holds P (as SoftmaxRows of the scores). Only these two
// requests need T×T memory; nothing else may allocate anything of size
// Tq×Tk.
//
// Reductions run over the rows spec.Rows (query indices 0..Tq-1, strictly
// ascending; nil means every row), the same rows for every sequence and
// head. R is len(Rows) (Tq when nil). A reduction's values run over
// [B, H, R] in that order (row-major), or [B, H] when spec.SumRows sums
// them over the R rows. They are exact functions of P as defined above —
// computed in a second pass over the key blocks that recomputes s and uses
// the lse of the first pass, never by storing P — and come back to the
// host as Go slices:
//   - TopK > 0: TopIdx/TopVal [B, H, R, K'] with K' = min(TopK, Tk): the K'
//     largest P[i,j] over j in [0, Tk), largest first, equal weights in
//     ascending key order. Disallowed keys weigh 0, so a row with fewer
//     than K' positive weights is completed with the lowest-numbered keys
//     not already listed, at weight 0 (what TopKRows gives on the pattern).
//     Never affected by SumRows.
//   - Spans: SpanMass[s] holds Σ_{j in span} P[i,j]. A span is keys
//     [lo, hi) with lo = Lo, plus the query's own position p when
//     LoRelative is set, and hi = Hi, plus p when HiRelative is set
//     (KeySpan.Bounds), clipped to [0, Tk).
//   - KeySets: SetMass[s] holds Σ_{j in set(b, r)} P[i,j] for the keys that
//     the set lists for sequence b and the r-th asked row (a key listed
//     twice counts twice; keys outside [0, Tk) or disallowed add 0).
//   - Entropy: −Σ_j P[i,j]·log P[i,j] in nats (0·log 0 = 0; 0 for a row
//     with no allowed key).
//   - LSE: LSE [B, H, Tq] (every row, whatever Rows says): lse_i as above,
//     -Inf for a row with no allowed key. Never affected by SumRows.
// Masses and entropies should be accumulated in float64 (or compensated
// fp32) so that sums over 128K keys stay within 1e-5 of the exact value.

// AttnSpec says what an Attention call returns besides z. The zero value
// asks for nothing: the backend runs its fastest (flash-style) path.
type AttnSpec struct {
	// Scores and Pattern ask for this layer's full [B, H, Tq, Tk] scores
	// and pattern. Only hooks that cache them ask; they cost T×T memory.
	Scores, Pattern bool
	// Rows are the query rows the reductions cover (ascending, each in
	// [0, Tq)); nil covers every row.
	Rows []int
	// TopK > 0 asks for the TopK most-attended keys of each row.
	TopK int
	// Spans asks for the attention mass of each row on each span of keys.
	Spans []KeySpan
	// KeySets asks for the attention mass of each row on a set of keys of
	// its own (for example the cells a head detector predicts).
	KeySets []KeySet
	// Entropy asks for each row's attention entropy in nats.
	Entropy bool
	// SumRows returns span masses, key-set masses and entropies summed over
	// the rows asked, one value per (sequence, head): the per-head
	// accumulators of a head score.
	SumRows bool
	// LSE asks for every row's log-sum-exp of its scores.
	LSE bool
}

// KeySpan is a range of keys [Lo, Hi), clipped to the valid keys. An end
// marked relative counts from each query's own key position p. For example
// {Lo: 0, Hi: 4} is an attention sink of four tokens, {Lo: -63, Hi: 1,
// LoRelative: true, HiRelative: true} the 64 most recent keys, the current
// one included, and {Lo: 1, Hi: 0, HiRelative: true} every earlier key but
// the first.
type KeySpan struct {
	Lo, Hi                 int
	LoRelative, HiRelative bool
}

// Bounds gives the span's keys [lo, hi) for the query at key position p,
// before clipping to the valid keys.
func (sp KeySpan) Bounds(p int) (lo, hi int) {
	lo, hi = sp.Lo, sp.Hi
	if sp.LoRelative {
		lo += p
	}
	if sp.HiRelative {
		hi += p
	}
	return lo, hi
}

// KeySet lists, for every sequence b and every asked row r (its index in
// AttnSpec.Rows, or the query itself when Rows is nil), a set of key
// positions: Keys[Off[b*R+r] : Off[b*R+r+1]], where R is the number of
// asked rows. Off has B*R+1 ascending entries, Off[0] = 0.
type KeySet struct {
	Off  []int32
	Keys []int32
}

// Reductions reports whether the spec asks for any reduction.
func (s AttnSpec) Reductions() bool {
	return s.TopK > 0 || len(s.Spans) > 0 || len(s.KeySets) > 0 || s.Entropy
}

// AttnResult is what Attention returns. Fields that were not asked for are
// nil.
type AttnResult struct {
	// Z is [B*Tq, H*Dh], the mixed values.
	Z Tensor
	// Scores and Pattern are [B, H, Tq, Tk] when asked.
	Scores, Pattern Tensor
	// TopIdx and TopVal are [B, H, R, K'] key positions and weights.
	TopIdx []int32
	TopVal []float32
	// SpanMass[s] and SetMass[s] are [B, H, R] (or [B, H] with SumRows),
	// for spec.Spans[s] and spec.KeySets[s].
	SpanMass, SetMass [][]float32
	// Entropy is [B, H, R] (or [B, H] with SumRows).
	Entropy []float32
	// LSE is [B, H, Tq].
	LSE []float32
}

// allowed says whether query i (absolute position p) of sequence b may
// attend to key j under mask; Tk is the number of valid keys.
func (mask AttnMask) allowed(b, Tk, p, j int) bool {
	if mask.Causal && j > p {
		return false
	}
	if mask.Window > 0 && p-j >= mask.Window {
		return false
	}
	return mask.KeyValid == nil || mask.KeyValid[b*Tk+j]
}

// keyRange gives the keys [lo, hi) that query positions [p0, p1) may reach
// under the causal and window parts of the mask (padding aside).
func (mask AttnMask) keyRange(Tk, p0, p1 int) (lo, hi int) {
	hi = Tk
	if mask.Causal {
		hi = min(Tk, p1)
	}
	if mask.Window > 0 {
		lo = max(0, p0-mask.Window+1)
	}
	return lo, max(lo, hi)
}

// SumRowsPerHead folds a result's per-row span masses, key-set masses and
// entropies, [B, H, R] for R asked rows, into per-head sums [B, H]: what
// AttnSpec.SumRows asks for. Backends reduce per row, then call it.
func SumRowsPerHead(res *AttnResult, s AttnShape, R int) {
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
