// FlashAttention-3-style attention for Hopper (sm_90a only; compiled as
// its own module for that target, flash.cu's flash2 serves every other
// GPU and shape). Same contract as flash2 (flash.cu): bf16 q, k, v; z in
// float32 and bf16; each row's log-sum-exp; causal, grouped-query rows
// packed G to a position, a KV cache (Tcap), left padding, a window.
//
// What differs from flash2 is where the products run: warpgroup matrix
// products (wgmma.mma_async m64n128k16, bf16 in, fp32 accumulators), the
// B operand (K for S = Q·Kᵀ, V for O = P·V) and for S also A (Q) read by
// the tensor cores straight from shared memory through matrix
// descriptors, instead of ldmatrix into registers and mma.sync per warp.
// P stays in registers as the A operand of P·V. Shared memory holds
// every tile in the 128-byte swizzled layout the descriptors name: a tile
// of R rows × 128 bf16 is two panels (d 0-63, d 64-127) of R rows × 128
// bytes, and the 16-byte chunk c of row r sits at chunk c ^ (r mod 8), so
// that the tensor cores' reads of 8 rows fall in distinct banks.
//
// Block: two warpgroups (256 threads), 64 rows each, 128 rows in all (G
// query heads side by side per position, as in flash2); key tiles of 128
// brought by cp.async one tile ahead (K in two stages, V in three: see
// the kernel's schedule). One block per multiprocessor (193 KB of shared
// memory).
//
// Descriptors (PTX ISA, "Matrix Descriptor Format"): bits 0-13 the start
// address / 16, 16-29 the leading-dimension byte offset / 16, 32-45 the
// stride byte offset / 16, 62-63 the swizzle mode (1 = 128 bytes).
//   - Q and K (K-major: the reduction dimension d is contiguous): stride
//     offset 1024 (from one 8-row group to the next); a k-step of 16
//     elements moves the start by 32 bytes inside a panel, and steps 4-7
//     start at the second panel; the leading offset is unused.
//   - V as P·V's B operand (N-major: d, the output column, is
//     contiguous): stride offset 1024 (8 keys, the next group along the
//     reduction), leading offset one panel (d 0-63 to d 64-127); a k-step
//     of 16 keys moves the start by 16 rows (2048 bytes).
// The accumulator fragment of m64nNk16 is mma.sync's m16n8 one repeated:
// warp w of the warpgroup holds rows 16w + lane/4 (+8), d[4n..4n+3] the
// columns 8n + 2(lane%4) (+1); P's A fragment per 16 keys is packed from
// two such column blocks exactly as in flash2.
#define F3_ROWS 128
#define F3_KEYS 128
#define F3_D 128
#define F3_PANEL_Q (F3_ROWS * 128) // bytes of one panel of the Q tile
#define F3_PANEL_K (F3_KEYS * 128) // bytes of one panel of a K or V tile
#define F3_PANEL_P (64 * 128)      // bytes of one panel of a consumer's P tile (flash3ws with P in shared memory)

// fence_async makes this thread's shared-memory writes (the cp.async
// copies it waited for) visible to the tensor cores' async proxy.
__device__ __forceinline__ void fence_async() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }
__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wg_wait0() { asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory"); }
__device__ __forceinline__ void wg_wait1() { asm volatile("wgmma.wait_group.sync.aligned 1;" ::: "memory"); }
// reg_fence keeps the compiler from touching accumulators before the
// wgmma that writes them has been waited for.
template <int N>
__device__ __forceinline__ void reg_fence(float* r) {
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+f"(r[i])::"memory");
}
// reg_fence_u32 is reg_fence for A fragments: an asynchronous wgmma reads
// its register operand after issue, so the registers must stay this
// value (not be reused for anything else) until the wait.
template <int N>
__device__ __forceinline__ void reg_fence_u32(u32* r) {
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+r"(r[i])::"memory");
}
__device__ __forceinline__ u64 desc_sw128(u32 addr, u32 lbo, u32 sbo) {
    return (u64)((addr & 0x3FFFF) >> 4) | ((u64)((lbo >> 4) & 0x3FFF) << 16) | ((u64)((sbo >> 4) & 0x3FFF) << 32) |
           ((u64)1 << 62);
}
// sw128 is the byte offset of 16-byte chunk c (0-7) of row r in a panel.
__device__ __forceinline__ u32 sw128(int r, int c) { return (u32)(r * 128 + ((c ^ (r & 7)) << 4)); }

// wgmma_ss_n128: D (+)= A·Bᵀ for a 64×128 tile, A and B from shared
// memory (both K-major). wgmma_rs_n128: D (+)= A·B with A from registers
// and B N-major (transposed) from shared memory. accumulate 0 ignores D.
template <int TRANS_B = 0>
__device__ __forceinline__ void wgmma_ss_n128(float* d, u64 da, u64 db, int accumulate) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, %67;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "l"(da), "l"(db), "r"(accumulate), "n"(TRANS_B));
}
__device__ __forceinline__ void wgmma_rs_n128(float* d, u32 a0, u32 a1, u32 a2, u32 a3, u64 db, int accumulate) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(db), "r"(accumulate));
}

