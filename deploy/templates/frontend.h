/* The integer MFCC front end (data_loader/integer_frontend.py specifies it; this C99 code and
 * that numpy reference agree bit for bit). 16-bit PCM in, integers out, no float, no malloc.
 * Its constants are in frontend_config.h and its tables in frontend_tables.h, written by
 * deploy/c_frontend.py for one set of feature parameters (and, for kws_frontend_codes, one
 * checkpoint's input format). */
#ifndef KWS_FRONTEND_H
#define KWS_FRONTEND_H
#include <stdint.h>
#include "frontend_config.h"

/* One clip of KWS_FE_CLIP_SAMPLES samples -> KWS_FE_FRAMES x KWS_FE_N_MFCC integer MFCCs
 * (frame-major), dB units times 2^KWS_FE_MFCC_FL. Not reentrant (static work buffers). */
void kws_frontend_mfcc(const int16_t *pcm, int32_t *mfcc);

/* The steps of kws_frontend_mfcc, for a stream (stream.c): one frame's KWS_FE_WIN_LENGTH samples
 * (its window span, zeros outside the clip) -> its KWS_FE_N_MELS Q12 log energies, floored
 * (returns their largest); a clip's KWS_FE_FRAMES x KWS_FE_N_MELS logs -> its integer MFCCs
 * (the clip's top_db clamp below its peak, then the DCT). */
int32_t kws_frontend_frame(const int16_t *x, int32_t *log);
/* kws_frontend_frame of a span whose samples first .. end - 1 are x[0 .. end - first - 1] and the
 * others zero (a stream's frames at a window's edges, read in place from its sample buffer). */
int32_t kws_frontend_frame_part(const int16_t *x, int first, int end, int32_t *log);
void kws_frontend_window(const int32_t *logs, int32_t *mfcc);

#if KWS_FE_HAS_FOLD
/* Integer MFCCs -> the model's input codes: the checkpoint's normalisation folded into a shift
 * per coefficient, rounded half away from zero and saturated to KWS_FE_CODE_BITS bits. */
void kws_frontend_codes(const int32_t *mfcc, kws_fe_code_t *codes);
/* kws_frontend_window then kws_frontend_codes for one frame of a window: its KWS_FE_N_MELS log
 * energies and the window's largest (the top_db clamp's reference) -> its KWS_FE_N_MFCC input
 * codes; a stream (stream.c) needs no buffer of the window's logs or MFCCs. */
void kws_frontend_frame_codes(const int32_t *log, int32_t peak_log, kws_fe_code_t *codes);
#endif
#endif
