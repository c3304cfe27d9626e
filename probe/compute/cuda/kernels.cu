// Loupe's CUDA kernels. Compiled at run time by NVRTC for the device's
// architecture (see module.go), so they use no headers: bf16 and f16 are
// handled as 16-bit integers and converted with PTX instructions.
//
// Conventions: activations are float32, row-major, [rows, cols]; weights
// may be bf16 or f16 (element type u16 here). Every kernel checks its own
// bounds, so grids are rounded up freely.

typedef unsigned short u16;
typedef unsigned int u32;
typedef long long i64;

#define NEG_INF __int_as_float(0xff800000)

__device__ __forceinline__ float bf16_to_f32(u16 h) { return __uint_as_float(((u32)h) << 16); }
__device__ __forceinline__ u16 f32_to_bf16(float f) {
    u16 h;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}
__device__ __forceinline__ float f16_to_f32(u16 h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}
__device__ __forceinline__ u16 f32_to_f16(float f) {
    u16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

// ---- conversions -------------------------------------------------------

extern "C" __global__ void cvt_f32_bf16(const float* x, u16* y, i64 n) {
    i64 i0 = blockIdx.x * (i64)blockDim.x + threadIdx.x, step = (i64)gridDim.x * blockDim.x;
    if ((n & 3) == 0 && (((unsigned long long)x & 15) | ((unsigned long long)y & 7)) == 0) {
        for (i64 i = i0; i < n / 4; i += step) {
            float4 v = ((const float4*)x)[i];
            ((uint2*)y)[i] = make_uint2((u32)f32_to_bf16(v.x) | ((u32)f32_to_bf16(v.y) << 16),
                                        (u32)f32_to_bf16(v.z) | ((u32)f32_to_bf16(v.w) << 16));
        }
        return;
    }
    for (i64 i = i0; i < n; i += step) y[i] = f32_to_bf16(x[i]);
}
extern "C" __global__ void cvt_f32_f16(const float* x, u16* y, i64 n) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) y[i] = f32_to_f16(x[i]);
}
extern "C" __global__ void cvt_bf16_f32(const u16* x, float* y, i64 n) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) y[i] = bf16_to_f32(x[i]);
}
extern "C" __global__ void cvt_f16_f32(const u16* x, float* y, i64 n) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) y[i] = f16_to_f32(x[i]);
}

// ---- row and column copies (element size 4 or 2 bytes) -----------------

// gather_rows: dst row i = src row rows[i]; esize is 4 or 2.
extern "C" __global__ void gather_rows(const char* src, const int* rows, char* dst, int n, int cols, int esize) {
    i64 total = (i64)n * cols;
    for (i64 e = blockIdx.x * (i64)blockDim.x + threadIdx.x; e < total; e += (i64)gridDim.x * blockDim.x) {
        i64 i = e / cols, c = e % cols;
        i64 s = (i64)rows[i] * cols + c;
        if (esize == 4) ((float*)dst)[e] = ((const float*)src)[s];
        else ((u16*)dst)[e] = ((const u16*)src)[s];
    }
}

// embed: dst [n, cols] float32 from table rows, the table in dtype dt
// (0 f32, 1 bf16, 2 f16).
extern "C" __global__ void embed(const void* table, const int* ids, float* dst, int n, int cols, int dt) {
    i64 total = (i64)n * cols;
    for (i64 e = blockIdx.x * (i64)blockDim.x + threadIdx.x; e < total; e += (i64)gridDim.x * blockDim.x) {
        i64 i = e / cols, c = e % cols;
        i64 s = (i64)ids[i] * cols + c;
        float v;
        if (dt == 0) v = ((const float*)table)[s];
        else if (dt == 1) v = bf16_to_f32(((const u16*)table)[s]);
        else v = f16_to_f32(((const u16*)table)[s]);
        dst[e] = v;
    }
}