// ex2 is 2^x by the special-function unit alone (denormal results flush
// to zero: they are weights below 1e-38, zero in bf16 P either way).
__device__ __forceinline__ float ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// softmax_tile masks S (keys from j0) where needed, updates this thread's
// two rows' running max m and sum l, and turns S into P = exp(S - m) in
// bf16 A fragments (pa). corr receives each row's rescale factor
// exp(m_old - m_new) for the output accumulated so far.
__device__ __forceinline__ void softmax_tile(float* s, u32* pa, float* m, float* l, float* corr, int j0, int t,
                                             const int* pRow, bool needMask, int Tk, int causal, int window,
                                             const unsigned char* __restrict__ kv_valid, float sl2) {
    if (needMask) {
#pragma unroll
        for (int n = 0; n < 16; n++) {
#pragma unroll
            for (int c = 0; c < 4; c++) {
                int j = j0 + n * 8 + 2 * t + (c & 1);
                int p = pRow[c >> 1];
                bool ok = j < Tk && (!causal || j <= p) && (window <= 0 || p - j < window) && (kv_valid == 0 || kv_valid[j]);
                if (!ok) s[4 * n + c] = NEG_INF;
            }
        }
    }
    float mx[2] = {NEG_INF, NEG_INF};
#pragma unroll
    for (int n = 0; n < 16; n++) {
        mx[0] = fmaxf(mx[0], fmaxf(s[4 * n], s[4 * n + 1]));
        mx[1] = fmaxf(mx[1], fmaxf(s[4 * n + 2], s[4 * n + 3]));
    }
    float mo[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffff, mx[r], 1));
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffff, mx[r], 2));
        float mNew = fmaxf(m[r], mx[r]);
        float mUse = mNew == NEG_INF ? 0.f : mNew; // a row with no key yet
        corr[r] = exp2f((m[r] - mUse) * sl2);      // 0 when m was -Inf
        m[r] = mNew;
        mo[r] = -mUse * sl2;
        l[r] *= corr[r];
    }
#pragma unroll
    for (int n = 0; n < 16; n++) {
        float p0 = ex2(fmaf(s[4 * n], sl2, mo[0])), p1 = ex2(fmaf(s[4 * n + 1], sl2, mo[0]));
        float p2 = ex2(fmaf(s[4 * n + 2], sl2, mo[1])), p3 = ex2(fmaf(s[4 * n + 3], sl2, mo[1]));
        l[0] += p0 + p1;
        l[1] += p2 + p3;
        pa[2 * n] = pack_bf16(p0, p1);
        pa[2 * n + 1] = pack_bf16(p2, p3);
    }
}

// f3_issue_s issues S = Q·Kᵀ of one key tile for a warpgroup's 64 rows
// (its Q at qW, the tile's K at kT, both 128-byte swizzled panels of 64
// columns) into the m64n128 accumulators s, and commits the group without
// waiting for it.
__device__ __forceinline__ void f3_issue_s(float* s, u32 qW, u32 kT) {
#pragma unroll
    for (int i = 0; i < 64; i++) s[i] = 0.f;
    wg_fence();
#pragma unroll
    for (int kk = 0; kk < F3_D / 16; kk++) {
        u64 da = desc_sw128(qW + (kk >> 2) * F3_PANEL_Q + (kk & 3) * 32, 16, 1024);
        u64 db = desc_sw128(kT + (kk >> 2) * F3_PANEL_K + (kk & 3) * 32, 16, 1024);
        wgmma_ss_n128(s, da, db, kk > 0);
    }
    wg_commit();
}

// f3_store_rows writes a consumer thread's two rows of O once every key
// tile is in: each row normalised by its softmax sum (summed over the quad
// of threads that share the row first), z in float32, zh in bf16 when
// asked, and the row's log-sum-exp when asked. o holds the thread's 64
// accumulators of the m64n128 product, m and l its rows' running maximum
// (of the unscaled scores) and sum.
__device__ __forceinline__ void f3_store_rows(const float* o, const float* m, const float* l, int R0, int t, int i0,
                                              int G, int nRows, int Tq, int H, int kh, int b, i64 qstride,
                                              float scale, float* z, bf16_t* zh, float* lse) {
#pragma unroll
    for (int r = 0; r < 2; r++) {
        float lr = l[r];
        lr += __shfl_xor_sync(0xffffffff, lr, 1);
        lr += __shfl_xor_sync(0xffffffff, lr, 2);
        int row = R0 + 8 * r, pos = i0 + row / G;
        if (row >= nRows || pos >= Tq) continue;
        int head = kh * G + row % G;
        float inv = lr > 0.f ? 1.f / lr : 0.f;
        i64 at = ((i64)b * Tq + pos) * qstride + (i64)head * F3_D;
#pragma unroll
        for (int n = 0; n < 16; n++) {
            float x0 = o[4 * n + 2 * r] * inv, x1 = o[4 * n + 2 * r + 1] * inv;
            *(float2*)(z + at + n * 8 + 2 * t) = make_float2(x0, x1);
            if (zh != 0) *(u32*)(zh + at + n * 8 + 2 * t) = pack_bf16(x0, x1);
        }
        if (lse != 0 && t == 0) lse[((i64)b * H + head) * Tq + pos] = lr > 0.f ? m[r] * scale + logf(lr) : NEG_INF;
    }
}

