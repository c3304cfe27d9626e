// Sparse-autoencoder training kernels (sae.go drives them). Compiled by
// NVRTC like kernels.cu, with no headers.
//
// Layout: a batch is n rows; the encoder reads rows of width din, the
// decoder writes rows of width d. W_enc is [S, din], W_dec [S, d] (one row
// per latent), both float32 masters, with bf16 copies (u16) when the bf16
// mode is on. A step's scalar statistics are summed in double into st[]
// (slots ST_*, the same numbers as in sae.go).

typedef unsigned short u16;
typedef unsigned int u32;
typedef long long i64;
typedef unsigned long long u64;

#define ST_SSE 0      // Σ‖x̂ − y‖² of the full reconstruction
#define ST_PSSE 1     // Σ over Matryoshka prefixes of ‖x̂_g − y‖² (the loss)
#define ST_YY 2       // Σ‖y‖²
#define ST_L0 3       // active (row, latent) pairs
#define ST_AUXSSE 4   // Σ‖ê − e‖² of AuxK
#define ST_DEAD 5     // dead latents after this step's update
#define ST_SPARSE 6   // standard: Σ f·‖d_j‖
#define ST_MEAN2 7    // Σ_i (Σ_r y_ri)² / n
#define ST_N 12

__device__ __forceinline__ float bf16_to_f32(u16 h) { return __uint_as_float(((u32)h) << 16); }
__device__ __forceinline__ u16 f32_to_bf16(float f) {
    u16 h;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}
// ldw reads element i of a float32 (bf == 0) or bf16 (bf != 0) array.
__device__ __forceinline__ float ldw(const void* w, i64 i, int bf) {
    return bf ? bf16_to_f32(((const u16*)w)[i]) : ((const float*)w)[i];
}

__device__ __forceinline__ double warp_sum(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    return v;
}
__device__ __forceinline__ float warp_sumf(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    return v;
}
// block_sum gives every thread the block's total of v. sh holds 32 doubles.
__device__ double block_sum(double v, double* sh) {
    int w = threadIdx.x >> 5, l = threadIdx.x & 31, nw = (blockDim.x + 31) >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (l == 0) sh[w] = v;
    __syncthreads();
    double t = 0;
    for (int i = 0; i < nw; i++) t += sh[i];
    __syncthreads();
    return t;
}

// ---- inputs ----------------------------------------------------------------

// sae_prep: in = x·inScale − b_dec (when applyB), also as bf16 when in16;
// yn = (y or x)·outScale; st[ST_YY] += Σ yn².
extern "C" __global__ void sae_prep(const float* x, const float* y, const float* bdec, float* in, u16* in16, float* yn,
                                    i64 n, int din, int d, float inScale, float outScale, int applyB, double* st) {
    __shared__ double sh[32];
    i64 tin = n * din, tout = n * d;
    i64 stride = (i64)gridDim.x * blockDim.x;
    for (i64 e = blockIdx.x * (i64)blockDim.x + threadIdx.x; e < tin; e += stride) {
        float v = x[e] * inScale;
        if (applyB) v -= bdec[e % din];
        in[e] = v;
        if (in16) in16[e] = f32_to_bf16(v);
    }
    const float* src = y ? y : x;
    double yy = 0;
    for (i64 e = blockIdx.x * (i64)blockDim.x + threadIdx.x; e < tout; e += stride) {
        float v = src[e] * outScale;
        yn[e] = v;
        yy += (double)v * v;
    }
    yy = block_sum(yy, sh);
    if (threadIdx.x == 0) atomicAdd(&st[ST_YY], yy);
}

// sae_colsum: out[c] += Σ over a chunk of rows of x[r, c] (double; out zeroed
// first). Grid: (ceil(cols/256), row chunks).
extern "C" __global__ void sae_colsum(const float* x, i64 n, int cols, double* out) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    i64 per = (n + gridDim.y - 1) / gridDim.y;
    i64 lo = blockIdx.y * per, hi = min(n, lo + per);
    double s = 0;
    for (i64 r = lo; r < hi; r++) s += x[r * cols + c];
    if (hi > lo) atomicAdd(&out[c], s);
}

