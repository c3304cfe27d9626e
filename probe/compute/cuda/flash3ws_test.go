package cuda

import "testing"

// The default attention build for each shape (no GPU needed: the choice
// reads only which kernels and driver functions were found).
func TestFlashVariantDefaults(t *testing.T) {
	b := &Backend{fn: map[string]uintptr{flash3Kernel: 1}, d: &driverAPI{cuTensorMapEncodeTiled: 1}}
	for _, tc := range []struct {
		name        string
		dh, tq, tk  int
		top, noMaps bool
		want        string
		threads     int
	}{
		{"prefill 2K, d128", 128, 2048, 2048, false, false, flash3WSP, 384},
		{"8 x 1024", 128, 1024, 1024, false, false, flash3WSP, 384},
		{"decoding", 128, 1, 300, false, false, flash3Kernel + "_s2", 256},
		{"short chunk", 128, f3WSMinQueries - 1, 4000, false, false, flash3Kernel + "_s2", 256},
		{"no tensor maps", 128, 4096, 4096, false, true, flash3Kernel + "_s2", 256},
		{"no keys", 128, 4096, 0, false, false, flash3Kernel + "_s2", 256},
		{"head dimension 64", 64, 4096, 4096, false, false, "flash2_bf16_d64_2", 256},
		{"top-1 asked", 128, 4096, 4096, true, false, "flash2top_bf16_d128_w4", 128},
	} {
		b.d.cuTensorMapEncodeTiled = 1
		if tc.noMaps {
			b.d.cuTensorMapEncodeTiled = 0
		}
		name, threads, _ := b.flashVariant(tc.dh, tc.tq, tc.tk, tc.top)
		if name != tc.want || threads != tc.threads {
			t.Errorf("%s: %s with %d threads, want %s with %d", tc.name, name, threads, tc.want, tc.threads)
		}
	}
	b.flashOcc = "wsp" // an explicit choice holds for short blocks too
	if name, _, _ := b.flashVariant(128, 1, 300, false); name != flash3WSP {
		t.Errorf("LOUPE_FLASH_OCC=wsp when decoding: %s", name)
	}
}
