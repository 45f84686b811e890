/* The integer MFCC front end; see frontend.h and data_loader/integer_frontend.py (the steps and
 * the choice of block floating point with a halving per FFT stage). Right shifts of negative
 * values are arithmetic, as gcc and clang implement them. */
#include "frontend.h"
#include "frontend_tables.h"

#define KWS_FE_OFF ((KWS_FE_N_FFT - KWS_FE_WIN_LENGTH) / 2)
#define KWS_FE_HALF (KWS_FE_N_FFT / 2)   /* the complex FFT's size */
/* the packed frame z[k] = x[2k] + i x[2k+1] (x: the n_fft frame, the window span at KWS_FE_OFF):
 * both samples of z[k] lie in the window span for KWS_FE_K0 <= k < KWS_FE_K1 */
#define KWS_FE_K0 ((KWS_FE_OFF + 1) / 2)
#define KWS_FE_K1 ((KWS_FE_OFF + KWS_FE_WIN_LENGTH) / 2)

/* the n/2-point FFT in place, then the real FFT's bins 0..n/2 */
static int32_t fe_z[2 * (KWS_FE_HALF + 1)];
#define fe_re fe_z
#define fe_im (fe_z + KWS_FE_IM)
#define KWS_FE_IM (KWS_FE_HALF + 1)     /* a value's imaginary part: KWS_FE_IM words on */
#define kws_fe_twiddle_im (kws_fe_twiddle + KWS_FE_TW_IM)   /* -sin: KWS_FE_TW_IM (frontend_tables.h) on */
static int32_t fe_log[KWS_FE_FRAMES * KWS_FE_N_MELS];

static int fe_bit_length(uint64_t v)
{
#if defined(__GNUC__)
    return v ? 64 - __builtin_clzll(v) : 0;
#else
    int n = 0;
    while (v) {
        n++;
        v >>= 1;
    }
    return n;
#endif
}

/* Q12 log2 of e > 0: the leading one, then a table interpolated on the next mantissa bits. */
static int32_t fe_log2(uint64_t e)
{
    int top = fe_bit_length(e) - 1;
    uint32_t m = top >= 16 ? (uint32_t)(e >> (top - 16)) : (uint32_t)(e << (16 - top));
    int idx = (int)((m >> KWS_FE_LOG_INTERP_BITS) & 63u);
    int32_t frac = (int32_t)(m & ((1u << KWS_FE_LOG_INTERP_BITS) - 1u));
    int32_t lo = kws_fe_log_table[idx], hi = kws_fe_log_table[idx + 1];
    return (int32_t)top * (1 << KWS_FE_LOG_FL) + lo
           + (((hi - lo) * frac + (1 << (KWS_FE_LOG_INTERP_BITS - 1))) >> KWS_FE_LOG_INTERP_BITS);
}

/* gcc -O2 spills in the radix-4 loop when it inlines the butterfly; out of line it keeps its
 * values in registers (docs/firmware.md: fewer instructions that way) */
#if defined(__GNUC__)
#define FE_OUT_OF_LINE static __attribute__((noinline))
#else
#define FE_OUT_OF_LINE static
#endif

/* x times the Q30 twiddle (wr, wi), each part rounded half up: 64-bit products. */
#define FE_TIMES(tr, ti, xr, xi, wr, wi) do { \
        const int64_t half_ = (int64_t)1 << (KWS_FE_TWIDDLE_BITS - 1); \
        (tr) = (int32_t)(((int64_t)(xr) * (wr) + (int64_t)(xi) * -(wi) + half_) >> KWS_FE_TWIDDLE_BITS); \
        (ti) = (int32_t)(((int64_t)(xr) * (wi) + (int64_t)(xi) * (wr) + half_) >> KWS_FE_TWIDDLE_BITS); \
    } while (0)

/* One radix-4 butterfly on p[0], p[h], p[2h], p[3h] (E0, O0, E1, O1: the four h-point DFTs of
 * a 4h-point one, its output k, k + h, k + 2h, k + 3h) with W = W_{4h}^k:
 * u = (E0 +- W^2 O0) / 2, v = (W E1 +- W^3 O1) / 2, out = (u0 +- v0) / 2, (u1 -+ i v1) / 2, each
 * halving rounded ((s + 1) >> 1). Every value's modulus stays within 2^29.5 (+ a few units of
 * rounding: each level halves a sum of two such values), so the 32-bit sums cannot overflow. */
