// Flash-style attention (online softmax over key tiles), float32, for the
// fused attention operation: z and each row's log-sum-exp, never the
// Tq×Tk scores. Compiled by NVRTC like kernels.cu.
//
// Block: 4 warps, 32 query rows of one (sequence, head); each warp owns 8
// rows. Per key tile of 32 keys, lane l scores key l against a row, the
// warp takes the tile's max and sum by shuffles, and each lane updates the
// output dimensions d = lane + 32c it owns. K and V tiles sit in shared
// memory with a padded row pitch (Dh+1) so the lanes' reads of one key
// row each fall in different banks.

#define FA_ROWS 32
#define FA_KEYS 32
#define FA_ROWS_PER_WARP 8

// MAXC is the number of output dimensions a lane owns: Dh <= 32*MAXC.
template <int FA_MAXC>
__device__ void flash_attn(const float* q, const float* k, const float* v, float* z, float* lse,
                           int B, int Tq, int Tk, int Tcap, int H, int Hkv, int Dh, float scale,
                           int past, int causal, int window, const unsigned char* key_valid) {
    extern __shared__ float sm[];
    int pitch = Dh + 1;
    float* qs = sm;                       // [FA_ROWS][Dh]
    float* ks = qs + FA_ROWS * Dh;        // [FA_KEYS][pitch]
    float* vs = ks + FA_KEYS * pitch;     // [FA_KEYS][pitch]
    int b = blockIdx.z, h = blockIdx.y, kh = h / (H / Hkv);
    int i0 = blockIdx.x * FA_ROWS;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    i64 qstride = (i64)H * Dh, kstride = (i64)Hkv * Dh;
    const float* qb = q + (i64)b * Tq * qstride + (i64)h * Dh;
    const float* kb = k + (i64)b * Tcap * kstride + (i64)kh * Dh;
    const float* vb = v + (i64)b * Tcap * kstride + (i64)kh * Dh;

    for (int e = threadIdx.x; e < FA_ROWS * Dh; e += blockDim.x) {
        int r = e / Dh, d = e % Dh;
        int i = i0 + r;
        qs[e] = i < Tq ? qb[(i64)i * qstride + d] : 0.f;
    }
    // Keys any row of this block may see.
    int iLast = min(i0 + FA_ROWS, Tq) - 1;
    int jEnd = causal ? min(Tk, past + iLast + 1) : Tk;
    int jBeg = window > 0 ? max(0, past + i0 - window + 1) : 0;
    jBeg = jBeg / FA_KEYS * FA_KEYS;

    float m[FA_ROWS_PER_WARP], l[FA_ROWS_PER_WARP], acc[FA_ROWS_PER_WARP][FA_MAXC];
    for (int r = 0; r < FA_ROWS_PER_WARP; r++) {
        m[r] = NEG_INF;
        l[r] = 0;
        for (int c = 0; c < FA_MAXC; c++) acc[r][c] = 0;
    }
    for (int j0 = jBeg; j0 < jEnd; j0 += FA_KEYS) {
        __syncthreads();
        for (int e = threadIdx.x; e < FA_KEYS * Dh; e += blockDim.x) {
            int jj = e / Dh, d = e % Dh;
            int j = j0 + jj;
            ks[jj * pitch + d] = j < Tk ? kb[(i64)j * kstride + d] : 0.f;
            vs[jj * pitch + d] = j < Tk ? vb[(i64)j * kstride + d] : 0.f;
        }
        __syncthreads();
        int j = j0 + lane;
        bool validKey = j < jEnd && (key_valid == 0 || key_valid[(i64)b * Tk + j]);
        for (int r = 0; r < FA_ROWS_PER_WARP; r++) {
            int rr = warp * FA_ROWS_PER_WARP + r;
            int i = i0 + rr;
            if (i >= Tq) break;
            int p = past + i;
            bool ok = validKey && (!causal || j <= p) && (window <= 0 || p - j < window);
            float s = NEG_INF;
            if (ok) {
                const float* qr = qs + rr * Dh;
                const float* kr = ks + lane * pitch;
                float dot = 0;
                for (int d = 0; d < Dh; d++) dot += qr[d] * kr[d];
                s = dot * scale;
            }
            float tmax = s;
            for (int o = 16; o > 0; o >>= 1) tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffff, tmax, o));
            float mNew = fmaxf(m[r], tmax);
            if (mNew == NEG_INF) continue; // nothing allowed yet in this row
            float corr = m[r] == NEG_INF ? 0.f : expf(m[r] - mNew);
            float pj = ok ? expf(s - mNew) : 0.f;
            float psum = pj;
            for (int o = 16; o > 0; o >>= 1) psum += __shfl_xor_sync(0xffffffff, psum, o);
            l[r] = l[r] * corr + psum;
            m[r] = mNew;
            for (int c = 0; c < FA_MAXC; c++) acc[r][c] *= corr;
            for (int jj = 0; jj < FA_KEYS; jj++) {
                float pp = __shfl_sync(0xffffffff, pj, jj);
                if (pp == 0.f) continue;
                const float* vr = vs + jj * pitch;
                for (int c = 0; c < FA_MAXC; c++) {
                    int d = lane + 32 * c;
                    if (d < Dh) acc[r][c] += pp * vr[d];
                }
            }
        }
    }
    for (int r = 0; r < FA_ROWS_PER_WARP; r++) {
        int i = i0 + warp * FA_ROWS_PER_WARP + r;
        if (i >= Tq) break;
        float inv = l[r] > 0 ? 1.f / l[r] : 0.f;
        float* zr = z + ((i64)b * Tq + i) * qstride + (i64)h * Dh;
        for (int c = 0; c < FA_MAXC; c++) {
            int d = lane + 32 * c;
            if (d < Dh) zr[d] = acc[r][c] * inv;
        }
        if (lse != 0 && lane == 0) lse[((i64)b * H + h) * Tq + i] = l[r] > 0 ? m[r] + logf(l[r]) : NEG_INF;
    }
}

