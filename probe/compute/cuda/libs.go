package cuda

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ebitengine/purego"
)

// A library Loupe opens at run time, by the file names it may have.
type library struct {
	what  string   // "the CUDA driver", for messages
	names []string // sonames, newest first
	// companions are opened from the same folder first (RTLD_GLOBAL), so
	// that the library's own dlopen of them finds them wherever it is.
	companions []string
}

var (
	libDriver = library{what: "the CUDA driver (libcuda, installed with the NVIDIA driver)", names: []string{"libcuda.so.1", "libcuda.so"}}
	libNVRTC  = library{what: "NVRTC, CUDA's run-time compiler (libnvrtc)",
		names:      []string{"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"},
		companions: []string{"libnvrtc-builtins.so.13.*", "libnvrtc-builtins.so.12.*", "libnvrtc-builtins.so"}}
	libCUBLAS = library{what: "cuBLAS (libcublas and libcublasLt)",
		names:      []string{"libcublas.so.13", "libcublas.so.12", "libcublas.so"},
		companions: []string{"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"}}
)

// searchDirs lists the folders Loupe looks in, in order: $LOUPE_CUDA_LIB,
// LD_LIBRARY_PATH, the CUDA toolkit's folders, the lib folders of the
// nvidia-* Python wheels that PyTorch installs, then the system's library
// folders. getenv and glob are parameters so tests can give a fake system.
func searchDirs(getenv func(string) string, glob func(string) []string) []string {
	var dirs []string
	add := func(ds ...string) {
		for _, d := range ds {
			if d != "" && !contains(dirs, d) {
				dirs = append(dirs, d)
			}
		}
	}
	add(filepath.SplitList(getenv("LOUPE_CUDA_LIB"))...)
	add(filepath.SplitList(getenv("LD_LIBRARY_PATH"))...)
	for _, v := range []string{"CUDA_HOME", "CUDA_PATH", "CUDA_ROOT"} {
		if r := getenv(v); r != "" {
			add(filepath.Join(r, "lib64"), filepath.Join(r, "lib"), filepath.Join(r, "targets/x86_64-linux/lib"))
		}
	}
	add("/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib")
	add(newestFirst(glob("/usr/local/cuda-*/lib64"))...)
	add(newestFirst(glob("/usr/local/cuda-*/targets/x86_64-linux/lib"))...)
	// Python environments: the active one, then the usual places.
	var sites []string
	for _, v := range []string{"VIRTUAL_ENV", "CONDA_PREFIX"} {
		if r := getenv(v); r != "" {
			sites = append(sites, glob(filepath.Join(r, "lib/python3*/site-packages"))...)
		}
	}
	if h := getenv("HOME"); h != "" {
		sites = append(sites, glob(filepath.Join(h, ".local/lib/python3*/site-packages"))...)
	}
	for _, p := range []string{"/usr/local/lib/python3*/dist-packages", "/usr/local/lib/python3*/site-packages",
		"/usr/lib/python3*/dist-packages", "/usr/lib/python3*/site-packages",
		"/opt/*/lib/python3*/site-packages", "/opt/*/.venv/lib/python3*/site-packages", "/opt/conda/lib/python3*/site-packages"} {
		sites = append(sites, glob(p)...)
	}
	for _, s := range newestFirst(sites) {
		// CUDA 13 wheels put every library in nvidia/cu13/lib; CUDA 12
		// wheels give each its own package folder.
		add(newestFirst(glob(filepath.Join(s, "nvidia/cu1*/lib")))...)
		add(filepath.Join(s, "nvidia/cublas/lib"), filepath.Join(s, "nvidia/cuda_nvrtc/lib"), filepath.Join(s, "nvidia/cuda_runtime/lib"))
	}
	if r := getenv("CONDA_PREFIX"); r != "" {
		add(filepath.Join(r, "lib"))
	}
	add("/usr/local/nvidia/lib64", "/usr/local/nvidia/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/lib/x86_64-linux-gnu", "/usr/lib/wsl/lib")
	return dirs
}

// newestFirst sorts paths so that higher version numbers come first.
func newestFirst(ps []string) []string {
	ps = append([]string(nil), ps...)
	sort.Slice(ps, func(i, j int) bool { return ps[i] > ps[j] })
	return ps
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

// find gives the first existing file of lib in dirs (names in order of
// preference within each folder).
func (lib library) find(dirs []string, exists func(string) bool) (string, bool) {
	for _, d := range dirs {
		for _, n := range lib.names {
			p := filepath.Join(d, n)
			if exists(p) {
				return p, true
			}
		}
	}
	return "", false
}

// MissingError says which library could not be opened and every place
// Loupe looked.
type MissingError struct {
	What   string
	Names  []string
	Looked []string
	Detail string // the loader's message when a file was found but failed to open
}

func (e *MissingError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "cuda: cannot open %s", e.What)
	if e.Detail != "" {
		fmt.Fprintf(&b, ": %s", e.Detail)
	} else {
		fmt.Fprintf(&b, ": none of %s found", strings.Join(e.Names, ", "))
	}
	fmt.Fprintf(&b, "; looked in %s, then the system loader's path (set LOUPE_CUDA_LIB to a folder holding it)", strings.Join(e.Looked, ", "))
	return b.String()
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

func globAll(p string) []string {
	m, _ := filepath.Glob(p)
	return m
}

// open loads lib: from the first folder that has it, else by soname
// through the system loader (ld.so.cache, the executable's own path).
func (lib library) open() (uintptr, string, error) {
	dirs := searchDirs(os.Getenv, globAll)
	const mode = purego.RTLD_NOW | purego.RTLD_GLOBAL
	if p, ok := lib.find(dirs, fileExists); ok {
		dir := filepath.Dir(p)
		for _, c := range lib.companions {
			for _, cp := range newestFirst(globAll(filepath.Join(dir, c))) {
				if _, err := purego.Dlopen(cp, mode); err == nil {
					break
				}
			}
		}
		h, err := purego.Dlopen(p, mode)
		if err != nil {
			return 0, "", &MissingError{What: lib.what, Names: lib.names, Looked: dirs, Detail: fmt.Sprintf("%s: %v", p, err)}
		}
		return h, p, nil
	}
	for _, n := range lib.names {
		if h, err := purego.Dlopen(n, mode); err == nil {
			return h, n, nil
		}
	}
	return 0, "", &MissingError{What: lib.what, Names: lib.names, Looked: dirs}
}

// symbols resolves each name into its pointer; the error names the first
// missing symbol and the library.
func symbols(h uintptr, path string, syms map[string]*uintptr) error {
	for name, p := range syms {
		addr, err := purego.Dlsym(h, name)
		if err != nil {
			return fmt.Errorf("cuda: %s has no symbol %s (too old a version?)", path, name)
		}
		*p = addr
	}
	return nil
}
