/* A libFuzzer target over the C entries of any kcompile-built model (runtime/kcompile.h).
 *
 * Build (tests/test_fuzzing.py does this) against a model built with predict, train and evaluate:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -I DIR \
 *         -DKC_NAME=NAME -DKC_HEADER='"NAME.h"' tests/c/kc_fuzz_entries.c DIR/NAME.o -lm -lpthread
 *
 * Run longer by hand: ./kc_fuzz_entries -max_total_time=600 CORPUS (seeds: tests/fuzz/corpus_entries),
 * or KCOMPILE_FUZZ_SECONDS=600 python -m pytest tests/test_fuzzing.py -k c_entries.
 *
 * Each input is a little program: a sequence of calls to NAME_workspace_size, NAME_state_size,
 * NAME_init_state, NAME_predict, NAME_train_step and NAME_evaluate with fuzzer-chosen batch sizes
 * (1..ALLOC_MAX_BATCH, 0, negative, NAME_MAX_BATCH and just past it, values near 2^63), NULL or
 * misaligned state / workspace / pointer arrays / tensors / loss / sample_weight, and tensor data
 * taken from the input bytes (NaN, Inf, denormals, any int32 index).
 *
 * What the ABI promises, and what is checked here:
 *  - every entry returns one of the kc_status codes; KC_OK exactly when every argument is valid,
 *    KC_ERR_BAD_BATCH when only the batch is wrong;
 *  - NAME_workspace_size returns -1 for a batch outside 1..NAME_MAX_BATCH and a positive size
 *    otherwise, never a wrapped one;
 *  - with valid arguments an entry touches only the documented bytes: every buffer is allocated
 *    with exactly its documented size (state_size, workspace_size(batch), batch * row elements)
 *    between guard pages, so any access past them faults; an entry refusing its arguments touches
 *    nothing (the buffers given with a refused batch are one row long).
 * A broken promise aborts, which libFuzzer reports as a crash with the input that caused it.
 */
#define _DEFAULT_SOURCE
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include KC_HEADER

#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
#define FN(suffix) CAT(KC_NAME, suffix)

#define ALLOC_MAX_BATCH 48   /* buffers are allocated for valid batches up to this size */
#define MAX_CALLS 12         /* calls per input */

typedef struct {
    const uint8_t *data;
    size_t size, pos;
} reader;

static uint64_t take(reader *r, int nbytes) {
    uint64_t v = 0;
    for (int i = 0; i < nbytes; i++) v |= (uint64_t)(r->pos < r->size ? r->data[r->pos++] : 0) << (8 * i);
    return v;
}

static int remaining(const reader *r) { return r->pos < r->size; }

static void broken(const char *what, int64_t batch, int status) {
    fprintf(stderr, "kc_fuzz_entries: %s (batch %lld, status %d: %s)\n", what, (long long)batch, status,
            kc_status_string(status));
    abort();
}

/* A batch size: mostly small valid ones, then the edges, then any 64-bit value. */
static int64_t pick_batch(reader *r) {
    static const int64_t edges[] = {0, -1, INT64_MIN, INT64_MAX, INT64_MAX - 1, (int64_t)1 << 62,
                                    ((int64_t)1 << 31) + 1, (int64_t)1 << 32, -((int64_t)1 << 32),
                                    FN(_MAX_BATCH), FN(_MAX_BATCH) + 1, FN(_MAX_BATCH) - 1, INT64_MAX / 4 + 1};
    unsigned mode = (unsigned)take(r, 1);
    if (mode < 160) return 1 + (int64_t)(take(r, 1) % ALLOC_MAX_BATCH);
    if (mode < 224) return edges[take(r, 1) % (sizeof edges / sizeof edges[0])];
    return (int64_t)take(r, 8);
}

/* (a model built with a fixed batch size is not supported: build the fuzzed model without one) */
static int batch_is_valid(int64_t batch) {
    return batch >= 1 && batch <= FN(_MAX_BATCH);
}