extern "C" __global__ void flash_attn_f32_d128(const float* q, const float* k, const float* v, float* z, float* lse,
                                               int B, int Tq, int Tk, int Tcap, int H, int Hkv, int Dh, float scale,
                                               int past, int causal, int window, const unsigned char* key_valid) {
    flash_attn<4>(q, k, v, z, lse, B, Tq, Tk, Tcap, H, Hkv, Dh, scale, past, causal, window, key_valid);
}
extern "C" __global__ void flash_attn_f32_d256(const float* q, const float* k, const float* v, float* z, float* lse,
                                               int B, int Tq, int Tk, int Tcap, int H, int Hkv, int Dh, float scale,
                                               int past, int causal, int window, const unsigned char* key_valid) {
    flash_attn<8>(q, k, v, z, lse, B, Tq, Tk, Tcap, H, Hkv, Dh, scale, past, causal, window, key_valid);
}

// ---- tensor-core flash attention (bf16 products, fp32 accumulation) -------
//
// The bf16 mode's attention, FlashAttention-2 style. q, k and v arrive in
// bf16 (Backend.Attention converts them once, as PyTorch's bf16 sdpa sees
// them); both products run on the tensor cores (mma.sync m16n8k16, fp32
// accumulators) and the online softmax runs in fp32 on the accumulators.
//
// Block: 128 rows, in 8 warps of 16 rows (MT = 1) or 4 warps of 32 (MT =
// 2, FlashAttention-2's split: each K and V fragment read from shared
// memory serves two 16-row tiles, half the shared-memory traffic per
// product, at twice the registers). The rows are (query position,
// query head) pairs of one key/value head: the G = H/Hkv query heads that
// share a key/value head sit side by side (row r is position i0 + r/G of
// head kh*G + r%G), so one load of a key tile serves all of them (grouped-
// query attention), and a decode step (one position) still fills G rows.
// Key tiles of 64 go through shared memory in two stages: cp.async brings
// tile t+1 while the warps work on tile t. Fragments come from shared
// memory by ldmatrix (.trans for V, whose B operand is the transpose of
// its row-major tile). The score accumulators of a warp are laid out as
// the A operand of the P·V product, so P never leaves registers. Causal
// attention visits no tile above the diagonal, applies the mask only on
// tiles that cross it (or the end, padding, a window), and a warp skips
// the diagonal tiles that are hidden from all of its rows. Blocks run the
// heaviest (last) query tiles first. Rows are padded by 16 bytes in shared
// memory so the 8 row addresses of each ldmatrix fall in distinct banks.
#define F2_ROWS 128
#define F2_KEYS 64

