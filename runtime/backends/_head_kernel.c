/* edge_ad.runtime._head_kernel: the generator's two thin layers (z -> 4x4 -> 8x8) with their backward
 * pass AND Adam on their weights fused, on the host (CPU, float32). Used by the "host-head" search
 * (runtime/backends/onnxruntime_host_adam.py, head=...); the NumPy reference the tests compare against is
 * tests/host_head_reference.py.
 *
 * Why: at width 32 these layers hold 82 % of the weights (2.92 of 3.58 M floats) and a third of the
 * FLOPs. In onnxruntime their GEMMs are thin (1 and 16 input positions: MLAS repacks the 8 MB weight
 * for a 16-row product) and their weight gradients are written to memory only to be read back by the
 * host's Adam. Here:
 *   forward:  a0 = z W0 (GEMV), h0 = relu(bn0(a0)), cols1 = W1^T h0 (one pass over W1's column panels),
 *             a1 = col2im(cols1)                                           -> the tail graph's input
 *   backward: dcols1 = im2col(da1); ONE pass over W1, m1, v1: dh0 += W1 dcols1 (old weights), then
 *             g = h0 dcols1^T and Adam in registers (the weight gradient never reaches memory);
 *             bn0 backward + Adam on gamma0/beta0; ONE pass over W0, m0, v0: dz = W0 da0, g = z da0^T, Adam.
 *
 * Layout (the prefix of the search's flat state buffer, in the manifest's state order):
 *   W0 (Z, N0) with N0 = 16 C0 columns (c, kh, kw); gamma0 (C0); beta0 (C0);
 *   W1 as column panels (N1 / 32, C0, 32), N1 = 16 C1 columns (c, kh, kw) of the stride-2 layer.
 * consts: mean0 (C0), inv_std0 (C0), as the graphs store them.
 * work:   scratch, float32, work_size(z_dim, c0, n1) elements.
 *
 * Adam is the same float32 arithmetic as runtime/backends/_adam_kernel.c (no contraction: built with
 * -ffp-contract=off; the GEMM parts use explicit FMAs on AVX2 machines), moments kept scaled:
 *   m' = m * b1 + g,   v' = v * b2 + g * g,   p' = p - m' / (sqrt(v') * alpha + eps_k)
 * with p0 given (the search's first step): the weights are read from p0 and the moments are zero.
 *
 * The loops are AVX2 + FMA (x86-64, checked at run time: has_avx2()). Elsewhere (ARM, older x86) the
 * module still builds, has_avx2() is False and forward/backward refuse: the runtime runs the fused-adam
 * search there (portable loops here were slower than onnxruntime's layers 0-1: 5.7 + 30 ms vs ~10 ms per
 * step at width 32, so no runtime path used them).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

#define PW 32   /* W1 panel width */
#define P1 16   /* layer 1 input positions (4 x 4) */

typedef struct {
    Py_ssize_t Z, C0, N0, N1, C1, n_head;
} Dims;

typedef struct {   /* views into the work buffer */
    float *xhat0, *h0, *colsT, *dcols, *dcolsT, *dh0, *da0;
} Work;

static Dims dims_of(Py_ssize_t Z, Py_ssize_t C0, Py_ssize_t N1) {
    Dims d;
    d.Z = Z; d.C0 = C0; d.N0 = 16 * C0; d.N1 = N1; d.C1 = N1 / 16;
    d.n_head = Z * d.N0 + 2 * C0 + C0 * N1;
    return d;
}

static Py_ssize_t work_size(Dims d) { return 2 * d.N0 + 3 * P1 * d.N1 + 2 * d.N0; }

static Work work_of(float *w, Dims d) {
    Work k;
    k.xhat0 = w; k.h0 = w + d.N0; k.colsT = k.h0 + d.N0; k.dcols = k.colsT + P1 * d.N1;
    k.dcolsT = k.dcols + P1 * d.N1; k.dh0 = k.dcolsT + P1 * d.N1; k.da0 = k.dh0 + d.N0;
    return k;
}

