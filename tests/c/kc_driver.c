/* A test driver for any kcompile-built model, compiled with -DKC_NAME=<name> -DKC_HEADER='"<name>.h"'.
 *
 *   kc_driver IN OUT BATCH STEPS
 * IN holds the model's inputs for one batch (row-major, in NAME_inputs order), then, when
 * STEPS > 0, its targets (NAME_targets order) and `batch` sample weights. OUT receives the
 * predict outputs, then one float loss per train step, then the state after the steps.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include KC_HEADER

#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
#define FN(suffix) CAT(KC_NAME, suffix)

static int64_t elements(const kc_tensor_info *t, int64_t batch) {
    int64_t count = 1;
    for (int i = 0; i < t->rank; i++) count *= t->dims[i] == -1 ? batch : t->dims[i];
    return count;
}

static void *allocated[256];
static int allocations;

static void *aligned(int64_t bytes) {
    size_t size = (size_t)((bytes + 63) / 64 * 64);
    void *p = allocations < 256 ? aligned_alloc(64, size ? size : 64) : NULL;
    if (!p) exit(4);
    memset(p, 0, size);
    allocated[allocations++] = p;
    return p;
}

static int fail(const char *what, int status) {
    fprintf(stderr, "%s: %s\n", what, kc_status_string(status));
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 5) return 2;
    int64_t batch = atoll(argv[3]);
    int steps = atoi(argv[4]);
    FILE *in = fopen(argv[1], "rb"), *out = fopen(argv[2], "wb");
    if (!in || !out) return 2;
    void *state = aligned(FN(_state_size)());
    void *ws = aligned(FN(_workspace_size)(batch));
    int status = FN(_init_state)(state);
    if (status) return fail("init_state", status);
    const void *x[FN(_NUM_INPUTS)];
    for (int i = 0; i < FN(_NUM_INPUTS); i++) {
        int64_t n = elements(&FN(_inputs)[i], batch);
        void *p = aligned(4 * n);
        if (fread(p, 4, (size_t)n, in) != (size_t)n) return 3;
        x[i] = p;
    }
    void *y_out[FN(_NUM_OUTPUTS)];
    for (int i = 0; i < FN(_NUM_OUTPUTS); i++) y_out[i] = aligned(4 * elements(&FN(_outputs)[i], batch));
    status = FN(_predict)(state, batch, x, y_out, ws);
    if (status) return fail("predict", status);
    for (int i = 0; i < FN(_NUM_OUTPUTS); i++)
        fwrite(y_out[i], 4, (size_t)elements(&FN(_outputs)[i], batch), out);
#ifdef KC_TRAIN
    const void *targets[FN(_NUM_TARGETS)];
    for (int i = 0; i < FN(_NUM_TARGETS); i++) {
        int64_t n = elements(&FN(_targets)[i], batch);
        void *p = aligned(4 * n);
        if (fread(p, 4, (size_t)n, in) != (size_t)n) return 3;
        targets[i] = p;
    }
    float *weights = aligned(4 * batch);
    if (fread(weights, 4, (size_t)batch, in) != (size_t)batch) return 3;
    for (int s = 0; s < steps; s++) {
        float loss;
        status = FN(_train_step)(state, batch, x, targets, s % 2 ? weights : NULL, &loss, ws);
        if (status) return fail("train_step", status);
        fwrite(&loss, 4, 1, out);
    }
    float eval_loss;
    status = FN(_evaluate)(state, batch, x, targets, &eval_loss, ws);
    if (status) return fail("evaluate", status);
    fwrite(&eval_loss, 4, 1, out);
#endif
    fwrite(state, 1, (size_t)FN(_state_size)(), out);
    fclose(out);
    fclose(in);
    while (allocations) free(allocated[--allocations]);
    return 0;
}