// sae_mean2: st[ST_MEAN2] = Σ_c colsum_c² / n (one block).
extern "C" __global__ void sae_mean2(const double* colsum, int cols, i64 n, double* st) {
    __shared__ double sh[32];
    double s = 0;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) s += colsum[c] * colsum[c];
    s = block_sum(s, sh);
    if (threadIdx.x == 0) st[ST_MEAN2] = s / (double)n;
}

// sae_bias_rows: out[r, c] = bias[c].
extern "C" __global__ void sae_bias_rows(float* out, const float* bias, i64 n, int cols) {
    i64 t = n * cols;
    for (i64 e = blockIdx.x * (i64)blockDim.x + threadIdx.x; e < t; e += (i64)gridDim.x * blockDim.x) out[e] = bias[e % cols];
}

// sae_fill_f32: x[i] = v.
extern "C" __global__ void sae_fill_f32(float* x, i64 n, float v) {
    for (i64 e = blockIdx.x * (i64)blockDim.x + threadIdx.x; e < n; e += (i64)gridDim.x * blockDim.x) x[e] = v;
}

// ---- top-k selection ---------------------------------------------------------

// A pre-activation's key: its float bits when it is positive (and allowed),
// else 0. Positive floats order as their bits do, so the k largest values
// are the k largest keys, found by a radix select over the bits.
__device__ __forceinline__ u32 key_of(float v, const unsigned char* allow, i64 j) {
    if (allow && !allow[j]) return 0;
    return v > 0.f ? __float_as_uint(v) : 0u;
}

// The three radix passes: bits 30..20, 19..9, 8..0 (bit 31 is 0 in every key).
__constant__ int rs_shift[3] = {20, 9, 0};
__constant__ int rs_bits[3] = {11, 11, 9};

// block_scan_incl: the inclusive prefix sum of s over the 1024 threads of
// the block, in thread order. sh holds 32 words of scratch; on return
// sh[31] is the block's total. Every thread of the block must call it.
__device__ u32 block_scan_incl(u32 s, u32* sh) {
    int t = threadIdx.x, w = t >> 5, l = t & 31;
    u32 v = s;
    for (int o = 1; o < 32; o <<= 1) {
        u32 u = __shfl_up_sync(0xffffffff, v, o);
        if (l >= o) v += u;
    }
    if (l == 31) sh[w] = v;
    __syncthreads();
    if (w == 0) {
        u32 x = sh[l];
        for (int o = 1; o < 32; o <<= 1) {
            u32 u = __shfl_up_sync(0xffffffff, x, o);
            if (l >= o) x += u;
        }
        sh[l] = x; // inclusive warp totals
    }
    __syncthreads();
    return v + (w > 0 ? sh[w - 1] : 0);
}

// block_find_bin: over nb histogram bins, finds B with count(bins > B) <
// want <= count(bins >= B) and returns B; *before gets count(bins > B) and
// *total the sum of all bins. Needs blockDim.x == 1024 and nb <= 2048.
__device__ int block_find_bin(const u32* hist, int nb, u32 want, u32* before, u32* total, u32* sh, int* shb) {
    int t = threadIdx.x;
    int per = (nb + 1023) / 1024;
    // thread t holds descending ranks [t·per, (t+1)·per): bin nb−1−rank
    u32 s = 0;
    for (int q = t * per; q < (t + 1) * per && q < nb; q++) s += hist[nb - 1 - q];
    u32 incl = block_scan_incl(s, sh);
    u32 excl = incl - s;
    if (t == 1023) *total = incl;
    if (excl < want && want <= incl) {
        u32 c = excl;
        for (int q = t * per; q < (t + 1) * per && q < nb; q++) {
            u32 h = hist[nb - 1 - q];
            if (c + h >= want) {
                *shb = nb - 1 - q;
                *before = c;
                break;
            }
            c += h;
        }
    }
    __syncthreads();
    return *shb;
}

