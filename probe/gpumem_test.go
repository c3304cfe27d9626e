package probe

import (
	"context"
	"strings"
	"testing"

	"github.com/loupe-dev/loupe/probe/compute"
)

// smallDevice is a CPU backend that says its tensors live in a device
// memory of its own with free bytes left, as a GPU does.
type smallDevice struct {
	*compute.CPU
	free uint64
}

func (d smallDevice) FreeBytes() uint64 { return d.free }

// On a backend with a device memory of its own, a pass is checked against
// that memory, not the host's: a prompt whose pass cannot fit in what the
// device has free is refused before it starts, saying how long a prompt
// would fit; with room to spare it runs.
func TestPassCheckedAgainstDeviceMemory(t *testing.T) {
	c := testConfigs()["llama"]
	ts := randomTensors(c, 1)
	ctx := context.Background()
	ids := make([]int, 60)
	for i := range ids {
		ids[i] = i % c.Vocab
	}
	small, err := New(c, ts, smallDevice{compute.NewCPU(), 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := small.Forward(ctx, [][]int{ids}, Options{}); err == nil || !strings.Contains(err.Error(), "more than the 0.00 GiB available") {
		t.Fatalf("a pass too big for the device's free memory gave %v", err)
	}
	big, err := New(c, ts, smallDevice{compute.NewCPU(), 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := big.Forward(ctx, [][]int{ids}, Options{}); err != nil {
		t.Fatal(err)
	}
}
