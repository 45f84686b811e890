/* Command-line driver for the generated keyword-spotting network (see model.h).
 *
 * Reads one clip per line from the file named on the command line, or from standard input when
 * there is no argument or it is "-": KWS_N_INPUTS whitespace-separated integer feature codes in
 * [KWS_INPUT_MIN, KWS_INPUT_MAX]. Prints the KWS_N_CLASSES integer scores of each clip on one
 * line. Blank lines are skipped; a malformed line stops with a message and exit status 1.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

static char line[KWS_N_INPUTS * 8 + 64];
static kws_input_t features[KWS_N_INPUTS];
static int32_t scores[KWS_N_CLASSES];

static int fail(long lineno, const char *what)
{
    fprintf(stderr, "line %ld: %s\n", lineno, what);
    return 1;
}

int main(int argc, char **argv)
{
    FILE *in = stdin;
    long lineno = 0;
    if (argc > 2) {
        fprintf(stderr, "usage: %s [features.txt]\n", argv[0]);
        return 2;
    }
    if (argc == 2 && strcmp(argv[1], "-") != 0) {
        in = fopen(argv[1], "r");
        if (in == NULL) {
            perror(argv[1]);
            return 1;
        }
    }
    while (fgets(line, sizeof line, in) != NULL) {
        char *p = line;
        int n = 0, k;
        lineno++;
        if (strchr(line, '\n') == NULL && !feof(in))
            return fail(lineno, "line too long");
        for (;;) {
            char *end;
            long v;
            while (isspace((unsigned char)*p))
                p++;
            if (*p == '\0')
                break;
            errno = 0;
            v = strtol(p, &end, 10);
            if (end == p || errno != 0 || (*end != '\0' && !isspace((unsigned char)*end)))
                return fail(lineno, "not an integer feature code");
            if (v < KWS_INPUT_MIN || v > KWS_INPUT_MAX)
                return fail(lineno, "feature code out of range");
            if (n == KWS_N_INPUTS)
                return fail(lineno, "more than KWS_N_INPUTS values");
            features[n++] = (kws_input_t)v;
            p = end;
        }
        if (n == 0)
            continue;
        if (n != KWS_N_INPUTS)
            return fail(lineno, "fewer than KWS_N_INPUTS values");
        kws_infer(features, scores);
        for (k = 0; k < KWS_N_CLASSES; k++)
            printf(k ? " %ld" : "%ld", (long)scores[k]);
        putchar('\n');
    }
    if (ferror(in)) {
        perror("read");
        return 1;
    }
    return 0;
}