FE_OUT_OF_LINE void fe_radix4(int32_t *p, int h, int32_t w1r, int32_t w1i, int32_t w2r, int32_t w2i,
                                int32_t w3r, int32_t w3i)
{
    int32_t *q1 = p + h, *q2 = q1 + h, *q3 = q2 + h;
    int32_t br, bi, cr, ci, dr, di, er, ei, u0r, u0i, u1r, u1i, v0r, v0i, v1r, v1i;
    FE_TIMES(br, bi, q1[0], q1[KWS_FE_IM], w2r, w2i);
    er = p[0] + 1;
    ei = p[KWS_FE_IM] + 1;
    u0r = (er + br) >> 1;
    u1r = (er - br) >> 1;
    u0i = (ei + bi) >> 1;
    u1i = (ei - bi) >> 1;
    FE_TIMES(cr, ci, q2[0], q2[KWS_FE_IM], w1r, w1i);
    FE_TIMES(dr, di, q3[0], q3[KWS_FE_IM], w3r, w3i);
    cr++;
    ci++;
    v0r = (cr + dr) >> 1;
    v1r = (cr - dr) >> 1;
    v0i = (ci + di) >> 1;
    v1i = (ci - di) >> 1;
    u0r++;
    u0i++;
    u1r++;
    u1i++;
    p[0] = (u0r + v0r) >> 1;
    q2[0] = (u0r - v0r) >> 1;
    p[KWS_FE_IM] = (u0i + v0i) >> 1;
    q2[KWS_FE_IM] = (u0i - v0i) >> 1;
    q1[0] = (u1r + v1i) >> 1;
    q3[0] = (u1r - v1i) >> 1;
    q1[KWS_FE_IM] = (u1i - v1r) >> 1;
    q3[KWS_FE_IM] = (u1i + v1r) >> 1;
}

/* The n/2-point FFT of the packed frame (in bit-reversed order in fe_z, the block shift still to
 * apply): radix 4 (a radix-2 stage first when log2(n/2) is odd), each radix-2 level halved with
 * rounding. The first pass applies the shift too: (y0 << s) + (y1 << s) = (y0 + y1) << s; its
 * twiddles are 1 (and -i: t = (bi, -br), exactly the rounded Q30 product with (0, -2^30)). */
static void fe_fft(int shift)
{
    int g, h, k;
    int32_t scale = (int32_t)1 << shift;
    if (KWS_FE_HALF & 0x55555555) {   /* log2(n/2) even: a radix-4 pass of twiddles 1 */
        for (g = 0; g < KWS_FE_HALF; g += 4) {
            int32_t *r = fe_re + g, *m = fe_im + g;
            int32_t r0 = ((r[0] + r[1]) * scale + 1) >> 1, r1 = ((r[0] - r[1]) * scale + 1) >> 1;
            int32_t r2 = ((r[2] + r[3]) * scale + 1) >> 1, r3 = ((r[2] - r[3]) * scale + 1) >> 1;
            int32_t m0 = ((m[0] + m[1]) * scale + 1) >> 1, m1 = ((m[0] - m[1]) * scale + 1) >> 1;
            int32_t m2 = ((m[2] + m[3]) * scale + 1) >> 1, m3 = ((m[2] - m[3]) * scale + 1) >> 1;
            r[0] = (r0 + r2 + 1) >> 1;
            r[2] = (r0 - r2 + 1) >> 1;
            m[0] = (m0 + m2 + 1) >> 1;
            m[2] = (m0 - m2 + 1) >> 1;
            r[1] = (r1 + m3 + 1) >> 1;   /* (u1 - i v1) / 2 */
            r[3] = (r1 - m3 + 1) >> 1;
            m[1] = (m1 - r3 + 1) >> 1;
            m[3] = (m1 + r3 + 1) >> 1;
        }
        h = 4;
    } else {                          /* a radix-2 pass of twiddle 1 */
        for (g = 0; g < KWS_FE_HALF; g += 2) {
            int32_t *r = fe_re + g, *m = fe_im + g;
            int32_t r0 = ((r[0] + r[1]) * scale + 1) >> 1, r1 = ((r[0] - r[1]) * scale + 1) >> 1;
            int32_t m0 = ((m[0] + m[1]) * scale + 1) >> 1, m1 = ((m[0] - m[1]) * scale + 1) >> 1;
            r[0] = r0;
            r[1] = r1;
            m[0] = m0;
            m[1] = m1;
        }
        h = 2;
    }
    for (; h < KWS_FE_HALF; h *= 4) {
        const int step = KWS_FE_N_FFT / (4 * h);        /* W_{4h}^k = W_n^(k step) */
        const int32_t *tw = kws_fe_twiddle;
        const int k3 = (2 * h + 2) / 3;                 /* 3 k step < n/2 for k < k3 */
        for (g = 0; g < KWS_FE_HALF; g += 4 * h) {
            int32_t *p = fe_z + g;
            const int32_t one = (int32_t)1 << KWS_FE_TWIDDLE_BITS;
            fe_radix4(p, h, one, 0, one, 0, one, 0);    /* k = 0: the products are exact */
            for (k = 1; k < k3; k++) {
                int j = k * step;
                fe_radix4(p + k, h, tw[j], tw[KWS_FE_TW_IM + j], tw[2 * j], tw[KWS_FE_TW_IM + 2 * j],
                          tw[3 * j], tw[KWS_FE_TW_IM + 3 * j]);
            }
            for (; k < h; k++) {                        /* W_n^(3 k step) = -W_n^(3 k step - n/2) */
                int j = k * step, j3 = 3 * j - KWS_FE_HALF;
                fe_radix4(p + k, h, tw[j], tw[KWS_FE_TW_IM + j], tw[2 * j], tw[KWS_FE_TW_IM + 2 * j],
                          -tw[j3], -tw[KWS_FE_TW_IM + j3]);
            }
        }
    }
}

