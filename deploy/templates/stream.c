/* The streaming keyword spotter (stream.h); model/detector.py defines the integer detector and
 * data_loader/integer_frontend.py (StreamFrames) the frame-wise features this reproduces. */
#include <string.h>
#include "stream.h"
#include "frontend.h"
#include "model.h"
#include "stream_config.h"

#define ST_FIRST ((KWS_FE_N_FFT - KWS_FE_WIN_LENGTH) / 2 - KWS_FE_N_FFT / 2)   /* frame j spans j * hop + this */
#if KWS_FE_CLIP_SAMPLES < KWS_FE_WIN_LENGTH || ST_FIRST <= -KWS_FE_WIN_LENGTH || KWS_FE_HOP_LENGTH > KWS_FE_WIN_LENGTH
#error "the stream needs a clip at least one frame long, frames that reach into it and overlap"
#endif
/* A window's frames 0 .. ST_START_EDGES - 1 begin before it and frames ST_END_FIRST .. end after
 * it: these edges see the window's zero padding and are computed per window; the inner frames
 * are frames of the recording, computed once as their samples arrive (into a ring, or without
 * the top_db clamp into the model's input). */
#define ST_START_EDGES (ST_FIRST < 0 ? (KWS_FE_HOP_LENGTH - 1 - ST_FIRST) / KWS_FE_HOP_LENGTH : 0)
#define ST_END_RAW ((KWS_FE_CLIP_SAMPLES - KWS_FE_WIN_LENGTH - ST_FIRST) / KWS_FE_HOP_LENGTH + 1)
#define ST_END_FIRST (ST_END_RAW < KWS_FE_FRAMES ? ST_END_RAW : KWS_FE_FRAMES)
#define ST_END_EDGES (KWS_FE_FRAMES - ST_END_FIRST)
#define ST_RING (ST_END_FIRST - ST_START_EDGES)   /* the inner frames of one window */
/* a window's start edges are computed once its first ST_EDGE_NEED samples have arrived, and kept
 * until the window is complete: ST_EDGE_WINDOWS windows at most */
#define ST_EDGE_NEED ((ST_START_EDGES - 1) * KWS_FE_HOP_LENGTH + ST_FIRST + KWS_FE_WIN_LENGTH)
#define ST_EDGE_WINDOWS ((KWS_FE_CLIP_SAMPLES - ST_EDGE_NEED) / KWS_ST_HOP + 2)
#define ST_HALF (KWS_ST_SMOOTH / 2)
enum { ST_PENDING, ST_KEPT, ST_DROPPED };

#if KWS_FE_TOP_DB < 0
/* Without the top_db clamp a frame's input codes depend on that frame alone. They are written
 * straight into the model's input, at the frame's place in the next window to complete
 * (st_codes, frame-major, with room for the frames that arrive as that window completes but
 * belong to later ones); after each window the rows move up by the window hop. A window's start
 * edges, computed before it completes, wait in rows of their own. */
#define ST_ROW_LOGS 0
#define ST_BUF_FRAMES (ST_END_RAW > KWS_FE_FRAMES ? ST_END_RAW : KWS_FE_FRAMES)
typedef struct {
    kws_fe_code_t codes[KWS_FE_N_MFCC];
} st_row;
#else
/* With it, a frame's codes depend on the window's largest log energy, known only once the window
 * is complete: a row holds the frame's log energies in 24 bits (high 16, low 8) and their largest.
 * They lie in [KWS_FE_LOG_FLOOR, 64 << KWS_FE_LOG_FL plus the offset). */
#define ST_ROW_LOGS 1
#if KWS_FE_LOG_FLOOR < -(1L << 23) || KWS_FE_LOG_OFFSET + (64L << KWS_FE_LOG_FL) > (1L << 23)
#error "the stream keeps log energies in 24 bits; these front end constants need more"
#endif
typedef struct {
    int32_t peak;
    int16_t hi[KWS_FE_N_MELS];
    uint8_t lo[KWS_FE_N_MELS];
} st_row;
#endif

typedef struct {
    int32_t window, score;
    uint8_t label, state, emitted;
} st_candidate;

/* samples st_base .. st_received - 1 in order: the span of the next frame to complete, as far as
 * it has arrived (the frame st_next_frame starts at sample st_base) */
