/* direct_blocks.h: method 1's direct kernels, in C vectors, for convolutions.pyx.

   Method 1 takes the dot product of every filter with every patch. These kernels do that
   without writing the patches out as a matrix: they read each patch where it lies in the
   zero-padded input. The vectors run across output channels (filters), so one input value,
   broadcast, meets a whole vector of filter weights at once: every multiply-add counts,
   whatever the size of the maps.

   - kit_correlate_image_T  one image's cross-correlation with all filters (the forward
                            pass; the input derivative is the same with the filters
                            flipped and their channels swapped);
   - kit_weight_images_T    the weight derivative's sum over a few images (blocks of input
                            channels at one kernel offset, or, for the channels left over,
                            blocks of (channel, row, column) offsets).

   Each output adds its terms one at a time in one fixed order (kit_correlate: channel,
   then kernel row, then column; kit_weight: image, output row, then column), so that
   every vector width gives the same numbers bit for bit, with one fused multiply-add per
   term (the FMA instructions where the CPU has them, C's fma otherwise: the same numbers). */
#ifndef KIT_DIRECT_BLOCKS_H
#define KIT_DIRECT_BLOCKS_H

#include <Python.h>  /* Py_ssize_t; Cython has included it already, before any other header */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#if (defined(__AVX512F__) || defined(__FMA__)) && !defined(KIT_DB_PLAIN_C)
#include <immintrin.h>
#endif

/* Vector registers: their width, and how many accumulators a block keeps in them (a
   few more registers hold the weights and a broadcast): enough independent chains of
   multiply-adds to keep both FMA units busy. */
#if defined(__AVX512F__)
#define KIT_DB_BYTES 64
#define KIT_DB_ACCUMULATORS 16
#elif defined(__AVX__)
#define KIT_DB_BYTES 32
#define KIT_DB_ACCUMULATORS 12
#else
#define KIT_DB_BYTES 16
#define KIT_DB_ACCUMULATORS 8
#endif
/* Weight-derivative blocks add up this many images each, in a fixed order (then the
   blocks' sums are added in order): the same numbers on any number of threads. */
#define KIT_DB_IMAGES_PER_SUM 4

#if (defined(__GNUC__) || defined(__clang__)) && !defined(KIT_DB_PLAIN_C)
typedef float kit_db_vec_float __attribute__((vector_size(KIT_DB_BYTES), aligned(sizeof(float)), may_alias));
typedef double kit_db_vec_double __attribute__((vector_size(KIT_DB_BYTES), aligned(sizeof(double)), may_alias));
#define KIT_DB_LANES(T) ((Py_ssize_t)(KIT_DB_BYTES / sizeof(T)))

/* acc + w * v, rounded once. */
#if defined(__AVX512F__)
#define KIT_DB_FMA_float(acc, w, v) ((kit_db_vec_float)_mm512_fmadd_ps((__m512)(w), _mm512_set1_ps(v), (__m512)(acc)))
#define KIT_DB_FMA_double(acc, w, v) ((kit_db_vec_double)_mm512_fmadd_pd((__m512d)(w), _mm512_set1_pd(v), (__m512d)(acc)))
#elif defined(__AVX__) && defined(__FMA__)
#define KIT_DB_FMA_float(acc, w, v) ((kit_db_vec_float)_mm256_fmadd_ps((__m256)(w), _mm256_set1_ps(v), (__m256)(acc)))
#define KIT_DB_FMA_double(acc, w, v) ((kit_db_vec_double)_mm256_fmadd_pd((__m256d)(w), _mm256_set1_pd(v), (__m256d)(acc)))
#else
static inline kit_db_vec_float kit_db_fma_float(kit_db_vec_float acc, kit_db_vec_float w, float v) {
    for (Py_ssize_t l = 0; l < KIT_DB_LANES(float); l++) acc[l] = fmaf(w[l], v, acc[l]);
    return acc;
}
static inline kit_db_vec_double kit_db_fma_double(kit_db_vec_double acc, kit_db_vec_double w, double v) {
    for (Py_ssize_t l = 0; l < KIT_DB_LANES(double); l++) acc[l] = fma(w[l], v, acc[l]);
    return acc;
}
#define KIT_DB_FMA_float(acc, w, v) kit_db_fma_float(acc, w, v)
#define KIT_DB_FMA_double(acc, w, v) kit_db_fma_double(acc, w, v)
#endif
#else
/* Compilers without vector extensions (and builds with -DKIT_DB_PLAIN_C, which the build
   tests use to check these): one value per "vector", the same order, the same numbers. */