__device__ __forceinline__ void mma_bf16(float* c, u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
__device__ __forceinline__ void ldsm_x4(u32& r0, u32& r1, u32& r2, u32& r3, u32 addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"(addr) : "memory");
}
__device__ __forceinline__ void ldsm_x4_t(u32& r0, u32& r1, u32& r2, u32& r3, u32 addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"(addr) : "memory");
}

// flash2 writes z [B*Tq, H*D] in float32 (and in bf16 into zh when not
// null) and, when lse is not null, each row's natural log-sum-exp
// [B, H, Tq]. k and v are [B*Tcap, Hkv*D]; rows at or past Tk are never
// read. With TOP1 it also writes each row's most attended key and its
// weight into top_idx and top_val [B, H, Tq] (the lowest key among equal
// scores; key 0 and weight 0 for a row that sees no key): the top-1
// reduction of the softmax this pass computes, at the cost of a compare
// per score. MT is the 16-row tiles a warp owns (1 or 2).
template <int D, bool TOP1, int MT>
__device__ __forceinline__ void flash2(const bf16_t* __restrict__ q, const bf16_t* __restrict__ k, const bf16_t* __restrict__ v,
                                       float* __restrict__ z, bf16_t* __restrict__ zh, float* __restrict__ lse,
                                       int* __restrict__ top_idx, float* __restrict__ top_val,
                                       int Tq, int Tk, int Tcap, int H, int Hkv, float scale, int past, int causal, int window,
                                       const unsigned char* __restrict__ key_valid) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    constexpr int NT = F2_ROWS / MT * 2; // threads: 32 per warp, 16*MT rows a warp
    constexpr int WR = 16 * MT;          // rows a warp
    constexpr int P = D + 8;             // row pitch in bf16 elements (16 bytes of padding)
    constexpr int CH = D / 8;            // 16-byte chunks per row
    bf16_t* qs = (bf16_t*)smem_raw;      // [F2_ROWS][P]
    bf16_t* ks = qs + F2_ROWS * P;       // [2][F2_KEYS][P]
    bf16_t* vs = ks + 2 * F2_KEYS * P;   // [2][F2_KEYS][P]
    const int G = H / Hkv;
    const int NP = F2_ROWS / G;          // query positions per block
    const int nRows = NP * G;            // rows in use (G need not divide 128)
    const int b = blockIdx.x / Hkv, kh = blockIdx.x % Hkv;
    const int nQT = gridDim.y;
    const int i0 = (nQT - 1 - (int)blockIdx.y) * NP; // heaviest tiles first
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const i64 qstride = (i64)H * D, kstride = (i64)Hkv * D;

    // Q tile: row r is position i0 + r/G of head kh*G + r%G.
    for (int e = tid; e < F2_ROWS * CH; e += NT) {
        int r = e / CH, c = e % CH;
        int pos = i0 + r / G, head = kh * G + r % G;
        bool ok = r < nRows && pos < Tq;
        const bf16_t* src = ok ? q + ((i64)b * Tq + pos) * qstride + (i64)head * D + c * 8 : q;
        cp_async16(smem_addr(qs + r * P + c * 8), src, ok ? 16 : 0);
    }
    const int posMax = min(i0 + NP, Tq) - 1; // last position of this block
    const int jEnd = causal ? min(Tk, past + posMax + 1) : Tk;
    int jBeg = window > 0 ? max(0, past + i0 - window + 1) : 0;
    jBeg = jBeg / F2_KEYS * F2_KEYS;
    const int nT = jEnd > jBeg ? (jEnd - jBeg + F2_KEYS - 1) / F2_KEYS : 0;
    const bf16_t* kb = k + (i64)b * Tcap * kstride + (i64)kh * D;
    const bf16_t* vb = v + (i64)b * Tcap * kstride + (i64)kh * D;
    auto load_kv = [&](int stage, int j0) {
        bf16_t* kd = ks + stage * F2_KEYS * P;
        bf16_t* vd = vs + stage * F2_KEYS * P;
        for (int e = tid; e < F2_KEYS * CH; e += NT) {
            int jj = e / CH, c = e % CH, j = j0 + jj;
            bool ok = j < Tk;
            i64 off = ok ? (i64)j * kstride + c * 8 : 0;
            cp_async16(smem_addr(kd + jj * P + c * 8), kb + off, ok ? 16 : 0);
            cp_async16(smem_addr(vd + jj * P + c * 8), vb + off, ok ? 16 : 0);
        }
    };
    if (nT > 0) load_kv(0, jBeg);
    cp_commit();

    // This thread's rows: g and g+8 of each of the warp's 16-row tiles.
    int pRow[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        pRow[mt][0] = past + i0 + (warp * WR + mt * 16 + g) / G;
        pRow[mt][1] = past + i0 + (warp * WR + mt * 16 + g + 8) / G;
    }
    const bool warpLive = warp * WR < nRows && i0 + (warp * WR) / G < Tq;
    const int warpPosMax = i0 + (min(warp * WR + WR - 1, nRows - 1)) / G;
    const float sl2 = scale * 1.4426950408889634f; // scores to base-2 exponents

    float o[MT][D / 8][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int n = 0; n < D / 8; n++) o[mt][n][0] = o[mt][n][1] = o[mt][n][2] = o[mt][n][3] = 0.f;
    float m[MT][2], l[MT][2];
    float bestS[MT][2]; // TOP1: this thread's best score of each row, and its key
    int bestJ[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            m[mt][r] = NEG_INF;
            l[mt][r] = 0.f;
            bestS[mt][r] = NEG_INF;
            bestJ[mt][r] = -1;
        }
    const u32 qAddr = smem_addr(qs + (warp * WR + (lane & 15)) * P + (lane >> 4) * 8);
    // ldmatrix row addresses inside a key tile: K (non-transposed) and V
    // (transposed) fragments.
    const int kRow = (lane & 7) + ((lane >> 4) << 3), kCol = ((lane >> 3) & 1) * 8;
    const int vRow = lane & 15, vCol = (lane >> 4) * 8;

    for (int it = 0; it < nT; it++) {
        const int j0 = jBeg + it * F2_KEYS, st = it & 1;
        if (it + 1 < nT) {
            load_kv(st ^ 1, j0 + F2_KEYS);
            cp_commit();
            cp_wait<1>();
        } else {
            cp_wait<0>();
        }
        __syncthreads();
        if (warpLive && !(causal && j0 > past + warpPosMax)) {
            const bf16_t* kt = ks + st * F2_KEYS * P;
            const bf16_t* vt = vs + st * F2_KEYS * P;
            const u32 kAddr = smem_addr(kt + kRow * P + kCol), vAddr = smem_addr(vt + vRow * P + vCol);
            // S = Q·Kᵀ for WR rows × 64 keys: per 16-row tile, 8 tiles of 8 keys.
            float s[MT][8][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int n = 0; n < 8; n++) s[mt][n][0] = s[mt][n][1] = s[mt][n][2] = s[mt][n][3] = 0.f;
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++) {
                u32 a[MT][4];
#pragma unroll
                for (int mt = 0; mt < MT; mt++) ldsm_x4(a[mt][0], a[mt][1], a[mt][2], a[mt][3], qAddr + (mt * 16 * P + kk * 16) * 2);
#pragma unroll
                for (int np = 0; np < 4; np++) {
                    u32 b0, b1, b2, b3;
                    ldsm_x4(b0, b1, b2, b3, kAddr + (np * 16 * P + kk * 16) * 2);
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        mma_bf16(s[mt][2 * np], a[mt][0], a[mt][1], a[mt][2], a[mt][3], b0, b1);
                        mma_bf16(s[mt][2 * np + 1], a[mt][0], a[mt][1], a[mt][2], a[mt][3], b2, b3);
                    }
                }
            }
            const bool needMask = key_valid != 0 || window > 0 || j0 + F2_KEYS > Tk || (causal && j0 + F2_KEYS - 1 > past + i0);
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                if (needMask) {
#pragma unroll
                    for (int n = 0; n < 8; n++) {
#pragma unroll
                        for (int c = 0; c < 4; c++) {
                            int j = j0 + n * 8 + 2 * t + (c & 1);
                            int p = pRow[mt][c >> 1];
                            bool ok = j < Tk && (!causal || j <= p) && (window <= 0 || p - j < window) &&
                                      (key_valid == 0 || key_valid[(i64)b * Tk + j]);
                            if (!ok) s[mt][n][c] = NEG_INF;
                        }
                    }
                }
                if (TOP1) {
                    // Keys rise with n and c within a thread, and tile by
                    // tile, so a strict > keeps the lowest key of equal scores.
#pragma unroll
                    for (int n = 0; n < 8; n++) {
#pragma unroll
                        for (int c = 0; c < 4; c++) {
                            int r = c >> 1;
                            if (s[mt][n][c] > bestS[mt][r]) {
                                bestS[mt][r] = s[mt][n][c];
                                bestJ[mt][r] = j0 + n * 8 + 2 * t + (c & 1);
                            }
                        }
                    }
                }
                float mx[2] = {NEG_INF, NEG_INF};
#pragma unroll
                for (int n = 0; n < 8; n++) {
                    mx[0] = fmaxf(mx[0], fmaxf(s[mt][n][0], s[mt][n][1]));
                    mx[1] = fmaxf(mx[1], fmaxf(s[mt][n][2], s[mt][n][3]));
                }
                float mo[2]; // -max in base-2 exponent units, 0 for a row with no key yet
#pragma unroll
                for (int r = 0; r < 2; r++) {
                    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffff, mx[r], 1));
                    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffff, mx[r], 2));
                    float mNew = fmaxf(m[mt][r], mx[r]);
                    float mUse = mNew == NEG_INF ? 0.f : mNew;
                    float corr = exp2f((m[mt][r] - mUse) * sl2); // 0 when m was -Inf
                    m[mt][r] = mNew;
                    mo[r] = -mUse * sl2;
                    l[mt][r] *= corr;