static int64_t elements(const kc_tensor_info *t, int64_t batch) {
    int64_t count = 1;
    for (int i = 0; i < t->rank; i++) count *= t->dims[i] == -1 ? batch : t->dims[i];
    return count;
}

/* Tensor data from the input: float32 as raw bit patterns (any NaN, Inf, denormal) or a few
 * special values; int32 as any value (the kernels clamp indices). */
static void fill(reader *r, const kc_tensor_info *t, void *p, int64_t count) {
    static const float specials[] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 1.0f, 1e38f, -1e38f, 1e-45f};
    unsigned mode = (unsigned)take(r, 1) % 4;
    for (int64_t i = 0; i < count; i++) {
        if (t->dtype == KC_INT32) {
            ((int32_t *)p)[i] = mode == 0 ? (int32_t)take(r, 4) : (int32_t)(take(r, 1) % 16) - 2;
        } else if (mode == 0) {
            uint32_t bits = (uint32_t)take(r, 4);
            memcpy((float *)p + i, &bits, 4);
        } else if (mode == 1) {
            ((float *)p)[i] = specials[take(r, 1) % (sizeof specials / sizeof specials[0])];
        } else {
            ((float *)p)[i] = (float)((int)take(r, 1) - 128) / 32.0f;
        }
    }
}

/* Pointer mutations: each argument may be given as it is, NULL or misaligned. */
enum { AS_IS, NULLED, SHIFTED };

static int mutation(reader *r, int rare) {
    unsigned v = (unsigned)take(r, 1);
    if (v % rare) return AS_IS;
    return v & 0x80 ? NULLED : SHIFTED;
}

static void *mutate(void *p, int how, uintptr_t shift) {
    if (how == NULLED) return NULL;
    if (how == SHIFTED) return (char *)p + shift;
    return p;
}

typedef struct {
    void *state, *ws;                          /* exactly state_size / workspace_size(batch) bytes */
    void *x[64], *y[64], *out[64];
    float *weights;
} buffers;

/* Buffers between inaccessible guard pages, ending as close to the upper one as their alignment
 * allows: the model's object is not instrumented by AddressSanitizer, so an access past a
 * buffer must fault to be seen (electric-fence style); libFuzzer reports the SEGV with its input. */
static struct { void *p, *base; size_t length; } mappings[256];

static void *exact(size_t bytes, size_t alignment) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t body = (bytes + page - 1) / page * page;
    size_t length = body + 2 * page;
    char *base = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) abort();
    if (mprotect(base, page, PROT_NONE) || mprotect(base + page + body, page, PROT_NONE)) abort();
    uintptr_t end = (uintptr_t)(base + page + body);
    void *p = (void *)((end - bytes) / alignment * alignment);
    for (int i = 0; i < 256; i++)
        if (!mappings[i].p) {
            mappings[i].p = p, mappings[i].base = base, mappings[i].length = length;
            return p;
        }
    abort();
}

static void free_exact(void *p) {
    if (!p) return;
    for (int i = 0; i < 256; i++)
        if (mappings[i].p == p) {
            munmap(mappings[i].base, mappings[i].length);
            mappings[i].p = NULL;
            return;
        }
    abort();
}

static void release(buffers *b) {
    free_exact(b->ws);
    free_exact(b->weights);
    for (int i = 0; i < 64; i++) {
        free_exact(b->x[i]);
        free_exact(b->y[i]);
        free_exact(b->out[i]);
    }
    void *state = b->state;
    memset(b, 0, sizeof *b);
    b->state = state;
}