// sae_topk: for each row of pre [n, S] (plus bias [S] when given: the
// encoder GEMM then need not add b_enc), the k largest positive (allowed)
// values: idx/val [n, k], padded with −1/0 when fewer are positive. ka_dev,
// when set, caps k at ka_dev's dead count (AuxK: k = min(AuxK, dead)), and
// the kernel does nothing when no latent is dead. st[ST_L0] counts the kept
// pairs (main selection only). 1024 threads a block, one row at a time.
extern "C" __global__ void __launch_bounds__(1024) sae_topk(const float* pre, const float* bias, i64 n, int S, int kmax,
                                                            const unsigned char* allow, const double* stdead, int* idx, float* val,
                                                            double* l0) {
    __shared__ u32 hist[2048];
    __shared__ u32 sh[32];
    __shared__ int shb;
    __shared__ u32 before, total, cgt, ceq;
    int k = kmax;
    if (stdead) {
        i64 nd = (i64)stdead[ST_DEAD];
        if (nd == 0) return;
        k = (int)min((i64)kmax, nd);
    }
    for (i64 row = blockIdx.x; row < n; row += gridDim.x) {
        const float* p = pre + row * S;
        int* oi = idx + row * kmax;
        float* ov = val + row * kmax;
        u32 prefix = 0, mask = 0, want = (u32)k;
        bool all = false;
        for (int pass = 0; pass < 3; pass++) {
            int shf = rs_shift[pass], nb = 1 << rs_bits[pass];
            for (int b = threadIdx.x; b < nb; b += blockDim.x) hist[b] = 0;
            __syncthreads();
            for (int j0 = 0; j0 < S; j0 += blockDim.x) {
                int j = j0 + threadIdx.x;
                u32 bin = 0xffffffffu;
                if (j < S) {
                    u32 key = key_of(bias ? p[j] + bias[j] : p[j], allow, j);
                    if (key != 0 && (key & mask) == prefix) bin = (key >> shf) & (nb - 1);
                }
                // lanes with the same bin add once (values cluster in few bins)
                u32 peers = __match_any_sync(0xffffffff, bin);
                if (bin != 0xffffffffu && (threadIdx.x & 31) == __ffs(peers) - 1) atomicAdd(&hist[bin], __popc(peers));
            }
            __syncthreads();
            if (threadIdx.x == 0) shb = -1;
            __syncthreads();
            int B = block_find_bin(hist, nb, want, &before, &total, sh, &shb);
            if (pass == 0 && total <= want) {
                all = true;
                break;
            }
            prefix |= (u32)B << shf;
            mask |= (u32)(nb - 1) << shf;
            want -= before;
            __syncthreads();
        }
        u32 T = all ? 0u : prefix; // keep keys > T, and `want` keys == T
        int ngt = all ? (int)total : k - (int)want;
        if (threadIdx.x == 0) { cgt = 0; ceq = 0; }
        __syncthreads();
        for (int j = threadIdx.x; j < S; j += blockDim.x) {
            float v = bias ? p[j] + bias[j] : p[j];
            u32 key = key_of(v, allow, j);
            if (key == 0) continue;
            if (key > T) {
                u32 q = atomicAdd(&cgt, 1u);
                oi[q] = j;
                ov[q] = v;
            } else if (!all && key == T) {
                u32 q = atomicAdd(&ceq, 1u);
                if (q < want) {
                    oi[ngt + q] = j;
                    ov[ngt + q] = v;
                }
            }
        }
        int kept = all ? (int)total : k;
        for (int q = kept + threadIdx.x; q < kmax; q += blockDim.x) {
            oi[q] = -1;
            ov[q] = 0.f;
        }
        if (threadIdx.x == 0 && l0) atomicAdd(l0, (double)kept);
        __syncthreads();
    }
}

// ---- sparse decode -------------------------------------------------------------