// flash3: see the top of the file. Arguments as flash2's.
//
// The schedule overlaps the softmax with the tensor cores inside each
// warpgroup (FlashAttention-3's intra-warpgroup pipelining): iteration
// it issues S_it = Q·K_itᵀ and then O += P_{it-1}·V_{it-1} without
// waiting for the second, waits for S_it only, and runs tile it's softmax
// while P_{it-1}·V_{it-1} is on the tensor cores; O is rescaled once that
// product is done. V is therefore one tile behind K. Loads run KS - 1
// tiles ahead: at the top of iteration it the block issues K_{it+KS-1}
// and V_{it+KS-2} (K in KS stages, V in three), one cp.async group per
// iteration, and waits for the group holding K_it and V_{it-1}; one
// barrier per tile keeps a stage from being refilled while it is read.
template <int KS>
__device__ __forceinline__ void flash3(const bf16_t* __restrict__ q, const bf16_t* __restrict__ k, const bf16_t* __restrict__ v,
                                       float* __restrict__ z, bf16_t* __restrict__ zh, float* __restrict__ lse, int Tq, int Tk,
                                       int Tcap, int H, int Hkv, float scale, int past, int causal, int window,
                                       const unsigned char* __restrict__ key_valid) {
    constexpr int DIST = KS - 1; // tiles the loads run ahead
    extern __shared__ __align__(16) unsigned char smem_raw[];
    const u32 base = (smem_addr(smem_raw) + 1023u) & ~1023u; // swizzle atoms need 1024-byte alignment
    const u32 qS = base;                                        // 2 panels of F3_PANEL_Q
    auto kS = [&](int x) { return base + 2 * F3_PANEL_Q + (x % KS) * 2 * F3_PANEL_K; };
    auto vS = [&](int x) { return base + 2 * F3_PANEL_Q + (2 * KS + (x % 3) * 2) * F3_PANEL_K; };
    const int G = H / Hkv;
    const int NP = F3_ROWS / G;
    const int nRows = NP * G;
    const int b = blockIdx.x / Hkv, kh = blockIdx.x % Hkv;
    const int i0 = (gridDim.y - 1 - (int)blockIdx.y) * NP; // heaviest tiles first
    const int tid = threadIdx.x, wg = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const i64 qstride = (i64)H * F3_D, kstride = (i64)Hkv * F3_D;
    const unsigned char* kv_valid = key_valid == 0 ? 0 : key_valid + (i64)b * Tk;

    for (int e = tid; e < F3_ROWS * 16; e += 256) {
        int r = e >> 4, c = e & 15;
        int pos = i0 + r / G, head = kh * G + r % G;
        bool ok = r < nRows && pos < Tq;
        const bf16_t* src = ok ? q + ((i64)b * Tq + pos) * qstride + (i64)head * F3_D + c * 8 : q;
        cp_async16(qS + (c >> 3) * F3_PANEL_Q + sw128(r, c & 7), src, ok ? 16 : 0);
    }
    const int posMax = min(i0 + NP, Tq) - 1;
    const int jEnd = causal ? min(Tk, past + posMax + 1) : Tk;
    int jBeg = window > 0 ? max(0, past + i0 - window + 1) : 0;
    jBeg = jBeg / F3_KEYS * F3_KEYS;
    const int nT = jEnd > jBeg ? (jEnd - jBeg + F3_KEYS - 1) / F3_KEYS : 0;
    // This thread's part of a K or V tile: 16-byte chunk lc of rows
    // lr + 16i (i < 8), the same swizzled column in every one of them.
    const int lr = tid >> 4, lc = tid & 15;
    const u32 lso = (lc >> 3) * F3_PANEL_K + sw128(lr, lc & 7);
    const bf16_t* kp = k + (i64)b * Tcap * kstride + (i64)kh * F3_D + (i64)lr * kstride + lc * 8;
    const bf16_t* vp = v + (i64)b * Tcap * kstride + (i64)kh * F3_D + (i64)lr * kstride + lc * 8;
    auto load = [&](const bf16_t* src, u32 dst, int x) {
        const int j0 = jBeg + x * F3_KEYS;
#pragma unroll
        for (int i = 0; i < F3_KEYS / 16; i++) {
            int j = j0 + lr + 16 * i;
            bool ok = j < Tk;
            cp_async16(dst + lso + i * 16 * 128, ok ? src + (i64)(j0 + 16 * i) * kstride : k, ok ? 16 : 0);
        }
    };
    if (nT > 0) load(kp, kS(0), 0);
    cp_commit(); // the first group: Q and K_0
#pragma unroll
    for (int x = 1; x < DIST; x++) { // groups: K_x and V_{x-1}
        if (x < nT) load(kp, kS(x), x);
        if (x - 1 < nT) load(vp, vS(x - 1), x - 1);
        cp_commit();
    }

    const int R0 = wg * 64 + warp * 16 + g; // this thread's rows: R0 and R0 + 8
    const int pRow[2] = {past + i0 + R0 / G, past + i0 + (R0 + 8) / G};
    const float sl2 = scale * 1.4426950408889634f;
    float o[64];
#pragma unroll
    for (int i = 0; i < 64; i++) o[i] = 0.f;
    float m[2] = {NEG_INF, NEG_INF}, l[2] = {0.f, 0.f};
    const u32 qW = qS + wg * 64 * 128; // this warpgroup's 64 rows, in each panel
    u32 pa[32];                        // P of the previous tile, the A operand of its P·V

    for (int it = 0; it < nT; it++) {
        const int j0 = jBeg + it * F3_KEYS;
        cp_wait<DIST - 1>(); // the group of K_it and V_{it-1} is in
        fence_async();
        __syncthreads(); // every warp is done with K_{it-1} and V_{it-2}: their stages refill now
        if (it + DIST < nT) load(kp, kS(it + DIST), it + DIST);
        if (it + DIST - 1 < nT) load(vp, vS(it + DIST - 1), it + DIST - 1);
        cp_commit();
        const u32 kT = kS(it);
        float s[64];
        f3_issue_s(s, qW, kT);
        if (it > 0) {
            const u32 vT = vS(it - 1);
            reg_fence<64>(o);
#pragma unroll
            for (int kk = 0; kk < F3_KEYS / 16; kk++) {
                u64 db = desc_sw128(vT + kk * 16 * 128, F3_PANEL_K, 1024);
                wgmma_rs_n128(o, pa[4 * kk], pa[4 * kk + 1], pa[4 * kk + 2], pa[4 * kk + 3], db, 1);
            }
            wg_commit();
            wg_wait1(); // S_it done; P_{it-1}·V_{it-1} may still run
        } else {
            wg_wait0();
        }
        reg_fence<64>(s);
        const bool needMask = key_valid != 0 || window > 0 || j0 + F3_KEYS > Tk || (causal && j0 + F3_KEYS - 1 > past + i0);
        u32 pn[32];
        float corr[2];
        softmax_tile(s, pn, m, l, corr, j0, t, pRow, needMask, Tk, causal, window, kv_valid, sl2);
        wg_wait0(); // P_{it-1}·V_{it-1} done: O may be rescaled, pa reused
        reg_fence<64>(o);
        reg_fence_u32<32>(pa); // (pa was live until here: its registers held the product's A)
#pragma unroll
        for (int n = 0; n < 16; n++) {
            o[4 * n] *= corr[0];
            o[4 * n + 1] *= corr[0];
            o[4 * n + 2] *= corr[1];
            o[4 * n + 3] *= corr[1];
        }
#pragma unroll
        for (int i = 0; i < 32; i++) pa[i] = pn[i];
    }
    cp_wait<0>();
    if (nT > 0) {
        // The last tile's P·V (its V may have come in the last group).
        fence_async();
        __syncthreads();
        const u32 vT = vS(nT - 1);
        wg_fence();
#pragma unroll
        for (int kk = 0; kk < F3_KEYS / 16; kk++) {
            u64 db = desc_sw128(vT + kk * 16 * 128, F3_PANEL_K, 1024);
            wgmma_rs_n128(o, pa[4 * kk], pa[4 * kk + 1], pa[4 * kk + 2], pa[4 * kk + 3], db, 1);
        }
        wg_commit();
        wg_wait0();
        reg_fence<64>(o);
        reg_fence_u32<32>(pa);
    }
    f3_store_rows(o, m, l, R0, t, i0, G, nRows, Tq, H, kh, b, qstride, scale, z, zh, lse);
}

