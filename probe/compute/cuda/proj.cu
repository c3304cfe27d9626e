
// ---- the consumers of the stacked input products (proj.go) ---------------
// Compiled after kernels.cu, in its module: its types and helpers.

// qkv_rotary splits the rows of y = x·[Wq; Wk; Wv]ᵀ, [rows, (H + 2·Hkv)·dh],
// into q [rows, H·dh], k and v [rows, Hkv·dh], rotating q and k as rotary
// does with full rotary (pairs (i, i + dh/2) of each head, row r at
// position pos[r], the same float32 arithmetic); qh, kh and vh, when not
// null, get the bf16 copies that attention's products read (the shadows).
// One thread per (row, pair index i): the angle once, then pair i of
// every q and k head and elements i, i + dh/2 of every v head.
extern "C" __global__ void qkv_rotary(const float* y, float* q, float* k, float* v, u16* qh, u16* kh, u16* vh,
                                      const int* pos, const float* inv_freq, int rows, int H, int Hkv, int dh) {
    int half = dh / 2;
    i64 width = (i64)(H + 2 * Hkv) * dh;
    i64 total = (i64)rows * half;
    for (i64 e = blockIdx.x * (i64)blockDim.x + threadIdx.x; e < total; e += (i64)gridDim.x * blockDim.x) {
        int i = e % half;
        i64 r = e / half;
        float a = (float)pos[r] * inv_freq[i];
        float s, c;
        sincosf(a, &s, &c);
        const float* src = y + r * width + i;
        for (int h = 0; h < H + Hkv; h++, src += dh) {
            float x1 = src[0], x2 = src[half];
            float y1 = x1 * c - x2 * s, y2 = x2 * c + x1 * s;
            bool isq = h < H;
            i64 at = isq ? r * H * dh + (i64)h * dh + i : r * Hkv * dh + (i64)(h - H) * dh + i;
            float* out = isq ? q : k;
            u16* out16 = isq ? qh : kh;
            out[at] = y1;
            out[at + half] = y2;
            if (out16 != 0) {
                out16[at] = f32_to_bf16(y1);
                out16[at + half] = f32_to_bf16(y2);
            }
        }
        for (int h = 0; h < Hkv; h++, src += dh) {
            i64 at = r * Hkv * dh + (i64)h * dh + i;
            float v1 = src[0], v2 = src[half];
            v[at] = v1;
            v[at + half] = v2;
            if (vh != 0) {
                vh[at] = f32_to_bf16(v1);
                vh[at + half] = f32_to_bf16(v2);
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
