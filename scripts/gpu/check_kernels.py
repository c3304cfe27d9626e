"""Compile Loupe's CUDA kernels with NVRTC on a machine without a GPU.

NVRTC needs no GPU, so kernel sources can be checked (compile errors,
registers, spills, shared memory per kernel) before any device time is
spent. Uses the NVRTC of the nvidia-cuda-nvrtc wheel (or $LOUPE_NVRTC) and,
when found, cuobjdump (the nvidia-cuda-cuobjdump wheel, or $LOUPE_CUOBJDUMP)
for the resource report and SASS.

usage: python3 check_kernels.py OUTDIR FILE.cu...   (writes OUTDIR/NAME.cubin)
"""
import ctypes
import glob
import os
import subprocess
import sys


def find(env, pattern):
    if os.environ.get(env):
        return os.environ[env]
    for root in sys.path + ["/tmp/cudatools"]:
        hits = sorted(glob.glob(os.path.join(root, pattern)))
        if hits:
            return hits[-1]
    return None


def main():
    out, files = sys.argv[1], sys.argv[2:]
    lib = find("LOUPE_NVRTC", "nvidia/cu13/lib/libnvrtc.so.13")
    if lib is None:
        sys.exit("check_kernels: no libnvrtc.so.13 (pip install nvidia-cuda-nvrtc, or set LOUPE_NVRTC)")
    n = ctypes.CDLL(lib)
    n.nvrtcGetErrorString.restype = ctypes.c_char_p
    os.makedirs(out, exist_ok=True)
    status = 0
    for f in files:
        name = os.path.splitext(os.path.basename(f))[0]
        src = open(f, "rb").read()
        if name.startswith("flash"):  # as module.go compiles them: tile.cuh in front
            src = open(os.path.join(os.path.dirname(f), "tile.cuh"), "rb").read() + src
        prog = ctypes.c_void_p()
        assert n.nvrtcCreateProgram(ctypes.byref(prog), src, (name + ".cu").encode(), 0, None, None) == 0
        # The same options as probe/compute/cuda/module.go.
        arch = os.environ.get("LOUPE_ARCH", "sm_90a" if name == "flash3" else "sm_90")
        opts = [f"--gpu-architecture={arch}".encode(), b"--std=c++17", b"-default-device"]
        if os.environ.get("LOUPE_PTXAS_V"):
            opts.append(b"--ptxas-options=-v")
        arr = (ctypes.c_char_p * len(opts))(*opts)
        r = n.nvrtcCompileProgram(prog, len(opts), arr)
        size = ctypes.c_size_t()
        n.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value + 1)
        n.nvrtcGetProgramLog(prog, log)
        if log.value.strip():
            print(f"--- {f}:\n{log.value.decode()}")
        if r != 0:
            print(f"{f}: {n.nvrtcGetErrorString(r).decode()}")
            status = 1
            continue
        n.nvrtcGetCUBINSize(prog, ctypes.byref(size))
        buf = ctypes.create_string_buffer(size.value)
        n.nvrtcGetCUBIN(prog, buf)
        path = os.path.join(out, name + ".cubin")
        open(path, "wb").write(buf.raw)
        objdump = find("LOUPE_CUOBJDUMP", "nvidia/cu13/bin/cuobjdump")
        if objdump:
            res = subprocess.run([objdump, "--dump-resource-usage", path], capture_output=True, text=True)
            print(res.stdout)
    sys.exit(status)


if __name__ == "__main__":
    main()
