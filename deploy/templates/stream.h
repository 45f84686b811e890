/* A keyword spotter on a stream of 16-bit PCM (deploy/c_stream.py writes stream_config.h): every
 * new 10 ms frame's log mel energies (or, without the top_db clamp, its input codes) into a ring,
 * every KWS_ST_HOP samples the window of the last KWS_FE_CLIP_SAMPLES samples through the
 * integer front end and the model, its posteriors, their centred moving average, threshold and
 * refractory time exactly as model/detector.py's integer detector (predict.py on this
 * checkpoint). Static buffers, no malloc, no float. Not reentrant. */
#ifndef KWS_STREAM_H
#define KWS_STREAM_H
#include <stdint.h>

/* A detection: the window whose smoothed posterior peaked (it starts at window * KWS_ST_HOP
 * samples), the class, and the smoothed posterior in Q16. */
typedef void (*kws_detect_fn)(int32_t window, int label, int32_t score_q16, void *ctx);

void kws_stream_init(kws_detect_fn on_detect, void *ctx);
/* n samples of the stream; detections are reported (time-sorted) once nothing later can change them. */
void kws_push(const int16_t *pcm, int n);
/* The end of the stream: the last window zero padded as predict.py pads it, every pending
 * detection reported. Returns the number of windows, or -1 if more than KWS_ST_MAX_CANDIDATES
 * candidates were pending at once (then detections may differ). */
int32_t kws_finish(void);
#endif