// sae_decode: per row, acc = base (b_dec, or the row of rbase) + Σ_q
// val_q·W[idx_q]; r = acc − tgt (when tgt); E = scale·r (and R = r when R);
// g_q = E·W[idx_q]; st[slot] += Σ r². With stdead set it is AuxK's pass
// (scale = 2α/n, α from the dead count) and does nothing when none is dead.
// Dynamic shared memory: d floats + k (float, int). 256 threads.
extern "C" __global__ void sae_decode(const int* idx, const float* val, int k, const void* W, int bf, const float* bias,
                                      const float* rbase, const float* tgt, i64 n, int d, float scale, const double* stdead,
                                      int auxk, float auxAlpha, float* R, float* E, float* g, double* st, int slot) {
    extern __shared__ float shm[];
    __shared__ double red[32];
    float* er = shm;
    float* sv = shm + d;
    int* si = (int*)(sv + k);
    if (stdead) {
        double nd = stdead[ST_DEAD];
        if (nd == 0) return;
        float alpha = auxAlpha * (float)fmin(1.0, nd / (double)auxk);
        scale = scale * alpha;
    }
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (i64 row = blockIdx.x; row < n; row += gridDim.x) {
        for (int q = threadIdx.x; q < k; q += blockDim.x) {
            si[q] = idx[row * k + q];
            sv[q] = val[row * k + q];
        }
        __syncthreads();
        double sse = 0;
        for (int i = threadIdx.x; i < d; i += blockDim.x) {
            float acc = rbase ? rbase[row * d + i] : bias[i];
            for (int q = 0; q < k; q++) {
                int j = si[q];
                if (j >= 0) acc += sv[q] * ldw(W, (i64)j * d + i, bf);
            }
            float r = tgt ? acc - tgt[row * d + i] : acc;
            sse += (double)r * r;
            if (R) R[row * d + i] = r;
            float e = scale * r;
            er[i] = e;
            E[row * d + i] = e;
        }
        __syncthreads();
        for (int q = wid; q < k; q += nw) {
            int j = si[q];
            float s = 0.f;
            if (j >= 0)
                for (int i = lane; i < d; i += 32) s += er[i] * ldw(W, (i64)j * d + i, bf);
            s = warp_sumf(s);
            if (lane == 0) g[row * k + q] = j >= 0 ? s : 0.f;
        }
        sse = block_sum(sse, red);
        if (threadIdx.x == 0) atomicAdd(&st[slot], sse);
    }
}

// ---- scatter by latent ---------------------------------------------------------

// sae_count: counts[idx[e]]++ over m entries (−1 skipped); with stdead, only
// when a latent is dead (AuxK's entries).
extern "C" __global__ void sae_count(const int* idx, i64 m, u32* counts, const double* stdead) {
    if (stdead && stdead[ST_DEAD] == 0) return;
    for (i64 e = blockIdx.x * (i64)blockDim.x + threadIdx.x; e < m; e += (i64)gridDim.x * blockDim.x) {
        int j = idx[e];
        if (j >= 0) atomicAdd(&counts[j], 1u);
    }
}

// sae_dead: the dead-latent counters after a batch of n rows: since = 0 for
// a latent that fired (counts > 0), else since + n; dead flags and count.
extern "C" __global__ void sae_dead(const u32* counts, i64* since, int S, i64 n, i64 window, unsigned char* dead, double* st) {
    __shared__ double sh[32];
    double nd = 0;
    for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < S; j += gridDim.x * blockDim.x) {
        i64 s = counts[j] > 0 ? 0 : since[j] + n;
        since[j] = s;
        bool isDead = s >= window;
        dead[j] = isDead ? 1 : 0;
        nd += isDead ? 1.0 : 0.0;
    }
    nd = block_sum(nd, sh);
    if (threadIdx.x == 0) atomicAdd(&st[ST_DEAD], nd);
}

// sae_scan: starts = exclusive prefix sums of counts (S+1 values), fill a
// copy of the first S. One block of 1024 threads.
extern "C" __global__ void sae_scan(const u32* counts, int S, u32* starts, u32* fill) {
    __shared__ u32 sh[32];
    int t = threadIdx.x;
    int per = (S + 1023) / 1024;
    int lo = min(S, t * per), hi = min(S, lo + per);
    u32 s = 0;
    for (int j = lo; j < hi; j++) s += counts[j];
    u32 run = block_scan_incl(s, sh) - s;
    for (int j = lo; j < hi; j++) {
        starts[j] = run;
        fill[j] = run;
        run += counts[j];
    }
    if (t == 1023) starts[S] = sh[31];
}

// sae_fill: order[fill[idx[e]]++] = base + e.
extern "C" __global__ void sae_fill(const int* idx, i64 m, i64 base, u32* fill, u32* order, const double* stdead) {
    if (stdead && stdead[ST_DEAD] == 0) return;
    for (i64 e = blockIdx.x * (i64)blockDim.x + threadIdx.x; e < m; e += (i64)gridDim.x * blockDim.x) {
        int j = idx[e];
        if (j >= 0) {
            u32 q = atomicAdd(&fill[j], 1u);
            order[q] = (u32)(base + e);
        }
    }
}

#define ACC_CH 128

