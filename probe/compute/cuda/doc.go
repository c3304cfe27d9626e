// Package cuda is Loupe's compute.Backend on NVIDIA GPUs.
//
// It needs no cgo and no CUDA headers at build time: the CUDA driver, NVRTC
// and cuBLAS are opened at run time with purego (libs.go searches
// $LOUPE_CUDA_LIB, LD_LIBRARY_PATH, the CUDA toolkit's folders and PyTorch's
// nvidia-* wheels, and says where it looked when one is missing), and the
// kernels (kernels.cu, flash.cu, embedded) are compiled by NVRTC for the
// GPU's architecture on first use and cached under $LOUPE_CACHE/cuda.
//
// The shape of it:
//   - One goroutine, locked to its OS thread, owns the CUDA context, the
//     stream and the cuBLAS handle; every operation is handed to it
//     (backend.go). Callers queue operations without waiting for it
//     (LOUPE_CUDA_ASYNC=0 makes each wait), work on the stream is
//     asynchronous, and ToHost, the reductions and the end of a scope
//     wait for it (hook caches do not: see below).
//   - Device memory comes from a caching pool (pool.go). Tensors made inside
//     a scope (compute.Mark/Release: the probe makes a forward pass one
//     scope and each block one inside it) go back to the pool when it ends;
//     tensors made outside every scope (weights, KV caches) are owned and
//     freed by Free or by the garbage collector. An allocation that does
//     not fit fails with an error naming the tensor, the bytes wanted and
//     free; the failure is sticky until the scope ends (the operations in
//     between do nothing) and the backend stays usable. Scopes are one
//     stack per backend: run one forward pass at a time on a backend (two
//     goroutines' passes would close each other's scopes).
//   - Weights are kept in Options.WeightDType (bf16, f16 or f32); matrix
//     products go to cuBLASLt (lt.go; cublasGemmEx where libcublasLt lacks
//     the functions) with fp32 accumulation, and LinearAdd adds a residual
//     in the product's epilogue (compute.LinearAdder: the Llama block's
//     o_proj and down_proj when no hook reads their output); activations, norms,
//     softmax, reductions and hook caches are float32 (DESIGN decisions 6
//     and 7). In the 16-bit modes an activation that feeds a product is
//     rounded once and the rounded copy kept beside it (shadow.go); the
//     norm, SwiGLU, RoPE and attention kernels write it as they write the
//     float32 values, and a KV cache keeps its copy across passes.
//   - Attention is the fused operation of compute.Attention (fused.go):
//     flash-style kernels (fp32 in the f32 mode; in the bf16/f16 modes
//     flash.cu's flash2, FlashAttention-2 style on the tensor cores, and
//     on Hopper for head dimension 128 flash3.cu's wgmma kernels: by
//     default flash3ws, FlashAttention-3's schedule with a TMA producer
//     warpgroup and two consumer warpgroups in turn, flash3ws.go; flash3
//     wg2 when decoding), the
//     full scores or pattern only when asked, and exact reductions by a
//     second pass over the keys using each row's log-sum-exp. In the 16-bit
//     modes a request for only the top-1 key and the lse is answered by the
//     tensor-core pass itself (long prompts).
//   - Hook caches reach the host without stalling the stream
//     (compute.HostCopier, hostcopy.go): each is staged in device memory,
//     copied on a second stream to pooled pinned chunks while the pass
//     goes on, and copied into its Go slice by worker goroutines; the
//     probe waits for them once, at the end of the pass.
//   - The Llama block's q/k/v and gate/up products are one product each
//     on weights stacked at load (compute.FusedProjector, proj.go), split
//     by the kernels that consume them (RoPE with the bf16 copies,
//     SwiGLU), where no hook needs them apart.
//   - profile.go times every kernel with CUDA events (ProfileStart/Stop),
//     for finding where a pass spends its time.
//
// RESULTS.md has every figure measured on a GPU; scripts/gpu-test.sh runs
// the GPU tests (the probe's own tests, through LOUPE_TEST_DEVICE=cuda).
package cuda