/* The buffers of one call at `batch` (one row when the batch is refused). */
static void allocate(reader *r, buffers *b, int64_t batch) {
    int64_t rows = batch_is_valid(batch) && batch <= ALLOC_MAX_BATCH ? batch : 1;
    int64_t ws_bytes = FN(_workspace_size)(rows);
    if (ws_bytes <= 0) broken("workspace_size of a valid batch is not positive", rows, 0);
    b->ws = exact((size_t)ws_bytes, 64);
    memset(b->ws, 0xA5, (size_t)ws_bytes);       /* scratch holds garbage between calls */
    for (int i = 0; i < FN(_NUM_INPUTS); i++) {
        int64_t n = elements(&FN(_inputs)[i], rows);
        b->x[i] = exact((size_t)(4 * n), 4);
        fill(r, &FN(_inputs)[i], b->x[i], n);
    }
    for (int i = 0; i < FN(_NUM_OUTPUTS); i++) b->out[i] = exact((size_t)(4 * elements(&FN(_outputs)[i], rows)), 4);
#ifdef KC_TRAIN
    for (int i = 0; i < FN(_NUM_TARGETS); i++) {
        int64_t n = elements(&FN(_targets)[i], rows);
        b->y[i] = exact((size_t)(4 * n), 4);
        fill(r, &FN(_targets)[i], b->y[i], n);
    }
    b->weights = exact((size_t)(4 * rows), 4);
    fill(r, &(kc_tensor_info){"w", KC_FLOAT32, 1, {-1}}, b->weights, rows);
#endif
}

/* Checks the status of an entry given `invalid_pointer` (some pointer NULL or misaligned) and `batch`. */
static void expect(const char *entry, int status, int invalid_pointer, int64_t batch) {
    if (status < KC_OK || status > KC_ERR_NO_WEIGHTS) broken(entry, batch, status);
    if (!invalid_pointer && batch_is_valid(batch) && status != KC_OK) broken(entry, batch, status);
    if (!invalid_pointer && !batch_is_valid(batch) && status != KC_ERR_BAD_BATCH) broken(entry, batch, status);
    if (invalid_pointer && status == KC_OK) broken(entry, batch, status);
    if (invalid_pointer && status == KC_ERR_NO_WEIGHTS) broken(entry, batch, status);
}

static void call_predict(reader *r, buffers *b, int64_t batch) {
    int bad = 0;
    int m_state = mutation(r, 8), m_ws = mutation(r, 8), m_in = mutation(r, 16), m_out = mutation(r, 16);
    int which = (int)take(r, 1), m_one = mutation(r, 6);
    const void *ins[64];
    void *outs[64];
    for (int i = 0; i < FN(_NUM_INPUTS); i++) ins[i] = b->x[i];
    for (int i = 0; i < FN(_NUM_OUTPUTS); i++) outs[i] = b->out[i];
    if (m_one != AS_IS) {      /* one tensor pointer NULL or off its element alignment */
        uintptr_t shift = 1 + take(r, 1) % 3;
        if (which & 1) ins[which / 2 % FN(_NUM_INPUTS)] = mutate(b->x[which / 2 % FN(_NUM_INPUTS)], m_one, shift);
        else outs[which / 2 % FN(_NUM_OUTPUTS)] = mutate(b->out[which / 2 % FN(_NUM_OUTPUTS)], m_one, shift);
        bad = 1;
    }
    /* the pointer arrays themselves are only checked for NULL (a shifted array is not tried) */
    bad |= m_state != AS_IS || m_ws != AS_IS || m_in == NULLED || m_out == NULLED;
    int status = FN(_predict)(mutate(b->state, m_state, 1 + take(r, 1) % 63), batch,
                              m_in == NULLED ? NULL : ins, m_out == NULLED ? NULL : outs,
                              mutate(b->ws, m_ws, 1 + take(r, 1) % 63));
    expect("predict", status, bad, batch);
}