typedef float kit_db_vec_float;
typedef double kit_db_vec_double;
#define KIT_DB_LANES(T) ((Py_ssize_t)1)
#define KIT_DB_FMA_float(acc, w, v) fmaf(w, v, acc)
#define KIT_DB_FMA_double(acc, w, v) fma(w, v, acc)
#endif

/* kit_db_transpose_T(r): the square tile of KIT_DB_LANES(T) vectors r, transposed in the
   registers: lane l of vector t becomes lane t of vector l. In log2(lanes) rounds, each
   swapping the off-diagonal blocks of every 2s x 2s sub-tile (s = lanes / 2, ..., 1) with
   one two-vector shuffle per vector. */
#if (defined(__GNUC__) || defined(__clang__)) && !defined(KIT_DB_PLAIN_C)
/* Lanes of a and b (vectors of type V) together, as the mask m says (lane L + l is lane
   l of b). GCC has __builtin_shuffle for a mask known only as the program runs; clang does
   not (its __builtin_shufflevector wants constant lanes), so there the lanes are picked
   one by one: the same values in the same places. */
#if defined(__clang__)
#define KIT_DB_SHUFFLE(V, a, b, m) __extension__({                                       \
    V picked_;                                                                           \
    for (int l_ = 0; l_ < L; l_++) picked_[l_] = m[l_] < L ? (a)[m[l_]] : (b)[m[l_] - L]; \
    picked_; })
#else
#define KIT_DB_SHUFFLE(V, a, b, m) __builtin_shuffle(a, b, m)
#endif
#define KIT_DB_TRANSPOSE(T, I)                                                           \
typedef I kit_db_index_##T __attribute__((vector_size(KIT_DB_BYTES)));                  \
static inline void kit_db_transpose_##T(kit_db_vec_##T* r) {                             \
    enum { L = KIT_DB_BYTES / sizeof(T) };                                               \
    _Pragma("GCC unroll 4")                                                              \
    for (int s = L / 2; s >= 1; s /= 2) {                                                \
        kit_db_index_##T lo, hi;                                                         \
        for (int l = 0; l < L; l++) {                                                    \
            lo[l] = (l & s) ? L + l - s : l;                                             \
            hi[l] = (l & s) ? L + l : l + s;                                             \
        }                                                                                \
        _Pragma("GCC unroll 16")                                                         \
        for (int t = 0; t < L; t++)                                                      \
            if (!(t & s)) {                                                              \
                const kit_db_vec_##T a = r[t], b = r[t + s];                             \
                r[t] = KIT_DB_SHUFFLE(kit_db_vec_##T, a, b, lo);                         \
                r[t + s] = KIT_DB_SHUFFLE(kit_db_vec_##T, a, b, hi);                     \
            }                                                                            \
    }                                                                                    \
}
KIT_DB_TRANSPOSE(float, int)
KIT_DB_TRANSPOSE(double, long long)
#else
static inline void kit_db_transpose_float(kit_db_vec_float* r) { (void)r; }  /* 1 x 1 */
static inline void kit_db_transpose_double(kit_db_vec_double* r) { (void)r; }
#endif

/* ---- zero padding ----------------------------------------------------------------- */

/* dst (n_ch, in_y + 2p, in_x + 2p), contiguous, = the image at src (strides sc, sy, sx)
   with p zeros on each side, and `room` zeros after it. */
#define KIT_DB_PAD(T)                                                                    \
static void kit_db_pad_##T(const T* src, Py_ssize_t sc, Py_ssize_t sy, Py_ssize_t sx,   \
        Py_ssize_t n_ch, Py_ssize_t in_y, Py_ssize_t in_x, Py_ssize_t p, Py_ssize_t room, T* dst) { \
    const Py_ssize_t py = in_y + 2 * p, px = in_x + 2 * p;                                \
    memset(dst, 0, (n_ch * py * px + room) * sizeof(T));                                 \
    for (Py_ssize_t c = 0; c < n_ch; c++)                                                \
        for (Py_ssize_t y = 0; y < in_y; y++) {                                          \
            T* row = dst + (c * py + y + p) * px + p;                                    \
            const T* from = src + c * sc + y * sy;                                       \
            if (sx == 1) memcpy(row, from, in_x * sizeof(T));                            \
            else for (Py_ssize_t x = 0; x < in_x; x++) row[x] = from[x * sx];            \
        }                                                                                \
}
KIT_DB_PAD(float)
KIT_DB_PAD(double)