// The builds: flash3_bf16_d128 loads two tiles ahead (K in three stages:
// 225 KB of shared memory, all that a Hopper block may have),
// flash3_bf16_d128_s2 one tile ahead (K in two stages, 193 KB).
#define FLASH3(NAME, KS)                                                                                               \
    extern "C" __global__ void __launch_bounds__(256, 1)                                                               \
        NAME(const bf16_t* q, const bf16_t* k, const bf16_t* v, float* z, bf16_t* zh, float* lse, int Tq, int Tk,       \
             int Tcap, int H, int Hkv, float scale, int past, int causal, int window, const unsigned char* key_valid) { \
        flash3<KS>(q, k, v, z, zh, lse, Tq, Tk, Tcap, H, Hkv, scale, past, causal, window, key_valid);              \
    }
FLASH3(flash3_bf16_d128, 3)
FLASH3(flash3_bf16_d128_s2, 2)

// ---- flash3ws: the FlashAttention-3 schedule (warp specialisation) ----
//
// Three warpgroups (384 threads). Warpgroup 0 is the producer: one thread
// brings every K and V tile by the tensor memory accelerator (TMA,
// cp.async.bulk.tensor through a tensor map made on the host with
// cuTensorMapEncodeTiled, passed by value as a __grid_constant__
// parameter), each into an ST-stage ring, in the same 128-byte swizzled
// layout as flash3's (the map's box is one panel: 64 d × 128 keys, and
// SWIZZLE_128B is the sw128 pattern). TMA writes in the async proxy, the
// tensor cores' own, so the consumers read a landed tile with no proxy
// fence; keys at or past Tk lie outside the map and arrive as zeros (a
// KV cache's spare rows are never read, and masked P = 0 never meets a NaN
// there). Per stage a "full" mbarrier (the producer's expect_tx; the
// copies' bytes complete it) and an "empty" one (one arrival per consumer
// warp once the product that read the stage has completed: wgmma.wait_group
// first, then arrive, so that the producer's next copy into it cannot
// overtake a read: the WAR side).
//
// Warpgroups 1 and 2 are the consumers, 64 rows each, as flash3's two.
// Each keeps flash3's intra-warpgroup overlap (S_it issued, then
// P_{it-1}·V_{it-1}; tile it's softmax while the second runs) and, on top,
// the two take turns at the tensor cores (named barriers 1 and 2, the
// ping-pong): a consumer issues its two products only after the other
// issued its own, so one's softmax runs while the other's products are on
// the tensor cores. setmaxnreg gives the consumers 240 registers and the
// producer 24 (24·128 + 240·256 ≤ 65,536).
struct __align__(64) TmaMap {
    unsigned long long w[16];
};
__device__ __forceinline__ void mbar_init(u32 a, u32 n) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(a), "r"(n) : "memory");
}
// mbar_expect_tx arrives on the barrier and tells it to expect tx bytes of
// asynchronous copies in the current phase.
__device__ __forceinline__ void mbar_expect_tx(u32 a, u32 tx) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(a), "r"(tx) : "memory");
}
// mbar_arrive_if arrives where on is set, as a predicated instruction (no
// branch between wgmma issue and wait, where ptxas would serialize).
__device__ __forceinline__ void mbar_arrive_if(u32 a, u32 on) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.u32 p, %1, 0;\n@p mbarrier.arrive.shared::cta.b64 _, [%0];\n}\n" ::"r"(a), "r"(on)
                 : "memory");
}
// mbar_wait returns once the barrier's phase of the given parity has
// completed.
__device__ __forceinline__ void mbar_wait(u32 a, u32 parity) {
    asm volatile(
        "{\n.reg .pred p;\nWAIT:\n"
        "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
        "@!p bra WAIT;\n}\n" ::"r"(a),
        "r"(parity)
        : "memory");
}
// tma_load_4d copies the map's box at coordinates (c0 innermost .. c3) into
// shared memory at dst, completing bytes on the mbarrier.
__device__ __forceinline__ void tma_load_4d(u32 dst, const TmaMap* map, u32 bar, int c0, int c1, int c2, int c3) {
    asm volatile(
        "cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5}], [%6];" ::"r"(dst),
        "l"((u64)map), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(bar)
        : "memory");
}
__device__ __forceinline__ void named_sync(u32 id, u32 n) { asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(n) : "memory"); }
__device__ __forceinline__ void named_arrive(u32 id, u32 n) { asm volatile("bar.arrive %0, %1;" ::"r"(id), "r"(n) : "memory"); }