/* The real FFT's bins 0..n/2 (divided by n) from the n/2-point FFT Z of the packed frame:
 * S = Z[k] + conj Z[n/2-k], D = -i (Z[k] - conj Z[n/2-k]), X[k] / n = (S + W_n^k D) / 4 as one
 * 64-bit sum rounded once; bin n/2 - k from the same S, D and products (W_n^(n/2-k) = -conj W_n^k). */
static void fe_split(void)
{
    const int64_t one = (int64_t)1 << KWS_FE_TWIDDLE_BITS, half = (int64_t)1 << (KWS_FE_TWIDDLE_BITS + 1);
    int32_t r0 = fe_re[0], i0 = fe_im[0];
    int k;
    /* k = 0: S = 2 Re Z[0], D = 2 Im Z[0], W = 1 */
    fe_re[0] = (r0 + i0 + 1) >> 1;
    fe_re[KWS_FE_HALF] = (r0 - i0 + 1) >> 1;
    fe_im[0] = fe_im[KWS_FE_HALF] = 0;
    for (k = 1; k <= KWS_FE_HALF / 2; k++) {   /* k = n/4 is its own partner: both writes agree */
        int j = KWS_FE_HALF - k;
        int32_t sr = fe_re[k] + fe_re[j], si = fe_im[k] - fe_im[j];
        int32_t dr = fe_re[k] - fe_re[j], di = fe_im[k] + fe_im[j];
        int32_t wr = kws_fe_twiddle[k], wi = kws_fe_twiddle_im[k];
        int64_t p = (int64_t)wr * di + (int64_t)wi * dr, q = (int64_t)wi * di - (int64_t)wr * dr;
        int64_t s = (int64_t)sr * one + half, u = (int64_t)si * one;
        fe_re[k] = (int32_t)((s + p) >> (KWS_FE_TWIDDLE_BITS + 2));
        fe_re[j] = (int32_t)((s - p) >> (KWS_FE_TWIDDLE_BITS + 2));
        fe_im[k] = (int32_t)((u + q + half) >> (KWS_FE_TWIDDLE_BITS + 2));
        fe_im[j] = (int32_t)((q - u + half) >> (KWS_FE_TWIDDLE_BITS + 2));
    }
}

/* sample v at place i of the window span, windowed (Q15, rounded) */
static inline int32_t fe_window_at(int32_t v, int i)
{
    return (v * kws_fe_window[i] + (1 << (KWS_FE_WINDOW_BITS - 1))) >> KWS_FE_WINDOW_BITS;
}

/* frame sample i of the window span, windowed; 0 outside the span */
static inline int32_t fe_windowed(const int16_t *x, int i)
{
    return i < 0 || i >= KWS_FE_WIN_LENGTH ? 0 : fe_window_at(x[i], i);
}

