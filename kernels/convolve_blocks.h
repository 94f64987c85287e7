/* convolve_blocks.h: convolve's inner blocks, in C vectors, for convolutions.pyx, and
   max pooling's derivative for 2x2 windows.

   Two blocks of convolve, each for double and float:
   - kit_block_T   4 output rows x one or two vectors of outputs of one map (along rows);
   - kit_across_T  1 to 8 output positions x one or two vectors of maps that read the same
                   image (across maps: the weight derivative's broadcast).
   And kit_pool_2x2_T and kit_route_2x2_T, one map's 2x2 max pooling and its derivative
   (maxpool_forward, maxpool_derivative).
   Both blocks of convolve add each output's terms one at a time in one fixed order, so that every vector width,
   and the plain C loops for compilers without vector extensions, give the same numbers bit
   for bit (with -ffp-contract=off, as setup.py builds). */
#ifndef KIT_CONVOLVE_BLOCKS_H
#define KIT_CONVOLVE_BLOCKS_H

#include <Python.h>  /* Py_ssize_t; Cython has included it already, before any other header */

/* ---- along rows ------------------------------------------------------------------- */

/* _correlate_map's inner block, in C: 4 output rows x V * W outputs of a valid
   correlation,
       out[r, c] = sum over (i, j), in that order, of x[(r + i) * in_x + c + j] * w[i, j],
   for r < 4 and c < V * W, of which only n_rows x n_cols are stored at out.

   Each row is V (1 or 2) vectors of W lanes, a and b, and the 4 or 8 vectors are
   independent chains of additions: that keeps the adders busy. The vectors are written
   out (GCC/Clang vector extensions), one named variable each, because the compilers'
   own vectorization of the same loops varied with the loop's shape and the target, and
   was several times slower. Each output still adds its terms one at a time in the order
   above, so every W and V, and the plain loops for other compilers, give the same numbers
   bit for bit, as long as the compiler does not fuse a multiply and an add (setup.py
   builds with -ffp-contract=off). Rows and lanes past the map read (and discard) what
   follows it: up to 3 rows and V * W - 1 values past its end, which convolve leaves
   room for (_slack). */
