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
#define KWS_FE_TW_IM (KWS_FE_HALF)      /* the twiddle table: n/2 cosines, then n/2 minus sines */
#define kws_fe_twiddle_im (kws_fe_twiddle_re + KWS_FE_TW_IM)
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

/* a, b <- (a + t) / 2, (a - t) / 2, rounded, t = b times the twiddle. Every component's
 * modulus stays within 2^29.5 (+ a few units of rounding; the halving per stage), so t's parts
 * do too and the sums fit 32 bits. */
static inline void fe_butterfly(int a, int b, int32_t tr, int32_t ti)
{
    int32_t ar = fe_re[a], ai = fe_im[a];
    fe_re[a] = (ar + tr + 1) >> 1;
    fe_re[b] = (ar - tr + 1) >> 1;
    fe_im[a] = (ai + ti + 1) >> 1;
    fe_im[b] = (ai - ti + 1) >> 1;
}

/* The n/2-point FFT of the packed frame (in bit-reversed order in fe_re/fe_im, shift still to
 * apply), each stage halved with rounding. Its first two stages (twiddles 1 and -i, exact) are
 * one pass that also applies the block shift: (y0 << s) + (y1 << s) = (y0 + y1) << s. */
static void fe_fft(int shift)
{
    int g, h;
    int32_t scale = (int32_t)1 << shift;
    for (g = 0; g < KWS_FE_HALF; g += 4) {
        int32_t *r = fe_re + g, *m = fe_im + g;
        /* stage 1: pairs (0, 1), (2, 3); stage 2: (0, 2) with twiddle 1, (1, 3) with -i */
        int32_t r0 = ((r[0] + r[1]) * scale + 1) >> 1, r1 = ((r[0] - r[1]) * scale + 1) >> 1;
        int32_t r2 = ((r[2] + r[3]) * scale + 1) >> 1, r3 = ((r[2] - r[3]) * scale + 1) >> 1;
        int32_t m0 = ((m[0] + m[1]) * scale + 1) >> 1, m1 = ((m[0] - m[1]) * scale + 1) >> 1;
        int32_t m2 = ((m[2] + m[3]) * scale + 1) >> 1, m3 = ((m[2] - m[3]) * scale + 1) >> 1;
        r[0] = (r0 + r2 + 1) >> 1;
        r[2] = (r0 - r2 + 1) >> 1;
        m[0] = (m0 + m2 + 1) >> 1;
        m[2] = (m0 - m2 + 1) >> 1;
        /* t = z3 (-i) = (m3, -r3), exactly the rounded Q30 product with the twiddle (0, -2^30) */
        r[1] = (r1 + m3 + 1) >> 1;
        r[3] = (r1 - m3 + 1) >> 1;
        m[1] = (m1 - r3 + 1) >> 1;
        m[3] = (m1 + r3 + 1) >> 1;
    }
    for (h = 4; h < KWS_FE_HALF; h *= 2) {
        int step = KWS_FE_N_FFT / (2 * h);   /* W_{n/2}^k = W_n^(2k): the table's even entries */
        for (g = 0; g < KWS_FE_HALF; g += 2 * h) {
            int32_t *a = fe_re + g, *b = a + h, *end = b;
            const int32_t *w = kws_fe_twiddle_re + step;
            {   /* k = 0: the twiddle is 1 (2^30, 0), so the rounded product is b itself */
                int32_t ar = a[0] + 1, ai = a[KWS_FE_IM] + 1, br = b[0], bi = b[KWS_FE_IM];
                a[0] = (ar + br) >> 1;
                b[0] = (ar - br) >> 1;
                a[KWS_FE_IM] = (ai + bi) >> 1;
                b[KWS_FE_IM] = (ai - bi) >> 1;
            }
            for (a++, b++; a < end; a++, b++, w += step) {
                const int64_t half = (int64_t)1 << (KWS_FE_TWIDDLE_BITS - 1);
                int32_t wr = w[0], wi = w[KWS_FE_TW_IM], br = b[0], bi = b[KWS_FE_IM], tr, ti, ar, ai;
                tr = (int32_t)(((int64_t)br * wr + (int64_t)bi * -wi + half) >> KWS_FE_TWIDDLE_BITS);
                ti = (int32_t)(((int64_t)br * wi + (int64_t)bi * wr + half) >> KWS_FE_TWIDDLE_BITS);
                ar = a[0] + 1;   /* + 1: the halving's rounding */
                a[0] = (ar + tr) >> 1;
                b[0] = (ar - tr) >> 1;
                ai = a[KWS_FE_IM] + 1;
                a[KWS_FE_IM] = (ai + ti) >> 1;
                b[KWS_FE_IM] = (ai - ti) >> 1;
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
        int32_t wr = kws_fe_twiddle_re[k], wi = kws_fe_twiddle_im[k];
        int64_t p = (int64_t)wr * di + (int64_t)wi * dr, q = (int64_t)wi * di - (int64_t)wr * dr;
        int64_t s = (int64_t)sr * one + half, u = (int64_t)si * one;
        fe_re[k] = (int32_t)((s + p) >> (KWS_FE_TWIDDLE_BITS + 2));
        fe_re[j] = (int32_t)((s - p) >> (KWS_FE_TWIDDLE_BITS + 2));
        fe_im[k] = (int32_t)((u + q + half) >> (KWS_FE_TWIDDLE_BITS + 2));
        fe_im[j] = (int32_t)((q - u + half) >> (KWS_FE_TWIDDLE_BITS + 2));
    }
}

/* frame sample i of the window span, windowed (Q15, rounded); 0 outside the span */
static inline int32_t fe_windowed(const int16_t *x, int i)
{
    if (i < 0 || i >= KWS_FE_WIN_LENGTH)
        return 0;
    return ((int32_t)x[i] * kws_fe_window[i] + (1 << (KWS_FE_WINDOW_BITS - 1))) >> KWS_FE_WINDOW_BITS;
}

int32_t kws_frontend_frame(const int16_t *x, int32_t *log)
{
    int32_t peak = 0, peak_log = INT32_MIN;
    int shift, j, k;
    /* window, pack z[k] = x[2k] + i x[2k+1] into bit-reversed order (every entry written: no
     * zeroing pass); the bit length of the largest |y| is that of the OR of all |y| */
    for (k = 0; k < KWS_FE_HALF; k++) {
        int32_t a, b;
        if (k >= KWS_FE_K0 && k < KWS_FE_K1) {
            int i = 2 * k - KWS_FE_OFF;
            a = ((int32_t)x[i] * kws_fe_window[i] + (1 << (KWS_FE_WINDOW_BITS - 1))) >> KWS_FE_WINDOW_BITS;
            b = ((int32_t)x[i + 1] * kws_fe_window[i + 1] + (1 << (KWS_FE_WINDOW_BITS - 1))) >> KWS_FE_WINDOW_BITS;
        } else {
            a = fe_windowed(x, 2 * k - KWS_FE_OFF);
            b = fe_windowed(x, 2 * k + 1 - KWS_FE_OFF);
        }
        fe_re[kws_fe_bitrev[k]] = a;
        fe_im[kws_fe_bitrev[k]] = b;
        peak |= (a < 0 ? -a : a) | (b < 0 ? -b : b);
    }
    /* block floating point: the frame's largest sample gets KWS_FE_SAMPLE_BITS bits */
    shift = peak ? KWS_FE_SAMPLE_BITS - fe_bit_length((uint64_t)peak) : 0;
    fe_fft(shift);
    fe_split();
    /* each bin's power where a band reads it (a bin is in one or two bands): no power buffer */
    for (j = 0; j < KWS_FE_N_MELS; j++) {
        uint64_t e = 0;
        const uint16_t *w = kws_fe_mel_weights + kws_fe_mel_offset[j];
        const int32_t *re = fe_re + kws_fe_mel_start[j], *im = fe_im + kws_fe_mel_start[j];
        for (k = 0; k < kws_fe_mel_length[j]; k++)
            e += ((uint64_t)((int64_t)re[k] * re[k] + (int64_t)im[k] * im[k]) >> KWS_FE_POWER_SHIFT) * w[k];
        log[j] = e ? fe_log2(e) - ((int32_t)(2 * shift) << KWS_FE_LOG_FL) + KWS_FE_LOG_OFFSET : KWS_FE_LOG_FLOOR;
        if (log[j] < KWS_FE_LOG_FLOOR)
            log[j] = KWS_FE_LOG_FLOOR;
        if (log[j] > peak_log)
            peak_log = log[j];
    }
    return peak_log;
}

/* One frame's MFCCs from its log energies, each clamped at peak_log - top_db (the window's peak):
 * the clamp once per band, then two coefficients per pass over the bands (64-bit sums). */
static void fe_frame_mfcc(const int32_t *log, int32_t peak_log, int32_t *mfcc)
{
    int32_t v[KWS_FE_N_MELS];
    const int64_t half = (int64_t)1 << (KWS_FE_DCT_SHIFT - 1);
    int j, k;
    for (j = 0; j < KWS_FE_N_MELS; j++)
        v[j] = KWS_FE_TOP_DB >= 0 && log[j] < peak_log - KWS_FE_TOP_DB ? peak_log - KWS_FE_TOP_DB : log[j];
    for (k = 0; k + 1 < KWS_FE_N_MFCC; k += 2) {
        int64_t a0 = half, a1 = half;
        const int32_t *d = kws_fe_dct + k;
        for (j = 0; j < KWS_FE_N_MELS; j++, d += KWS_FE_N_MFCC) {
            a0 += (int64_t)v[j] * d[0];
            a1 += (int64_t)v[j] * d[1];
        }
        mfcc[k] = (int32_t)(a0 >> KWS_FE_DCT_SHIFT);
        mfcc[k + 1] = (int32_t)(a1 >> KWS_FE_DCT_SHIFT);
    }
    if (KWS_FE_N_MFCC % 2) {
        int64_t a0 = half;
        const int32_t *d = kws_fe_dct + KWS_FE_N_MFCC - 1;
        for (j = 0; j < KWS_FE_N_MELS; j++, d += KWS_FE_N_MFCC)
            a0 += (int64_t)v[j] * d[0];
        mfcc[KWS_FE_N_MFCC - 1] = (int32_t)(a0 >> KWS_FE_DCT_SHIFT);
    }
}

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