// columns: dst [rows, w] = src[:, lo:lo+w] of a [rows, cols] matrix.
extern "C" __global__ void columns(const char* src, char* dst, int rows, int cols, int lo, int w, int esize) {
    i64 total = (i64)rows * w;
    for (i64 e = blockIdx.x * (i64)blockDim.x + threadIdx.x; e < total; e += (i64)gridDim.x * blockDim.x) {
        i64 r = e / w, c = e % w;
        i64 s = r * cols + lo + c;
        if (esize == 4) ((float*)dst)[e] = ((const float*)src)[s];
        else ((u16*)dst)[e] = ((const u16*)src)[s];
    }
}

// fill_columns: x[:, lo:lo+w] = vals for every row.
extern "C" __global__ void fill_columns(float* x, const float* vals, int rows, int cols, int lo, int w) {
    i64 total = (i64)rows * w;
    for (i64 e = blockIdx.x * (i64)blockDim.x + threadIdx.x; e < total; e += (i64)gridDim.x * blockDim.x) {
        i64 r = e / w, c = e % w;
        x[r * cols + lo + c] = vals[c];
    }
}

// ---- element-wise ------------------------------------------------------

// The elementwise kernels read and write 16 bytes a thread where the
// addresses allow (every tensor starts 512-byte aligned; n % 4 == 0), else
// one element at a time.
__device__ __forceinline__ bool vec4_ok(i64 n, const void* a, const void* b, const void* c) {
    return (n & 3) == 0 && (((unsigned long long)a | (unsigned long long)b | (unsigned long long)c) & 15) == 0;
}
__device__ __forceinline__ u32 pack2_bf16(float lo, float hi) {
    return (u32)f32_to_bf16(lo) | ((u32)f32_to_bf16(hi) << 16);
}

extern "C" __global__ void add(const float* a, const float* b, float* out, i64 n) {
    i64 i0 = blockIdx.x * (i64)blockDim.x + threadIdx.x, step = (i64)gridDim.x * blockDim.x;
    if (vec4_ok(n, a, b, out)) {
        for (i64 i = i0; i < n / 4; i += step) {
            float4 x = ((const float4*)a)[i], y = ((const float4*)b)[i];
            ((float4*)out)[i] = make_float4(x.x + y.x, x.y + y.y, x.z + y.z, x.w + y.w);
        }
        return;
    }
    for (i64 i = i0; i < n; i += step) out[i] = a[i] + b[i];
}
extern "C" __global__ void mul(const float* a, const float* b, float* out, i64 n) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) out[i] = a[i] * b[i];
}
// add_bcast: a[r, c] += b[c] for a [n/cols, cols].
extern "C" __global__ void add_bcast(float* a, const float* b, i64 n, int cols) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) a[i] += b[i % cols];
}
extern "C" __global__ void scale(float* a, float s, i64 n) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) a[i] *= s;
}
// swiglu: out = silu(g) * u, and its bf16 rounding into h when h is not
// null (the input of the down projection).
__device__ __forceinline__ float silu_mul(float v, float u) { return v / (1.0f + expf(-v)) * u; }
extern "C" __global__ void swiglu(const float* g, const float* u, float* out, u16* h, i64 n) {
    i64 i0 = blockIdx.x * (i64)blockDim.x + threadIdx.x, step = (i64)gridDim.x * blockDim.x;
    if (vec4_ok(n, g, u, out) && ((unsigned long long)h & 7) == 0) {
        for (i64 i = i0; i < n / 4; i += step) {
            float4 x = ((const float4*)g)[i], y = ((const float4*)u)[i];
            float4 r = make_float4(silu_mul(x.x, y.x), silu_mul(x.y, y.y), silu_mul(x.z, y.z), silu_mul(x.w, y.w));
            ((float4*)out)[i] = r;
            if (h) ((uint2*)h)[i] = make_uint2(pack2_bf16(r.x, r.y), pack2_bf16(r.z, r.w));
        }
        return;
    }
    for (i64 i = i0; i < n; i += step) {
        float r = silu_mul(g[i], u[i]);
        out[i] = r;
        if (h) h[i] = f32_to_bf16(r);
    }
}