#if defined(__GNUC__) || defined(__clang__)
#define KIT_CORRELATE_BLOCK(NAME, T, W, V)                                               \
/* may_alias and the element's alignment: a vector may be read from any T. */          \
typedef T NAME##_vec __attribute__((vector_size(W * sizeof(T)), aligned(sizeof(T)), may_alias)); \
static inline void NAME(const T* x, Py_ssize_t in_x, const T* w, Py_ssize_t k_y,        \
                        Py_ssize_t k_x, T* out, Py_ssize_t out_x,                       \
                        Py_ssize_t n_rows, Py_ssize_t n_cols) {                         \
    NAME##_vec a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, b0 = {0}, b1 = {0}, b2 = {0}, b3 = {0}; \
    for (Py_ssize_t i = 0; i < k_y; i++) {                                               \
        const T* p = x + i * in_x;                                                       \
        for (Py_ssize_t j = 0; j < k_x; j++) {                                           \
            const T wv = w[i * k_x + j];                                                 \
            a0 = a0 + wv * *(const NAME##_vec*)(p + j);                                  \
            a1 = a1 + wv * *(const NAME##_vec*)(p + in_x + j);                           \
            a2 = a2 + wv * *(const NAME##_vec*)(p + 2 * in_x + j);                       \
            a3 = a3 + wv * *(const NAME##_vec*)(p + 3 * in_x + j);                       \
            if (V == 2) {  /* a constant: the compiler keeps one branch */              \
                b0 = b0 + wv * *(const NAME##_vec*)(p + j + W);                          \
                b1 = b1 + wv * *(const NAME##_vec*)(p + in_x + j + W);                   \
                b2 = b2 + wv * *(const NAME##_vec*)(p + 2 * in_x + j + W);               \
                b3 = b3 + wv * *(const NAME##_vec*)(p + 3 * in_x + j + W);               \
            }                                                                            \
        }                                                                                \
    }                                                                                    \
    if (n_rows == 4 && n_cols == V * W) {                                                \
        *(NAME##_vec*)out = a0;                                                          \
        *(NAME##_vec*)(out + out_x) = a1;                                                \
        *(NAME##_vec*)(out + 2 * out_x) = a2;                                            \
        *(NAME##_vec*)(out + 3 * out_x) = a3;                                            \
        if (V == 2) {                                                                    \
            *(NAME##_vec*)(out + W) = b0;                                                \
            *(NAME##_vec*)(out + out_x + W) = b1;                                        \
            *(NAME##_vec*)(out + 2 * out_x + W) = b2;                                    \
            *(NAME##_vec*)(out + 3 * out_x + W) = b3;                                    \
        }                                                                                \
        return;                                                                          \
    }                                                                                    \
    T lanes[4][V * W];                                                                   \
    *(NAME##_vec*)lanes[0] = a0;                                                         \
    *(NAME##_vec*)lanes[1] = a1;                                                         \
    *(NAME##_vec*)lanes[2] = a2;                                                         \
    *(NAME##_vec*)lanes[3] = a3;                                                         \
    if (V == 2) {                                                                        \
        *(NAME##_vec*)(lanes[0] + W) = b0;                                               \
        *(NAME##_vec*)(lanes[1] + W) = b1;                                               \
        *(NAME##_vec*)(lanes[2] + W) = b2;                                               \
        *(NAME##_vec*)(lanes[3] + W) = b3;                                               \
    }                                                                                    \
    for (Py_ssize_t r = 0; r < n_rows; r++)                                              \
        for (Py_ssize_t c = 0; c < n_cols; c++) out[r * out_x + c] = lanes[r][c];        \
}
#else
#define KIT_CORRELATE_BLOCK(NAME, T, W, V)                                               \
static void NAME(const T* x, Py_ssize_t in_x, const T* w, Py_ssize_t k_y,               \
                 Py_ssize_t k_x, T* out, Py_ssize_t out_x,                              \
                 Py_ssize_t n_rows, Py_ssize_t n_cols) {                                \
    for (Py_ssize_t r = 0; r < n_rows; r++)                                              \
        for (Py_ssize_t c = 0; c < n_cols; c++) {                                        \
            T acc = 0;                                                                   \
            for (Py_ssize_t i = 0; i < k_y; i++)                                         \
                for (Py_ssize_t j = 0; j < k_x; j++)                                     \
                    acc = acc + w[i * k_x + j] * x[(r + i) * in_x + c + j];              \
            out[r * out_x + c] = acc;                                                    \
        }                                                                                \
}
#endif
/* Vectors as wide as the machine's registers (the compiler splits wider ones badly);
   two per row where they are narrow (SSE2, NEON), so that a block spans 4 doubles. */
#if defined(__AVX512F__)
#define KIT_VECTOR_BYTES 64
#define KIT_VECTORS_PER_ROW 1
#elif defined(__AVX__)
#define KIT_VECTOR_BYTES 32
#define KIT_VECTORS_PER_ROW 1
#else
#define KIT_VECTOR_BYTES 16
#define KIT_VECTORS_PER_ROW 2
#endif
#define KIT_BLOCK_BYTES (KIT_VECTOR_BYTES * KIT_VECTORS_PER_ROW)
/* For each type: a block, and one half as wide (one vector per row) for maps as narrow
   as that; kit_block_T picks one; kit_lanes_T outputs of a row make a block. */
#define KIT_BLOCKS(T)                                                                    \
KIT_CORRELATE_BLOCK(kit_full_block_##T, T, KIT_VECTOR_BYTES / sizeof(T), KIT_VECTORS_PER_ROW) \
KIT_CORRELATE_BLOCK(kit_half_block_##T, T, KIT_BLOCK_BYTES / 2 / sizeof(T), 1)          \
static inline void kit_block_##T(const T* x, Py_ssize_t in_x, const T* w, Py_ssize_t k_y, \
                                 Py_ssize_t k_x, T* out, Py_ssize_t out_x,              \
                                 Py_ssize_t n_rows, Py_ssize_t n_cols, int half) {      \
    if (half) kit_half_block_##T(x, in_x, w, k_y, k_x, out, out_x, n_rows, n_cols);     \
    else kit_full_block_##T(x, in_x, w, k_y, k_x, out, out_x, n_rows, n_cols);          \
}                                                                                        \
static const Py_ssize_t kit_lanes_##T = KIT_BLOCK_BYTES / sizeof(T);                 \
static const Py_ssize_t kit_vector_##T = KIT_VECTOR_BYTES / sizeof(T);
KIT_BLOCKS(double)
KIT_BLOCKS(float)

/* ---- across maps ------------------------------------------------------------------ */

/* convolve's other inner block, for maps that read one image with different kernels
   (the weight derivative's broadcast): one map per lane, P output positions x NV (1 or 2)
   vectors of W maps,
       res[t * step + g] = sum over (i, j), in that order, of
                           x[off[t] + i * in_x + j] * w[(i * k_x + j) * gp + g]
   for t < P and g < NV * W, with the kernels interleaved: gp values per (i, j), kernel g
   at lane g. res is a buffer of the caller's, or the output itself where its maps lie side
   by side in memory (step: the values between two positions). Small maps (the weight
   derivative's are k x k) waste most of a block of rows, whose vectors run along a row
   past the map's edge; lanes across maps all count, and so do positions: the caller splits
   a map's positions into blocks of nearly equal size, P at most KIT_POSITIONS (a 3x3 map's
   9 positions are blocks of 5 and 4, not 8 and a block of 8 for the last one). Each output
   adds its terms in the same order as KIT_CORRELATE_BLOCK, and x * w is w * x exactly: the
   same numbers, bit for bit. Reads nothing outside the map and the kernels' gp lanes. */
#if defined(__GNUC__) || defined(__clang__)
#define KIT_ACROSS_BLOCK(NAME, T, W, NV, P)                                              \
typedef T NAME##_vec __attribute__((vector_size(W * sizeof(T)), aligned(sizeof(T)), may_alias)); \
static inline void NAME(const T* x, const Py_ssize_t* off, Py_ssize_t in_x, const T* w,  \
                        Py_ssize_t gp, Py_ssize_t k_y, Py_ssize_t k_x, T* res,           \
                        Py_ssize_t step) {                                               \
    /* Fixed-size arrays in fully unrolled loops: the compiler keeps them in registers. */ \
    NAME##_vec a[P], b[P];                                                               \
    for (int t = 0; t < P; t++) a[t] = b[t] = (NAME##_vec){0};                           \
    for (Py_ssize_t i = 0; i < k_y; i++) {                                               \
        for (Py_ssize_t j = 0; j < k_x; j++) {                                           \
            const Py_ssize_t q = i * in_x + j;                                           \
            const T* wp = w + (i * k_x + j) * gp;                                        \
            const NAME##_vec u = *(const NAME##_vec*)wp;                                 \
            const NAME##_vec v = NV == 2 ? *(const NAME##_vec*)(wp + W) : u;             \
            _Pragma("GCC unroll 8")                                                      \
            for (int t = 0; t < P; t++) {                                                \
                const T s = x[off[t] + q];                                               \
                a[t] = a[t] + s * u;                                                     \
                if (NV == 2) b[t] = b[t] + s * v;  /* a constant: one branch is kept */  \
            }                                                                            \
        }                                                                                \
    }                                                                                    \
    for (int t = 0; t < P; t++) {                                                        \
        *(NAME##_vec*)(res + t * step) = a[t];                                           \
        if (NV == 2) *(NAME##_vec*)(res + t * step + W) = b[t];                          \
    }                                                                                    \
}
#else
#define KIT_ACROSS_BLOCK(NAME, T, W, NV, P)                                              \
static void NAME(const T* x, const Py_ssize_t* off, Py_ssize_t in_x, const T* w,         \
                 Py_ssize_t gp, Py_ssize_t k_y, Py_ssize_t k_x, T* res,                  \
                 Py_ssize_t step) {                                                      \
    for (int t = 0; t < P; t++)                                                          \
        for (int g = 0; g < NV * W; g++) {                                               \
            T acc = 0;                                                                   \
            for (Py_ssize_t i = 0; i < k_y; i++)                                         \
                for (Py_ssize_t j = 0; j < k_x; j++)                                     \
                    acc = acc + x[off[t] + i * in_x + j] * w[(i * k_x + j) * gp + g];    \
            res[t * step + g] = acc;                                                     \
        }                                                                                \
}
#endif
/* At most 8 positions x 2 vectors where there are 32 vector registers (AVX-512, and Arm's
   64-bit NEON), 4 where there are 16: the accumulators, the kernels' vectors and the
   image's values fit, and the kernels' vectors are loaded once for more positions. */
#if defined(__AVX512F__) || defined(__aarch64__)
#define KIT_POSITIONS 8
#else
#define KIT_POSITIONS 4
#endif
/* The blocks of 1 to 8 positions, one or two vectors each, and kit_across_T, which runs
   the one for n_pos positions (1 <= n_pos <= KIT_POSITIONS). */
#define KIT_ACROSS_SIZES(T, NV)                                                          \
KIT_ACROSS_BLOCK(kit_across##NV##_1_##T, T, KIT_VECTOR_BYTES / sizeof(T), NV, 1)        \
KIT_ACROSS_BLOCK(kit_across##NV##_2_##T, T, KIT_VECTOR_BYTES / sizeof(T), NV, 2)        \
KIT_ACROSS_BLOCK(kit_across##NV##_3_##T, T, KIT_VECTOR_BYTES / sizeof(T), NV, 3)        \
KIT_ACROSS_BLOCK(kit_across##NV##_4_##T, T, KIT_VECTOR_BYTES / sizeof(T), NV, 4)        \
KIT_ACROSS_BLOCK(kit_across##NV##_5_##T, T, KIT_VECTOR_BYTES / sizeof(T), NV, 5)        \
KIT_ACROSS_BLOCK(kit_across##NV##_6_##T, T, KIT_VECTOR_BYTES / sizeof(T), NV, 6)        \
KIT_ACROSS_BLOCK(kit_across##NV##_7_##T, T, KIT_VECTOR_BYTES / sizeof(T), NV, 7)        \
KIT_ACROSS_BLOCK(kit_across##NV##_8_##T, T, KIT_VECTOR_BYTES / sizeof(T), NV, 8)        \
static inline void kit_across##NV##_##T(const T* x, const Py_ssize_t* off, Py_ssize_t n_pos, \
                                        Py_ssize_t in_x, const T* w, Py_ssize_t gp,      \
                                        Py_ssize_t k_y, Py_ssize_t k_x, T* res,          \
                                        Py_ssize_t step) {                               \
    switch (n_pos) {                                                                     \
    case 1: kit_across##NV##_1_##T(x, off, in_x, w, gp, k_y, k_x, res, step); break;     \
    case 2: kit_across##NV##_2_##T(x, off, in_x, w, gp, k_y, k_x, res, step); break;     \
    case 3: kit_across##NV##_3_##T(x, off, in_x, w, gp, k_y, k_x, res, step); break;     \
    case 4: kit_across##NV##_4_##T(x, off, in_x, w, gp, k_y, k_x, res, step); break;     \
    case 5: kit_across##NV##_5_##T(x, off, in_x, w, gp, k_y, k_x, res, step); break;     \
    case 6: kit_across##NV##_6_##T(x, off, in_x, w, gp, k_y, k_x, res, step); break;     \
    case 7: kit_across##NV##_7_##T(x, off, in_x, w, gp, k_y, k_x, res, step); break;     \
    default: kit_across##NV##_8_##T(x, off, in_x, w, gp, k_y, k_x, res, step); break;    \
    }                                                                                    \
}
#define KIT_ACROSS_BLOCKS(T)                                                             \
KIT_ACROSS_SIZES(T, 1)                                                                   \
KIT_ACROSS_SIZES(T, 2)                                                                   \
static inline void kit_across_##T(const T* x, const Py_ssize_t* off, Py_ssize_t n_pos,  \
                                  Py_ssize_t in_x, const T* w, Py_ssize_t gp,            \
                                  Py_ssize_t k_y, Py_ssize_t k_x, T* res, Py_ssize_t step, \
                                  int two) {                                             \
    if (two) kit_across2_##T(x, off, n_pos, in_x, w, gp, k_y, k_x, res, step);          \
    else kit_across1_##T(x, off, n_pos, in_x, w, gp, k_y, k_x, res, step);              \
}
KIT_ACROSS_BLOCKS(double)
KIT_ACROSS_BLOCKS(float)
static const Py_ssize_t kit_positions = KIT_POSITIONS;

/* ---- max pooling, 2x2 windows at stride 2: the forward pass and its derivative ------- */

/* The winner of a 2x2 window is the first maximum in row-major order; a NaN wins, the last
   NaN of a window wins. Four windows at a time in vectors, their comparisons masks: scalar
   code branched on which input wins (random, and mispredicted half the time) and ran
   several times slower. The forward pass does so in rows of fewer than 8 windows, where
   the compiler's own vectors, as wide as the registers, fit no row (an 8x8 map of floats
   took four times as long); in longer rows the compiler's vectors are as fast or faster.

   kit_pool_2x2_T: one map's max pooling (in_x wide, out_y x out_x windows): each window's
   maximum and its input's index in the map, as maxpool_forward returns them.
   kit_route_2x2_T: one map's derivative w.r.t. its inputs (in_y x in_x, 2 * out_y <= in_y
   and 2 * out_x <= in_x): each window's d_out, plus zero, written to the input that wins
   it, zeros to the window's other inputs and to an odd last row or column. Each input is
   written once and no store is read back. */
#if defined(__GNUC__) || defined(__clang__)
/* Lanes i0..i3 of the 8 lanes of a and b together: clang and GCC 12 and later have
   __builtin_shufflevector; an older GCC has only __builtin_shuffle, with the lanes as a
   mask vector (M, the integer vector of a's size). */
#if defined(__clang__) || __GNUC__ >= 12
#define KIT_SHUFFLE4(M, a, b, i0, i1, i2, i3) __builtin_shufflevector(a, b, i0, i1, i2, i3)
#else
#define KIT_SHUFFLE4(M, a, b, i0, i1, i2, i3) __builtin_shuffle(a, b, (M){i0, i1, i2, i3})
#endif
/* 4 windows at a time: kit_q4_T their values, kit_m4_T masks of the same lanes, kit_i4
   their indices. */
typedef Py_ssize_t kit_i4 __attribute__((vector_size(4 * sizeof(Py_ssize_t)), aligned(sizeof(Py_ssize_t)), may_alias));
#define KIT_POOL_VECTORS(T, I)                                                           \
typedef T kit_q4_##T __attribute__((vector_size(4 * sizeof(T)), aligned(sizeof(T)), may_alias)); \
typedef I kit_m4_##T __attribute__((vector_size(4 * sizeof(T))));                        \
/* The winners (0 to 3: top left, top right, bottom left, bottom right) of the 4 windows \
   ox..ox+3 of the row pair at a (b = a + in_x), and their values. */                    \
static inline kit_m4_##T kit_winners4_##T(const T* a, const T* b, kit_q4_##T* value) {   \
    const kit_q4_##T a0 = *(const kit_q4_##T*)a, a1 = *(const kit_q4_##T*)(a + 4);       \
    const kit_q4_##T b0 = *(const kit_q4_##T*)b, b1 = *(const kit_q4_##T*)(b + 4);       \
    /* The windows' left (even) and right (odd) inputs of each row. */                   \
    const kit_q4_##T v0 = KIT_SHUFFLE4(kit_m4_##T, a0, a1, 0, 2, 4, 6);                  \
    const kit_q4_##T v1 = KIT_SHUFFLE4(kit_m4_##T, a0, a1, 1, 3, 5, 7);                  \
    const kit_q4_##T v2 = KIT_SHUFFLE4(kit_m4_##T, b0, b1, 0, 2, 4, 6);                  \
    const kit_q4_##T v3 = KIT_SHUFFLE4(kit_m4_##T, b0, b1, 1, 3, 5, 7);                  \
    kit_m4_##T best = {0}, take;                                                         \
    kit_m4_##T bv = (kit_m4_##T)v0;  /* best values, as bits */                          \
    take = ((kit_q4_##T)bv < v1) | (v1 != v1);                                           \
    best = (take & 1) | (~take & best);                                                  \
    bv = (take & (kit_m4_##T)v1) | (~take & bv);                                         \
    take = ((kit_q4_##T)bv < v2) | (v2 != v2);                                           \
    best = (take & 2) | (~take & best);                                                  \
    bv = (take & (kit_m4_##T)v2) | (~take & bv);                                         \
    take = ((kit_q4_##T)bv < v3) | (v3 != v3);                                           \
    best = (take & 3) | (~take & best);                                                  \
    *value = (kit_q4_##T)((take & (kit_m4_##T)v3) | (~take & bv));                       \
    return best;                                                                         \
}                                                                                        \
/* Their maxima at m, and their inputs' indices at idx (q: the first window's top left). */ \
static inline void kit_pool4_##T(const T* a, Py_ssize_t in_x, Py_ssize_t q, T* m,        \
                                     Py_ssize_t* idx) {                                  \
    kit_q4_##T value;                                                                    \
    const kit_i4 best = __builtin_convertvector(kit_winners4_##T(a, a + in_x, &value), kit_i4); \
    kit_i4 first;                                                                        \
    for (int t = 0; t < 4; t++) first[t] = q + 2 * t;                                    \
    *(kit_q4_##T*)m = value;                                                             \
    /* Winner 0 to 3: the top left, right, bottom left, right; rows in_x apart. */       \
    *(kit_i4*)idx = first + (-(best >> 1) & in_x) + (best & 1);                          \
}
#define KIT_ROUTE_VECTORS(T)                                                             \
/* The derivatives of 4 windows routed: d_out's 4 values at d, to the row pair at ra and rb. */ \
static inline void kit_route4_##T(const T* a, const T* b, const T* d, T* ra, T* rb) {    \
    kit_q4_##T value;                                                                    \
    const kit_m4_##T best = kit_winners4_##T(a, b, &value);                              \
    const kit_q4_##T zero = {0, 0, 0, 0};                                                \
    const kit_m4_##T dv = (kit_m4_##T)(zero + *(const kit_q4_##T*)d);                    \
    const kit_m4_##T p0 = (best == 0) & dv, p1 = (best == 1) & dv;                       \
    const kit_m4_##T p2 = (best == 2) & dv, p3 = (best == 3) & dv;                       \
    /* Each window's left and right derivative side by side, for the rows at ra and rb. */ \
    *(kit_q4_##T*)ra = (kit_q4_##T)KIT_SHUFFLE4(kit_m4_##T, p0, p1, 0, 4, 1, 5);         \
    *(kit_q4_##T*)(ra + 4) = (kit_q4_##T)KIT_SHUFFLE4(kit_m4_##T, p0, p1, 2, 6, 3, 7);   \
    *(kit_q4_##T*)rb = (kit_q4_##T)KIT_SHUFFLE4(kit_m4_##T, p2, p3, 0, 4, 1, 5);         \
    *(kit_q4_##T*)(rb + 4) = (kit_q4_##T)KIT_SHUFFLE4(kit_m4_##T, p2, p3, 2, 6, 3, 7);   \
}
KIT_POOL_VECTORS(double, long long)
KIT_POOL_VECTORS(float, int)
KIT_ROUTE_VECTORS(double)
KIT_ROUTE_VECTORS(float)
#define KIT_POOL4(T, a, in_x, q, m, idx) kit_pool4_##T(a, in_x, q, m, idx)
#define KIT_ROUTE4(T, a, b, d, ra, rb) kit_route4_##T(a, b, d, ra, rb)
#define KIT_BY_4 4
#else
#define KIT_POOL4(T, a, in_x, q, m, idx)
#define KIT_ROUTE4(T, a, b, d, ra, rb)
#define KIT_BY_4 0
#endif
/* One window, in scalars: its winner (0 to 3) and, at value, its maximum. */
#define KIT_POOL_2X2(T)                                                                \
static inline int kit_winner_2x2_##T(const T* a, Py_ssize_t in_x, T* value) {            \
    int best = 0;                                                                        \
    T best_v = a[0], v;                                                                  \
    v = a[1];                                                                            \
    if (v > best_v || v != v) { best = 1; best_v = v; }                                  \
    v = a[in_x];                                                                         \
    if (v > best_v || v != v) { best = 2; best_v = v; }                                  \
    v = a[in_x + 1];                                                                     \
    if (v > best_v || v != v) { best = 3; best_v = v; }                                  \
    *value = best_v;                                                                     \
    return best;                                                                         \
}                                                                                        \
static void kit_pool_2x2_##T(const T* restrict img, Py_ssize_t in_x, T* restrict out,     \
                             Py_ssize_t* restrict argmax, Py_ssize_t out_y, Py_ssize_t out_x) { \
    for (Py_ssize_t oy = 0; oy < out_y; oy++) {                                          \
        const T* a = img + 2 * oy * in_x;                                                \
        const Py_ssize_t q = 2 * oy * in_x;                                              \
        T* restrict m = out + oy * out_x;                                                \
        Py_ssize_t* restrict idx = argmax + oy * out_x;                                  \
        Py_ssize_t ox = 0;                                                               \
        /* Rows of 8 windows or more: the compiler's own vectors, as wide as the         \
           registers, run the selections below faster than vectors of 4 (restrict: the   \
           maps and the outputs do not overlap, so it needs no test of that first). */   \
        if (KIT_BY_4 && out_x < 8)                                                       \
            for (; ox + 4 <= out_x; ox += 4)                                             \
                KIT_POOL4(T, a + 2 * ox, in_x, q + 2 * ox, m + ox, idx + ox);            \
        for (; ox < out_x; ox++) {                                                       \
            /* The same comparisons as selections, which the compiler vectorizes. */     \
            const Py_ssize_t c = 2 * ox;                                                 \
            Py_ssize_t best = q + c;                                                     \
            T best_v = a[c], v;                                                          \
            int take;                                                                    \
            v = a[c + 1];                                                                \
            take = (v > best_v) | (v != v);                                              \
            best = take ? q + c + 1 : best;                                              \
            best_v = take ? v : best_v;                                                  \
            v = a[in_x + c];                                                             \
            take = (v > best_v) | (v != v);                                              \
            best = take ? q + in_x + c : best;                                           \
            best_v = take ? v : best_v;                                                  \
            v = a[in_x + c + 1];                                                         \
            take = (v > best_v) | (v != v);                                              \
            best = take ? q + in_x + c + 1 : best;                                       \
            best_v = take ? v : best_v;                                                  \
            m[ox] = best_v;                                                              \
            idx[ox] = best;                                                              \
        }                                                                                \
    }                                                                                    \
}
KIT_POOL_2X2(double)
KIT_POOL_2X2(float)
#define KIT_ROUTE_2X2(T)                                                                 \
static void kit_route_2x2_##T(const T* d_out, const T* img, Py_ssize_t in_y,             \
                              Py_ssize_t in_x, T* d_in, Py_ssize_t out_y, Py_ssize_t out_x) { \
    const T zero = 0;                                                                    \
    for (Py_ssize_t i = 2 * out_y * in_x; i < in_y * in_x; i++) d_in[i] = zero;          \
    for (Py_ssize_t oy = 0; oy < out_y; oy++) {                                          \
        const T* a = img + 2 * oy * in_x;                                                \
        T* row = d_in + 2 * oy * in_x;                                                   \
        Py_ssize_t ox = 0;                                                               \
        if (KIT_BY_4)                                                                    \
            for (; ox + 4 <= out_x; ox += 4)                                             \
                KIT_ROUTE4(T, a + 2 * ox, a + in_x + 2 * ox, d_out + oy * out_x + ox,    \
                           row + 2 * ox, row + in_x + 2 * ox);                           \
        for (; ox < out_x; ox++) {                                                       \
            const Py_ssize_t c = 2 * ox;                                                 \
            T value;                                                                     \
            const int best = kit_winner_2x2_##T(a + c, in_x, &value);                    \
            const T dv = zero + d_out[oy * out_x + ox];                                  \
            row[c] = best == 0 ? dv : zero;                                              \
            row[c + 1] = best == 1 ? dv : zero;                                          \
            row[in_x + c] = best == 2 ? dv : zero;                                       \
            row[in_x + c + 1] = best == 3 ? dv : zero;                                   \
        }                                                                                \
        if (2 * out_x < in_x) row[in_x - 1] = row[2 * in_x - 1] = zero;                  \
    }                                                                                    \
}
KIT_ROUTE_2X2(double)
KIT_ROUTE_2X2(float)

#endif  /* KIT_CONVOLVE_BLOCKS_H */