#pragma unroll
                    for (int n = 0; n < D / 8; n++) {
                        o[mt][n][2 * r] *= corr;
                        o[mt][n][2 * r + 1] *= corr;
                    }
                }
#pragma unroll
                for (int n = 0; n < 8; n++) {
                    s[mt][n][0] = exp2f(fmaf(s[mt][n][0], sl2, mo[0]));
                    s[mt][n][1] = exp2f(fmaf(s[mt][n][1], sl2, mo[0]));
                    s[mt][n][2] = exp2f(fmaf(s[mt][n][2], sl2, mo[1]));
                    s[mt][n][3] = exp2f(fmaf(s[mt][n][3], sl2, mo[1]));
                    l[mt][0] += s[mt][n][0] + s[mt][n][1]; // this thread's part of the row sum
                    l[mt][1] += s[mt][n][2] + s[mt][n][3];
                }
            }
            // O += P·V: 4 steps of 16 keys; P's accumulators are the A operand.
#pragma unroll
            for (int kk = 0; kk < 4; kk++) {
                u32 a[MT][4];
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    a[mt][0] = pack_bf16(s[mt][2 * kk][0], s[mt][2 * kk][1]);
                    a[mt][1] = pack_bf16(s[mt][2 * kk][2], s[mt][2 * kk][3]);
                    a[mt][2] = pack_bf16(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
                    a[mt][3] = pack_bf16(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
                }
#pragma unroll
                for (int dp = 0; dp < D / 16; dp++) {
                    u32 b0, b1, b2, b3;
                    ldsm_x4_t(b0, b1, b2, b3, vAddr + (kk * 16 * P + dp * 16) * 2);
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        mma_bf16(o[mt][2 * dp], a[mt][0], a[mt][1], a[mt][2], a[mt][3], b0, b1);
                        mma_bf16(o[mt][2 * dp + 1], a[mt][0], a[mt][1], a[mt][2], a[mt][3], b2, b3);
                    }
                }
            }
        }
        __syncthreads(); // the stage is refilled next iteration
    }
    cp_wait<0>(); // (no copy may be left in flight at exit, also when nT is 0)
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int r = 0; r < 2; r++) {
            float lr = l[mt][r];
            lr += __shfl_xor_sync(0xffffffff, lr, 1);
            lr += __shfl_xor_sync(0xffffffff, lr, 2);
            float bs = bestS[mt][r];
            int bj = bestJ[mt][r];
            if (TOP1) {
#pragma unroll
                for (int sh = 1; sh <= 2; sh <<= 1) {
                    float os = __shfl_xor_sync(0xffffffff, bs, sh);
                    int oj = __shfl_xor_sync(0xffffffff, bj, sh);
                    if (os > bs || (os == bs && oj >= 0 && (bj < 0 || oj < bj))) {
                        bs = os;
                        bj = oj;
                    }
                }
            }
            int row = warp * WR + mt * 16 + g + 8 * r, pos = i0 + row / G;
            if (row >= nRows || pos >= Tq) continue;
            int head = kh * G + row % G;
            float inv = lr > 0.f ? 1.f / lr : 0.f;
            i64 at = ((i64)b * Tq + pos) * qstride + (i64)head * D;
#pragma unroll
            for (int n = 0; n < D / 8; n++) {
                float x0 = o[mt][n][2 * r] * inv, x1 = o[mt][n][2 * r + 1] * inv;
                *(float2*)(z + at + n * 8 + 2 * t) = make_float2(x0, x1);
                if (zh != 0) *(u32*)(zh + at + n * 8 + 2 * t) = pack_bf16(x0, x1);
            }
            i64 hr = ((i64)b * H + head) * Tq + pos;
            if (lse != 0 && t == 0) lse[hr] = lr > 0.f ? m[mt][r] * scale + logf(lr) : NEG_INF;
            if (TOP1 && t == 0) {
                bool any = lr > 0.f && bj >= 0;
                top_idx[hr] = any ? bj : 0;
                top_val[hr] = any ? exp2f((bs - m[mt][r]) * sl2) / lr : 0.f;
            }
        }
    }
}