/* ---- the forward pass ------------------------------------------------------------- */

/* One block: P = KIT_DB_ACCUMULATORS / NV output positions, x NV (1 or 2) vectors of
   output channels,
       res[q * NV * L + f] = sum over (c, i, j), in that order, of
                             x[off[q] + c * sc + i * sy + j] * wt[((c * k + i) * k + j) * kp + f]
   x: a padded image, rows sy apart and channels sc apart; off[q]: where position q's
   window starts; wt: the filters laid out (c, i, j, channel), kp channels per row, at
   the block's first channel. */
#define KIT_DB_CORRELATE_BLOCK(T, NV)                                                    \
static inline void kit_db_block_##T##_##NV(const T* x, const Py_ssize_t* off, Py_ssize_t sc, \
        Py_ssize_t sy, Py_ssize_t n_ch, Py_ssize_t k, const T* wt, Py_ssize_t kp, T* res) { \
    enum { P = KIT_DB_ACCUMULATORS / NV };                                               \
    kit_db_vec_##T a[P][NV];                                                             \
    memset(a, 0, sizeof(a));                                                             \
    for (Py_ssize_t c = 0; c < n_ch; c++)                                                \
        for (Py_ssize_t i = 0; i < k; i++) {                                             \
            const T* xr = x + c * sc + i * sy;                                           \
            const T* wr = wt + (c * k + i) * k * kp;                                     \
            for (Py_ssize_t j = 0; j < k; j++) {                                         \
                kit_db_vec_##T w0 = *(const kit_db_vec_##T*)(wr + j * kp);               \
                kit_db_vec_##T w1 = NV == 2 ? *(const kit_db_vec_##T*)(wr + j * kp + KIT_DB_LANES(T)) : w0; \
                _Pragma("GCC unroll 16")                                                 \
                for (Py_ssize_t q = 0; q < P; q++) {                                     \
                    const T v = xr[off[q] + j];                                          \
                    a[q][0] = KIT_DB_FMA_##T(a[q][0], w0, v);                            \
                    if (NV == 2) a[q][NV - 1] = KIT_DB_FMA_##T(a[q][NV - 1], w1, v);     \
                }                                                                        \
            }                                                                            \
        }                                                                                \
    for (Py_ssize_t q = 0; q < P; q++)                                                   \
        for (Py_ssize_t v = 0; v < NV; v++)                                              \
            *(kit_db_vec_##T*)(res + (q * NV + v) * KIT_DB_LANES(T)) = a[q][v];          \
}
KIT_DB_CORRELATE_BLOCK(float, 1)
KIT_DB_CORRELATE_BLOCK(float, 2)
KIT_DB_CORRELATE_BLOCK(double, 1)
KIT_DB_CORRELATE_BLOCK(double, 2)

/* One image: out[f, y, x] = act(sum over (c, i, j) of xp[c, y * s + i, x * s + j] * w[f, c, i, j]
   + bias[f]) for f < n_out, y < out_y, x < out_x, where xp is the image at x (strides sc,
   sy, sx: channel, row, column) with p zeros on each side; act is ReLU (as np.maximum(v, 0))
   if relu, else none; bias may be NULL (no bias). wt: (c, i, j, channel) with kp >= n_out
   channels per row, a whole number of blocks (nv * lanes). Blocks run along the output
   rows and on into the next, so narrow maps fill them too. Returns -1 if it could not
   allocate its padded copy of the image, else 0. */
#define KIT_DB_CORRELATE_IMAGE(T)                                                        \
static int kit_correlate_image_##T(const T* x, Py_ssize_t sc, Py_ssize_t sy, Py_ssize_t sx, \
        Py_ssize_t n_ch, Py_ssize_t in_y, Py_ssize_t in_x, Py_ssize_t p, Py_ssize_t k,   \
        Py_ssize_t s, const T* wt, Py_ssize_t kp, int nv, const T* bias, int relu,      \
        T* out, Py_ssize_t n_out, Py_ssize_t out_y, Py_ssize_t out_x) {                 \
    const Py_ssize_t fb = nv * KIT_DB_LANES(T), n_pos = KIT_DB_ACCUMULATORS / nv;        \
    const Py_ssize_t py = in_y + 2 * p, px = in_x + 2 * p, n_out_pos = out_y * out_x;    \
    T res[KIT_DB_ACCUMULATORS * KIT_DB_BYTES / sizeof(T)];                               \
    Py_ssize_t off[KIT_DB_ACCUMULATORS];                                                 \
    T* xp = (T*)malloc((n_ch * py * px + 1) * sizeof(T));                                \
    if (!xp) return -1;                                                                  \
    kit_db_pad_##T(x, sc, sy, sx, n_ch, in_y, in_x, p, 1, xp);                           \
    for (Py_ssize_t f0 = 0; f0 < n_out; f0 += fb) {                                      \
        const Py_ssize_t nf = n_out - f0 < fb ? n_out - f0 : fb;                          \
        for (Py_ssize_t q0 = 0; q0 < n_out_pos; q0 += n_pos) {                           \
            const Py_ssize_t nq = n_out_pos - q0 < n_pos ? n_out_pos - q0 : n_pos;       \
            /* Positions past the last repeat the last one: every read stays in the image. */ \
            for (Py_ssize_t q = 0; q < n_pos; q++) {                                     \
                const Py_ssize_t at = q0 + (q < nq ? q : nq - 1);                        \
                off[q] = (at / out_x) * s * px + (at % out_x) * s;                       \
            }                                                                            \
            if (nv == 2) kit_db_block_##T##_2(xp, off, py * px, px, n_ch, k, wt + f0, kp, res); \
            else kit_db_block_##T##_1(xp, off, py * px, px, n_ch, k, wt + f0, kp, res);  \
            for (Py_ssize_t f = 0; f < nf; f++) {                                        \
                T* o = out + (f0 + f) * n_out_pos + q0;                                  \
                const T b = bias ? bias[f0 + f] : 0;                                     \
                for (Py_ssize_t q = 0; q < nq; q++) {                                    \
                    T v = res[q * fb + f];                                               \
                    if (bias) v = v + b;                                                 \
                    if (relu && !(v >= 0 || v != v)) v = 0;                              \
                    o[q] = v;                                                            \
                }                                                                        \
            }                                                                            \
        }                                                                                \
    }                                                                                    \
    free(xp);                                                                            \
    return 0;                                                                            \
}
KIT_DB_CORRELATE_IMAGE(float)
KIT_DB_CORRELATE_IMAGE(double)