static int16_t st_pcm[KWS_FE_WIN_LENGTH];
static int32_t st_base;
#if ST_START_EDGES > 0
static st_row st_start_edges[ST_EDGE_WINDOWS][ST_START_EDGES];
static int32_t st_next_edge;                          /* the next window whose start edges are due */
#endif
static int32_t st_log[KWS_FE_N_MELS];                 /* one frame's log energies, unpacked */
#if ST_ROW_LOGS
static st_row st_logs[ST_RING];                       /* log energies of the recent inner frames */
#if ST_END_EDGES > 0
static st_row st_end_edges[ST_END_EDGES];
#endif
static kws_input_t st_codes[KWS_N_INPUTS];
#else
#if KWS_N_INPUTS != KWS_FE_FRAMES * KWS_FE_N_MFCC
#error "the stream writes frames' codes into the model's input: it must be frames x coefficients"
#endif
static kws_input_t st_codes[ST_BUF_FRAMES * KWS_FE_N_MFCC];
#endif
static int32_t st_scores[KWS_N_CLASSES];
static int32_t st_post[KWS_ST_SMOOTH][KWS_N_CLASSES];  /* posteriors of the last windows, Q16 */
static st_candidate st_cand[KWS_ST_MAX_CANDIDATES];
static int st_ncand, st_overflow;
static int32_t st_received, st_next_frame, st_next_window, st_next_smooth;
static int st_run_label, st_run_active;
static int32_t st_run_start, st_run_peak, st_run_score;
static kws_detect_fn st_on_detect;
static void *st_ctx;

void kws_stream_init(kws_detect_fn on_detect, void *ctx)
{
    st_on_detect = on_detect;
    st_ctx = ctx;
    st_ncand = st_overflow = 0;
    st_received = st_next_frame = st_next_window = st_next_smooth = 0;
    st_base = ST_FIRST;
#if ST_START_EDGES > 0
    st_next_edge = 0;
#endif
    st_run_active = 0;
}

static void st_posteriors(const int32_t *s, int32_t *p)
{
    int32_t mx = s[0];
    int64_t e[KWS_N_CLASSES], sum = 0;
    int k;
    for (k = 1; k < KWS_N_CLASSES; k++)
        if (s[k] > mx)
            mx = s[k];
    for (k = 0; k < KWS_N_CLASSES; k++) {
        int64_t a = ((int64_t)s[k] - mx) * KWS_ST_LOG2E, y, n, lo, hi;
        int whole, idx, rest;
        if (a < -((int64_t)1 << 40))
            a = -((int64_t)1 << 40);
#if KWS_ST_OUTPUT_FL >= 0
        y = a >> KWS_ST_OUTPUT_FL;
#else
        y = a * ((int64_t)1 << -KWS_ST_OUTPUT_FL);
#endif
        if (y < KWS_ST_EXP2_MIN)
            y = KWS_ST_EXP2_MIN;
        n = -y;
        whole = (int)(n >> KWS_ST_FL);
        idx = (int)((n & ((1 << KWS_ST_FL) - 1)) >> (KWS_ST_FL - 6));
        rest = (int)(n & ((1 << KWS_ST_EXP2_INTERP_BITS) - 1));
        lo = kws_st_exp2[idx];
        hi = kws_st_exp2[idx + 1];
        e[k] = (lo + (((hi - lo) * rest + (1 << (KWS_ST_EXP2_INTERP_BITS - 1))) >> KWS_ST_EXP2_INTERP_BITS)) >> whole;
        sum += e[k];
    }
    for (k = 0; k < KWS_N_CLASSES; k++)
        p[k] = (int32_t)((e[k] << KWS_ST_FL) / sum);
}

/* a has priority over b: stronger, then the lower label, then the earlier window (model/detector.py) */
static int st_before(const st_candidate *a, const st_candidate *b)
{
    if (a->score != b->score)
        return a->score > b->score;
    if (a->label != b->label)
        return a->label < b->label;
    return a->window < b->window;
}

/* decide every candidate whose decision nothing after window ``horizon`` can change; report and
 * forget the decided ones in time order */
static void st_resolve(int32_t horizon)
{
    int changed = 1, i, j;
    while (changed) {
        changed = 0;
        for (i = 0; i < st_ncand; i++) {
            st_candidate *c = &st_cand[i];
            int blocked = 0, beaten = 0;
            if (c->state != ST_PENDING || (int64_t)c->window + KWS_ST_REFRACTORY > horizon)
                continue;
            for (j = 0; j < st_ncand; j++) {
                const st_candidate *d = &st_cand[j];
                int32_t gap = d->window > c->window ? d->window - c->window : c->window - d->window;
                if (j == i || gap >= KWS_ST_REFRACTORY || !st_before(d, c))
                    continue;
                if (d->state == ST_PENDING)
                    blocked = 1;
                else if (d->state == ST_KEPT)
                    beaten = 1;
            }
            if (beaten || !blocked) {
                c->state = beaten ? ST_DROPPED : ST_KEPT;
                changed = 1;
            }
        }
    }
    for (i = 0; i < st_ncand && st_cand[i].state != ST_PENDING; i++) {
        if (st_cand[i].state == ST_KEPT && !st_cand[i].emitted) {
            st_cand[i].emitted = 1;
            if (st_on_detect)
                st_on_detect(st_cand[i].window, st_cand[i].label, st_cand[i].score, st_ctx);
        }
    }
    /* the decided front is forgotten once no pending or future candidate is within reach */
    while (st_ncand > 0 && st_cand[0].state != ST_PENDING) {
        int needed = (int64_t)st_cand[0].window + KWS_ST_REFRACTORY > horizon;
        for (j = 1; j < st_ncand && !needed; j++)
            needed = st_cand[j].state == ST_PENDING && st_cand[j].window - st_cand[0].window < KWS_ST_REFRACTORY;
        if (needed)
            break;
        for (j = 1; j < st_ncand; j++)
            st_cand[j - 1] = st_cand[j];
        st_ncand--;
    }
}

