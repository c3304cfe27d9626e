package cuda

import (
	"fmt"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
)

// The C functions Loupe calls, resolved once per process. Every call goes
// through purego.SyscallN with uintptr arguments: pointers to Go memory
// are passed as uintptr(unsafe.Pointer(&x)) inside the call expression,
// which SyscallN's go:uintptrescapes keeps valid for the call.

type driverAPI struct {
	path                                                          string
	cuInit, cuDriverGetVersion, cuDeviceGetCount, cuDeviceGet     uintptr
	cuDeviceGetName, cuDeviceGetAttribute, cuDeviceTotalMem       uintptr
	cuDevicePrimaryCtxRetain, cuDevicePrimaryCtxRelease           uintptr
	cuCtxSetCurrent, cuCtxSynchronize, cuMemGetInfo               uintptr
	cuMemAlloc, cuMemFree, cuMemcpyHtoDAsync, cuMemcpyDtoHAsync   uintptr
	cuMemcpyDtoDAsync, cuMemsetD8Async                            uintptr
	cuStreamCreate, cuStreamSynchronize                           uintptr
	cuStreamWaitEvent, cuStreamDestroy                            uintptr // the copy stream (hostcopy.go)
	cuMemHostRegister, cuMemHostUnregister                        uintptr
	cuModuleLoadData, cuModuleGetFunction, cuLaunchKernel         uintptr
	cuFuncSetAttribute, cuGetErrorName, cuGetErrorString          uintptr
	cuEventCreate, cuEventRecord, cuEventSynchronize, cuEventTime uintptr
	cuMemAllocHost, cuMemFreeHost, cuEventDestroy                 uintptr
	cuTensorMapEncodeTiled                                        uintptr // 0 where the driver lacks it (before CUDA 12)
}

type nvrtcAPI struct {
	path                                                   string
	version, create, compile, logSize, log, cubinSize, cub uintptr
	destroy, errString                                     uintptr
}

type cublasAPI struct {
	path                                          string
	ltPath                                        string // libcublasLt beside it (or its soname)
	create, setStream, version, gemmEx, setMath   uintptr
	gemmStridedBatchedEx, setWorkspace, errString uintptr
}

var (
	driverOnce sync.Once
	driver     driverAPI
	driverErr  error
	nvrtcOnce  sync.Once
	nvrtc      nvrtcAPI
	nvrtcErr   error
	cublasOnce sync.Once
	cublas     cublasAPI
	cublasErr  error
)

func loadDriver() (*driverAPI, error) {
	driverOnce.Do(func() {
		h, path, err := libDriver.open()
		if err != nil {
			driverErr = err
			return
		}
		d := &driver
		d.path = path
		driverErr = symbols(h, path, map[string]*uintptr{
			"cuInit": &d.cuInit, "cuDriverGetVersion": &d.cuDriverGetVersion,
			"cuDeviceGetCount": &d.cuDeviceGetCount, "cuDeviceGet": &d.cuDeviceGet,
			"cuDeviceGetName": &d.cuDeviceGetName, "cuDeviceGetAttribute": &d.cuDeviceGetAttribute,
			"cuDeviceTotalMem_v2": &d.cuDeviceTotalMem, "cuDevicePrimaryCtxRetain": &d.cuDevicePrimaryCtxRetain,
			"cuDevicePrimaryCtxRelease_v2": &d.cuDevicePrimaryCtxRelease, "cuCtxSetCurrent": &d.cuCtxSetCurrent,
			"cuCtxSynchronize": &d.cuCtxSynchronize, "cuMemGetInfo_v2": &d.cuMemGetInfo,
			"cuMemAlloc_v2": &d.cuMemAlloc, "cuMemFree_v2": &d.cuMemFree,
			"cuMemcpyHtoDAsync_v2": &d.cuMemcpyHtoDAsync, "cuMemcpyDtoHAsync_v2": &d.cuMemcpyDtoHAsync,
			"cuMemcpyDtoDAsync_v2": &d.cuMemcpyDtoDAsync, "cuMemsetD8Async": &d.cuMemsetD8Async,
			"cuStreamCreate": &d.cuStreamCreate, "cuStreamSynchronize": &d.cuStreamSynchronize,
			"cuModuleLoadData": &d.cuModuleLoadData, "cuModuleGetFunction": &d.cuModuleGetFunction,
			"cuLaunchKernel": &d.cuLaunchKernel, "cuFuncSetAttribute": &d.cuFuncSetAttribute,
			"cuGetErrorName": &d.cuGetErrorName, "cuGetErrorString": &d.cuGetErrorString,
			"cuEventCreate": &d.cuEventCreate, "cuEventRecord": &d.cuEventRecord,
			"cuEventSynchronize": &d.cuEventSynchronize, "cuEventElapsedTime": &d.cuEventTime,
			"cuMemAllocHost_v2": &d.cuMemAllocHost, "cuMemFreeHost": &d.cuMemFreeHost,
			"cuEventDestroy_v2": &d.cuEventDestroy,
			"cuStreamWaitEvent": &d.cuStreamWaitEvent, "cuStreamDestroy_v2": &d.cuStreamDestroy,
			"cuMemHostRegister_v2": &d.cuMemHostRegister, "cuMemHostUnregister": &d.cuMemHostUnregister,
		})
		if driverErr != nil {
			return
		}
		d.cuTensorMapEncodeTiled, _ = purego.Dlsym(h, "cuTensorMapEncodeTiled") // optional: flash3ws alone needs it
		if r := call(d.cuInit, 0); r != 0 {
			driverErr = fmt.Errorf("cuda: cuInit: %s (%s; is an NVIDIA GPU present and its driver loaded?)", d.errName(r), path)
		}
	})
	if driverErr != nil {
		return nil, driverErr
	}
	return &driver, nil
}

