// tile.cuh: the types and the small tile-copy helpers that flash.cu and
// flash3.cu share. It is not compiled alone: module.go puts it in front of
// each of them (and scripts/gpu/check_kernels.py does the same).
typedef unsigned int u32;
typedef unsigned long long u64;
typedef long long i64;
typedef unsigned short bf16_t;
#define NEG_INF __int_as_float(0xff800000)

// pack_bf16 rounds two floats to bf16 (nearest even) in one register, lo
// in the low half.
__device__ __forceinline__ u32 pack_bf16(float lo, float hi) {
    u32 r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}
__device__ __forceinline__ u32 smem_addr(const void* p) { return (u32)__cvta_generic_to_shared(p); }
// cp_async16 copies 16 bytes global -> shared; with bytes 0 it writes zeros
// and reads nothing.
__device__ __forceinline__ void cp_async16(u32 dst, const void* src, int bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(bytes) : "memory");
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory"); }