// sae_accum: the weight gradients of latent j from its entries (order
// [starts[j], starts[j+1])): an entry e < nmain is main entry e (row e/k,
// multiplier val[e], pre-activation gradient g[e], error row E), else AuxK
// entry e − nmain (row /ka, aval, ga, Ea). gDec_j = Σ f·E_row, gEnc_j =
// Σ g·in_row, gBEnc_j = Σ g; with add the sums are added to the gradients
// already there. project removes from gDec_j its component along W_dec_j
// (unit-norm decoders). One block (256 threads) per latent.
extern "C" __global__ void sae_accum(const u32* starts, const u32* order, i64 nmain, int k, int ka, const float* val,
                                     const float* g, const float* aval, const float* ga, const float* E, const float* Ea,
                                     const void* in, int inbf, int d, int din, const float* Wdec, int project, int add,
                                     float* gDec, float* gEnc, float* gBEnc, int S) {
    __shared__ int er[ACC_CH];
    __shared__ float ef[ACC_CH], eg[ACC_CH];
    __shared__ const float* ev[ACC_CH];
    __shared__ double red[32];
    for (int j = blockIdx.x; j < S; j += gridDim.x) {
        u32 s0 = starts[j], s1 = starts[j + 1];
        if (add && s0 == s1) continue;
        float gb = 0.f;
        for (u32 c0 = s0; c0 < s1 || c0 == s0; c0 += ACC_CH) {
            int m = (int)min((u32)ACC_CH, s1 - c0);
            if (threadIdx.x < m) {
                i64 e = order[c0 + threadIdx.x];
                if (e < nmain) {
                    er[threadIdx.x] = (int)(e / k);
                    ef[threadIdx.x] = val[e];
                    eg[threadIdx.x] = g[e];
                    ev[threadIdx.x] = E;
                } else {
                    e -= nmain;
                    er[threadIdx.x] = (int)(e / ka);
                    ef[threadIdx.x] = aval[e];
                    eg[threadIdx.x] = ga[e];
                    ev[threadIdx.x] = Ea;
                }
            }
            __syncthreads();
            bool first = c0 == s0 && !add;
            for (int i = threadIdx.x; i < d; i += blockDim.x) {
                float s = first ? 0.f : gDec[(i64)j * d + i];
                for (int q = 0; q < m; q++) s += ef[q] * ev[q][(i64)er[q] * d + i];
                gDec[(i64)j * d + i] = s;
            }
            for (int i = threadIdx.x; i < din; i += blockDim.x) {
                float s = first ? 0.f : gEnc[(i64)j * din + i];
                for (int q = 0; q < m; q++) s += eg[q] * ldw(in, (i64)er[q] * din + i, inbf);
                gEnc[(i64)j * din + i] = s;
            }
            if (threadIdx.x == 0)
                for (int q = 0; q < m; q++) gb += eg[q];
            __syncthreads();
            if (m == 0) break;
        }
        if (threadIdx.x == 0) gBEnc[j] = add ? gBEnc[j] + gb : gb;
        if (project) {
            double dot = 0;
            for (int i = threadIdx.x; i < d; i += blockDim.x) dot += (double)gDec[(i64)j * d + i] * Wdec[(i64)j * d + i];
            float dt = (float)block_sum(dot, red);
            for (int i = threadIdx.x; i < d; i += blockDim.x) gDec[(i64)j * d + i] -= dt * Wdec[(i64)j * d + i];
        }
        __syncthreads();
    }
}

// sae_project: gDec_j −= (gDec_j·W_j) W_j for every row (one block a row).
extern "C" __global__ void sae_project(float* gDec, const float* W, int S, int d) {
    __shared__ double red[32];
    for (int j = blockIdx.x; j < S; j += gridDim.x) {
        double dot = 0;
        for (int i = threadIdx.x; i < d; i += blockDim.x) dot += (double)gDec[(i64)j * d + i] * W[(i64)j * d + i];
        float dt = (float)block_sum(dot, red);
        for (int i = threadIdx.x; i < d; i += blockDim.x) gDec[(i64)j * d + i] -= dt * W[(i64)j * d + i];
    }
}

// ---- dense path (standard, JumpReLU, BatchTopK, Matryoshka) ----------------------