/* ---------------------------------------------------------------- Adam on a short row (scalar) */
static inline void adam_scalar(float *p, float *restrict m, float *restrict v, const float *pin,
                               const float *restrict g, Py_ssize_t n, int first, float b1, float b2,
                               float alpha, float eps_k) {
    for (Py_ssize_t i = 0; i < n; i++) {
        const float gi = g[i];
        const float mi = first ? gi : m[i] * b1 + gi;
        const float vi = first ? gi * gi : v[i] * b2 + gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = pin[i] - mi / (sqrtf(vi) * alpha + eps_k);
    }
}

/* ---------------------------------------------------------------- layout */
/* The transposed column blocks colsT / dcolsT are stored panel by panel, (N1 / 32, 16, 32): element (p, n)
 * at TP(p, n) = (n / 32) * 512 + p * 32 + n % 32, so one panel's 16 x 32 block is 2 KB of contiguous memory
 * (rows 16 KB apart all fall in one L1 set: measured 3x slower for the backward pass). */
#define TP(p, n) (((n) / PW) * (PW * P1) + (p) * PW + (n) % PW)

/* ---------------------------------------------------------------- AVX2 + FMA kernels */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(EDGE_AD_NO_AVX2)   /* -DEDGE_AD_NO_AVX2: builds without them */
#include <immintrin.h>
#define HAVE_AVX2_PATH 1

#define CB 128   /* rows of a W1 panel per block: 16 KB, stays in L1 while the positions sweep it */

/* np (<= 6) positions x 16 columns of one panel over rows [cb, ce): 2 np accumulators (12 independent
 * FMA chains at np = 6: enough to hide the FMA latency), W loaded once per row into 2 registers */
__attribute__((target("avx2,fma"), always_inline))
static inline void l1_forward_block(const float *restrict wq, const float *restrict h0, float *restrict o,
                                    Py_ssize_t cb, Py_ssize_t ce, int pg, const int np, int half, Py_ssize_t room) {
    __m256 acc[6][2];
    for (int i = 0; i < np; i++)
        for (int k = 0; k < 2; k++)
            acc[i][k] = cb ? _mm256_loadu_ps(o + (pg + i) * PW + 16 * half + 8 * k) : _mm256_setzero_ps();
    for (Py_ssize_t c = cb; c < ce; c++) {
        const float *w = wq + c * PW + 16 * half;
        /* the same row of the next block (next panel's at the end), 16 KB ahead, while inside W1 (room:
         * floats from wq to W1's end) */
        if (pg == 0 && half == 0 && (c + CB) * PW + 16 < room)
            _mm_prefetch((const char *)(wq + (c + CB) * PW), _MM_HINT_T0),
                _mm_prefetch((const char *)(wq + (c + CB) * PW + 16), _MM_HINT_T0);
        const __m256 w0 = _mm256_loadu_ps(w), w1 = _mm256_loadu_ps(w + 8);
        for (int i = 0; i < np; i++) {
            const __m256 b = _mm256_broadcast_ss(h0 + c * P1 + pg + i);
            acc[i][0] = _mm256_fmadd_ps(b, w0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(b, w1, acc[i][1]);
        }
    }
    for (int i = 0; i < np; i++)
        for (int k = 0; k < 2; k++) _mm256_storeu_ps(o + (pg + i) * PW + 16 * half + 8 * k, acc[i][k]);
}

__attribute__((target("avx2,fma")))
static void l1_forward_avx2(const float *restrict W1, const float *restrict h0, float *restrict colsT, Dims d) {
    for (Py_ssize_t q = 0; q < d.N1 / PW; q++) {
        const float *wq = W1 + q * d.C0 * PW;
        const Py_ssize_t room = (d.N1 / PW - q) * d.C0 * PW;
        float *oq = colsT + TP(0, q * PW);           /* this panel's (16, 32) output block */
        for (Py_ssize_t cb = 0; cb < d.C0; cb += CB) {
            const Py_ssize_t ce = cb + CB < d.C0 ? cb + CB : d.C0;
            for (int half = 0; half < 2; half++) {    /* 16 positions = 6 + 6 + 4 */
                l1_forward_block(wq, h0, oq, cb, ce, 0, 6, half, room);
                l1_forward_block(wq, h0, oq, cb, ce, 6, 6, half, room);
                l1_forward_block(wq, h0, oq, cb, ce, 12, 4, half, room);
            }
        }
    }
}

/* a0 (N0) = z W0: 2048-column blocks of a0 stay in L1 while the rows of W0 stream by */
__attribute__((target("avx2,fma")))
static void l0_gemv_avx2(const float *restrict z, const float *restrict W0, float *restrict a0, Dims d) {
    for (Py_ssize_t nb = 0; nb < d.N0; nb += 2048) {
        const Py_ssize_t ne = nb + 2048 < d.N0 ? nb + 2048 : d.N0;
        for (Py_ssize_t n = nb; n < ne; n += 8) _mm256_storeu_ps(a0 + n, _mm256_setzero_ps());
        for (Py_ssize_t c = 0; c < d.Z; c++) {
            const __m256 zc = _mm256_broadcast_ss(z + c);
            const float *w = W0 + c * d.N0;
            for (Py_ssize_t n = nb; n < ne; n += 8)
                _mm256_storeu_ps(a0 + n, _mm256_fmadd_ps(zc, _mm256_loadu_ps(w + n), _mm256_loadu_ps(a0 + n)));
        }
    }
}

/* Adam on 8 floats in registers: the scalar formula, lane by lane, same rounding (no FMA) */
__attribute__((target("avx2,fma")))
static inline void adam8(float *p, float *m, float *v, const float *pin, __m256 g, int first, __m256 b1, __m256 b2,
                         __m256 alpha, __m256 eps_k) {
    __m256 mi, vi;
    const __m256 gg = _mm256_mul_ps(g, g);
    if (first) {
        mi = g;
        vi = gg;
    } else {
        mi = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(m), b1), g);
        vi = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(v), b2), gg);
    }
    _mm256_storeu_ps(m, mi);
    _mm256_storeu_ps(v, vi);
    const __m256 den = _mm256_add_ps(_mm256_mul_ps(_mm256_sqrt_ps(vi), alpha), eps_k);
    _mm256_storeu_ps(p, _mm256_sub_ps(_mm256_loadu_ps(pin), _mm256_div_ps(mi, den)));
}

