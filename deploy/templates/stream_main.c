/* Host driver of the stream (stream.h): 16-bit PCM samples (decimal, whitespace separated, any
 * number) from the file named on the command line or standard input, pushed in 10 ms blocks; one
 * line per detection: "window label score_q16", then "windows <W>". Bad input: exit 1. */
#include <stdio.h>
#include <string.h>
#include "stream.h"

static void print_detection(int32_t window, int label, int32_t score, void *ctx)
{
    (void)ctx;
    printf("%ld %d %ld\n", (long)window, label, (long)score);
}

int main(int argc, char **argv)
{
    static int16_t block[160];
    FILE *in = stdin;
    long v;
    int n = 0;
    int32_t windows;
    if (argc > 2) {
        fprintf(stderr, "usage: %s [pcm.txt]\n", argv[0]);
        return 1;
    }
    if (argc == 2 && strcmp(argv[1], "-") != 0 && !(in = fopen(argv[1], "r"))) {
        perror(argv[1]);
        return 1;
    }
    kws_stream_init(print_detection, NULL);
    while (fscanf(in, "%ld", &v) == 1) {
        if (v < -32768 || v > 32767) {
            fprintf(stderr, "error: sample %ld is not 16-bit PCM\n", v);
            return 1;
        }
        block[n++] = (int16_t)v;
        if (n == (int)(sizeof block / sizeof block[0])) {
            kws_push(block, n);
            n = 0;
        }
    }
    if (!feof(in)) {
        fprintf(stderr, "error: not a PCM sample in the input\n");
        return 1;
    }
    kws_push(block, n);
    windows = kws_finish();
    if (windows < 0) {
        fprintf(stderr, "error: too many pending detections (KWS_ST_MAX_CANDIDATES)\n");
        return 1;
    }
    printf("windows %ld\n", (long)windows);
    return 0;
}