// sae_act: f from pre [n, S]: arch 0 ReLU, 1 JumpReLU (pre > θ_j), 2 batch
// threshold (key > *T, see sae_ghist). st[ST_L0] counts f > 0; for arch 2
// the smallest kept value goes to the u32 at minKept.
extern "C" __global__ void sae_act(const float* pre, i64 n, int S, int arch, const float* thr, const u32* T, float* f,
                                   u32* minKept, double* st) {
    __shared__ double sh[32];
    double c = 0;
    u32 tk = arch == 2 ? *T : 0u;
    u32 mk = 0xffffffffu;
    i64 tot = n * S;
    for (i64 e = blockIdx.x * (i64)blockDim.x + threadIdx.x; e < tot; e += (i64)gridDim.x * blockDim.x) {
        float v = pre[e];
        float o;
        if (arch == 0) o = v > 0.f ? v : 0.f;
        else if (arch == 1) o = v > thr[e % S] ? v : 0.f;
        else {
            u32 key = v > 0.f ? __float_as_uint(v) : 0u;
            o = (key != 0 && key > tk) ? v : 0.f;
            if (o > 0.f) mk = min(mk, key);
        }
        f[e] = o;
        if (o > 0.f) c += 1.0;
    }
    c = block_sum(c, sh);
    if (threadIdx.x == 0) atomicAdd(&st[ST_L0], c);
    if (arch == 2 && mk != 0xffffffffu) atomicMin(minKept, mk);
}

// sae_ghist: the histogram of one radix pass over every key of pre (see
// sae_topk) whose bits above the pass match state's prefix; hist [2048].
// state: [0] prefix, [1] mask, [2] want, [3] all (1: keep every positive),
// [4] T (the threshold key, after the last pass).
extern "C" __global__ void sae_ghist(const float* pre, i64 tot, int pass, const u32* state, u32* hist) {
    __shared__ u32 h[2048];
    int shf = rs_shift[pass], nb = 1 << rs_bits[pass];
    if (state[3]) return;
    u32 prefix = state[0], mask = state[1];
    for (int b = threadIdx.x; b < nb; b += blockDim.x) h[b] = 0;
    __syncthreads();
    i64 stride = (i64)gridDim.x * blockDim.x;
    i64 lim = (tot + stride - 1) / stride * stride;
    for (i64 e = blockIdx.x * (i64)blockDim.x + threadIdx.x; e < lim; e += stride) {
        u32 bin = 0xffffffffu;
        if (e < tot) {
            u32 key = key_of(pre[e], 0, 0);
            if (key != 0 && (key & mask) == prefix) bin = (key >> shf) & (nb - 1);
        }
        u32 peers = __match_any_sync(0xffffffff, bin);
        if (bin != 0xffffffffu && (threadIdx.x & 31) == __ffs(peers) - 1) atomicAdd(&h[bin], __popc(peers));
    }
    __syncthreads();
    for (int b = threadIdx.x; b < nb; b += blockDim.x)
        if (h[b]) atomicAdd(&hist[b], h[b]);
}

// sae_gfind: one block of 1024 threads; chooses the pass's bin, updates the
// state and clears hist for the next pass.
extern "C" __global__ void __launch_bounds__(1024) sae_gfind(u32* hist, int pass, u32* state) {
    __shared__ u32 sh[32];
    __shared__ int shb;
    __shared__ u32 before, total;
    if (state[3]) return;
    int shf = rs_shift[pass], nb = 1 << rs_bits[pass];
    if (threadIdx.x == 0) shb = -1;
    __syncthreads();
    int B = block_find_bin(hist, nb, state[2], &before, &total, sh, &shb);
    __syncthreads();
    if (threadIdx.x == 0) {
        // state[2] starts at K·n + 1 (the threshold is the (K·n+1)-th
        // largest key): with at most K·n positive keys every one is kept
        if (pass == 0 && total < state[2]) {
            state[3] = 1;
            state[4] = 0;
        } else {
            state[0] |= (u32)B << shf;
            state[1] |= (u32)(nb - 1) << shf;
            state[2] -= before;
            state[4] = state[0];
        }
    }
    for (int b = threadIdx.x; b < 2048; b += blockDim.x) hist[b] = 0;
}

// sae_batch_thr: BatchTopK's learned threshold: th = minKept the first time,
// then m·th + (1 − m)·minKept; every latent's threshold is th (one block).
extern "C" __global__ void sae_batch_thr(const u32* minKept, const double* st, float* thr, int S, int* thrInit, float m) {
    __shared__ float th;
    if (st[ST_L0] == 0) return;
    if (threadIdx.x == 0) {
        float mk = __uint_as_float(*minKept);
        th = *thrInit ? m * thr[0] + (1.f - m) * mk : mk;
    }
    __syncthreads();
    for (int j = threadIdx.x; j < S; j += blockDim.x) thr[j] = th;
    if (threadIdx.x == 0) *thrInit = 1;
}