__attribute__((target("avx2,fma")))
static void l1_backward_avx2(const float *W1in, float *W1, float *restrict m, float *restrict v,
                             const float *restrict h0, const float *restrict dcols, const float *restrict dcolsT,
                             float *restrict dh0, Dims d, int update, int first, float b1s, float b2s, float alphas,
                             float eps_ks) {
    const __m256 b1 = _mm256_set1_ps(b1s), b2 = _mm256_set1_ps(b2s);
    const __m256 alpha = _mm256_set1_ps(alphas), eps_k = _mm256_set1_ps(eps_ks);
    memset(dh0, 0, sizeof(float) * d.N0);
    for (Py_ssize_t q = 0; q < d.N1 / PW; q++) {
        const float *dcq = dcols + q * PW * P1;        /* (32, 16): this panel's rows of dcols */
        for (Py_ssize_t c = 0; c < d.C0; c += 4) {    /* 4 weight rows at a time */
            const Py_ssize_t o = (q * d.C0 + c) * PW;
            const float *w = W1in + o;
            /* dh0[c + r][0:16] += sum_j w[r][j] * dcols[q*32 + j][0:16]: 8 accumulators */
            __m256 a[4][2];
            for (int r = 0; r < 4; r++) {
                a[r][0] = _mm256_loadu_ps(dh0 + (c + r) * P1);
                a[r][1] = _mm256_loadu_ps(dh0 + (c + r) * P1 + 8);
            }
            for (int j = 0; j < PW; j++) {
                const __m256 d0 = _mm256_loadu_ps(dcq + j * P1), d1 = _mm256_loadu_ps(dcq + j * P1 + 8);
                for (int r = 0; r < 4; r++) {
                    const __m256 b = _mm256_broadcast_ss(w + r * PW + j);
                    a[r][0] = _mm256_fmadd_ps(b, d0, a[r][0]);
                    a[r][1] = _mm256_fmadd_ps(b, d1, a[r][1]);
                }
            }
            for (int r = 0; r < 4; r++) {
                _mm256_storeu_ps(dh0 + (c + r) * P1, a[r][0]);
                _mm256_storeu_ps(dh0 + (c + r) * P1 + 8, a[r][1]);
            }
            if (!update) continue;
            /* g[r][0:32] = sum_p h0[c + r][p] * dcolsT[p][q*32 : q*32 + 32], two rows at a time, then Adam */
            for (int r = 0; r < 4; r += 2) {
                __m256 g[2][4];
                for (int s = 0; s < 2; s++)
                    for (int k = 0; k < 4; k++) g[s][k] = _mm256_setzero_ps();
                const float *hr = h0 + (c + r) * P1;
                for (int p = 0; p < P1; p++) {
                    const float *dt = dcolsT + TP(p, q * PW);
                    const __m256 t0 = _mm256_loadu_ps(dt), t1 = _mm256_loadu_ps(dt + 8);
                    const __m256 t2 = _mm256_loadu_ps(dt + 16), t3 = _mm256_loadu_ps(dt + 24);
                    for (int s = 0; s < 2; s++) {
                        const __m256 b = _mm256_broadcast_ss(hr + s * P1 + p);
                        g[s][0] = _mm256_fmadd_ps(b, t0, g[s][0]);
                        g[s][1] = _mm256_fmadd_ps(b, t1, g[s][1]);
                        g[s][2] = _mm256_fmadd_ps(b, t2, g[s][2]);
                        g[s][3] = _mm256_fmadd_ps(b, t3, g[s][3]);
                    }
                }
                for (int s = 0; s < 2; s++) {
                    const Py_ssize_t os = o + (r + s) * PW;
                    for (int k = 0; k < 4; k++)
                        adam8(W1 + os + 8 * k, m + os + 8 * k, v + os + 8 * k, W1in + os + 8 * k, g[s][k], first, b1,
                              b2, alpha, eps_k);
                }
            }
        }
    }
}