/* ---- the weight derivative -------------------------------------------------------- */

/* One block: CB = KIT_DB_ACCUMULATORS / NV rows of the weight derivative, x NV vectors of
   output channels,
       res[cb * NV * L + f] = sum over (m, y, x), in that order, of
                              x[m * x_img + AT(cb) + y * s * sy + x * s] *
                              d[m * d_img + (y * out_x + x) * kp + f]
   for the n_img images m of a sum. d: the derivatives w.r.t. the outputs, channels last
   (kp per position), at the block's first channel. Two kinds, by where row cb's window
   starts (AT):
   - kit_db_weight_channels: CB input channels at one kernel offset (i, j), sc apart
     (x: the padded images at channel c0, shifted by the offset);
   - kit_db_weight_rows: any CB rows (c, i, j), at x + off[cb]: for the channels left
     over, all of them in the first layer, where blocks of channels would keep a single
     chain of multiply-adds going. */
#define KIT_DB_WEIGHT_BLOCK(T, NV, KIND, WHERE, AT)                                      \
static inline void kit_db_weight_##KIND##_##T##_##NV(const T* x, WHERE, Py_ssize_t x_img, \
        Py_ssize_t sy, Py_ssize_t s, const T* d, Py_ssize_t d_img, Py_ssize_t kp,        \
        Py_ssize_t n_img, Py_ssize_t out_y, Py_ssize_t out_x, T* res) {                  \
    enum { CB = KIT_DB_ACCUMULATORS / NV };                                              \
    kit_db_vec_##T a[CB][NV];                                                            \
    memset(a, 0, sizeof(a));                                                             \
    for (Py_ssize_t m = 0; m < n_img; m++)                                               \
        for (Py_ssize_t y = 0; y < out_y; y++)                                           \
            for (Py_ssize_t xx = 0; xx < out_x; xx++) {                                  \
                const T* dp = d + m * d_img + (y * out_x + xx) * kp;                     \
                const T* xp = x + m * x_img + y * s * sy + xx * s;                       \
                kit_db_vec_##T d0 = *(const kit_db_vec_##T*)dp;                          \
                kit_db_vec_##T d1 = NV == 2 ? *(const kit_db_vec_##T*)(dp + KIT_DB_LANES(T)) : d0; \
                _Pragma("GCC unroll 16")                                                 \
                for (Py_ssize_t cb = 0; cb < CB; cb++) {                                 \
                    const T v = xp[AT];                                                  \
                    a[cb][0] = KIT_DB_FMA_##T(a[cb][0], d0, v);                          \
                    if (NV == 2) a[cb][NV - 1] = KIT_DB_FMA_##T(a[cb][NV - 1], d1, v);   \
                }                                                                        \
            }                                                                            \
    for (Py_ssize_t cb = 0; cb < CB; cb++)                                               \
        for (Py_ssize_t v = 0; v < NV; v++)                                              \
            *(kit_db_vec_##T*)(res + (cb * NV + v) * KIT_DB_LANES(T)) = a[cb][v];        \
}
#define KIT_DB_WEIGHT_BLOCKS(T, NV)                                                      \
    KIT_DB_WEIGHT_BLOCK(T, NV, channels, Py_ssize_t sc, cb * sc)                         \
    KIT_DB_WEIGHT_BLOCK(T, NV, rows, const Py_ssize_t* off, off[cb])
KIT_DB_WEIGHT_BLOCKS(float, 1)
KIT_DB_WEIGHT_BLOCKS(float, 2)
KIT_DB_WEIGHT_BLOCKS(double, 1)
KIT_DB_WEIGHT_BLOCKS(double, 2)

/* n_img images' sum: dwt[(c * k + i) * k + j, f] = sum over (m, y, x) of
   xp[m, c, y * s + i, x * s + j] * d[m, f, y, x], for c < n_ch and f < kp (zero past
   n_out), where xp is image m of x (strides x_img, sc, sy, sx) with p zeros on each side,
   and d is read through strides (d_img, d_ch, d_y, d_x). Returns -1 if it could not
   allocate its copies (the padded images, and the derivatives channels last), else 0. */
#define KIT_DB_WEIGHT_IMAGES(T)                                                          \
static int kit_weight_images_##T(const T* x, Py_ssize_t x_img, Py_ssize_t sc, Py_ssize_t sy, \
        Py_ssize_t sx, Py_ssize_t n_ch, Py_ssize_t in_y, Py_ssize_t in_x, Py_ssize_t p,  \
        Py_ssize_t k, Py_ssize_t s, const T* d, Py_ssize_t d_img, Py_ssize_t d_ch,      \
        Py_ssize_t d_y, Py_ssize_t d_x, Py_ssize_t n_out, Py_ssize_t kp, int nv,        \
        Py_ssize_t n_img, T* dwt, Py_ssize_t out_y, Py_ssize_t out_x) {                 \
    const Py_ssize_t fb = nv * KIT_DB_LANES(T), many = KIT_DB_ACCUMULATORS / nv;         \
    const Py_ssize_t py = in_y + 2 * p, px = in_x + 2 * p, xi = n_ch * py * px;          \
    const Py_ssize_t n_pos = out_y * out_x, di = n_pos * kp, lanes = KIT_DB_LANES(T);    \
    T res[KIT_DB_ACCUMULATORS * KIT_DB_BYTES / sizeof(T)];                               \
    T* xp = (T*)malloc((n_img * xi + 1) * sizeof(T));                                    \
    T* dl = (T*)calloc(n_img * di + 1, sizeof(T));                                       \
    if (!xp || !dl) { free(xp); free(dl); return -1; }                                   \
    for (Py_ssize_t m = 0; m < n_img; m++) {                                             \
        kit_db_pad_##T(x + m * x_img, sc, sy, sx, n_ch, in_y, in_x, p, 0, xp + m * xi);  \
        if (d_x == 1 && d_y == out_x && n_pos % lanes == 0 && n_out % lanes == 0) {      \
            /* Whole maps, as method 1's layers give them: square tiles of lanes channels \
               x lanes positions, transposed in the registers (one value at a time, this  \
               copy took most of the first layer's time). */                             \
            kit_db_vec_##T r[KIT_DB_LANES(T)];                                           \
            for (Py_ssize_t f0 = 0; f0 < n_out; f0 += lanes)                             \
                for (Py_ssize_t q0 = 0; q0 < n_pos; q0 += lanes) {                       \
                    for (Py_ssize_t t = 0; t < lanes; t++)                               \
                        r[t] = *(const kit_db_vec_##T*)(d + m * d_img + (f0 + t) * d_ch + q0); \
                    kit_db_transpose_##T(r);                                             \
                    for (Py_ssize_t t = 0; t < lanes; t++)                               \
                        *(kit_db_vec_##T*)(dl + m * di + (q0 + t) * kp + f0) = r[t];     \
                }                                                                        \
        } else {                                                                         \
            for (Py_ssize_t y = 0; y < out_y; y++)                                       \
                for (Py_ssize_t xx = 0; xx < out_x; xx++)                                \
                    for (Py_ssize_t f = 0; f < n_out; f++)                               \
                        dl[m * di + (y * out_x + xx) * kp + f] = d[m * d_img + f * d_ch + y * d_y + xx * d_x]; \
        }                                                                                \
    }                                                                                    \
    /* Whole blocks of `many` channels at each offset (i, j); then the rows (c, i, j) of \
       the channels left over (all of them in the first layer), `many` rows a block. */  \
    const Py_ssize_t c_whole = n_ch - n_ch % many, n_rows = n_ch * k * k;                \
    Py_ssize_t off[KIT_DB_ACCUMULATORS];                                                 \
    for (Py_ssize_t f0 = 0; f0 < kp; f0 += fb) {                                         \
        for (Py_ssize_t i = 0; i < k; i++)                                               \
            for (Py_ssize_t j = 0; j < k; j++)                                           \
                for (Py_ssize_t c0 = 0; c0 < c_whole; c0 += many) {                      \
                    const T* xb = xp + c0 * py * px + i * px + j;                        \
                    if (nv == 2)                                                         \
                        kit_db_weight_channels_##T##_2(xb, py * px, xi, px, s, dl + f0, di, kp, n_img, out_y, out_x, res); \
                    else                                                                 \
                        kit_db_weight_channels_##T##_1(xb, py * px, xi, px, s, dl + f0, di, kp, n_img, out_y, out_x, res); \
                    for (Py_ssize_t m = 0; m < many; m++)                                \
                        memcpy(dwt + (((c0 + m) * k + i) * k + j) * kp + f0, res + m * fb, fb * sizeof(T)); \
                }                                                                        \
        for (Py_ssize_t r0 = c_whole * k * k; r0 < n_rows; r0 += many) {                 \
            /* The last block's rows past the end repeat the last row; only real ones are kept. */ \
            const Py_ssize_t nr = n_rows - r0 < many ? n_rows - r0 : many;               \
            for (Py_ssize_t r = 0; r < many; r++) {                                      \
                const Py_ssize_t row = r0 + (r < nr ? r : nr - 1);                       \
                off[r] = (row / (k * k)) * py * px + (row / k % k) * px + row % k;       \
            }                                                                            \
            if (nv == 2)                                                                 \
                kit_db_weight_rows_##T##_2(xp, off, xi, px, s, dl + f0, di, kp, n_img, out_y, out_x, res); \
            else                                                                         \
                kit_db_weight_rows_##T##_1(xp, off, xi, px, s, dl + f0, di, kp, n_img, out_y, out_x, res); \
            for (Py_ssize_t r = 0; r < nr; r++)                                          \
                memcpy(dwt + (r0 + r) * kp + f0, res + r * fb, fb * sizeof(T));          \
        }                                                                                \
    }                                                                                    \
    free(xp);                                                                            \
    free(dl);                                                                            \
    return 0;                                                                            \
}
KIT_DB_WEIGHT_IMAGES(float)
KIT_DB_WEIGHT_IMAGES(double)

static const Py_ssize_t kit_db_lanes_float = KIT_DB_LANES(float);
static const Py_ssize_t kit_db_lanes_double = KIT_DB_LANES(double);
static const Py_ssize_t kit_db_images_per_sum = KIT_DB_IMAGES_PER_SUM;
#endif /* KIT_DIRECT_BLOCKS_H */