static void st_close_run(void)
{
    if (!st_run_active)
        return;
    st_run_active = 0;
    if (st_ncand == KWS_ST_MAX_CANDIDATES) {
        st_overflow = 1;
        return;
    }
    st_cand[st_ncand].window = st_run_peak;
    st_cand[st_ncand].score = st_run_score;
    st_cand[st_ncand].label = (uint8_t)st_run_label;
    st_cand[st_ncand].state = ST_PENDING;
    st_cand[st_ncand].emitted = 0;
    st_ncand++;
}

/* the smoothed posteriors of window v, the windows up to ``last`` existing */
static void st_smooth(int32_t v, int32_t last)
{
    int32_t lo = v - ST_HALF < 0 ? 0 : v - ST_HALF, hi = v + ST_HALF > last ? last : v + ST_HALF, w;
    int32_t smoothed[KWS_N_CLASSES];
    int k, best = 0, fires;
    for (k = 0; k < KWS_N_CLASSES; k++) {
        int64_t sum = 0;
        for (w = lo; w <= hi; w++)
            sum += st_post[w % KWS_ST_SMOOTH][k];
        smoothed[k] = (int32_t)(sum / (hi - lo + 1));
        if (smoothed[k] > smoothed[best])
            best = k;
    }
    fires = kws_st_detectable[best] && smoothed[best] >= KWS_ST_THRESHOLD;
    if (st_run_active && (!fires || best != st_run_label))
        st_close_run();
    if (fires) {
        if (!st_run_active) {
            st_run_active = 1;
            st_run_label = best;
            st_run_start = st_run_peak = v;
            st_run_score = smoothed[best];
        } else if (smoothed[best] > st_run_score) {
            st_run_peak = v;
            st_run_score = smoothed[best];
        }
    }
    st_resolve(st_run_active ? st_run_start : v + 1);
}

/* The log energies (in st_log; returns their largest) of frame j of the window starting at
 * sample s0, zeros outside the window: its samples inside the window are all in st_pcm. */
static int32_t st_part(int32_t s0, int j)
{
    int32_t a = s0 + (int32_t)j * KWS_FE_HOP_LENGTH + ST_FIRST;
    int32_t lo = a > s0 ? a : s0, hi = a + KWS_FE_WIN_LENGTH;
    if (hi > s0 + KWS_FE_CLIP_SAMPLES)
        hi = s0 + KWS_FE_CLIP_SAMPLES;
    if (hi <= lo)   /* a frame wholly past the window's end: all zeros */
        return kws_frontend_frame_part(st_pcm, 0, 0, st_log);
    return kws_frontend_frame_part(st_pcm + (lo - st_base), (int)(lo - a), (int)(hi - a), st_log);
}

#if ST_ROW_LOGS
/* st_log, whose largest is peak, into row */
static void st_store(st_row *row, int32_t peak)
{
    int j;
    row->peak = peak;
    for (j = 0; j < KWS_FE_N_MELS; j++) {
        row->hi[j] = (int16_t)(st_log[j] >> 8);
        row->lo[j] = (uint8_t)(st_log[j] & 255);
    }
}

/* frame j of window w, wherever it is */
static const st_row *st_row_of(int32_t w, int j)
{
#if ST_START_EDGES > 0
    if (j < ST_START_EDGES)
        return &st_start_edges[w % ST_EDGE_WINDOWS][j];
#endif
#if ST_END_EDGES > 0
    if (j >= ST_END_FIRST)
        return &st_end_edges[j - ST_END_FIRST];
#endif
    return &st_logs[(w * KWS_ST_STEP + j) % ST_RING];
}
#else
/* st_log's input codes into row (the peak is unused without the clamp) */
static void st_store(st_row *row, int32_t peak)
{
    (void)peak;
    kws_frontend_frame_codes(st_log, 0, row->codes);
}
#endif

