package probe

import (
	"fmt"
	"sort"
	"testing"

	"github.com/loupe-dev/loupe/probe/compute"
)

// storeCPU is the CPU backend posing as a compute.WeightStore (as the GPU
// is, which keeps matrices in bf16): it records every matrix that reaches
// the backend through plain FromHost instead, i.e. would stay float32 on a
// GPU in bf16 mode.
type storeCPU struct {
	*compute.CPU
	plain *[]string
}

func (s storeCPU) FromHost(data []float32, shape ...int) compute.Tensor {
	if len(shape) == 2 {
		*s.plain = append(*s.plain, fmt.Sprint(shape))
	}
	return s.CPU.FromHost(data, shape...)
}

func (s storeCPU) FromHostWeight(data []float32, shape ...int) compute.Tensor {
	return s.CPU.FromHost(data, shape...)
}

// Every family's loader stores its weight matrices through
// compute.FromHostWeight, so that --dtype bf16 (the GPU's default) applies
// to all of them: a matrix loaded with plain FromHost stays float32 on the
// GPU and its products run at the float32 rate.
func TestLoadersStoreMatricesAsWeights(t *testing.T) {
	cs := testConfigs()
	names := make([]string, 0, len(cs))
	for n := range cs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		c := cs[name]
		var plain []string
		if _, err := New(c, randomTensors(c, 1), storeCPU{compute.NewCPU(), &plain}); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(plain) > 0 {
			t.Errorf("%s: %d matrices loaded as float32 (shapes %v)", name, len(plain), plain)
		}
	}
}