/* The packed frame in fe_re, fe_im (bit-reversed) whose largest |sample| has peak's bit length
 * -> its log energies (returns their largest). */
static int32_t fe_logs(int32_t peak, int32_t *log)
{
    int32_t peak_log = INT32_MIN;
    const kws_fe_weight_t *w = kws_fe_mel_weights;
    int shift, j, k;
    /* block floating point: the frame's largest sample gets KWS_FE_SAMPLE_BITS bits */
    shift = peak ? KWS_FE_SAMPLE_BITS - fe_bit_length((uint64_t)peak) : 0;
    fe_fft(shift);
    fe_split();
    /* each bin's power where a band reads it (a bin is in one or two bands): no power buffer;
     * the bands' weights one after the other */
    for (j = 0; j < KWS_FE_N_MELS; j++) {
        uint64_t e = 0;
        const int32_t *re = fe_re + kws_fe_mel_start[j], *im = fe_im + kws_fe_mel_start[j];
        const int n = kws_fe_mel_length[j];
        for (k = 0; k < n; k++)
            e += ((uint64_t)((int64_t)re[k] * re[k] + (int64_t)im[k] * im[k]) >> KWS_FE_POWER_SHIFT) * w[k];
        w += n;
        log[j] = e ? fe_log2(e) - ((int32_t)(2 * shift) << KWS_FE_LOG_FL) + KWS_FE_LOG_OFFSET : KWS_FE_LOG_FLOOR;
        if (log[j] < KWS_FE_LOG_FLOOR)
            log[j] = KWS_FE_LOG_FLOOR;
        if (log[j] > peak_log)
            peak_log = log[j];
    }
    return peak_log;
}

int32_t kws_frontend_frame(const int16_t *x, int32_t *log)
{
    int32_t peak = 0;
    int k;
    /* window, pack z[k] = x[2k] + i x[2k+1] into bit-reversed order (every entry written: no
     * zeroing pass); the bit length of the largest |y| is that of the OR of all |y| */
    for (k = 0; k < KWS_FE_K0; k++) {   /* the frame's start: zeros (and a sample if the span starts odd) */
        int32_t a = fe_windowed(x, 2 * k - KWS_FE_OFF), b = fe_windowed(x, 2 * k + 1 - KWS_FE_OFF);
        fe_re[kws_fe_bitrev[k]] = a;
        fe_im[kws_fe_bitrev[k]] = b;
        peak |= (a < 0 ? -a : a) | (b < 0 ? -b : b);
    }
    for (; k < KWS_FE_K1; k++) {
        int i = 2 * k - KWS_FE_OFF;
        int32_t a = fe_window_at(x[i], i), b = fe_window_at(x[i + 1], i + 1);
        fe_re[kws_fe_bitrev[k]] = a;
        fe_im[kws_fe_bitrev[k]] = b;
        peak |= (a < 0 ? -a : a) | (b < 0 ? -b : b);
    }
    for (; k < KWS_FE_HALF; k++) {      /* the frame's end */
        int32_t a = fe_windowed(x, 2 * k - KWS_FE_OFF), b = fe_windowed(x, 2 * k + 1 - KWS_FE_OFF);
        fe_re[kws_fe_bitrev[k]] = a;
        fe_im[kws_fe_bitrev[k]] = b;
        peak |= (a < 0 ? -a : a) | (b < 0 ? -b : b);
    }
    return fe_logs(peak, log);
}

int32_t kws_frontend_frame_part(const int16_t *x, int first, int end, int32_t *log)
{
    int32_t peak = 0;
    int k;
    for (k = 0; k < KWS_FE_HALF; k++) {
        int i = 2 * k - KWS_FE_OFF;
        int32_t a = i >= first && i < end ? fe_window_at(x[i - first], i) : 0;
        int32_t b = i + 1 >= first && i + 1 < end ? fe_window_at(x[i + 1 - first], i + 1) : 0;
        fe_re[kws_fe_bitrev[k]] = a;
        fe_im[kws_fe_bitrev[k]] = b;
        peak |= (a < 0 ? -a : a) | (b < 0 ? -b : b);
    }
    return fe_logs(peak, log);
}

