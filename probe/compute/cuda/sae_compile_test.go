package cuda

import "testing"

// NVRTC needs no GPU: where it is installed the SAE kernels must compile
// for sm_90 and sm_80.
func TestSAEKernelsCompile(t *testing.T) {
	if _, err := loadNVRTC(); err != nil {
		t.Skipf("no NVRTC here: %v", err)
	}
	t.Setenv("LOUPE_CACHE", t.TempDir())
	for _, arch := range []int{80, 90} {
		bin, err := compile("sae", saeSource, arch)
		if err != nil {
			t.Fatal(err)
		}
		if len(bin) == 0 {
			t.Fatalf("sae sm_%d: empty cubin", arch)
		}
	}
}
