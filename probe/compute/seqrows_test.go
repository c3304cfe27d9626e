package compute

import (
	"slices"
	"testing"
)

// CopySeqRows on a backend without SeqRowCopier (the CPU) appends each
// sequence's rows at its own offset in the cache layout.
func TestCopySeqRowsAppendsPerSequence(t *testing.T) {
	c := NewCPU()
	const B, T, capacity, off, cols = 3, 2, 5, 1, 4
	dst := c.Zeros(B*capacity, cols)
	src := make([]float32, B*T*cols)
	for i := range src {
		src[i] = float32(i + 1)
	}
	CopySeqRows(c, dst, c.FromHost(src, B*T, cols), B, T, capacity, off)
	want := make([]float32, B*capacity*cols)
	for s := 0; s < B; s++ {
		copy(want[(s*capacity+off)*cols:], src[s*T*cols:(s+1)*T*cols])
	}
	if got := c.ToHost(dst); !slices.Equal(got, want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
}