/* band j's log energy clamped at peak_log - top_db (the window's peak) */
static inline int32_t fe_clamped(const int32_t *log, int j, int32_t peak_log)
{
    return KWS_FE_TOP_DB >= 0 && log[j] < peak_log - KWS_FE_TOP_DB ? peak_log - KWS_FE_TOP_DB : log[j];
}

/* the last coefficient of an odd n_mfcc: x[0 .. n - 1] against the table's last column, rounded */
static inline int32_t fe_dct_last(const int32_t *x, int n)
{
    int64_t a = (int64_t)1 << (KWS_FE_DCT_SHIFT - 1);
    const kws_fe_dct_t *t = kws_fe_dct + KWS_FE_N_MFCC - 1;
    int j;
    for (j = 0; j < n; j++, t += KWS_FE_N_MFCC)
        a += (int64_t)x[j] * t[0];
    return (int32_t)(a >> KWS_FE_DCT_SHIFT);
}

#if KWS_FE_DCT_HALF
#define KWS_FE_DCT_ROWS ((KWS_FE_N_MELS + 1) / 2)
/* One frame's MFCCs from its log energies, each clamped (fe_clamped). The DCT-II's row
 * n_mels - 1 - j is (-1)^k times row j (exactly, in the rounded table: deploy/c_frontend.py
 * checks it), so coefficient k sums s[j] = v[j] + v[n_mels - 1 - j] (k even) or d[j] = v[j] -
 * v[n_mels - 1 - j] (k odd) against the table's first half: the same integer sums (64-bit),
 * half the products; two coefficients (k even, k + 1 odd) per pass. The middle band of an odd
 * n_mels: s = v, d = 0 (its row is 0 at odd k). */
static void fe_frame_mfcc(const int32_t *log, int32_t peak_log, int32_t *mfcc)
{
    int32_t sd[2 * KWS_FE_DCT_ROWS];   /* one array: the loop below reads both through one pointer */
    int32_t *s = sd, *d = sd + KWS_FE_DCT_ROWS;
    const int64_t half = (int64_t)1 << (KWS_FE_DCT_SHIFT - 1);
    int j, k;
    for (j = 0; j < KWS_FE_N_MELS / 2; j++) {
        int32_t a = fe_clamped(log, j, peak_log), b = fe_clamped(log, KWS_FE_N_MELS - 1 - j, peak_log);
        s[j] = a + b;
        d[j] = a - b;
    }
    if (KWS_FE_N_MELS % 2) {
        s[KWS_FE_DCT_ROWS - 1] = fe_clamped(log, KWS_FE_N_MELS / 2, peak_log);
        d[KWS_FE_DCT_ROWS - 1] = 0;
    }
    for (k = 0; k + 1 < KWS_FE_N_MFCC; k += 2) {
        int64_t a0 = half, a1 = half;
        const kws_fe_dct_t *t = kws_fe_dct + k;
        const int32_t *v = sd;   /* v[0] = s[j], v[KWS_FE_DCT_ROWS] = d[j] */
        for (j = 0; j < KWS_FE_DCT_ROWS; j++, t += KWS_FE_N_MFCC, v++) {
            a0 += (int64_t)v[0] * t[0];
            a1 += (int64_t)v[KWS_FE_DCT_ROWS] * t[1];
        }
        mfcc[k] = (int32_t)(a0 >> KWS_FE_DCT_SHIFT);
        mfcc[k + 1] = (int32_t)(a1 >> KWS_FE_DCT_SHIFT);
    }
    if (KWS_FE_N_MFCC % 2)   /* the last coefficient, k even */
        mfcc[KWS_FE_N_MFCC - 1] = fe_dct_last(s, KWS_FE_DCT_ROWS);
}
#else
/* One frame's MFCCs from its log energies, each clamped (fe_clamped): the clamp once per band,
 * then two coefficients per pass over the bands (64-bit sums); the full DCT table. */