// copy_seq_rows appends T rows of each of B sequences: dst rows
// [b*cap + off, b*cap + off + T) = src rows [b*T, (b+1)*T), rows of cols
// floats (a KV cache's append for a whole batch in one launch); when h is
// not null the same rows are written, rounded to bf16, into h (the
// cache's shadow).
extern "C" __global__ void copy_seq_rows(const float* src, float* dst, u16* h, int B, int T, int cap, int off, int cols) {
    i64 n = (i64)B * T * cols;
    for (i64 e = blockIdx.x * (i64)blockDim.x + threadIdx.x; e < n; e += (i64)gridDim.x * blockDim.x) {
        i64 row = e / cols;
        int c = (int)(e % cols);
        i64 b = row / T, t = row % T;
        i64 at = (b * cap + off + t) * cols + c;
        float v = src[e];
        dst[at] = v;
        if (h) h[at] = f32_to_bf16(v);
    }
}
// gelu: the tanh approximation when tanh_form, else the erf form.
extern "C" __global__ void gelu(const float* x, float* out, i64 n, int tanh_form) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        float v = x[i];
        if (tanh_form) out[i] = 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
        else out[i] = 0.5f * v * (1.0f + erff(v * 0.7071067811865476f));
    }
}

// ---- row reductions: one block of 256 threads per row -------------------

__device__ __forceinline__ float block_sum(float v, float* sh) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    int w = threadIdx.x >> 5, l = threadIdx.x & 31;
    __syncthreads();
    if (l == 0) sh[w] = v;
    __syncthreads();
    float t = 0;
    for (int i = 0; i < (int)(blockDim.x >> 5); i++) t += sh[i];
    return t;
}
__device__ __forceinline__ double block_sum_d(double v, double* sh) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    int w = threadIdx.x >> 5, l = threadIdx.x & 31;
    __syncthreads();
    if (l == 0) sh[w] = v;
    __syncthreads();
    double t = 0;
    for (int i = 0; i < (int)(blockDim.x >> 5); i++) t += sh[i];
    return t;
}
__device__ __forceinline__ float block_max(float v, float* sh) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, o));
    int w = threadIdx.x >> 5, l = threadIdx.x & 31;
    __syncthreads();
    if (l == 0) sh[w] = v;
    __syncthreads();
    float t = NEG_INF;
    for (int i = 0; i < (int)(blockDim.x >> 5); i++) t = fmaxf(t, sh[i]);
    return t;
}

// rmsnorm, and its output rounded to bf16 into h when h is not null (the
// input of the next products). Sums in double: the float32 mode matches
// the CPU.
extern "C" __global__ void rmsnorm(const float* x, const float* w, float* out, u16* h, int cols, float eps) {
    __shared__ double sh[32];
    const float* in = x + (i64)blockIdx.x * cols;
    float* o = out + (i64)blockIdx.x * cols;
    u16* ho = h ? h + (i64)blockIdx.x * cols : 0;
    bool v4 = (cols & 3) == 0 && vec4_ok(cols, in, w, o);
    double ss = 0;
    if (v4) {
        for (int i = threadIdx.x * 4; i < cols; i += blockDim.x * 4) {
            float4 v = *(const float4*)(in + i);
            ss += (double)v.x * v.x + (double)v.y * v.y + (double)v.z * v.z + (double)v.w * v.w;
        }
    } else {
        for (int i = threadIdx.x; i < cols; i += blockDim.x) ss += (double)in[i] * in[i];
    }
    ss = block_sum_d(ss, sh);
    float inv = (float)(1.0 / sqrt(ss / cols + (double)eps));
    if (v4) {
        for (int i = threadIdx.x * 4; i < cols; i += blockDim.x * 4) {
            float4 v = *(const float4*)(in + i), g = *(const float4*)(w + i);
            float4 r = make_float4(v.x * inv * g.x, v.y * inv * g.y, v.z * inv * g.z, v.w * inv * g.w);
            *(float4*)(o + i) = r;
            if (ho) *(uint2*)(ho + i) = make_uint2(pack2_bf16(r.x, r.y), pack2_bf16(r.z, r.w));
        }
        return;
    }
    for (int i = threadIdx.x; i < cols; i += blockDim.x) {
        float r = in[i] * inv * w[i];
        o[i] = r;
        if (ho) ho[i] = f32_to_bf16(r);
    }
}

