/* The host programs' PCM reader (frontend_main.c, main_pcm.c, stream_main.c): decimal 16-bit
 * samples, whitespace separated. */
#ifndef KWS_PCM_READ_H
#define KWS_PCM_READ_H
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* The input named by argv (a file, or standard input without one or for "-"); NULL after a
 * message when the arguments or the file are wrong. */
static FILE *kws_pcm_open(int argc, char **argv)
{
    FILE *in = stdin;
    if (argc > 2) {
        fprintf(stderr, "usage: %s [pcm.txt]\n", argv[0]);
        return NULL;
    }
    if (argc == 2 && strcmp(argv[1], "-") != 0 && (in = fopen(argv[1], "r")) == NULL)
        perror(argv[1]);
    return in;
}

/* The next sample into *x: 1, or 0 at the end of the input, or -1 after an "error: ..." line
 * (a value that is not 16-bit PCM, or not a number). */
static int kws_pcm_next(FILE *in, int16_t *x)
{
    long v;
    if (fscanf(in, "%ld", &v) != 1) {
        if (feof(in))
            return 0;
        fprintf(stderr, "error: not a PCM sample in the input\n");
        return -1;
    }
    if (v < -32768 || v > 32767) {
        fprintf(stderr, "error: sample %ld is not 16-bit PCM\n", v);
        return -1;
    }
    *x = (int16_t)v;
    return 1;
}
#endif