static void st_window(void)
{
    int32_t w = st_next_window;
    int j, i;
#if ST_ROW_LOGS
    int32_t peak = INT32_MIN;
#if ST_END_EDGES > 0
    for (j = ST_END_FIRST; j < KWS_FE_FRAMES; j++)
        st_store(&st_end_edges[j - ST_END_FIRST], st_part(w * KWS_ST_HOP, j));
#endif
    for (j = 0; j < KWS_FE_FRAMES; j++)   /* the window's largest log energy: the top_db clamp's */
        if (st_row_of(w, j)->peak > peak)
            peak = st_row_of(w, j)->peak;
    for (j = 0; j < KWS_FE_FRAMES; j++) {
        const st_row *row = st_row_of(w, j);
        for (i = 0; i < KWS_FE_N_MELS; i++)
            st_log[i] = (int32_t)row->hi[i] * 256 + row->lo[i];
        kws_frontend_frame_codes(st_log, peak, st_codes + j * KWS_FE_N_MFCC);
    }
    kws_infer(st_codes, st_scores);
#else
    /* the inner frames are in place; the edges go where the recording's frames were */
    for (j = ST_END_FIRST; j < KWS_FE_FRAMES; j++) {
        st_part(w * KWS_ST_HOP, j);
        kws_frontend_frame_codes(st_log, 0, st_codes + j * KWS_FE_N_MFCC);
    }
#if ST_START_EDGES > 0
    for (j = 0; j < ST_START_EDGES; j++)
        for (i = 0; i < KWS_FE_N_MFCC; i++)
            st_codes[j * KWS_FE_N_MFCC + i] = st_start_edges[w % ST_EDGE_WINDOWS][j].codes[i];
#endif
    kws_infer(st_codes, st_scores);
#if KWS_ST_STEP < ST_BUF_FRAMES   /* the next window's rows: each frame a window hop up */
    memmove(st_codes, st_codes + KWS_ST_STEP * KWS_FE_N_MFCC,
            (ST_BUF_FRAMES - KWS_ST_STEP) * KWS_FE_N_MFCC * sizeof st_codes[0]);
#endif
#endif
    st_posteriors(st_scores, st_post[w % KWS_ST_SMOOTH]);
    st_next_window++;
    if (w - ST_HALF >= 0)
        st_smooth(st_next_smooth++, w);
}

/* The frame st_next_frame, whose span st_pcm now holds: into the ring (or the model's input),
 * unless it starts before the recording (such frames are only ever edges); then the start edges
 * of the next window if they are due, since they need samples of this span (they come with the
 * completion of that window's frame ST_START_EDGES - 1); then st_pcm moves on a hop. */
static void st_frame_done(void)
{
#if ST_ROW_LOGS
    if (st_base >= 0)
        st_store(&st_logs[st_next_frame % ST_RING], kws_frontend_frame(st_pcm, st_log));
#else
    /* its row in the next window to complete: it arrives no later than that window's last
     * sample, so the row is below ST_END_RAW; a frame before that window no later window reads */
    if (st_base >= 0 && st_next_frame >= st_next_window * KWS_ST_STEP) {
        kws_frontend_frame(st_pcm, st_log);
        kws_frontend_frame_codes(st_log, 0, st_codes + (st_next_frame - st_next_window * KWS_ST_STEP) * KWS_FE_N_MFCC);
    }
#endif
#if ST_START_EDGES > 0
    if (st_received == st_next_edge * KWS_ST_HOP + ST_EDGE_NEED) {
        int j;
        for (j = 0; j < ST_START_EDGES; j++)
            st_store(&st_start_edges[st_next_edge % ST_EDGE_WINDOWS][j], st_part(st_next_edge * KWS_ST_HOP, j));
        st_next_edge++;
    }
#endif
    memmove(st_pcm, st_pcm + KWS_FE_HOP_LENGTH, (KWS_FE_WIN_LENGTH - KWS_FE_HOP_LENGTH) * sizeof st_pcm[0]);
    st_base += KWS_FE_HOP_LENGTH;
    st_next_frame++;
}

static void st_sample(int16_t x)
{
    st_pcm[st_received - st_base] = x;
    st_received++;
    if (st_received == st_base + KWS_FE_WIN_LENGTH)
        st_frame_done();
    if (st_received == st_next_window * KWS_ST_HOP + KWS_FE_CLIP_SAMPLES)
        st_window();
}

void kws_push(const int16_t *pcm, int n)
{
    int i;
    for (i = 0; i < n; i++)
        st_sample(pcm[i]);
}

int32_t kws_finish(void)
{
    int32_t total = st_received, windows, last;
    windows = total <= KWS_FE_CLIP_SAMPLES ? 1 : 1 + (total - KWS_FE_CLIP_SAMPLES + KWS_ST_HOP - 1) / KWS_ST_HOP;
    while (st_next_window < windows)
        st_sample(0);
    last = windows - 1;
    while (st_next_smooth <= last)
        st_smooth(st_next_smooth++, last);
    st_close_run();
    st_resolve(INT32_MAX);
    return st_overflow ? -1 : windows;
}