extern "C" __global__ void layernorm(const float* x, const float* w, const float* b, float* out, int cols, float eps) {
    __shared__ double sh[32];
    const float* in = x + (i64)blockIdx.x * cols;
    float* o = out + (i64)blockIdx.x * cols;
    double s = 0;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) s += in[i];
    double mean = block_sum_d(s, sh) / cols;
    double vs = 0;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) { double d = in[i] - mean; vs += d * d; }
    vs = block_sum_d(vs, sh);
    double inv = 1.0 / sqrt(vs / cols + (double)eps);
    for (int i = threadIdx.x; i < cols; i += blockDim.x) o[i] = (float)((in[i] - mean) * inv) * w[i] + b[i];
}

// softmax over each row of [rows, cols]; an all -Inf row becomes zeros.
extern "C" __global__ void softmax_rows(const float* x, float* out, int cols) {
    __shared__ float sh[32];
    const float* in = x + (i64)blockIdx.x * cols;
    float* o = out + (i64)blockIdx.x * cols;
    float m = NEG_INF;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) m = fmaxf(m, in[i]);
    m = block_max(m, sh);
    if (m == NEG_INF) {
        for (int i = threadIdx.x; i < cols; i += blockDim.x) o[i] = 0;
        return;
    }
    float s = 0;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) s += expf(in[i] - m);
    s = block_sum(s, sh);
    float inv = 1.0f / s;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) o[i] = expf(in[i] - m) * inv;
}

// argmax of each row; ties keep the lowest index.
extern "C" __global__ void argmax_rows(const float* x, int* out, int cols) {
    __shared__ float shv[32];
    __shared__ int shi[32];
    const float* in = x + (i64)blockIdx.x * cols;
    float bv = NEG_INF;
    int bi = 0x7fffffff;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) {
        float v = in[i];
        if (v > bv || (v == bv && i < bi)) { bv = v; bi = i; }
    }
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffff, bv, o);
        int oi = __shfl_xor_sync(0xffffffff, bi, o);
        if (ov > bv || (ov == bv && oi < bi)) { bv = ov; bi = oi; }
    }
    int w = threadIdx.x >> 5, l = threadIdx.x & 31;
    if (l == 0) { shv[w] = bv; shi[w] = bi; }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int i = 1; i < (int)(blockDim.x >> 5); i++)
            if (shv[i] > bv || (shv[i] == bv && shi[i] < bi)) { bv = shv[i]; bi = shi[i]; }
        out[blockIdx.x] = bi == 0x7fffffff ? 0 : bi;
    }
}