// Builds, by name suffix: _2 two blocks of 8 warps per multiprocessor
// (128 registers), _w4 FlashAttention-2's 4 warps of 32 rows, two blocks
// (up to 255 registers). LOUPE_FLASH_OCC picks one for measurements;
// flashVariant says which is the default. flash2top is each build with
// the top-1 reduction. (A build of one 8-warp block per multiprocessor,
// measured slower than both at every size, RESULTS.md, is gone.)
#define FLASH2(D, SUF, MT, NB)                                                                                           \
    extern "C" __global__ void __launch_bounds__(F2_ROWS / MT * 2, NB)                                                   \
        flash2_bf16_d##D##_##SUF(const bf16_t* q, const bf16_t* k, const bf16_t* v, float* z, bf16_t* zh, float* lse,     \
                                 int Tq, int Tk, int Tcap, int H, int Hkv, float scale, int past, int causal, int window, \
                                 const unsigned char* key_valid) {                                                        \
        flash2<D, false, MT>(q, k, v, z, zh, lse, 0, 0, Tq, Tk, Tcap, H, Hkv, scale, past, causal, window, key_valid);  \
    }                                                                                                                     \
    extern "C" __global__ void __launch_bounds__(F2_ROWS / MT * 2, NB)                                                   \
        flash2top_bf16_d##D##_##SUF(const bf16_t* q, const bf16_t* k, const bf16_t* v, float* z, bf16_t* zh, float* lse,  \
                                    int* top_idx, float* top_val, int Tq, int Tk, int Tcap, int H, int Hkv, float scale,  \
                                    int past, int causal, int window, const unsigned char* key_valid) {                   \
        flash2<D, true, MT>(q, k, v, z, zh, lse, top_idx, top_val, Tq, Tk, Tcap, H, Hkv, scale, past, causal, window,   \
                            key_valid);                                                                                   \
    }
FLASH2(64, 2, 1, 2)
FLASH2(64, w4, 2, 2)
FLASH2(128, 2, 1, 2)
FLASH2(128, w4, 2, 2)