// F3_DIAG builds diagnostic variants for timing alone (gpu_test.go's
// TestFlash3WSDiag compiles them; they compute wrong results): 1 loads
// only the first ST tiles and then re-reads them (no K/V traffic), 2
// replaces the softmax by a plain rounding of S to P (no exp, max or
// sum), 3 both. (Run 17-18's variants that left out either product or
// changed P·V's operands found P·V with P from registers the slow part.)
#ifndef F3_DIAG
#define F3_DIAG 0
#endif

template <int ST, bool PS>
__device__ __forceinline__ void flash3ws(const TmaMap* tmK, const TmaMap* tmV, const bf16_t* __restrict__ q, float* __restrict__ z,
                                         bf16_t* __restrict__ zh, float* __restrict__ lse, int Tq, int Tk, int H, int Hkv,
                                         float scale, int past, int causal, int window, const unsigned char* __restrict__ key_valid) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    __shared__ __align__(8) unsigned long long bar_mem[4 * ST];
    const u32 base = (smem_addr(smem_raw) + 1023u) & ~1023u;
    const u32 qS = base;
    auto kS = [&](int x) { return base + 2 * F3_PANEL_Q + (x % ST) * 2 * F3_PANEL_K; };
    auto vS = [&](int x) { return base + 2 * F3_PANEL_Q + (ST + x % ST) * 2 * F3_PANEL_K; };
    const u32 bars = smem_addr(bar_mem);
    auto fullK = [&](int x) { return bars + 8 * (x % ST); };
    auto fullV = [&](int x) { return bars + 8 * (ST + x % ST); };
    auto emptyK = [&](int x) { return bars + 8 * (2 * ST + x % ST); };
    auto emptyV = [&](int x) { return bars + 8 * (3 * ST + x % ST); };
    // The phase of tile x in its stage's barriers, as try_wait's parity.
    auto par = [&](int x) { return (u32)((x / ST) & 1); };

    const int G = H / Hkv;
    const int NP = F3_ROWS / G;
    const int nRows = NP * G;
    const int b = blockIdx.x / Hkv, kh = blockIdx.x % Hkv;
    const int i0 = (gridDim.y - 1 - (int)blockIdx.y) * NP; // heaviest tiles first
    const int tid = threadIdx.x, wg = tid >> 7;
    const int posMax = min(i0 + NP, Tq) - 1;
    const int jEnd = causal ? min(Tk, past + posMax + 1) : Tk;
    int jBeg = window > 0 ? max(0, past + i0 - window + 1) : 0;
    jBeg = jBeg / F3_KEYS * F3_KEYS;
    const int nT = jEnd > jBeg ? (jEnd - jBeg + F3_KEYS - 1) / F3_KEYS : 0;

    if (tid == 0) {
        for (int i = 0; i < ST; i++) {
            mbar_init(fullK(i), 1);
            mbar_init(fullV(i), 1);
            mbar_init(emptyK(i), 8); // one arrival per consumer warp
            mbar_init(emptyV(i), 8);
        }
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads(); // the barriers exist before anyone waits on them (no block barrier after this)

    if (wg == 0) {
        asm volatile("setmaxnreg.dec.sync.aligned.u32 24;\n" ::: "memory");
        if (tid == 0) {
            asm volatile("prefetch.tensormap [%0];" ::"l"((u64)tmK) : "memory");
            asm volatile("prefetch.tensormap [%0];" ::"l"((u64)tmV) : "memory");
            for (int x = 0; x < nT; x++) {
                const int j0 = jBeg + x * F3_KEYS;
                if (x >= ST) mbar_wait(emptyK(x), par(x) ^ 1); // tile x - ST has left the stage
                if ((F3_DIAG & 1) && x >= ST) {
                    mbar_arrive_if(fullK(x), 1);
                    mbar_wait(emptyV(x), par(x) ^ 1);
                    mbar_arrive_if(fullV(x), 1);
                    continue;
                }
                mbar_expect_tx(fullK(x), 2 * F3_PANEL_K);
                tma_load_4d(kS(x), tmK, fullK(x), 0, kh, j0, b);
                tma_load_4d(kS(x) + F3_PANEL_K, tmK, fullK(x), 64, kh, j0, b);
                if (x >= ST) mbar_wait(emptyV(x), par(x) ^ 1);
                mbar_expect_tx(fullV(x), 2 * F3_PANEL_K);
                tma_load_4d(vS(x), tmV, fullV(x), 0, kh, j0, b);
                tma_load_4d(vS(x) + F3_PANEL_K, tmV, fullV(x), 64, kh, j0, b);
            }
            // Stay until the consumers have read every tile (the copies
            // this thread issued are all waited for through them).
            for (int x = max(0, nT - ST); x < nT; x++) {
                mbar_wait(emptyK(x), par(x));
                mbar_wait(emptyV(x), par(x));
            }
        }
        return;
    }
    asm volatile("setmaxnreg.inc.sync.aligned.u32 240;\n" ::: "memory");

    const int cw = wg - 1; // consumer 0 or 1: rows 64·cw ..
    const int ct = tid - 128, warp = (tid >> 5) & 3, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const i64 qstride = (i64)H * F3_D;
    const unsigned char* kv_valid = key_valid == 0 ? 0 : key_valid + (i64)b * Tk;
    // This consumer's 64 rows of Q, by cp.async (generic proxy): each
    // writer fences towards the async proxy before the warpgroup's barrier.
    for (int e = ct & 127; e < 64 * 16; e += 128) {
        int r = cw * 64 + (e >> 4), c = e & 15;
        int pos = i0 + r / G, head = kh * G + r % G;
        bool ok = r < nRows && pos < Tq;
        const bf16_t* src = ok ? q + ((i64)b * Tq + pos) * qstride + (i64)head * F3_D + c * 8 : q;
        cp_async16(qS + (c >> 3) * F3_PANEL_Q + sw128(r, c & 7), src, ok ? 16 : 0);
    }
    cp_commit();
    cp_wait<0>();
    fence_async();
    named_sync(3 + cw, 128);

    const int R0 = cw * 64 + warp * 16 + g; // this thread's rows: R0 and R0 + 8
    const int pRow[2] = {past + i0 + R0 / G, past + i0 + (R0 + 8) / G};
    const float sl2 = scale * 1.4426950408889634f;
    const u32 mine = 1 + cw, other = 2 - cw;
    const u32 warpLead = lane == 0;
    float o[64];
#pragma unroll
    for (int i = 0; i < 64; i++) o[i] = 0.f;
    float m[2] = {NEG_INF, NEG_INF}, l[2] = {0.f, 0.f}, corr[2];
    const u32 qW = qS + cw * 64 * 128;
    float s[64];
    auto needMask = [&](int j0) {
        return key_valid != 0 || window > 0 || j0 + F3_KEYS > Tk || (causal && j0 + F3_KEYS - 1 > past + i0);
    };
    auto issue_s = [&](int x) {
        const u32 kT = kS(x);
        f3_issue_s(s, qW, kT);
    };
    // softmax turns S (waited for) into tile x's P, in bf16 A fragments.
    auto softmax = [&](int x, u32(&pout)[32]) {
        const int j0 = jBeg + x * F3_KEYS;
        reg_fence<64>(s);
        if (F3_DIAG & 2) {
#pragma unroll
            for (int n = 0; n < 32; n++) pout[n] = pack_bf16(s[2 * n], s[2 * n + 1]);
            corr[0] = corr[1] = 1.f;
        } else {
            softmax_tile(s, pout, m, l, corr, j0, t, pRow, needMask(j0), Tk, causal, window, kv_valid, sl2);
        }
    };
    // rescale_o: O by the last softmax's factors, once the P·V that
    // accumulates into it is done (between the two products' issues it
    // would serialize them: ptxas C7513).
    auto rescale_o = [&]() {
#pragma unroll
        for (int n = 0; n < 16; n++) {
            o[4 * n] *= corr[0];
            o[4 * n + 1] *= corr[0];
            o[4 * n + 2] *= corr[1];
            o[4 * n + 3] *= corr[1];
        }
    };

    if (cw == 1) named_arrive(1, 256); // consumer 0 goes first
    if constexpr (PS) {
        // P through shared memory: each consumer's two P buffers (tile x in
        // buffer x & 1), 64 rows × 128 keys bf16 in the swizzled K-major
        // layout of Q (two panels of 64 keys), so that P·V takes both
        // operands from shared memory. Measured (RESULTS.md, run 18): with
        // P from registers P·V alone ran 1.6x slower than from shared
        // memory. Tile x's P is written while P_{x-1}·V_{x-1} runs; that
        // buffer's last reader, P_{x-2}·V_{x-2}, was waited for one tile
        // earlier.
        const u32 pS = base + 2 * F3_PANEL_Q + 4 * ST * F3_PANEL_K + cw * 4 * F3_PANEL_P;
        const int lrow = warp * 16 + g; // this thread's rows in the consumer's 64: lrow, lrow + 8
        auto store_p = [&](int x, const u32(&pv)[32]) {
            const u32 pb = pS + (x & 1) * 2 * F3_PANEL_P;
#pragma unroll
            for (int n = 0; n < 16; n++) {
                const u32 at = pb + (n >> 3) * F3_PANEL_P + sw128(lrow, n & 7) + 4 * t;
                asm volatile("st.shared.b32 [%0], %1;" ::"r"(at), "r"(pv[2 * n]) : "memory");
                asm volatile("st.shared.b32 [%0], %1;" ::"r"(at + 8 * 128), "r"(pv[2 * n + 1]) : "memory"); // row + 8: same swizzle
            }
            fence_async();           // generic-proxy writes, read next by the tensor cores
            named_sync(5 + cw, 128); // every warp of this consumer has written its rows
        };
        auto issue_pv = [&](int x) {
            const u32 vT = vS(x), pb = pS + (x & 1) * 2 * F3_PANEL_P;
            wg_fence();
#pragma unroll
            for (int kk = 0; kk < F3_KEYS / 16; kk++) {
                u64 da = desc_sw128(pb + (kk >> 2) * F3_PANEL_P + (kk & 3) * 32, 16, 1024);
                u64 db = desc_sw128(vT + kk * 16 * 128, F3_PANEL_K, 1024);
                wgmma_ss_n128<1>(o, da, db, 1);
            }
            wg_commit();
        };
        if (nT > 0) {
            mbar_wait(fullK(0), 0);
            named_sync(mine, 256);
            issue_s(0);
            named_arrive(other, 256);
            wg_wait0();
            mbar_arrive_if(emptyK(0), warpLead);
            u32 pn[32];
            softmax(0, pn);
            store_p(0, pn);
        }
        for (int it = 1; it < nT; it++) {
            mbar_wait(fullK(it), par(it));
            mbar_wait(fullV(it - 1), par(it - 1));
            named_sync(mine, 256);
            issue_s(it);
            issue_pv(it - 1);
            named_arrive(other, 256);
            wg_wait1(); // S_it done; P_{it-1}·V_{it-1} may still run
            mbar_arrive_if(emptyK(it), warpLead);
            u32 pn[32];
            softmax(it, pn);
            store_p(it, pn);
            wg_wait0(); // P_{it-1}·V_{it-1} done: V_{it-1}'s stage and P_{it-1}'s buffer are free
            reg_fence<64>(o);
            mbar_arrive_if(emptyV(it - 1), warpLead);
            rescale_o();
        }
        if (nT > 0) {
            mbar_wait(fullV(nT - 1), par(nT - 1));
            issue_pv(nT - 1);
            wg_wait0();
            reg_fence<64>(o);
            mbar_arrive_if(emptyV(nT - 1), warpLead);
        }
    } else {
        // P in registers as the A operand of P·V (pa: the previous tile's).
        u32 pa[32], pb[32];
        auto issue_pv = [&](int x, u32(&pin)[32]) {
            const u32 vT = vS(x);
            wg_fence();
#pragma unroll
            for (int kk = 0; kk < F3_KEYS / 16; kk++) {
                u64 db = desc_sw128(vT + kk * 16 * 128, F3_PANEL_K, 1024);
                wgmma_rs_n128(o, pin[4 * kk], pin[4 * kk + 1], pin[4 * kk + 2], pin[4 * kk + 3], db, 1);
            }
            wg_commit();
        };
        if (nT > 0) {
            mbar_wait(fullK(0), 0);
            named_sync(mine, 256);
            issue_s(0);
            named_arrive(other, 256);
            wg_wait0();
            mbar_arrive_if(emptyK(0), warpLead);
            softmax(0, pa);
        }
        for (int it = 1; it < nT; it++) {
            mbar_wait(fullK(it), par(it));
            mbar_wait(fullV(it - 1), par(it - 1));
            named_sync(mine, 256);
            issue_s(it);
            issue_pv(it - 1, pa);
            named_arrive(other, 256);
            wg_wait1(); // S_it done; P_{it-1}·V_{it-1} may still run
            mbar_arrive_if(emptyK(it), warpLead);
            softmax(it, pb);
            wg_wait0(); // P_{it-1}·V_{it-1} done: V_{it-1}'s stage is free, pa may be reused
            reg_fence<64>(o);
            reg_fence_u32<32>(pa);
            mbar_arrive_if(emptyV(it - 1), warpLead);
            rescale_o();
            // pa = pb by explicit moves, after the wait: a plain copy lets
            // ptxas merge the two arrays' registers and serialize the
            // products (C7513); unrolling by two instead spills.
#pragma unroll
            for (int i = 0; i < 32; i++) asm volatile("mov.b32 %0, %1;" : "=r"(pa[i]) : "r"(pb[i]));
        }
        if (nT > 0) {
            mbar_wait(fullV(nT - 1), par(nT - 1));
            issue_pv(nT - 1, pa);
            wg_wait0();
            reg_fence<64>(o);
            reg_fence_u32<32>(pa);
            mbar_arrive_if(emptyV(nT - 1), warpLead);
        }
    }
    // Consumer 1 arrived on barrier 1 once more than consumer 0 waited on
    // it (the first turn): take that arrival, so none is left pending.
    if (cw == 0) named_sync(1, 256);
    f3_store_rows(o, m, l, R0, t, i0, G, nRows, Tq, H, kh, b, qstride, scale, z, zh, lse);
}