func loadNVRTC() (*nvrtcAPI, error) {
	nvrtcOnce.Do(func() {
		h, path, err := libNVRTC.open()
		if err != nil {
			nvrtcErr = err
			return
		}
		n := &nvrtc
		n.path = path
		nvrtcErr = symbols(h, path, map[string]*uintptr{
			"nvrtcVersion": &n.version, "nvrtcCreateProgram": &n.create, "nvrtcCompileProgram": &n.compile,
			"nvrtcGetProgramLogSize": &n.logSize, "nvrtcGetProgramLog": &n.log,
			"nvrtcGetCUBINSize": &n.cubinSize, "nvrtcGetCUBIN": &n.cub,
			"nvrtcDestroyProgram": &n.destroy, "nvrtcGetErrorString": &n.errString,
		})
	})
	if nvrtcErr != nil {
		return nil, nvrtcErr
	}
	return &nvrtc, nil
}

func loadCUBLAS() (*cublasAPI, error) {
	cublasOnce.Do(func() {
		h, path, err := libCUBLAS.open()
		if err != nil {
			cublasErr = err
			return
		}
		c := &cublas
		c.path = path
		cublasErr = symbols(h, path, map[string]*uintptr{
			"cublasCreate_v2": &c.create, "cublasSetStream_v2": &c.setStream,
			"cublasGetVersion_v2": &c.version, "cublasGemmEx": &c.gemmEx,
			"cublasSetMathMode": &c.setMath, "cublasGemmStridedBatchedEx": &c.gemmStridedBatchedEx,
			"cublasSetWorkspace_v2": &c.setWorkspace, "cublasGetStatusString": &c.errString,
		})
		c.ltPath = ltCompanion(path)
	})
	if cublasErr != nil {
		return nil, cublasErr
	}
	return &cublas, nil
}

// call invokes a C function returning a 32-bit status.
//
// go:uintptrescapes matters: callers pass Go memory as
// uintptr(unsafe.Pointer(&x)) in the call expression, and the directive
// keeps x on the heap and alive until the C function returns. Without it
// the garbage collector could reuse an uploaded index array while the
// driver copies it (seen: attn_probs read garbage row indices and faulted
// with an illegal address, only when a collection ran), and a stack
// variable could move under a pointer the driver writes through.
//
//go:uintptrescapes
func call(fn uintptr, args ...uintptr) uint32 {
	r, _, _ := purego.SyscallN(fn, args...)
	return uint32(r)
}

// callRaw invokes a C function and returns its raw result (see call).
//
//go:uintptrescapes
func callRaw(fn uintptr, args ...uintptr) (uintptr, uintptr, uintptr) {
	return purego.SyscallN(fn, args...)
}

// goString copies a NUL-terminated C string.
func goString(p uintptr) string {
	if p == 0 {
		return ""
	}
	ptr := *(*unsafe.Pointer)(unsafe.Pointer(&p))
	n := 0
	for *(*byte)(unsafe.Add(ptr, n)) != 0 {
		n++
	}
	return string(unsafe.Slice((*byte)(ptr), n))
}

// cString is s with a NUL terminator, for passing as const char*.
func cString(s string) []byte { return append([]byte(s), 0) }

func (d *driverAPI) errName(r uint32) string {
	var name, desc uintptr
	call(d.cuGetErrorName, uintptr(r), uintptr(unsafe.Pointer(&name)))
	call(d.cuGetErrorString, uintptr(r), uintptr(unsafe.Pointer(&desc)))
	if name == 0 {
		return fmt.Sprintf("CUDA error %d", r)
	}
	return fmt.Sprintf("%s (%s)", goString(name), goString(desc))
}

// check turns a driver status into an error naming the call.
func (d *driverAPI) check(what string, r uint32) error {
	if r == 0 {
		return nil
	}
	return fmt.Errorf("cuda: %s: %s", what, d.errName(r))
}

const (
	errOutOfMemory = 2 // CUDA_ERROR_OUT_OF_MEMORY

	attrMultiprocessors = 16 // CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT
	attrCCMajor         = 75
	attrCCMinor         = 76
	attrMaxSharedOptin  = 97 // CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN

	funcAttrMaxDynamicShared = 8 // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
)
