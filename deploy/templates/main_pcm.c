/* Command-line driver of the whole integer pipeline: PCM in, scores out (see frontend.h, model.h).
 *
 * Reads one clip per line from the file named on the command line, or from standard input when
 * there is no argument or it is "-": KWS_FE_CLIP_SAMPLES whitespace-separated 16-bit PCM samples.
 * Runs the integer front end, its folded normalisation and the network, and prints the
 * KWS_N_CLASSES integer scores of each clip on one line. Bad input: a message, exit status 1.
 */
#include "frontend.h"
#include "model.h"
#include "pcm_read.h"

#if KWS_FE_FRAMES * KWS_FE_N_MFCC != KWS_N_INPUTS
#error "the front end's features do not match the model's inputs"
#endif

static int16_t pcm[KWS_FE_CLIP_SAMPLES];
static int32_t mfcc[KWS_N_INPUTS];
static kws_input_t features[KWS_N_INPUTS];
static int32_t scores[KWS_N_CLASSES];

int main(int argc, char **argv)
{
    FILE *in;
    int16_t x;
    int n = 0, k, got;
    if (argc > 2) {
        fprintf(stderr, "usage: %s [pcm.txt]\n", argv[0]);
        return 2;
    }
    if ((in = kws_pcm_open(argc, argv)) == NULL)
        return 1;
    while ((got = kws_pcm_next(in, &x)) == 1) {
        pcm[n++] = x;
        if (n == KWS_FE_CLIP_SAMPLES) {
            kws_frontend_mfcc(pcm, mfcc);
            kws_frontend_codes(mfcc, features);
            kws_infer(features, scores);
            for (k = 0; k < KWS_N_CLASSES; k++)
                printf(k ? " %ld" : "%ld", (long)scores[k]);
            putchar('\n');
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