#ifdef KC_TRAIN
static void call_step(reader *r, buffers *b, int64_t batch, int train) {
    int m_state = mutation(r, 8), m_ws = mutation(r, 8), m_loss = mutation(r, 8);
    int m_x = mutation(r, 16), m_y = mutation(r, 16), which = (int)take(r, 1), m_one = mutation(r, 6);
    int weights = (int)take(r, 1) % 4;        /* 0: NULL (equal weights), 3: misaligned, else given */
    const void *xs[64], *ys[64];
    float loss_slot[2];
    for (int i = 0; i < FN(_NUM_INPUTS); i++) xs[i] = b->x[i];
    for (int i = 0; i < FN(_NUM_TARGETS); i++) ys[i] = b->y[i];
    /* the pointer arrays themselves are only checked for NULL (a shifted array is not tried) */
    int bad = m_state != AS_IS || m_ws != AS_IS || m_loss != AS_IS || m_x == NULLED || m_y == NULLED;
    if (m_one != AS_IS) {
        uintptr_t shift = 1 + take(r, 1) % 3;
        if (which & 1) xs[which / 2 % FN(_NUM_INPUTS)] = mutate(b->x[which / 2 % FN(_NUM_INPUTS)], m_one, shift);
        else ys[which / 2 % FN(_NUM_TARGETS)] = mutate(b->y[which / 2 % FN(_NUM_TARGETS)], m_one, shift);
        bad = 1;
    }
    void *state = mutate(b->state, m_state, 1 + take(r, 1) % 63);
    void *ws = mutate(b->ws, m_ws, 1 + take(r, 1) % 63);
    float *loss = mutate(loss_slot, m_loss, 1 + take(r, 1) % 3);
    const void *const *x = m_x == NULLED ? NULL : xs, *const *y = m_y == NULLED ? NULL : ys;
    int status;
    if (train) {
        const float *sw = weights == 0 ? NULL : weights == 3 ? (const float *)((char *)b->weights + 2) : b->weights;
        bad |= weights == 3;
        status = FN(_train_step)(state, batch, x, y, sw, loss, ws);
    } else {
        status = FN(_evaluate)(state, batch, x, y, loss, ws);
    }
    expect(train ? "train_step" : "evaluate", status, bad, batch);
}
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    reader r = {data, size, 0};
    static buffers b;
    int64_t state_bytes = FN(_state_size)();
    if (state_bytes <= 0) broken("state_size is not positive", 0, 0);
    if (!b.state) b.state = exact((size_t)state_bytes, 64);
    int status = FN(_init_state)(b.state);
    if (status != KC_OK && status != KC_ERR_NO_WEIGHTS) broken("init_state", 0, status);
    for (int call = 0; call < MAX_CALLS && remaining(&r); call++) {
        unsigned op = (unsigned)take(&r, 1) % 6;
        int64_t batch = pick_batch(&r);
        if (op == 0) {                       /* workspace_size: -1 exactly for a bad batch */
            int64_t bytes = FN(_workspace_size)(batch);
            if (batch >= 1 && batch <= FN(_MAX_BATCH) ? bytes <= 0 : bytes != -1)
                broken("workspace_size", batch, (int)bytes);
            continue;
        }
        if (op == 1) {                       /* init_state with a NULL or misaligned state */
            int how = mutation(&r, 1);
            status = FN(_init_state)(mutate(b.state, how, 1 + take(&r, 1) % 63));
            if (status != KC_ERR_NULL_POINTER && status != KC_ERR_MISALIGNED) broken("init_state", 0, status);
            continue;
        }
        if (op == 2) {
            if (FN(_state_size)() != state_bytes) broken("state_size changed", 0, 0);
            continue;
        }
        /* a batch between what the buffers hold and NAME_MAX_BATCH would be valid: the caller
         * must size the buffers, so it is not tried */
        if (batch_is_valid(batch) && batch > ALLOC_MAX_BATCH) batch = 1 + batch % ALLOC_MAX_BATCH;
        allocate(&r, &b, batch);
        if (op == 3) call_predict(&r, &b, batch);
#ifdef KC_TRAIN
        else call_step(&r, &b, batch, op == 4);
#endif
        release(&b);
    }
    return 0;
}