/* layer 0, row by row: dz[c] = W0[c] . da0 (old weights); then g = z[c] da0 and Adam on the row (in L2) */
__attribute__((target("avx2,fma")))
static void l0_backward_avx2(const float *restrict z, const float *restrict da0, float *restrict dz, const float *W0in,
                             float *W0, float *restrict m, float *restrict v, Dims d, int update, int first,
                             float b1s, float b2s, float alphas, float eps_ks) {
    const __m256 b1 = _mm256_set1_ps(b1s), b2 = _mm256_set1_ps(b2s);
    const __m256 alpha = _mm256_set1_ps(alphas), eps_k = _mm256_set1_ps(eps_ks);
    for (Py_ssize_t c = 0; c < d.Z; c++) {
        const float *w = W0in + c * d.N0;
        __m256 s[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
        for (Py_ssize_t n = 0; n < d.N0; n += 32)      /* N0 = 16 C0, C0 % 4 == 0: a multiple of 64 */
            for (int k = 0; k < 4; k++)
                s[k] = _mm256_fmadd_ps(_mm256_loadu_ps(w + n + 8 * k), _mm256_loadu_ps(da0 + n + 8 * k), s[k]);
        __m256 t = _mm256_add_ps(_mm256_add_ps(s[0], s[1]), _mm256_add_ps(s[2], s[3]));
        __m128 h = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
        h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        h = _mm_add_ss(h, _mm_movehdup_ps(h));
        dz[c] = _mm_cvtss_f32(h);
        if (!update) continue;
        const __m256 zc = _mm256_broadcast_ss(z + c);
        const Py_ssize_t o = c * d.N0;
        for (Py_ssize_t n = 0; n < d.N0; n += 8)
            adam8(W0 + o + n, m + o + n, v + o + n, w + n, _mm256_mul_ps(zc, _mm256_loadu_ps(da0 + n)), first, b1, b2,
                  alpha, eps_k);
    }
}

static int cpu_has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#else
#define HAVE_AVX2_PATH 0
static int cpu_has_avx2(void) { return 0; }
#endif

/* ---------------------------------------------------------------- the head's pieces (layout-generic) */
#if HAVE_AVX2_PATH
/* xhat0 = (a0 - mean) * inv_std, h0 = relu(xhat0 * gamma + beta), as the graphs' BN + ReLU */
static void bn0_relu(const float *restrict a0, const float *restrict gamma, const float *restrict beta,
                     const float *restrict mean, const float *restrict inv_std, float *restrict xhat0,
                     float *restrict h0, Dims d) {
    for (Py_ssize_t ch = 0; ch < d.C0; ch++)
        for (int p = 0; p < P1; p++) {
            const Py_ssize_t n = ch * P1 + p;
            const float xh = (a0[n] - mean[ch]) * inv_std[ch];
            const float y = xh * gamma[ch] + beta[ch];
            xhat0[n] = xh;
            h0[n] = y > 0.0f ? y : 0.0f;
        }
}

/* a1 (C1, 8, 8) = col2im(cols1): kernel 4, stride 2, pad 1; colsT[TP(position, column (c, kh, kw))] */
static void col2im_l1(const float *restrict colsT, float *restrict a1, Dims d) {
    memset(a1, 0, sizeof(float) * d.C1 * 64);
    for (Py_ssize_t co = 0; co < d.C1; co++)
        for (int kh = 0; kh < 4; kh++)
            for (int kw = 0; kw < 4; kw++) {
                const Py_ssize_t n = co * 16 + kh * 4 + kw;
                for (int i = 0; i < 4; i++) {
                    const int y = 2 * i - 1 + kh;
                    if (y < 0 || y >= 8) continue;
                    for (int j = 0; j < 4; j++) {
                        const int x = 2 * j - 1 + kw;
                        if (x < 0 || x >= 8) continue;
                        a1[co * 64 + y * 8 + x] += colsT[TP(i * 4 + j, n)];
                    }
                }
            }
}

/* dcols (N1, 16) and dcolsT[TP(p, n)]: dcols[(c, kh, kw)][(i, j)] = da1[c][2i - 1 + kh][2j - 1 + kw] (0 outside) */
static void im2col_l1(const float *restrict da1, float *restrict dcols, float *restrict dcolsT, Dims d) {
    for (Py_ssize_t co = 0; co < d.C1; co++)
        for (int kh = 0; kh < 4; kh++)
            for (int kw = 0; kw < 4; kw++) {
                const Py_ssize_t n = co * 16 + kh * 4 + kw;
                for (int i = 0; i < 4; i++)
                    for (int j = 0; j < 4; j++) {
                        const int y = 2 * i - 1 + kh, x = 2 * j - 1 + kw;
                        const float val = (y < 0 || y >= 8 || x < 0 || x >= 8) ? 0.0f : da1[co * 64 + y * 8 + x];
                        dcols[n * P1 + i * 4 + j] = val;
                        dcolsT[TP(i * 4 + j, n)] = val;
                    }
            }
}

#endif

/* ---------------------------------------------------------------- Python glue */
typedef struct {
    const char *name;
    int writable, optional;
    Py_ssize_t n;      /* expected elements; -1: any */
} Spec;

static int get_buffers(PyObject **objs, const Spec *specs, int count, Py_buffer *views, int *got, const char *fn) {
    for (*got = 0; *got < count; (*got)++) {
        const Spec *s = &specs[*got];
        PyObject *o = objs[*got];
        Py_buffer *vw = &views[*got];
        if (o == NULL || o == Py_None) {
            if (s->optional) { vw->obj = NULL; vw->buf = NULL; continue; }
            PyErr_Format(PyExc_TypeError, "%s: %s is required", fn, s->name);
            return -1;
        }
        int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (s->writable ? PyBUF_WRITABLE : 0);
        if (PyObject_GetBuffer(o, vw, flags) != 0) {
            PyErr_Format(PyExc_TypeError, "%s: %s must be a %sC-contiguous float32 buffer", fn, s->name,
                         s->writable ? "writable " : "");
            return -1;
        }
        const char *f = vw->format ? vw->format : "B";
        if (*f == '<' || *f == '=' || *f == '@') f++;
        if (vw->itemsize != (Py_ssize_t)sizeof(float) || strcmp(f, "f") != 0) {
            PyErr_Format(PyExc_TypeError, "%s: %s must hold float32, got format '%s'", fn, s->name,
                         vw->format ? vw->format : "B");
            PyBuffer_Release(vw);
            return -1;
        }
        if (s->n >= 0 && vw->len != s->n * (Py_ssize_t)sizeof(float)) {
            PyErr_Format(PyExc_ValueError, "%s: %s has %zd elements, expected %zd", fn, s->name,
                         vw->len / (Py_ssize_t)sizeof(float), s->n);
            PyBuffer_Release(vw);
            return -1;
        }
    }
    return 0;
}

static void release(Py_buffer *views, int got) {
    for (int i = 0; i < got; i++)
        if (views[i].obj) PyBuffer_Release(&views[i]);
}

static int check_dims(Py_ssize_t Z, Py_ssize_t C0, Py_ssize_t N1, const char *fn) {
    const Py_ssize_t lim = (Py_ssize_t)1 << 20;      /* keeps every size product far from overflow */
    if (Z < 1 || C0 < 4 || C0 % 4 != 0 || N1 < PW || N1 % PW != 0 || N1 % 16 != 0 || Z > lim || C0 > lim ||
        N1 > lim) {
        PyErr_Format(PyExc_ValueError, "%s: unsupported head dims z_dim=%zd c0=%zd n1=%zd (c0 %% 4 == 0, "
                     "n1 %% 32 == 0 needed)", fn, Z, C0, N1);
        return -1;
    }
    return 0;
}

static PyObject *py_work_size(PyObject *self, PyObject *args) {
    Py_ssize_t Z, C0, N1;
    if (!PyArg_ParseTuple(args, "nnn", &Z, &C0, &N1)) return NULL;
    if (check_dims(Z, C0, N1, "work_size") != 0) return NULL;
    return PyLong_FromSsize_t(work_size(dims_of(Z, C0, N1)));
}

/* refuses (RuntimeError) where the AVX2 + FMA loops cannot run */
static int require_avx2(const char *fn) {
    if (HAVE_AVX2_PATH && cpu_has_avx2()) return 0;
    PyErr_Format(PyExc_RuntimeError, "%s: the host head runs on x86-64 CPUs with AVX2 + FMA only (this one has "
                 "not, or the kernel was built without them); the fused-adam search runs here", fn);
    return -1;
}

/* forward(z, w, consts, work, a1, z_dim, c0, n1) */
static PyObject *py_forward(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"z", "w", "consts", "work", "a1", "z_dim", "c0", "n1", NULL};
    PyObject *objs[5];
    Py_ssize_t Z, C0, N1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOOnnn", kwlist, &objs[0], &objs[1], &objs[2], &objs[3],
                                     &objs[4], &Z, &C0, &N1))
        return NULL;
    if (require_avx2("forward") != 0) return NULL;
    if (check_dims(Z, C0, N1, "forward") != 0) return NULL;
    Dims d = dims_of(Z, C0, N1);
    Spec specs[5] = {{"z", 0, 0, Z}, {"w", 0, 0, d.n_head}, {"consts", 0, 0, 2 * C0},
                     {"work", 1, 0, work_size(d)}, {"a1", 1, 0, d.C1 * 64}};
    Py_buffer views[5];
    int got = 0;
    PyObject *result = NULL;
    if (get_buffers(objs, specs, 5, views, &got, "forward") != 0) goto done;
    {
        const float *z = views[0].buf, *w = views[1].buf, *cs = views[2].buf;
        float *wk = views[3].buf, *a1 = views[4].buf;
        Work k = work_of(wk, d);
        const float *W0 = w, *gamma = w + Z * d.N0, *beta = gamma + C0, *W1 = beta + C0;
        Py_BEGIN_ALLOW_THREADS
        float *a0 = k.da0;                            /* scratch until the backward pass */
#if HAVE_AVX2_PATH
        l0_gemv_avx2(z, W0, a0, d);
        bn0_relu(a0, gamma, beta, cs, cs + C0, k.xhat0, k.h0, d);
        l1_forward_avx2(W1, k.h0, k.colsT, d);
        col2im_l1(k.colsT, a1, d);
#else
        (void)a0; (void)z; (void)W0; (void)gamma; (void)beta; (void)W1; (void)cs; (void)a1;
#endif
        Py_END_ALLOW_THREADS
    }
    result = Py_None;
    Py_INCREF(result);
