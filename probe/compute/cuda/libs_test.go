package cuda

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A fake system: the library search must find each library where the
// CUDA toolkit, the nvidia-* Python wheels or LD_LIBRARY_PATH put it.
func TestSearchFindsLibrariesWhereUsersHaveThem(t *testing.T) {
	root := t.TempDir()
	touch := func(p string) string {
		p = filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// A rooted glob: patterns name absolute paths, looked up under root.
	glob := func(p string) []string {
		m, _ := filepath.Glob(filepath.Join(root, p))
		for i := range m {
			m[i] = strings.TrimPrefix(m[i], root)
		}
		return m
	}
	exists := func(p string) bool { return fileExists(filepath.Join(root, p)) }
	env := map[string]string{"HOME": "/home/u"}
	getenv := func(k string) string { return env[k] }

	// CUDA 13 wheels: everything in nvidia/cu13/lib of a venv's site-packages.
	touch("opt/torch/.venv/lib/python3.12/site-packages/nvidia/cu13/lib/libnvrtc.so.13")
	// CUDA 12 wheels: a package folder per library, in the user's site.
	touch("home/u/.local/lib/python3.11/site-packages/nvidia/cublas/lib/libcublas.so.12")
	// The toolkit and a folder named by LD_LIBRARY_PATH.
	touch("usr/local/cuda-12.4/lib64/libnvrtc.so.12")
	touch("drv/libcuda.so.1")
	env["LD_LIBRARY_PATH"] = "/drv:/nonexistent"

	dirs := searchDirs(getenv, glob)
	for lib, want := range map[*library]string{
		&libDriver: "/drv/libcuda.so.1",
		// The toolkit comes before the wheels.
		&libNVRTC:  "/usr/local/cuda-12.4/lib64/libnvrtc.so.12",
		&libCUBLAS: "/home/u/.local/lib/python3.11/site-packages/nvidia/cublas/lib/libcublas.so.12",
	} {
		got, ok := lib.find(dirs, exists)
		if !ok || got != want {
			t.Errorf("%s: found %q (%v), want %q", lib.what, got, ok, want)
		}
	}
	os.Remove(filepath.Join(root, "usr/local/cuda-12.4/lib64/libnvrtc.so.12"))
	if got, _ := libNVRTC.find(dirs, exists); got != "/opt/torch/.venv/lib/python3.12/site-packages/nvidia/cu13/lib/libnvrtc.so.13" {
		t.Errorf("nvrtc from the CUDA 13 wheel: found %q", got)
	}
	// $LOUPE_CUDA_LIB comes first of all.
	touch("mine/libcuda.so.1")
	env["LOUPE_CUDA_LIB"] = "/mine"
	if got, _ := libDriver.find(searchDirs(getenv, glob), exists); got != "/mine/libcuda.so.1" {
		t.Errorf("LOUPE_CUDA_LIB: found %q", got)
	}
}

func TestMissingLibraryErrorNamesItAndEveryPlace(t *testing.T) {
	e := &MissingError{What: libNVRTC.what, Names: libNVRTC.names, Looked: []string{"/a", "/b/lib"}}
	msg := e.Error()
	for _, want := range []string{"NVRTC", "libnvrtc.so.13", "/a", "/b/lib", "LOUPE_CUDA_LIB"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
}

// On a machine without a GPU (CI), New fails with an error that says why;
// it never panics. On a GPU machine it works.
func TestNewWithoutGPUSaysWhy(t *testing.T) {
	b, err := New(Options{})
	if err == nil {
		defer b.Close()
		t.Skipf("a GPU is present (%s): nothing to check here", b.Name())
	}
	var me *MissingError
	if errors.As(err, &me) {
		if len(me.Looked) == 0 {
			t.Fatalf("no places listed: %v", err)
		}
	}
	if !strings.HasPrefix(err.Error(), "cuda: ") {
		t.Fatalf("error %q does not say it comes from the GPU backend", err)
	}
	t.Logf("no GPU: %v", err)
}

// NVRTC needs no GPU: where it is installed (a CUDA toolkit, PyTorch's
// nvidia wheels) the embedded kernels must compile for sm_90 and sm_80.
func TestKernelsCompile(t *testing.T) {
	if _, err := loadNVRTC(); err != nil {
		t.Skipf("no NVRTC here: %v", err)
	}
	t.Setenv("LOUPE_CACHE", t.TempDir())
	for _, arch := range []int{80, 90} {
		for name, src := range map[string]string{"kernels": kernelSource, "flash": flashSource} {
			bin, err := compile(name, src, arch)
			if err != nil {
				t.Fatal(err)
			}
			if len(bin) == 0 {
				t.Fatalf("%s sm_%d: empty cubin", name, arch)
			}
		}
	}
	if bin, err := compileFor("flash3", flash3Source, "90a"); err != nil || len(bin) == 0 {
		t.Fatalf("flash3 for sm_90a: %d bytes, %v", len(bin), err)
	}
}