// top-k of each row, largest first, ties by lower index: k rounds of an
// argmax over the entries that come after the previous pick in the order
// (value descending, index ascending).
extern "C" __global__ void topk_rows(const float* x, int* idx, float* val, int cols, int k) {
    __shared__ float shv[32];
    __shared__ int shi[32];
    __shared__ float lastv;
    __shared__ int lasti;
    const float* in = x + (i64)blockIdx.x * cols;
    if (threadIdx.x == 0) { lastv = __int_as_float(0x7f800000); lasti = -1; }
    __syncthreads();
    for (int r = 0; r < k; r++) {
        float lv = lastv;
        int li = lasti;
        float bv = NEG_INF;
        int bi = 0x7fffffff;
        for (int i = threadIdx.x; i < cols; i += blockDim.x) {
            float v = in[i];
            bool after = v < lv || (v == lv && i > li);
            if (after && (bi == 0x7fffffff || v > bv || (v == bv && i < bi))) { bv = v; bi = i; }
        }
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffff, bv, o);
            int oi = __shfl_xor_sync(0xffffffff, bi, o);
            if (oi != 0x7fffffff && (bi == 0x7fffffff || ov > bv || (ov == bv && oi < bi))) { bv = ov; bi = oi; }
        }
        int w = threadIdx.x >> 5, l = threadIdx.x & 31;
        if (l == 0) { shv[w] = bv; shi[w] = bi; }
        __syncthreads();
        if (threadIdx.x == 0) {
            for (int i = 1; i < (int)(blockDim.x >> 5); i++)
                if (shi[i] != 0x7fffffff && (bi == 0x7fffffff || shv[i] > bv || (shv[i] == bv && shi[i] < bi))) { bv = shv[i]; bi = shi[i]; }
            idx[(i64)blockIdx.x * k + r] = bi;
            val[(i64)blockIdx.x * k + r] = bv;
            lastv = bv;
            lasti = bi;
        }
        __syncthreads();
    }
}

// span_mass: out[r] = Σ x[r, lo:hi].
extern "C" __global__ void span_mass_rows(const float* x, float* out, int cols, int lo, int hi) {
    __shared__ double sh[32];
    const float* in = x + (i64)blockIdx.x * cols;
    double s = 0;
    for (int i = lo + threadIdx.x; i < hi; i += blockDim.x) s += in[i];
    s = block_sum_d(s, sh);
    if (threadIdx.x == 0) out[blockIdx.x] = (float)s;
}

// entropy_rows: out[r] = -Σ p log p over p > 0.
extern "C" __global__ void entropy_rows(const float* x, float* out, int cols) {
    __shared__ double sh[32];
    const float* in = x + (i64)blockIdx.x * cols;
    double s = 0;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) {
        float p = in[i];
        if (p > 0) s -= (double)p * log((double)p);
    }
    s = block_sum_d(s, sh);
    if (threadIdx.x == 0) out[blockIdx.x] = (float)s;
}

// ---- rotary embedding ----------------------------------------------------

// rotary: rotate-half RoPE in place on x [rows, heads*head_dim], pairs
// (i, i+rot/2) of each head, row r at position pos[r]; the angle in float32
// as PyTorch computes it.
// rotary: one thread per (row, pair index i): the angle's sine and cosine
// once, applied to pair (i, i + rot/2) of every head of the row (the same
// values per element as computing them per head).
// rotary rotates pairs (i, i + rot/2) of each head's first rot dimensions
// in place; with xh (full rotary only: rot == head_dim) it also writes the
// rotated values' bf16 copy, x's shadow for attention's products.
extern "C" __global__ void rotary(float* x, u16* xh, const int* pos, const float* inv_freq, int rows, int heads, int head_dim, int rot) {
    int half = rot / 2;
    i64 total = (i64)rows * half;
    for (i64 e = blockIdx.x * (i64)blockDim.x + threadIdx.x; e < total; e += (i64)gridDim.x * blockDim.x) {
        int i = e % half;
        i64 r = e / half;
        float a = (float)pos[r] * inv_freq[i];
        float s, c;
        sincosf(a, &s, &c);
        i64 at = r * (i64)heads * head_dim + i;
        for (int h = 0; h < heads; h++, at += head_dim) {
            float x1 = x[at], x2 = x[at + half];
            float y1 = x1 * c - x2 * s, y2 = x2 * c + x1 * s;
            x[at] = y1;
            x[at + half] = y2;
            if (xh != 0) {
                xh[at] = f32_to_bf16(y1);
                xh[at + half] = f32_to_bf16(y2);
            }
        }
    }
}

// ---- attention (the scores -> softmax -> mix path) -------------------------

