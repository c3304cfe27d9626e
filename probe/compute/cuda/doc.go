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
//     (backend.go). Work on the stream is asynchronous; ToHost, the
//     reductions and the end of a scope wait for it.
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
//     products go to cuBLAS with fp32 accumulation; activations, norms,
//     softmax, reductions and hook caches are float32 (DESIGN decisions 6
//     and 7).
//   - Attention is the fused operation of compute.Attention (fused.go):
//     flash-style kernels (fp32 in the f32 mode, tensor cores in the
//     bf16/f16 modes), the full scores or pattern only when asked, and exact
//     reductions by a second pass over the keys using each row's
//     log-sum-exp.
//
// RESULTS.md has every figure measured on a GPU; scripts/gpu-test.sh runs
// the GPU tests (the probe's own tests, through LOUPE_TEST_DEVICE=cuda).
package cuda
