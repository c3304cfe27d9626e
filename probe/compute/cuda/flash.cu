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
