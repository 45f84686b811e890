/* Test harness of the microcontroller build: replays the test split's clips (feature codes, in
 * test_data.h) through kws_infer, compares every score with the Python integer engine's, counts
 * instructions per inference with SysTick and reports flash and RAM from the linker's symbols.
 * With the stream (KWS_STREAM), it also pushes a recording's PCM through kws_push in 10 ms hops
 * (front end, model every configured hop, detector: stream.c), compares every detection with
 * predict.py's and counts instructions per hop. Output goes through semihosting; the last line
 * is the summary. No malloc, no printf. */
#include <stdint.h>

#include "firmware.h"
#include "model.h"
#include "test_data.h"
#if KWS_STREAM
#include "frontend.h"
#include "stream.h"
#endif

/* SysTick: a 24-bit down counter at the board's 25 MHz clock. Under QEMU -icount shift=0 one
 * instruction takes 1 ns of virtual time, so one tick is 40 instructions. */
#define SYST_CSR (*(volatile uint32_t *)0xE000E010)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018)
#define SYST_MASK 0xFFFFFFu
#define INSTRUCTIONS_PER_TICK 40u
#define CORE_HZ 80000000u          /* the reference core for the real-time share */
#define INFERENCES_PER_SECOND 10u  /* one inference every 100 ms */

extern const char __flash_start, __flash_end, __model_text_start, __model_text_end;
extern const char __model_data_start, __model_data_end, __model_bss_start, __model_bss_end;
extern const char __frontend_text_start, __frontend_text_end, __frontend_data_start, __frontend_data_end;
extern const char __frontend_bss_start, __frontend_bss_end;
extern const char __stream_text_start, __stream_text_end, __stream_data_start, __stream_data_end;
extern const char __stream_bss_start, __stream_bss_end;
extern const char __test_data_start, __test_data_end;
extern const char __data_start, __data_end, __bss_start, __bss_end;

/* Per-layer counts: model_layers.o is model.c built with KWS_LAYER_HOOK = kws_fw_layer_mark and
 * kws_infer renamed kws_infer_layers, so the measured kws_infer above has no hook calls. The
 * first LAYER_CLIPS clips run through it; a layer's count includes one hook call (a few
 * instructions). */
#define LAYER_CLIPS 10u
#define PART_FRAMES 100u   /* frames of the recording the front end's parts are timed on */
int kws_infer_layers(const kws_input_t *features, int32_t *scores);
void kws_fw_layer_mark(int layer);
static uint32_t layer_mark[KWS_N_LAYERS + 1];

void kws_fw_layer_mark(int layer)
{
    layer_mark[layer] = SYST_CVR;
}

static char out[512];
static int out_len;

static void put(const char *s)
{
    while (*s && out_len < (int)sizeof out - 2)
        out[out_len++] = *s++;
}

static void put_u(uint64_t v)
{
    char digits[24];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n && out_len < (int)sizeof out - 2)
        out[out_len++] = digits[--n];
}

static void put_i(int64_t v)
{
    if (v < 0) {
        put("-");
        put_u((uint64_t)(-v));
    } else {
        put_u((uint64_t)v);
    }
}

/* v / 100 with two decimals. */
static void put_hundredths(uint64_t v)
{
    put_u(v / 100);
    put(".");
    put_u(v / 10 % 10);
    put_u(v % 10);
}

static void flush_line(void)
{
    out[out_len++] = '\n';
    out[out_len] = '\0';
    kws_fw_print(out);
    out_len = 0;
}

static uint32_t span(const char *start, const char *end)
{
    return (uint32_t)(end - start);
}

/* "flash and RAM of NAME: code and constants T B, data D B, bss B B" */
static void put_part(const char *name, uint32_t text, uint32_t data, uint32_t bss)
{
    put("flash and RAM of ");
    put(name);
    put(": code and constants ");
    put_u(text);
    put(" B, data ");
    put_u(data);
    put(" B, bss ");
    put_u(bss);
    put(" B");
    flush_line();
}

#if KWS_STREAM
/* The stream's detections as they come, compared with predict.py's (kws_test_detections). */
static uint32_t found, matching, first_wrong = 0xFFFFFFFFu;
static const uint32_t expected_detections = KWS_STREAM_DETECTIONS;   /* a variable: it may be 0 */
static int32_t wrong[3];

static void on_detect(int32_t window, int label, int32_t score, void *ctx)
{
    const int32_t *expected = kws_test_detections + 3u * found;
    (void)ctx;
    if (found < expected_detections && expected[0] == window && expected[1] == label && expected[2] == score) {
        matching++;
    } else if (first_wrong == 0xFFFFFFFFu) {
        first_wrong = found;
        wrong[0] = window;
        wrong[1] = label;
        wrong[2] = score;
    }
    found++;
}
#endif