// key_visible says whether query i (of Tq) of sequence b may see key j.
__device__ __forceinline__ bool key_visible(int b, int i, int j, int Tk, int past, int causal, int window, const unsigned char* key_valid) {
    if (causal && j > past + i) return false;
    if (window > 0 && past + i - j >= window) return false;
    if (key_valid && !key_valid[(i64)b * Tk + j]) return false;
    return true;
}

#define AT 32
// attn_scores: s [B, H, Tq, Tk] = scale q·kᵀ with masked entries -Inf.
// Grid (ceil(Tk/32), ceil(Tq/32), B*H), block (32, 8): each thread four
// query rows of one key column.
extern "C" __global__ void attn_scores(const float* q, const float* k, float* s, int B, int Tq, int Tk, int Tcap, int H, int Hkv, int Dh,
                                       float scale, int past, int causal, int window, const unsigned char* key_valid) {
    __shared__ float qs[AT][AT + 1];
    __shared__ float ks[AT][AT + 1];
    int bh = blockIdx.z, b = bh / H, h = bh % H, kh = h / (H / Hkv);
    int i0 = blockIdx.y * AT, j0 = blockIdx.x * AT;
    int tx = threadIdx.x, ty = threadIdx.y;
    i64 qstride = (i64)H * Dh, kstride = (i64)Hkv * Dh;
    const float* qb = q + (i64)b * Tq * qstride + (i64)h * Dh;
    const float* kb = k + (i64)b * Tcap * kstride + (i64)kh * Dh;
    float acc[4] = {0, 0, 0, 0};
    for (int d0 = 0; d0 < Dh; d0 += AT) {
        for (int r = ty; r < AT; r += 8) {
            int i = i0 + r, d = d0 + tx;
            qs[r][tx] = (i < Tq && d < Dh) ? qb[i * qstride + d] : 0;
            int j = j0 + r;
            ks[r][tx] = (j < Tk && d < Dh) ? kb[j * kstride + d] : 0;
        }
        __syncthreads();
        for (int d = 0; d < AT; d++) {
            float kv = ks[tx][d];
            for (int u = 0; u < 4; u++) acc[u] += qs[ty + 8 * u][d] * kv;
        }
        __syncthreads();
    }
    int j = j0 + tx;
    if (j >= Tk) return;
    for (int u = 0; u < 4; u++) {
        int i = i0 + ty + 8 * u;
        if (i >= Tq) continue;
        float v = key_visible(b, i, j, Tk, past, causal, window, key_valid) ? acc[u] * scale : NEG_INF;
        s[((i64)bh * Tq + i) * Tk + j] = v;
    }
}

// attn_mix: z [B*Tq, H*Dh] = p·v. Grid (ceil(Dh/32), ceil(Tq/32), B*H),
// block (32, 8).
extern "C" __global__ void attn_mix(const float* p, const float* v, float* z, int B, int Tq, int Tk, int Tcap, int H, int Hkv, int Dh) {
    __shared__ float ps[AT][AT + 1];
    __shared__ float vs[AT][AT + 1];
    int bh = blockIdx.z, b = bh / H, h = bh % H, kh = h / (H / Hkv);
    int i0 = blockIdx.y * AT, d0 = blockIdx.x * AT;
    int tx = threadIdx.x, ty = threadIdx.y;
    i64 vstride = (i64)Hkv * Dh, zstride = (i64)H * Dh;
    const float* pb = p + (i64)bh * Tq * Tk;
    const float* vb = v + (i64)b * Tcap * vstride + (i64)kh * Dh;
    float acc[4] = {0, 0, 0, 0};
    for (int j0 = 0; j0 < Tk; j0 += AT) {
        for (int r = ty; r < AT; r += 8) {
            int i = i0 + r, j = j0 + tx;
            ps[r][tx] = (i < Tq && j < Tk) ? pb[(i64)i * Tk + j] : 0;
            int jj = j0 + r, d = d0 + tx;
            vs[r][tx] = (jj < Tk && d < Dh) ? vb[jj * vstride + d] : 0;
        }
        __syncthreads();
        for (int jj = 0; jj < AT; jj++) {
            float vv = vs[jj][tx];
            for (int u = 0; u < 4; u++) acc[u] += ps[ty + 8 * u][jj] * vv;
        }
        __syncthreads();
    }
    int d = d0 + tx;
    if (d >= Dh) return;
    for (int u = 0; u < 4; u++) {
        int i = i0 + ty + 8 * u;
        if (i >= Tq) continue;
        z[((i64)b * Tq + i) * zstride + (i64)h * Dh + d] = acc[u];
    }
}