// sae_resid: r = acc − y (into r), st[ST_PSSE] += Σ r², and st[ST_SSE] too
// when last.
extern "C" __global__ void sae_resid(const float* acc, const float* y, float* r, i64 tot, int last, double* st) {
    __shared__ double sh[32];
    double s = 0;
    for (i64 e = blockIdx.x * (i64)blockDim.x + threadIdx.x; e < tot; e += (i64)gridDim.x * blockDim.x) {
        float v = acc[e] - y[e];
        r[e] = v;
        s += (double)v * v;
    }
    s = block_sum(s, sh);
    if (threadIdx.x == 0) {
        atomicAdd(&st[ST_PSSE], s);
        if (last) atomicAdd(&st[ST_SSE], s);
    }
}

// sae_suffix: for G residuals r_g [tot] each, E_g = scale·Σ_{h ≥ g} r_h in
// place.
extern "C" __global__ void sae_suffix(float* r, int G, i64 tot, float scale) {
    for (i64 e = blockIdx.x * (i64)blockDim.x + threadIdx.x; e < tot; e += (i64)gridDim.x * blockDim.x) {
        float acc = 0.f;
        for (int g = G - 1; g >= 0; g--) {
            acc += r[(i64)g * tot + e];
            r[(i64)g * tot + e] = scale * acc;
        }
    }
}

// sae_norms: norms[j] = ‖W_j‖ (one block a row).
extern "C" __global__ void sae_norms(const float* W, int S, int d, float* norms) {
    __shared__ double red[32];
    for (int j = blockIdx.x; j < S; j += gridDim.x) {
        double s = 0;
        for (int i = threadIdx.x; i < d; i += blockDim.x) s += (double)W[(i64)j * d + i] * W[(i64)j * d + i];
        s = block_sum(s, red);
        if (threadIdx.x == 0) norms[j] = (float)sqrt(s);
    }
}

// sae_l1: standard SAE's L1 term: where f > 0, df += lam·‖d_j‖ and
// st[ST_SPARSE] += f·‖d_j‖.
extern "C" __global__ void sae_l1(const float* f, float* df, const float* norms, i64 n, int S, float lam, double* st) {
    __shared__ double sh[32];
    double s = 0;
    i64 tot = n * S;
    for (i64 e = blockIdx.x * (i64)blockDim.x + threadIdx.x; e < tot; e += (i64)gridDim.x * blockDim.x) {
        float v = f[e];
        if (v > 0.f) {
            float nj = norms[e % S];
            s += (double)(v * nj);
            df[e] += lam * nj;
        }
    }
    s = block_sum(s, sh);
    if (threadIdx.x == 0) atomicAdd(&st[ST_SPARSE], s);
}

// sae_l1_dec: gDec_j += lam·colsum_j/‖d_j‖·W_j (colsum = Σ_r f_rj, double).
extern "C" __global__ void sae_l1_dec(float* gDec, const float* W, const double* colsum, const float* norms, int S, int d, float lam) {
    i64 tot = (i64)S * d;
    for (i64 e = blockIdx.x * (i64)blockDim.x + threadIdx.x; e < tot; e += (i64)gridDim.x * blockDim.x) {
        int j = (int)(e / d);
        if (norms[j] == 0.f || colsum[j] == 0) continue;
        float c = lam * (float)colsum[j] / norms[j];
        gDec[e] += c * W[e];
    }
}

// sae_jump: JumpReLU's threshold gradient, summed in double into acc [S]:
// where |pre − θ_j| < ε/2, −(θ_j/ε)·df − lam/ε. Grid (ceil(S/256), row chunks).
extern "C" __global__ void sae_jump(const float* pre, const float* df, const float* thr, i64 n, int S, float eps, float lam, double* acc) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= S) return;
    i64 per = (n + gridDim.y - 1) / gridDim.y;
    i64 lo = blockIdx.y * per, hi = min(n, lo + per);
    float th = thr[j];
    double s = 0;
    for (i64 r = lo; r < hi; r++) {
        float u = pre[r * S + j] - th;
        if (u > -eps / 2 && u < eps / 2) s += (double)(-(th / eps) * df[r * S + j] - lam / eps);
    }
    if (hi > lo) atomicAdd(&acc[j], s);
}

