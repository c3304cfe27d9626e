package cuda

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"unsafe"

	"github.com/loupe-dev/loupe/internal/atomicfile"
)

//go:embed kernels.cu
var kernelSource string

// tileSource holds the types and tile-copy helpers both attention sources
// use; each is compiled with it in front.
//
//go:embed tile.cuh
var tileSource string

//go:embed flash.cu
var flashBody string

//go:embed flash3.cu
var flash3Body string

// flashSource is the attention module for every GPU (flash2 and the
// float32 kernel); flash3Source is the Hopper attention kernel, compiled
// for sm_90a alone.
var (
	flashSource  = tileSource + flashBody
	flash3Source = tileSource + flash3Body
)

// cacheDir is where compiled kernels are kept: $LOUPE_CACHE/cuda, else the
// user cache folder's loupe/cuda.
func cacheDir() string {
	if d := os.Getenv("LOUPE_CACHE"); d != "" {
		return filepath.Join(d, "cuda")
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "loupe", "cuda")
	}
	return ""
}

// compile gives the cubin of src for sm_<arch>, from the cache when an
// earlier run compiled the same source with the same NVRTC, else by NVRTC
// (and then cached: written to a temporary file and renamed, so a reader
// never sees half a file).
func compile(name, src string, arch int) ([]byte, error) {
	return compileFor(name, src, fmt.Sprint(arch))
}

// compileFor is compile for the target sm_<target> ("90", or "90a" for
// the Hopper-only instructions: wgmma, setmaxnreg).
func compileFor(name, src, target string) ([]byte, error) {
	n, err := loadNVRTC()
	if err != nil {
		return nil, err
	}
	var major, minor int32
	call(n.version, uintptr(unsafe.Pointer(&major)), uintptr(unsafe.Pointer(&minor)))
	// No fast math: the fp32 mode must match the CPU and transformers.
	opts := []string{"--gpu-architecture=sm_" + target, "--std=c++17", "-default-device"}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00nvrtc %d.%d\x00%v\x00", src, major, minor, opts)
	key := hex.EncodeToString(h.Sum(nil))[:24]
	dir := cacheDir()
	path := ""
	if dir != "" {
		path = filepath.Join(dir, fmt.Sprintf("%s-sm%s-%s.cubin", name, target, key))
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			return b, nil
		}
	}
	var prog uintptr
	csrc, cname := cString(src), cString(name+".cu")
	if r := call(n.create, uintptr(unsafe.Pointer(&prog)), uintptr(unsafe.Pointer(&csrc[0])), uintptr(unsafe.Pointer(&cname[0])), 0, 0, 0); r != 0 {
		return nil, fmt.Errorf("cuda: nvrtcCreateProgram %s: %s", name, goString(nvrtcErrString(n, r)))
	}
	defer call(n.destroy, uintptr(unsafe.Pointer(&prog)))
	cs := make([][]byte, len(opts))
	ptrs := make([]uintptr, len(opts))
	for i, o := range opts {
		cs[i] = cString(o)
		ptrs[i] = uintptr(unsafe.Pointer(&cs[i][0]))
	}
	r := call(n.compile, prog, uintptr(len(opts)), uintptr(unsafe.Pointer(&ptrs[0])))
	runtime.KeepAlive(cs) // ptrs holds their addresses as integers
	if r != 0 {
		var size uintptr
		call(n.logSize, prog, uintptr(unsafe.Pointer(&size)))
		log := make([]byte, size+1)
		call(n.log, prog, uintptr(unsafe.Pointer(&log[0])))
		return nil, fmt.Errorf("cuda: NVRTC (%s) failed to compile %s for sm_%s: %s\n%s", n.path, name, target, goString(nvrtcErrString(n, r)), goString(uintptr(unsafe.Pointer(&log[0]))))
	}
	var size uintptr
	if r := call(n.cubinSize, prog, uintptr(unsafe.Pointer(&size))); r != 0 || size == 0 {
		return nil, fmt.Errorf("cuda: nvrtcGetCUBINSize %s: %s", name, goString(nvrtcErrString(n, r)))
	}
	bin := make([]byte, size)
	if r := call(n.cub, prog, uintptr(unsafe.Pointer(&bin[0]))); r != 0 {
		return nil, fmt.Errorf("cuda: nvrtcGetCUBIN %s: %s", name, goString(nvrtcErrString(n, r)))
	}
	if path != "" {
		writeCache(path, bin) // a cache that cannot be written only costs a recompile
	}
	return bin, nil
}

func nvrtcErrString(n *nvrtcAPI, r uint32) uintptr {
	s, _, _ := callRaw(n.errString, uintptr(r))
	return s
}

func writeCache(path string, b []byte) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return
	}
	atomicfile.WriteFile(path, b)
}
