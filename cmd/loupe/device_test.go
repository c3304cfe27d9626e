package main

import (
	"strings"
	"testing"

	"github.com/loupe-dev/loupe/probe/compute/cuda"
)

// --device on a machine without a usable GPU (CI): cuda is a clear error
// and exit status 1, auto runs on the CPU after one line saying so, and a
// device Loupe does not know is a usage error.
func TestDeviceFlagWithoutGPU(t *testing.T) {
	if devs, err := cuda.Devices(); err == nil {
		t.Skipf("a GPU is present (%s): this test is for machines without one", devs[0].Name)
	}
	code, _, stderr := runCLI(t, "run", "--device", "cuda", "--prompt", "The day after Monday is")
	if code != 1 || !strings.Contains(stderr, "--device cuda: cuda: cannot open") || !strings.Contains(stderr, "looked in") {
		t.Errorf("--device cuda: exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = runCLI(t, "run", "--device", "cuda:1", "--prompt", "x")
	if code != 1 || !strings.Contains(stderr, "--device cuda:1") {
		t.Errorf("--device cuda:1: exit %d, stderr %q", code, stderr)
	}
	code, stdout, stderr := runCLI(t, "run", "--device", "auto", "--prompt", "The day after Monday is", "--top", "1")
	if code != 0 || !strings.Contains(stdout, "Tuesday") || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "running on the CPU") {
		t.Errorf("--device auto: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	for _, bad := range [][]string{{"--device", "tpu"}, {"--device", "cuda:x"}, {"--weight-dtype", "f8"}} {
		code, _, stderr = runCLI(t, append([]string{"run", "--prompt", "x"}, bad...)...)
		if code != 2 || !strings.Contains(stderr, bad[0]) {
			t.Errorf("%v: exit %d, stderr %q", bad, code, stderr)
		}
	}
	code, stdout, _ = runCLI(t, "devices")
	if code != 0 || !strings.HasPrefix(stdout, "no GPU: cuda: cannot open the CUDA driver") {
		t.Errorf("loupe devices: exit %d, %q", code, stdout)
	}
}