// sae_jump_fin: gLogThr_j = acc_j·θ_j.
extern "C" __global__ void sae_jump_fin(const double* acc, const float* thr, float* gLog, int S) {
    for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < S; j += gridDim.x * blockDim.x) gLog[j] = (float)acc[j] * thr[j];
}

// sae_mask: df = 0 where f == 0.
extern "C" __global__ void sae_mask(float* df, const float* f, i64 tot) {
    for (i64 e = blockIdx.x * (i64)blockDim.x + threadIdx.x; e < tot; e += (i64)gridDim.x * blockDim.x)
        if (f[e] == 0.f) df[e] = 0.f;
}

// sae_colany: counts[j] += 1 for each chunk of rows in which f[:, j] > 0
// somewhere. Grid (ceil(S/256), row chunks).
extern "C" __global__ void sae_colany(const float* f, i64 n, int S, u32* counts) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= S) return;
    i64 per = (n + gridDim.y - 1) / gridDim.y;
    i64 lo = blockIdx.y * per, hi = min(n, lo + per);
    for (i64 r = lo; r < hi; r++)
        if (f[r * S + j] > 0.f) {
            atomicAdd(&counts[j], 1u);
            return;
        }
}

// ---- Adam ------------------------------------------------------------------------

// sae_adam: Adam on n values (as train.Adam: w −= step·m/(sqrt(v·inv2)+eps)),
// with the bf16 copy refreshed when w16.
extern "C" __global__ void sae_adam(float* w, const float* g, float* m, float* v, i64 n, float step, float b1, float b2,
                                    float inv2, float eps, u16* w16) {
    for (i64 e = blockIdx.x * (i64)blockDim.x + threadIdx.x; e < n; e += (i64)gridDim.x * blockDim.x) {
        float gj = g[e];
        float mj = b1 * m[e] + (1.f - b1) * gj;
        float vj = b2 * v[e] + (1.f - b2) * gj * gj;
        m[e] = mj;
        v[e] = vj;
        float x = w[e] - step * mj / (sqrtf(vj * inv2) + eps);
        w[e] = x;
        if (w16) w16[e] = f32_to_bf16(x);
    }
}

// sae_adam_unit: Adam on the rows of a [rows, cols] matrix, each row then
// scaled back to unit norm (one block a row).
extern "C" __global__ void sae_adam_unit(float* w, const float* g, float* m, float* v, int rows, int cols, float step, float b1,
                                         float b2, float inv2, float eps, u16* w16) {
    __shared__ double red[32];
    for (int j = blockIdx.x; j < rows; j += gridDim.x) {
        i64 o = (i64)j * cols;
        double ss = 0;
        for (int i = threadIdx.x; i < cols; i += blockDim.x) {
            float gj = g[o + i];
            float mj = b1 * m[o + i] + (1.f - b1) * gj;
            float vj = b2 * v[o + i] + (1.f - b2) * gj * gj;
            m[o + i] = mj;
            v[o + i] = vj;
            float x = w[o + i] - step * mj / (sqrtf(vj * inv2) + eps);
            w[o + i] = x;
            ss += (double)x * x;
        }
        ss = block_sum(ss, red);
        float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 1.f;
        for (int i = threadIdx.x; i < cols; i += blockDim.x) {
            float x = ss > 0 ? w[o + i] * inv : w[o + i];
            w[o + i] = x;
            if (w16) w16[o + i] = f32_to_bf16(x);
        }
    }
}

// sae_exp: thr = exp(logThr) (JumpReLU).
extern "C" __global__ void sae_exp(const float* lg, float* thr, int S) {
    for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < S; j += gridDim.x * blockDim.x) thr[j] = (float)exp((double)lg[j]);
}

// sae_cvt16: bf16 copy of a float32 array.
extern "C" __global__ void sae_cvt16(const float* x, u16* y, i64 n) {
    for (i64 e = blockIdx.x * (i64)blockDim.x + threadIdx.x; e < n; e += (i64)gridDim.x * blockDim.x) y[e] = f32_to_bf16(x[e]);
}
