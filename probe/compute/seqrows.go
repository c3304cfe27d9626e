package compute

// SeqRowCopier is a backend that appends rows to every sequence of a
// batch in one operation (a KV cache's append on a GPU, where one launch
// beats one copy per sequence).
type SeqRowCopier interface {
	// CopySeqRowsInPlace writes src's B*T rows into dst: rows
	// [s*T, (s+1)*T) of src to rows [s*capacity+off, s*capacity+off+T) of
	// dst, for every sequence s < B.
	CopySeqRowsInPlace(dst, src Tensor, B, T, capacity, off int)
}

// CopySeqRows is SeqRowCopier's append on any backend: one operation
// where b offers it, else one Rows and CopyRowsInPlace per sequence.
func CopySeqRows(b Backend, dst, src Tensor, B, T, capacity, off int) {
	if c, ok := b.(SeqRowCopier); ok && B > 1 {
		c.CopySeqRowsInPlace(dst, src, B, T, capacity, off)
		return
	}
	for s := 0; s < B; s++ {
		src := src
		if B > 1 {
			src = b.Rows(src, s*T, (s+1)*T)
		}
		b.CopyRowsInPlace(dst, src, s*capacity+off)
	}
}
