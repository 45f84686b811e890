/* Host check of the integer front end: one clip of KWS_FE_CLIP_SAMPLES PCM samples per line
 * (decimal, from the file named on the command line or standard input) -> one line of its
 * KWS_FE_FRAMES x KWS_FE_N_MFCC integer MFCCs, and with the fold, a second of the input codes. */
#include "frontend.h"
#include "pcm_read.h"

static int16_t pcm[KWS_FE_CLIP_SAMPLES];
static int32_t mfcc[KWS_FE_FRAMES * KWS_FE_N_MFCC];
#if KWS_FE_HAS_FOLD
static kws_fe_code_t codes[KWS_FE_FRAMES * KWS_FE_N_MFCC];
#endif

int main(int argc, char **argv)
{
    FILE *in = kws_pcm_open(argc, argv);
    int16_t x;
    int n = 0, i, got;
    if (in == NULL)
        return 1;
    while ((got = kws_pcm_next(in, &x)) == 1) {
        pcm[n++] = x;
        if (n == KWS_FE_CLIP_SAMPLES) {
            kws_frontend_mfcc(pcm, mfcc);
            for (i = 0; i < KWS_FE_FRAMES * KWS_FE_N_MFCC; i++)
                printf(i ? " %ld" : "%ld", (long)mfcc[i]);
            printf("\n");
#if KWS_FE_HAS_FOLD
            kws_frontend_codes(mfcc, codes);
            for (i = 0; i < KWS_FE_FRAMES * KWS_FE_N_MFCC; i++)
                printf(i ? " %d" : "%d", (int)codes[i]);
            printf("\n");
#endif
            n = 0;
        }
    }
    if (got < 0)
        return 1;
    if (n) {
        fprintf(stderr, "error: the input ends inside a clip (%d of %d samples)\n", n, KWS_FE_CLIP_SAMPLES);
        return 1;
    }
    return 0;
}
