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

typedef long long i64;
typedef unsigned int u32;
#define NEG_INF __int_as_float(0xff800000)
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
// The bf16 mode's attention: q, k and v are rounded to bf16 as they are
// loaded into shared memory (as PyTorch's bf16 sdpa sees them), the two
// products run on the tensor cores (mma.sync m16n8k16, fp32 accumulators),
// the online softmax runs in fp32 on the accumulators. Block: 4 warps, 64
// query rows (16 a warp), key tiles of 64. The score accumulators of a
// warp are laid out as the A operand of the P·V product, so P never leaves
// registers (the FlashAttention-2 arrangement). V is stored transposed in
// shared memory so that each B operand register is one 32-bit load.
#define TC_ROWS 64
#define TC_KEYS 64

__device__ __forceinline__ u32 pack_bf16(float lo, float hi) {
    u32 r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}
__device__ __forceinline__ unsigned short bf16_bits(float f) {
    unsigned short h;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}
__device__ __forceinline__ void mma_bf16(float* c, u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

template <int D>
__device__ void flash_tc(const float* q, const float* k, const float* v, float* z, float* lse,
                         int B, int Tq, int Tk, int Tcap, int H, int Hkv, float scale,
                         int past, int causal, int window, const unsigned char* key_valid) {
    extern __shared__ unsigned short smem[];
    const int QP = D + 8, VP = TC_KEYS + 8; // row pitches in bf16 elements
    unsigned short* qs = smem;              // [TC_ROWS][QP]
    unsigned short* ks = qs + TC_ROWS * QP; // [TC_KEYS][QP]
    unsigned short* vt = ks + TC_KEYS * QP; // [D][VP]: V transposed
    int b = blockIdx.z, h = blockIdx.y, kh = h / (H / Hkv);
    int i0 = blockIdx.x * TC_ROWS;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    i64 qstride = (i64)H * D, kstride = (i64)Hkv * D;
    const float* qb = q + (i64)b * Tq * qstride + (i64)h * D;
    const float* kb = k + (i64)b * Tcap * kstride + (i64)kh * D;
    const float* vb = v + (i64)b * Tcap * kstride + (i64)kh * D;
    for (int e = threadIdx.x * 4; e < TC_ROWS * D; e += blockDim.x * 4) {
        int r = e / D, d = e % D, i = i0 + r;
        float4 x = i < Tq ? *(const float4*)(qb + (i64)i * qstride + d) : make_float4(0, 0, 0, 0);
        *(u32*)(qs + r * QP + d) = pack_bf16(x.x, x.y);
        *(u32*)(qs + r * QP + d + 2) = pack_bf16(x.z, x.w);
    }
    __syncthreads();
    // This warp's rows of Q as A operands, one set of 4 registers per 16
    // dimensions.
    u32 qf[D / 16][4];
    int wr = warp * 16;
    for (int kk = 0; kk < D / 16; kk++) {
        qf[kk][0] = *(const u32*)(qs + (wr + g) * QP + kk * 16 + 2 * t);
        qf[kk][1] = *(const u32*)(qs + (wr + g + 8) * QP + kk * 16 + 2 * t);
        qf[kk][2] = *(const u32*)(qs + (wr + g) * QP + kk * 16 + 2 * t + 8);
        qf[kk][3] = *(const u32*)(qs + (wr + g + 8) * QP + kk * 16 + 2 * t + 8);
    }
    const float L2E = 1.4426950408889634f;
    float sl2 = scale * L2E;
    float o[D / 8][4];
    for (int n = 0; n < D / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0;
    float m[2] = {NEG_INF, NEG_INF}, l[2] = {0, 0}; // rows g and g+8
    int rowA = i0 + wr + g, rowB = rowA + 8;
    int iLast = min(i0 + TC_ROWS, Tq) - 1;
    int jEnd = causal ? min(Tk, past + iLast + 1) : Tk;
    int jBeg = window > 0 ? max(0, past + i0 - window + 1) : 0;
    jBeg = jBeg / TC_KEYS * TC_KEYS;
    for (int j0 = jBeg; j0 < jEnd; j0 += TC_KEYS) {
        __syncthreads();
        for (int e = threadIdx.x * 4; e < TC_KEYS * D; e += blockDim.x * 4) {
            int jj = e / D, d = e % D, j = j0 + jj;
            float4 x = j < Tk ? *(const float4*)(kb + (i64)j * kstride + d) : make_float4(0, 0, 0, 0);
            *(u32*)(ks + jj * QP + d) = pack_bf16(x.x, x.y);
            *(u32*)(ks + jj * QP + d + 2) = pack_bf16(x.z, x.w);
            float4 y = j < Tk ? *(const float4*)(vb + (i64)j * kstride + d) : make_float4(0, 0, 0, 0);
            vt[(d + 0) * VP + jj] = bf16_bits(y.x);
            vt[(d + 1) * VP + jj] = bf16_bits(y.y);
            vt[(d + 2) * VP + jj] = bf16_bits(y.z);
            vt[(d + 3) * VP + jj] = bf16_bits(y.w);
        }
        __syncthreads();
        if (i0 + wr >= Tq) continue; // this warp's rows are all past the end
        // S = Q·Kᵀ: 8 tiles of 8 keys.
        float s[8][4];
        for (int n = 0; n < 8; n++) {
            s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0;
            for (int kk = 0; kk < D / 16; kk++) {
                u32 b0 = *(const u32*)(ks + (n * 8 + g) * QP + kk * 16 + 2 * t);
                u32 b1 = *(const u32*)(ks + (n * 8 + g) * QP + kk * 16 + 2 * t + 8);
                mma_bf16(s[n], qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3], b0, b1);
            }
        }
        // Mask, scale to base 2, row maxima over the quad of lanes.
        float mx[2] = {NEG_INF, NEG_INF};
        for (int n = 0; n < 8; n++) {
            for (int c = 0; c < 4; c++) {
                int j = j0 + n * 8 + 2 * t + (c & 1);
                int i = c < 2 ? rowA : rowB;
                int p = past + i;
                bool ok = i < Tq && j < Tk && (!causal || j <= p) && (window <= 0 || p - j < window) &&
                          (key_valid == 0 || key_valid[(i64)b * Tk + j]);
                float x = ok ? s[n][c] * sl2 : NEG_INF;
                s[n][c] = x;
                mx[c >> 1] = fmaxf(mx[c >> 1], x);
            }
        }
        float corr[2];
        for (int r = 0; r < 2; r++) {
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffff, mx[r], 1));
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffff, mx[r], 2));
            float mNew = fmaxf(m[r], mx[r]);
            corr[r] = (m[r] == NEG_INF) ? 0.f : exp2f(m[r] - mNew);
            if (mNew == NEG_INF) corr[r] = 1.f;
            m[r] = mNew;
        }
        float rs[2] = {0, 0};
        for (int n = 0; n < 8; n++) {
            for (int c = 0; c < 4; c++) {
                int r = c >> 1;
                float p = (m[r] == NEG_INF || s[n][c] == NEG_INF) ? 0.f : exp2f(s[n][c] - m[r]);
                s[n][c] = p;
                rs[r] += p;
            }
        }
        for (int r = 0; r < 2; r++) {
            rs[r] += __shfl_xor_sync(0xffffffff, rs[r], 1);
            rs[r] += __shfl_xor_sync(0xffffffff, rs[r], 2);
            l[r] = l[r] * corr[r] + rs[r];
        }
        for (int n = 0; n < D / 8; n++) {
            o[n][0] *= corr[0];
            o[n][1] *= corr[0];
            o[n][2] *= corr[1];
            o[n][3] *= corr[1];
        }
        // O += P·V: 4 steps of 16 keys; P's accumulators are the A operand.
        for (int kk = 0; kk < 4; kk++) {
            u32 a0 = pack_bf16(s[2 * kk][0], s[2 * kk][1]);
            u32 a1 = pack_bf16(s[2 * kk][2], s[2 * kk][3]);
            u32 a2 = pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
            u32 a3 = pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
            for (int n = 0; n < D / 8; n++) {
                u32 b0 = *(const u32*)(vt + (n * 8 + g) * VP + kk * 16 + 2 * t);
                u32 b1 = *(const u32*)(vt + (n * 8 + g) * VP + kk * 16 + 2 * t + 8);
                mma_bf16(o[n], a0, a1, a2, a3, b0, b1);
            }
        }
    }
    const float LN2 = 0.6931471805599453f;
    for (int r = 0; r < 2; r++) {
        int i = r == 0 ? rowA : rowB;
        if (i >= Tq) continue;
        float inv = l[r] > 0 ? 1.f / l[r] : 0.f;
        float* zr = z + ((i64)b * Tq + i) * qstride + (i64)h * D;
        for (int n = 0; n < D / 8; n++) {
            float2 w = make_float2(o[n][2 * r] * inv, o[n][2 * r + 1] * inv);
            *(float2*)(zr + n * 8 + 2 * t) = w;
        }
        if (lse != 0 && t == 0) lse[((i64)b * H + h) * Tq + i] = l[r] > 0 ? m[r] * LN2 + logf(l[r]) : NEG_INF;
    }
}

extern "C" __global__ void flash_attn_tc_d64(const float* q, const float* k, const float* v, float* z, float* lse,
                                             int B, int Tq, int Tk, int Tcap, int H, int Hkv, float scale,
                                             int past, int causal, int window, const unsigned char* key_valid) {
    flash_tc<64>(q, k, v, z, lse, B, Tq, Tk, Tcap, H, Hkv, scale, past, causal, window, key_valid);
}
extern "C" __global__ void flash_attn_tc_d128(const float* q, const float* k, const float* v, float* z, float* lse,
                                              int B, int Tq, int Tk, int Tcap, int H, int Hkv, float scale,
                                              int past, int causal, int window, const unsigned char* key_valid) {
    flash_tc<128>(q, k, v, z, lse, B, Tq, Tk, Tcap, H, Hkv, scale, past, causal, window, key_valid);
}