int main(void)
{
    static int32_t scores[KWS_N_CLASSES];
    uint32_t clip, k, differing = 0, first_differing = 0;
    uint64_t ticks = 0, overhead;
    uint32_t start, stop, min_ticks = SYST_MASK, max_ticks = 0;
    const uint32_t *startup_low = kws_fw_stack_low_water(), *low, *sp;
    uint32_t model_stack, model_flash, model_ram, harness_flash, harness_ram, test_flash, peak_stack;
    uint32_t kws_flash, kws_ram;
#if KWS_STREAM
    uint64_t hop_ticks = 0;
    uint32_t max_hop_ticks = 0, hops = 0, finish_ticks, pipeline_stack, part_frames;
    uint64_t frame_ticks = 0, dct_ticks = 0;
    int32_t windows;
    int detections_ok;
#endif

    SYST_RVR = SYST_MASK;
    SYST_CVR = 0;
    SYST_CSR = 5;   /* enable, processor clock, no interrupt */
    start = SYST_CVR;
    stop = SYST_CVR;
    overhead = (start - stop) & SYST_MASK;

    for (clip = 0; clip < KWS_TEST_CLIPS; clip++) {
        const kws_input_t *features = kws_test_features + (uint32_t)clip * KWS_N_INPUTS;
        const int32_t *expected = kws_test_scores + (uint32_t)clip * KWS_N_CLASSES;
        uint32_t t;
        if (clip == 0) {
            kws_fw_paint_stack();
            __asm__ volatile("mov %0, sp" : "=r"(sp));
        }
        start = SYST_CVR;
        kws_infer(features, scores);
        stop = SYST_CVR;
        t = ((start - stop) & SYST_MASK) - (uint32_t)overhead;
        ticks += t;
        min_ticks = t < min_ticks ? t : min_ticks;
        max_ticks = t > max_ticks ? t : max_ticks;
        if (clip == 0)
            model_stack = (uint32_t)((const char *)sp - (const char *)kws_fw_stack_low_water());
        for (k = 0; k < KWS_N_CLASSES; k++)
            if (scores[k] != expected[k])
                break;
        if (k < KWS_N_CLASSES && differing++ == 0)
            first_differing = clip;
    }
    low = kws_fw_stack_low_water();
#if KWS_STREAM
    {
        uint32_t i, t;
        const uint32_t *stream_low;
        kws_fw_paint_stack();
        __asm__ volatile("mov %0, sp" : "=r"(sp));
        kws_stream_init(on_detect, 0);
        for (i = 0; i < KWS_STREAM_SAMPLES; i += KWS_STREAM_HOP) {
            int n = (int)(KWS_STREAM_SAMPLES - i < KWS_STREAM_HOP ? KWS_STREAM_SAMPLES - i : KWS_STREAM_HOP);
            start = SYST_CVR;
            kws_push(kws_test_stream + i, n);
            stop = SYST_CVR;
            t = ((start - stop) & SYST_MASK) - (uint32_t)overhead;
            hop_ticks += t;
            max_hop_ticks = t > max_hop_ticks ? t : max_hop_ticks;
            hops++;
        }
        start = SYST_CVR;
        windows = kws_finish();
        stop = SYST_CVR;
        finish_ticks = ((start - stop) & SYST_MASK) - (uint32_t)overhead;
        stream_low = kws_fw_stack_low_water();
        pipeline_stack = (uint32_t)((const char *)sp - (const char *)stream_low);
        low = stream_low < low ? stream_low : low;
        detections_ok = windows == KWS_STREAM_WINDOWS && found == KWS_STREAM_DETECTIONS
                        && matching == KWS_STREAM_DETECTIONS;
    }
    {
        /* the front end's parts alone, on the recording's first frames: one frame's log energies
         * (every hop), one frame's clamp, DCT and fold (KWS_FE_FRAMES of them per window) */
        static int32_t log[KWS_FE_N_MELS];
        static kws_input_t codes[KWS_FE_N_MFCC];
        uint32_t f, n = 0;
        for (f = 0; f < PART_FRAMES && f * KWS_FE_HOP_LENGTH + KWS_FE_WIN_LENGTH <= KWS_STREAM_SAMPLES; f++) {
            int32_t peak;
            start = SYST_CVR;
            peak = kws_frontend_frame(kws_test_stream + f * KWS_FE_HOP_LENGTH, log);
            stop = SYST_CVR;
            frame_ticks += ((start - stop) & SYST_MASK) - (uint32_t)overhead;
            start = SYST_CVR;
            kws_frontend_frame_codes(log, peak, codes);
            stop = SYST_CVR;
            dct_ticks += ((start - stop) & SYST_MASK) - (uint32_t)overhead;
            n++;
        }
        part_frames = n;
    }
#endif
    {
        static const char *const names[KWS_N_LAYERS] = KWS_LAYER_NAMES;
        static const uint32_t layer_macs[KWS_N_LAYERS] = KWS_LAYER_MACS;
        uint64_t layer_ticks[KWS_N_LAYERS] = {0};
        uint32_t n = KWS_TEST_CLIPS < LAYER_CLIPS ? KWS_TEST_CLIPS : LAYER_CLIPS;
        for (clip = 0; clip < n; clip++) {
            kws_infer_layers(kws_test_features + (uint32_t)clip * KWS_N_INPUTS, scores);
            for (k = 0; k < KWS_N_LAYERS; k++)
                layer_ticks[k] += (layer_mark[k] - layer_mark[k + 1]) & SYST_MASK;
        }
        for (k = 0; k < KWS_N_LAYERS; k++) {
            uint64_t instructions = (layer_ticks[k] * INSTRUCTIONS_PER_TICK + n / 2) / n;
            put("layer ");
            put(names[k]);
            put(": ");
            put_u(instructions);
            put(" instructions per inference, ");
            put_u(layer_macs[k]);
            put(" MACs executed (");
            put_hundredths((instructions * 100 + layer_macs[k] / 2) / layer_macs[k]);
            put(" per MAC)");
            flush_line();
        }
    }
    peak_stack = (uint32_t)((const char *)&__stack_top - (const char *)(low < startup_low ? low : startup_low));

    model_flash = span(&__model_text_start, &__model_text_end) + span(&__model_data_start, &__model_data_end);
    model_ram = span(&__model_data_start, &__model_data_end) + span(&__model_bss_start, &__model_bss_end)
                + model_stack;
    kws_flash = model_flash;
    kws_ram = model_ram;
#if KWS_STREAM
    /* the keyword spotter: front end, model and stream with its detector, the pipeline's peak stack */
    kws_flash += span(&__frontend_text_start, &__frontend_text_end) + span(&__frontend_data_start, &__frontend_data_end)
                 + span(&__stream_text_start, &__stream_text_end) + span(&__stream_data_start, &__stream_data_end);
    kws_ram += span(&__frontend_data_start, &__frontend_data_end) + span(&__frontend_bss_start, &__frontend_bss_end)
               + span(&__stream_data_start, &__stream_data_end) + span(&__stream_bss_start, &__stream_bss_end)
               - model_stack + (pipeline_stack > model_stack ? pipeline_stack : model_stack);
#endif
    test_flash = span(&__test_data_start, &__test_data_end);
    harness_flash = span(&__flash_start, &__flash_end) - kws_flash - test_flash;
    harness_ram = span(&__data_start, &__data_end) + span(&__bss_start, &__bss_end)
                  - (model_ram - model_stack) + peak_stack;
#if KWS_STREAM
    harness_ram -= span(&__frontend_data_start, &__frontend_data_end) + span(&__frontend_bss_start, &__frontend_bss_end)
                   + span(&__stream_data_start, &__stream_data_end) + span(&__stream_bss_start, &__stream_bss_end);
#endif

    put_part("model", span(&__model_text_start, &__model_text_end), span(&__model_data_start, &__model_data_end),
             span(&__model_bss_start, &__model_bss_end));
#if KWS_STREAM
    put_part("front end", span(&__frontend_text_start, &__frontend_text_end),
             span(&__frontend_data_start, &__frontend_data_end), span(&__frontend_bss_start, &__frontend_bss_end));
    put_part("stream", span(&__stream_text_start, &__stream_text_end),
             span(&__stream_data_start, &__stream_data_end), span(&__stream_bss_start, &__stream_bss_end));
#endif
    put("peak stack: model ");
    put_u(model_stack);
    put(" B (one inference)");
#if KWS_STREAM
    put(", pipeline ");
    put_u(pipeline_stack);
    put(" B (kws_push and kws_finish: front end, model, detector)");
#endif
    flush_line();
    put("test harness and C library: flash ");
    put_u(harness_flash);
    put(" B, RAM ");
    put_u(harness_ram);
    put(" B (peak stack of the whole program ");
    put_u(peak_stack);
    put(" B); test data: flash ");
    put_u(test_flash);
    put(" B");
    flush_line();
#if KWS_STREAM
    put("stream: ");
    put_u(KWS_STREAM_SAMPLES);
    put(" samples, ");
    put_u(hops);
    put(" hops, ");
    put_i(windows);
    put(" windows; instructions per hop: mean ");
    put_u((hop_ticks * INSTRUCTIONS_PER_TICK + hops / 2) / hops);
    put(", max ");
    put_u((uint64_t)max_hop_ticks * INSTRUCTIONS_PER_TICK);
    put("; kws_finish ");
    put_u((uint64_t)finish_ticks * INSTRUCTIONS_PER_TICK);
    flush_line();
    if (part_frames) {
        put("front end: ");
        put_u((frame_ticks * INSTRUCTIONS_PER_TICK + part_frames / 2) / part_frames);
        put(" instructions per frame (kws_frontend_frame), ");
        put_u((dct_ticks * INSTRUCTIONS_PER_TICK + part_frames / 2) / part_frames);
        put(" per frame of a window (kws_frontend_frame_codes: clamp, DCT, fold), mean over ");
        put_u(part_frames);
        put(" frames");
        flush_line();
    }
    if (!detections_ok) {
        put("stream: ");
        put_i(windows);
        put(" windows (expected ");
        put_i(KWS_STREAM_WINDOWS);
        put("), ");
        put_u(found);
        put(" detections (expected ");
        put_u(KWS_STREAM_DETECTIONS);
        put(")");
        if (first_wrong != 0xFFFFFFFFu) {
            put("; detection ");
            put_u(first_wrong);
            put(": window ");
            put_i(wrong[0]);
            put(" label ");
            put_i(wrong[1]);
            put(" score ");
            put_i(wrong[2]);
            if (first_wrong < expected_detections) {
                const int32_t *e = kws_test_detections + 3u * first_wrong;
                put(", expected window ");
                put_i(e[0]);
                put(" label ");
                put_i(e[1]);
                put(" score ");
                put_i(e[2]);
            }
        }
        flush_line();
    }
#endif
    put("instructions per inference: min ");
    put_u((uint64_t)min_ticks * INSTRUCTIONS_PER_TICK);
    put(", max ");
    put_u((uint64_t)max_ticks * INSTRUCTIONS_PER_TICK);
    put(" (SysTick resolution ");
    put_u(INSTRUCTIONS_PER_TICK);
    put("); ");
    put_u(KWS_MACS);
    put(" MACs per classification (");
    put_u(KWS_MACS_COMPUTED);
    put(" executed: outputs a max pool drops are skipped)");
    flush_line();
    if (differing) {
        const int32_t *expected = kws_test_scores + first_differing * KWS_N_CLASSES;
        kws_infer(kws_test_features + first_differing * KWS_N_INPUTS, scores);
        put("clip ");
        put_u(first_differing);
        put(": scores");
        for (k = 0; k < KWS_N_CLASSES; k++) {
            put(" ");
            put_i(scores[k]);
        }
        put(", expected");
        for (k = 0; k < KWS_N_CLASSES; k++) {
            put(" ");
            put_i(expected[k]);
        }
        flush_line();
    }
    {
        /* mean instructions per inference, rounded */
        uint64_t instructions = (ticks * INSTRUCTIONS_PER_TICK + KWS_TEST_CLIPS / 2) / KWS_TEST_CLIPS;
        put(KWS_TARGET ": ");
        if (differing) {
            put("scores differ on ");
            put_u(differing);
            put(" of ");
        } else {
            put("scores identical on ");
        }
        put_u(KWS_TEST_CLIPS);
        put(" clips");
#if KWS_STREAM
        if (detections_ok) {
            put(", detections identical (");
            put_u(KWS_STREAM_DETECTIONS);
            put(")");
        } else {
            put(", detections differ (");
            put_u(matching);
            put(" of ");
            put_u(KWS_STREAM_DETECTIONS);
            put(" identical, ");
            put_u(found);
            put(" found)");
        }
#endif
        put("; flash ");
        put_u(kws_flash);
        put(" B, RAM ");
        put_u(kws_ram);
        put(" B; ");
        put_u(instructions);
        put(" instructions per inference (");
        put_hundredths((instructions * 100 + KWS_MACS / 2) / KWS_MACS);
        put(" per MAC); ");
#if KWS_STREAM
        /* the whole pipeline in real time: the mean hop, KWS_STREAM_HOPS_PER_SECOND hops a second */
        put_hundredths((hop_ticks * INSTRUCTIONS_PER_TICK * KWS_STREAM_HOPS_PER_SECOND * 10000 / hops + CORE_HZ / 2)
                       / CORE_HZ);
#else
        put_hundredths((instructions * INFERENCES_PER_SECOND * 10000 + CORE_HZ / 2) / CORE_HZ);
#endif
        put("% of an 80 MHz core");
        flush_line();
    }
#if KWS_STREAM
    if (!detections_ok)
        return 1;
#endif
    return differing ? 1 : 0;
}
