package cuda

import (
	"fmt"
	"runtime"
	"unsafe"
)

// DeviceInfo describes one GPU.
type DeviceInfo struct {
	Index              int
	Name               string
	Major, Minor       int // compute capability
	Multiprocessors    int
	TotalBytes         uint64
	FreeBytes          uint64
	MaxSharedPerBlock  int // bytes a kernel may opt in to
	DriverVersion      int // e.g. 13000 for CUDA 13.0
	DriverLibrary      string
	NVRTCVersion       string // "" when NVRTC could not be opened
	NVRTCLibrary       string
	CUBLASVersion      int // e.g. 130100; 0 when cuBLAS could not be opened
	CUBLASLibrary      string
	LibraryProblems    []string // why NVRTC or cuBLAS is not usable
	RequiredCapability string   // what Loupe needs, for messages
}

// minMajor is the oldest compute capability Loupe's kernels target (bf16
// conversions need sm_80).
const minMajor = 8

// versionString gives "13.0" for 13000.
func versionString(v int) string { return fmt.Sprintf("%d.%d", v/1000, v%1000/10) }

// Devices lists the GPUs the driver sees, with the driver, NVRTC and
// cuBLAS versions and each GPU's free memory. The error says why there is
// none: no driver library (and where Loupe looked), no GPU, a driver error.
func Devices() ([]DeviceInfo, error) {
	d, err := loadDriver()
	if err != nil {
		return nil, err
	}
	var ver, count int32
	if err := d.check("cuDriverGetVersion", call(d.cuDriverGetVersion, uintptr(unsafe.Pointer(&ver)))); err != nil {
		return nil, err
	}
	if err := d.check("cuDeviceGetCount", call(d.cuDeviceGetCount, uintptr(unsafe.Pointer(&count)))); err != nil {
		return nil, err
	}
	if count == 0 {
		return nil, fmt.Errorf("cuda: the driver (%s, CUDA %s) sees no GPU", d.path, versionString(int(ver)))
	}
	var nvrtcVer, nvrtcPath string
	var problems []string
	if n, err := loadNVRTC(); err == nil {
		var major, minor int32
		call(n.version, uintptr(unsafe.Pointer(&major)), uintptr(unsafe.Pointer(&minor)))
		nvrtcVer, nvrtcPath = fmt.Sprintf("%d.%d", major, minor), n.path
	} else {
		problems = append(problems, err.Error())
	}
	cb, cbErr := loadCUBLAS()
	if cbErr != nil {
		problems = append(problems, cbErr.Error())
	}
	// Free memory and the cuBLAS version need a context, which is bound to
	// the calling OS thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var out []DeviceInfo
	for i := 0; i < int(count); i++ {
		var dev int32
		if err := d.check("cuDeviceGet", call(d.cuDeviceGet, uintptr(unsafe.Pointer(&dev)), uintptr(i))); err != nil {
			return nil, err
		}
		info := DeviceInfo{Index: i, DriverVersion: int(ver), DriverLibrary: d.path, NVRTCVersion: nvrtcVer, NVRTCLibrary: nvrtcPath,
			LibraryProblems: problems, RequiredCapability: fmt.Sprintf("compute capability %d.0 or newer", minMajor)}
		name := make([]byte, 256)
		call(d.cuDeviceGetName, uintptr(unsafe.Pointer(&name[0])), 256, uintptr(dev))
		info.Name = goString(uintptr(unsafe.Pointer(&name[0])))
		attr := func(a int) int {
			var v int32
			call(d.cuDeviceGetAttribute, uintptr(unsafe.Pointer(&v)), uintptr(a), uintptr(dev))
			return int(v)
		}
		info.Major, info.Minor = attr(attrCCMajor), attr(attrCCMinor)
		info.Multiprocessors = attr(attrMultiprocessors)
		info.MaxSharedPerBlock = attr(attrMaxSharedOptin)
		var total uint64
		call(d.cuDeviceTotalMem, uintptr(unsafe.Pointer(&total)), uintptr(dev))
		info.TotalBytes = total
		var ctx uintptr
		if err := d.check("cuDevicePrimaryCtxRetain", call(d.cuDevicePrimaryCtxRetain, uintptr(unsafe.Pointer(&ctx)), uintptr(dev))); err != nil {
			return nil, err
		}
		call(d.cuCtxSetCurrent, ctx)
		var free, tot uint64
		call(d.cuMemGetInfo, uintptr(unsafe.Pointer(&free)), uintptr(unsafe.Pointer(&tot)))
		info.FreeBytes = free
		if cbErr == nil {
			var h uintptr
			if call(cb.create, uintptr(unsafe.Pointer(&h))) == 0 {
				var v int32
				call(cb.version, h, uintptr(unsafe.Pointer(&v)))
				info.CUBLASVersion, info.CUBLASLibrary = int(v), cb.path
			}
		}
		call(d.cuDevicePrimaryCtxRelease, uintptr(dev))
		out = append(out, info)
	}
	return out, nil
}

// Usable says why Loupe cannot run on this GPU, or nil.
func (i DeviceInfo) Usable() error {
	if i.Major < minMajor {
		return fmt.Errorf("cuda: GPU %d (%s) has compute capability %d.%d; Loupe needs %s", i.Index, i.Name, i.Major, i.Minor, i.RequiredCapability)
	}
	if len(i.LibraryProblems) > 0 {
		return fmt.Errorf("%s", i.LibraryProblems[0])
	}
	return nil
}