static void fe_frame_mfcc(const int32_t *log, int32_t peak_log, int32_t *mfcc)
{
    int32_t v[KWS_FE_N_MELS];
    const int64_t half = (int64_t)1 << (KWS_FE_DCT_SHIFT - 1);
    int j, k;
    for (j = 0; j < KWS_FE_N_MELS; j++)
        v[j] = fe_clamped(log, j, peak_log);
    for (k = 0; k + 1 < KWS_FE_N_MFCC; k += 2) {
        int64_t a0 = half, a1 = half;
        const kws_fe_dct_t *d = kws_fe_dct + k;
        for (j = 0; j + 1 < KWS_FE_N_MELS; j += 2, d += 2 * KWS_FE_N_MFCC) {
            int32_t x0 = v[j], x1 = v[j + 1];
            a0 += (int64_t)x0 * d[0];
            a1 += (int64_t)x0 * d[1];
            a0 += (int64_t)x1 * d[KWS_FE_N_MFCC];
            a1 += (int64_t)x1 * d[KWS_FE_N_MFCC + 1];
        }
        if (KWS_FE_N_MELS % 2) {
            a0 += (int64_t)v[KWS_FE_N_MELS - 1] * d[0];
            a1 += (int64_t)v[KWS_FE_N_MELS - 1] * d[1];
        }
        mfcc[k] = (int32_t)(a0 >> KWS_FE_DCT_SHIFT);
        mfcc[k + 1] = (int32_t)(a1 >> KWS_FE_DCT_SHIFT);
    }
    if (KWS_FE_N_MFCC % 2)
        mfcc[KWS_FE_N_MFCC - 1] = fe_dct_last(v, KWS_FE_N_MELS);
}
#endif

void kws_frontend_window(const int32_t *logs, int32_t *mfcc)
{
    int32_t peak_log = INT32_MIN;
    int t;
    for (t = 0; t < KWS_FE_FRAMES * KWS_FE_N_MELS; t++)
        if (logs[t] > peak_log)
            peak_log = logs[t];
    for (t = 0; t < KWS_FE_FRAMES; t++)
        fe_frame_mfcc(logs + t * KWS_FE_N_MELS, peak_log, mfcc + t * KWS_FE_N_MFCC);
}

void kws_frontend_mfcc(const int16_t *pcm, int32_t *mfcc)
{
    static int16_t x[KWS_FE_WIN_LENGTH];
    int t, i;
    for (t = 0; t < KWS_FE_FRAMES; t++) {
        int32_t start = (int32_t)t * KWS_FE_HOP_LENGTH + KWS_FE_OFF - KWS_FE_N_FFT / 2;
        for (i = 0; i < KWS_FE_WIN_LENGTH; i++) {
            int32_t n = start + i;
            x[i] = (n >= 0 && n < KWS_FE_CLIP_SAMPLES) ? pcm[n] : 0;
        }
        kws_frontend_frame(x, fe_log + t * KWS_FE_N_MELS);
    }
    kws_frontend_window(fe_log, mfcc);
}

#if KWS_FE_HAS_FOLD
/* One frame's MFCCs -> its input codes. */
static void fe_frame_codes(const int32_t *mfcc, kws_fe_code_t *codes)
{
    int k;
    for (k = 0; k < KWS_FE_N_MFCC; k++) {
        int64_t v = (int64_t)mfcc[k] - kws_fe_fold_offset[k], r;
        int s = kws_fe_fold_shift[k];
        if (s > 0) {
            int64_t a = v < 0 ? -v : v;
            a = (a + ((int64_t)1 << (s - 1))) >> s;
            r = v < 0 ? -a : a;
        } else {   /* saturated first: the shift cannot overflow, the code is the same */
            r = v < KWS_FE_CODE_MIN ? KWS_FE_CODE_MIN : v > KWS_FE_CODE_MAX ? KWS_FE_CODE_MAX : v;
            r *= (int64_t)1 << -s;
        }
        if (r < KWS_FE_CODE_MIN)
            r = KWS_FE_CODE_MIN;
        if (r > KWS_FE_CODE_MAX)
            r = KWS_FE_CODE_MAX;
        codes[k] = (kws_fe_code_t)r;
    }
}

void kws_frontend_codes(const int32_t *mfcc, kws_fe_code_t *codes)
{
    int t;
    for (t = 0; t < KWS_FE_FRAMES; t++)
        fe_frame_codes(mfcc + t * KWS_FE_N_MFCC, codes + t * KWS_FE_N_MFCC);
}

void kws_frontend_frame_codes(const int32_t *log, int32_t peak_log, kws_fe_code_t *codes)
{
    int32_t mfcc[KWS_FE_N_MFCC];
    fe_frame_mfcc(log, peak_log, mfcc);
    fe_frame_codes(mfcc, codes);
}
#endif