// The warp-specialised builds: flash3_bf16_d128_ws (two stages of K and of
// V, P from registers: 161 KB of shared memory), _ws3 (three stages: 225
// KB) and _wsp (two stages, P through shared memory: 225 KB).
#define FLASH3WS(NAME, ST, PS)                                                                                          \
    extern "C" __global__ void __launch_bounds__(384, 1)                                                                \
        NAME(const __grid_constant__ TmaMap tmK, const __grid_constant__ TmaMap tmV, const bf16_t* q, float* z, bf16_t* zh, \
             float* lse, int Tq, int Tk, int H, int Hkv, float scale, int past, int causal, int window,                 \
             const unsigned char* key_valid) {                                                                          \
        flash3ws<ST, PS>(&tmK, &tmV, q, z, zh, lse, Tq, Tk, H, Hkv, scale, past, causal, window, key_valid);               \
    }
FLASH3WS(flash3_bf16_d128_ws, 2, false)
FLASH3WS(flash3_bf16_d128_ws3, 3, false)
FLASH3WS(flash3_bf16_d128_wsp, 2, true)

// flash3_tiles checks flash3's pieces alone (gpu_test.go's
// TestFlash3Tiles): for one block of 128 rows, S = Q·Kᵀ [128 × 128] by
// the swizzled descriptors of the Q and K tiles, and O = P·V [128 × 128]
// with P (given, bf16 [128 × 128 keys]) packed into A fragments from
// registers and V through its N-major descriptor: the same loads,
// descriptors and fragment maps as the kernel, without the softmax.
extern "C" __global__ void __launch_bounds__(256, 1)
    flash3_tiles(const bf16_t* __restrict__ q, const bf16_t* __restrict__ k, const bf16_t* __restrict__ p,
                 const bf16_t* __restrict__ v, float* __restrict__ s_out, float* __restrict__ o_out) {
    extern __shared__ __align__(16) unsigned char tiles_smem[];
    const u32 base = (smem_addr(tiles_smem) + 1023u) & ~1023u;
    const u32 qS = base, kS = base + 2 * F3_PANEL_Q, vS = kS + 2 * F3_PANEL_K;
    const int tid = threadIdx.x, wg = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31, g = lane >> 2, t = lane & 3;
    for (int e = tid; e < 128 * 16; e += 256) {
        int r = e >> 4, c = e & 15;
        u32 o = (c >> 3) * F3_PANEL_K + sw128(r, c & 7);
        cp_async16(qS + o, q + r * 128 + c * 8, 16);
        cp_async16(kS + o, k + r * 128 + c * 8, 16);
        cp_async16(vS + o, v + r * 128 + c * 8, 16);
    }
    cp_commit();
    cp_wait<0>();
    fence_async();
    __syncthreads();
    const u32 qW = qS + wg * 64 * 128;
    float s[64];
#pragma unroll
    for (int i = 0; i < 64; i++) s[i] = 0.f;
    wg_fence();
#pragma unroll
    for (int kk = 0; kk < 8; kk++) {
        u64 da = desc_sw128(qW + (kk >> 2) * F3_PANEL_Q + (kk & 3) * 32, 16, 1024);
        u64 db = desc_sw128(kS + (kk >> 2) * F3_PANEL_K + (kk & 3) * 32, 16, 1024);
        wgmma_ss_n128(s, da, db, kk > 0);
    }
    wg_commit();
    wg_wait0();
    reg_fence<64>(s);
    const int R0 = wg * 64 + warp * 16 + g;
#pragma unroll
    for (int n = 0; n < 16; n++) {
#pragma unroll
        for (int c = 0; c < 4; c++) s_out[(R0 + 8 * (c >> 1)) * 128 + n * 8 + 2 * t + (c & 1)] = s[4 * n + c];
    }
    // P's A fragments straight from p, as flash3 packs them from S.
    u32 pa[32];
    const unsigned short* pr0 = p + R0 * 128;
    const unsigned short* pr1 = p + (R0 + 8) * 128;
#pragma unroll
    for (int n = 0; n < 16; n++) {
        int col = n * 8 + 2 * t;
        // s[4n], s[4n+1]: row R0; s[4n+2], s[4n+3]: row R0 + 8.
        u32 lo = (u32)pr0[col] | ((u32)pr0[col + 1] << 16);
        u32 hi = (u32)pr1[col] | ((u32)pr1[col + 1] << 16);
        pa[2 * n] = lo;
        pa[2 * n + 1] = hi;
    }
    float o[64];
#pragma unroll
    for (int i = 0; i < 64; i++) o[i] = 0.f;
    wg_fence();
#pragma unroll
    for (int kk = 0; kk < 8; kk++) {
        u64 db = desc_sw128(vS + kk * 16 * 128, F3_PANEL_K, 1024);
        wgmma_rs_n128(o, pa[4 * kk], pa[4 * kk + 1], pa[4 * kk + 2], pa[4 * kk + 3], db, 1);
    }
    wg_commit();
    wg_wait0();
    reg_fence<64>(o);
#pragma unroll
    for (int n = 0; n < 16; n++) {
#pragma unroll
        for (int c = 0; c < 4; c++) o_out[(R0 + 8 * (c >> 1)) * 128 + n * 8 + 2 * t + (c & 1)] = o[4 * n + c];
    }
}
