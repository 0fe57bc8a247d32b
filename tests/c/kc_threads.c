/* Two threads call NAME_predict on one state at once, each with its own workspace; every result
 * must equal the serial one. Compiled with -DKC_NAME=<name> -DKC_HEADER='"<name>.h"' -pthread.
 *   kc_threads BATCH ROUNDS   (exit 0: all equal) */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include KC_HEADER

#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
#define FN(suffix) CAT(KC_NAME, suffix)

static void *state;
static int64_t batch, rounds, in_count, out_count;
static float *input, *expected;

static void *aligned(int64_t bytes) {
    void *p = aligned_alloc(64, (size_t)((bytes + 63) / 64 * 64));
    if (!p) exit(4);
    memset(p, 0, (size_t)((bytes + 63) / 64 * 64));
    return p;
}

static void *worker(void *arg) {
    float *out = aligned(4 * out_count);
    void *ws = aligned(FN(_workspace_size)(batch));
    const void *ins[1] = {input};
    void *outs[1] = {out};
    long bad = 0;
    for (int64_t r = 0; r < rounds; r++) {
        if (FN(_predict)(state, batch, ins, outs, ws) != KC_OK) bad++;
        else if (memcmp(out, expected, (size_t)(4 * out_count))) bad++;
    }
    free(out);
    free(ws);
    *(long *)arg = bad;
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3 || FN(_NUM_INPUTS) != 1 || FN(_NUM_OUTPUTS) != 1) return 2;
    batch = atoll(argv[1]);
    rounds = atoll(argv[2]);
    in_count = out_count = batch;
    for (int i = 1; i < FN(_inputs)[0].rank; i++) in_count *= FN(_inputs)[0].dims[i];
    for (int i = 1; i < FN(_outputs)[0].rank; i++) out_count *= FN(_outputs)[0].dims[i];
    state = aligned(FN(_state_size)());
    if (FN(_init_state)(state)) return 3;
    input = aligned(4 * in_count);
    for (int64_t i = 0; i < in_count; i++) input[i] = (float)(i % 11) / 11.0f - 0.3f;
    expected = aligned(4 * out_count);
    void *ws = aligned(FN(_workspace_size)(batch));
    const void *ins[1] = {input};
    void *outs[1] = {expected};
    if (FN(_predict)(state, batch, ins, outs, ws)) return 3;
    pthread_t threads[2];
    long bad[2] = {0, 0};
    for (int t = 0; t < 2; t++) pthread_create(&threads[t], NULL, worker, &bad[t]);
    for (int t = 0; t < 2; t++) pthread_join(threads[t], NULL);
    printf("mismatches: %ld %ld\n", bad[0], bad[1]);
    free(ws); free(state); free(input); free(expected);
    return bad[0] || bad[1];
}