done:
    release(views, got);
    return result;
}

/* backward(da1, z, dz, p, m, v, p0, consts, work, z_dim, c0, n1, b1, b2, alpha, eps_k)
 *   p: the head weights (read; updated in place when m and v are given); m = v = None: only dz is
 *   computed (the z-only search: p is the pristine copy and is not written); p0 given: the first step
 *   (the weights are read from p0, the moments taken as zero, p written). */
static PyObject *py_backward(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"da1", "z", "dz", "p", "m", "v", "p0", "consts", "work", "z_dim", "c0", "n1",
                             "b1", "b2", "alpha", "eps_k", NULL};
    PyObject *objs[9];
    Py_ssize_t Z, C0, N1;
    float b1 = NAN, b2 = NAN, alpha = NAN, eps_k = NAN;       /* required with m and v (checked below) */
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOOOOOOnnn|ffff", kwlist, &objs[0], &objs[1], &objs[2],
                                     &objs[3], &objs[4], &objs[5], &objs[6], &objs[7], &objs[8], &Z, &C0, &N1,
                                     &b1, &b2, &alpha, &eps_k))
        return NULL;
    if (require_avx2("backward") != 0) return NULL;
    if (check_dims(Z, C0, N1, "backward") != 0) return NULL;
    Dims d = dims_of(Z, C0, N1);
    /* p: the weights (read, and updated in place when m/v are given: writable only then); p0: the
     * pristine weights (first step) */
    const int wants_update = objs[4] != Py_None || objs[5] != Py_None;
    Spec specs[9] = {{"da1", 0, 0, d.C1 * 64}, {"z", 0, 0, Z}, {"dz", 1, 0, Z}, {"p", wants_update, 0, d.n_head},
                     {"m", 1, 1, d.n_head}, {"v", 1, 1, d.n_head}, {"p0", 0, 1, d.n_head},
                     {"consts", 0, 0, 2 * C0}, {"work", 1, 0, work_size(d)}};
    Py_buffer views[9];
    int got = 0;
    PyObject *result = NULL;
    if (get_buffers(objs, specs, 9, views, &got, "backward") != 0) goto done;
    if ((views[4].buf == NULL) != (views[5].buf == NULL)) {
        PyErr_SetString(PyExc_ValueError, "backward: give both m and v (the weight update) or neither (z only)");
        goto done;
    }
    if (wants_update && (isnan(b1) || isnan(b2) || isnan(alpha) || isnan(eps_k))) {
        PyErr_SetString(PyExc_ValueError, "backward: the Adam coefficients b1, b2, alpha, eps_k are required with m and v");
        goto done;
    }
    {
        const int update = views[4].buf != NULL, first = views[6].buf != NULL;
        const float *da1 = views[0].buf, *z = views[1].buf, *cs = views[7].buf;
        float *dz = views[2].buf, *p = views[3].buf, *m = views[4].buf, *v = views[5].buf;
        const float *win = first ? (const float *)views[6].buf : p;   /* the weights of this step */
        Work k = work_of(views[8].buf, d);
        const Py_ssize_t o_g = Z * d.N0, o_b = o_g + C0, o_w1 = o_b + C0;
        const float *inv_std = cs + C0;
        Py_BEGIN_ALLOW_THREADS
#if HAVE_AVX2_PATH
        im2col_l1(da1, k.dcols, k.dcolsT, d);
        /* layer 1: dh0 with the old weights, then (update) W1's gradient and Adam in the same pass */
        l1_backward_avx2(win + o_w1, p + o_w1, update ? m + o_w1 : NULL, update ? v + o_w1 : NULL, k.h0, k.dcols,
                         k.dcolsT, k.dh0, d, update, first, b1, b2, alpha, eps_k);
        /* BN0 + ReLU backward: dy = dh0 [h0 > 0]; dgamma = sum_p dy xhat; dbeta = sum_p dy; da0 = dy gamma inv_std */
        {
            float gg[64], gb[64];    /* per channel gradients in blocks of 64 channels */
            for (Py_ssize_t c0 = 0; c0 < C0; c0 += 64) {
                const Py_ssize_t nc = C0 - c0 < 64 ? C0 - c0 : 64;
                for (Py_ssize_t i = 0; i < nc; i++) {
                    const Py_ssize_t ch = c0 + i;
                    float sg = 0.0f, sb = 0.0f;
                    const float gscale = win[o_g + ch] * inv_std[ch];
                    for (int q = 0; q < P1; q++) {
                        const Py_ssize_t n = ch * P1 + q;
                        const float dy = k.h0[n] > 0.0f ? k.dh0[n] : 0.0f;
                        sg += dy * k.xhat0[n];
                        sb += dy;
                        k.da0[n] = dy * gscale;
                    }
                    gg[i] = sg;
                    gb[i] = sb;
                }
                if (update) {
                    adam_scalar(p + o_g + c0, m + o_g + c0, v + o_g + c0, win + o_g + c0, gg, nc, first, b1, b2, alpha,
                                eps_k);
                    adam_scalar(p + o_b + c0, m + o_b + c0, v + o_b + c0, win + o_b + c0, gb, nc, first, b1, b2, alpha,
                                eps_k);
                }
            }
        }
        /* layer 0: dz = W0 da0 (old weights); g = z da0^T, Adam, row by row in the same pass */
        l0_backward_avx2(z, k.da0, dz, win, p, update ? m : NULL, update ? v : NULL, d, update, first, b1, b2, alpha,
                         eps_k);
#else
        (void)da1; (void)z; (void)dz; (void)p; (void)m; (void)v; (void)win; (void)k; (void)o_g; (void)o_b;
        (void)o_w1; (void)inv_std; (void)update; (void)first;
#endif
        Py_END_ALLOW_THREADS
    }
    result = Py_None;
    Py_INCREF(result);
