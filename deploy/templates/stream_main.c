/* Host driver of the stream (stream.h): 16-bit PCM samples (decimal, whitespace separated, any
 * number) from the file named on the command line or standard input, pushed in 10 ms blocks; one
 * line per detection: "window label score_q16", then "windows <W>". Bad input: exit 1. */
#include "pcm_read.h"
#include "stream.h"

static void print_detection(int32_t window, int label, int32_t score, void *ctx)
{
    (void)ctx;
    printf("%ld %d %ld\n", (long)window, label, (long)score);
}

int main(int argc, char **argv)
{
    static int16_t block[160];
    FILE *in = kws_pcm_open(argc, argv);
    int n = 0, got;
    int32_t windows;
    if (in == NULL)
        return 1;
    kws_stream_init(print_detection, NULL);
    while ((got = kws_pcm_next(in, &block[n])) == 1) {
        n++;
        if (n == (int)(sizeof block / sizeof block[0])) {
            kws_push(block, n);
            n = 0;
        }
    }
    if (got < 0)
        return 1;
    kws_push(block, n);
    windows = kws_finish();
    if (windows < 0) {
        fprintf(stderr, "error: too many pending detections (KWS_ST_MAX_CANDIDATES)\n");
        return 1;
    }
    printf("windows %ld\n", (long)windows);
    return 0;
}
