
// ---- the consumers of the stacked input products (proj.go) ---------------
// Compiled after kernels.cu, in its module: its types and helpers.

// qkv_rotary splits the rows of y = x·[Wq; Wk; Wv]ᵀ, [rows, (H + 2·Hkv)·dh],
// into q [rows, H·dh], k and v [rows, Hkv·dh], rotating q and k as rotary
// does with full rotary (pairs (i, i + dh/2) of each head, row r at
// position pos[r], the same float32 arithmetic); qh, kh and vh, when not
// null, get the bf16 copies that attention's products read (the shadows).
// One thread per (row, pair index i) and group of QKV_GROUP heads
// (blockIdx.y; the q heads, then k's, then v's): the angle once per group,
// then pair i of each q or k head of the group and elements i, i + dh/2 of
// each v head. Groups give the GPU more threads than one walk over all the
// heads of a row would (48 heads at Llama-3-8B's shape).
#define QKV_GROUP 8
extern "C" __global__ void qkv_rotary(const float* y, float* q, float* k, float* v, u16* qh, u16* kh, u16* vh,
                                      const int* pos, const float* inv_freq, int rows, int H, int Hkv, int dh) {
    int half = dh / 2;
    int heads = H + 2 * Hkv;
    int h0 = blockIdx.y * QKV_GROUP, h1 = min(h0 + QKV_GROUP, heads);
    i64 width = (i64)heads * dh;
    i64 total = (i64)rows * half;
    for (i64 e = blockIdx.x * (i64)blockDim.x + threadIdx.x; e < total; e += (i64)gridDim.x * blockDim.x) {
        int i = e % half;
        i64 r = e / half;
        float s = 0.0f, c = 1.0f;
        if (h0 < H + Hkv) {
            float a = (float)pos[r] * inv_freq[i];
            sincosf(a, &s, &c);
        }
        for (int h = h0; h < h1; h++) {
            const float* src = y + r * width + (i64)h * dh + i;
            float x1 = src[0], x2 = src[half];
            float* out;
            u16* out16;
            i64 at;
            if (h < H + Hkv) {
                float y1 = x1 * c - x2 * s, y2 = x2 * c + x1 * s;
                x1 = y1;
                x2 = y2;
            }
            if (h < H) {
                at = r * H * dh + (i64)h * dh + i;
                out = q;
                out16 = qh;
            } else if (h < H + Hkv) {
                at = r * Hkv * dh + (i64)(h - H) * dh + i;
                out = k;
                out16 = kh;
            } else {
                at = r * Hkv * dh + (i64)(h - H - Hkv) * dh + i;
                out = v;
                out16 = vh;
            }
            out[at] = x1;
            out[at + half] = x2;
            if (out16 != 0) {
                out16[at] = f32_to_bf16(x1);
                out16[at + half] = f32_to_bf16(x2);
            }
        }
    }
}

// swiglu_split: out [rows, F] = silu(gu[:, :F]) * gu[:, F:] for
// gu = x·[Wgate; Wup]ᵀ [rows, 2F], as swiglu computes it, with out's bf16
// copy into h when h is not null (the down projection's input).
extern "C" __global__ void swiglu_split(const float* gu, float* out, u16* h, i64 rows, int F) {
    i64 i0 = blockIdx.x * (i64)blockDim.x + threadIdx.x, step = (i64)gridDim.x * blockDim.x;
    if ((F & 3) == 0 && ((((unsigned long long)gu | (unsigned long long)out) & 15) | ((unsigned long long)h & 7)) == 0) {
        int F4 = F / 4;
        for (i64 e = i0; e < rows * F4; e += step) {
            i64 r = e / F4;
            int j = (int)(e % F4);
            const float4* row = (const float4*)(gu + r * 2 * F);
            float4 x = row[j], u = row[F4 + j];
            float4 o = make_float4(silu_mul(x.x, u.x), silu_mul(x.y, u.y), silu_mul(x.z, u.z), silu_mul(x.w, u.w));
            ((float4*)out)[e] = o;
            if (h) ((uint2*)h)[e] = make_uint2(pack2_bf16(o.x, o.y), pack2_bf16(o.z, o.w));
        }
        return;
    }
    for (i64 e = i0; e < rows * F; e += step) {
        i64 r = e / F;
        int j = (int)(e % F);
        float o = silu_mul(gu[r * 2 * F + j], gu[r * 2 * F + F + j]);
        out[e] = o;
        if (h) h[e] = f32_to_bf16(o);
    }
}