done:
    release(views, got);
    return result;
}

static PyObject *py_has_avx2(PyObject *self, PyObject *noargs) { return PyBool_FromLong(HAVE_AVX2_PATH && cpu_has_avx2()); }

static PyMethodDef methods[] = {
    {"work_size", py_work_size, METH_VARARGS, "work_size(z_dim, c0, n1) -> float32 elements of the scratch buffer"},
    {"forward", (PyCFunction)(void (*)(void))py_forward, METH_VARARGS | METH_KEYWORDS,
     "forward(z, w, consts, work, a1, z_dim, c0, n1): layers 0-1 -> a1 (C1, 8, 8) (AVX2 + FMA CPUs)"},
    {"backward", (PyCFunction)(void (*)(void))py_backward, METH_VARARGS | METH_KEYWORDS,
     "backward(da1, z, dz, p, m, v, p0, consts, work, z_dim, c0, n1, b1, b2, alpha, eps_k): "
     "dz, and (m, v given) Adam on the head's weights in place"},
    {"has_avx2", py_has_avx2, METH_NOARGS, "True when the AVX2 + FMA kernels run on this CPU"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_head_kernel",
                                    "The generator's thin layers with fused backward + Adam (runtime/backends/host_head.py).",
                                    -1, methods};

PyMODINIT_FUNC PyInit__head_kernel(void) { return PyModule_Create(&module); }