// ---- exact reductions of the fused attention (second pass) --------------

// attn_probs: P rows for asked query rows, recomputed from q and k and the
// first pass's log-sum-exp: out[((b*H+h)*n + r)*Tk + j] = exp(s - lse) on
// allowed keys, 0 elsewhere, for query rows[r]. Grid (ceil(Tk/128), n,
// B*H), block 128; the query row sits in shared memory.
extern "C" __global__ void attn_probs(const float* q, const float* k, const float* lse, const int* rows, float* out,
                                      int n, int Tq, int Tk, int Tcap, int H, int Hkv, int Dh, float scale,
                                      int past, int causal, int window, const unsigned char* key_valid) {
    extern __shared__ float qrow[];
    int bh = blockIdx.z, b = bh / H, h = bh % H, kh = h / (H / Hkv);
    int r = blockIdx.y, i = rows[r];
    const float* qp = q + ((i64)b * Tq + i) * H * Dh + (i64)h * Dh;
    for (int d = threadIdx.x; d < Dh; d += blockDim.x) qrow[d] = qp[d];
    __syncthreads();
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= Tk) return;
    float l = lse[((i64)b * H + h) * Tq + i];
    float p = 0;
    if (l != NEG_INF && key_visible(b, i, j, Tk, past, causal, window, key_valid)) {
        const float* kp = k + ((i64)b * Tcap + j) * Hkv * Dh + (i64)kh * Dh;
        float dot = 0;
        for (int d = 0; d < Dh; d++) dot += qrow[d] * kp[d];
        p = expf(dot * scale - l);
    }
    out[((i64)bh * n + r) * Tk + j] = p;
}

// span_rows: out[row] = Σ x[row, lo:hi] with per-row bounds lohi[2*(row %
// n)] (already clipped to [0, cols)).
extern "C" __global__ void span_rows(const float* x, float* out, int cols, int n, const int* lohi) {
    __shared__ double sh[32];
    int r = blockIdx.x % n;
    int lo = lohi[2 * r], hi = lohi[2 * r + 1];
    const float* in = x + (i64)blockIdx.x * cols;
    double s = 0;
    for (int i = lo + threadIdx.x; i < hi; i += blockDim.x) s += in[i];
    s = block_sum_d(s, sh);
    if (threadIdx.x == 0) out[blockIdx.x] = (float)s;
}

// keyset_rows: out[row] = Σ over the keys listed for (sequence b, asked row
// r0 + row % n) of x[row, key]; row = (b*H + h)*n + rc. A key listed twice
// counts twice; keys outside [0, cols) add nothing.
extern "C" __global__ void keyset_rows(const float* x, float* out, int cols, int n, int H, int R, int r0, const int* off, const int* keys) {
    __shared__ double sh[32];
    int rc = blockIdx.x % n, b = blockIdx.x / n / H;
    int at = b * R + r0 + rc;
    const float* in = x + (i64)blockIdx.x * cols;
    double s = 0;
    for (int e = off[at] + threadIdx.x; e < off[at + 1]; e += blockDim.x) {
        int j = keys[e];
        if (j >= 0 && j < cols) s += in[j];
    }
    s = block_sum_d(s, sh);
    if (threadIdx.x == 0) out[blockIdx.x] = (float)s;
}
