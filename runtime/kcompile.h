/* kcompile.h: the C ABI shared by every library `kcompile build` writes.
 *
 * A built model NAME exports (see NAME.h for its inputs and outputs):
 *   int64_t NAME_state_size(void);              bytes of the state: weights, optimizer slots, counters
 *   int64_t NAME_workspace_size(int64_t batch); bytes of scratch for one call at that batch (-1: bad batch)
 *   int NAME_init_state(void *state);           writes the initial (embedded) state
 *   int NAME_predict(const void *state, int64_t batch, const void *const *inputs,
 *                    void *const *outputs, void *workspace);
 *   int NAME_train_step(void *state, int64_t batch, const void *const *x, const void *const *y,
 *                       const float *sample_weight, float *loss, void *workspace);
 *   int NAME_evaluate(const void *state, int64_t batch, const void *const *x, const void *const *y,
 *                     float *loss, void *workspace);
 *
 * x and y hold one pointer per model input and per target (NAME_NUM_INPUTS, NAME_NUM_TARGETS);
 * sample_weight (batch floats) may be NULL for equal weights. `loss` receives the batch's loss.
 *
 * Every entry returns KC_OK or a kc_status below and never crashes on a bad argument. Buffers
 * belong to the caller: state and workspace 64-byte aligned, tensors row-major and aligned to
 * their element. Entries allocate nothing. Calls that only read the state (predict, evaluate)
 * may run at once from several threads, each with its own workspace.
 */
#ifndef KCOMPILE_H
#define KCOMPILE_H

#include <stdint.h>

/* X(symbol, value, message): the one list of status codes (kcompile's Python side reads it too). */
#define KC_STATUS_LIST(X)                                                                     \
    X(KC_OK, 0, "ok")                                                                         \
    X(KC_ERR_NULL_POINTER, 1, "a required pointer argument is NULL")                          \
    X(KC_ERR_BAD_BATCH, 2, "the batch size is not positive, too large, or not the model's fixed batch") \
    X(KC_ERR_MISALIGNED, 3, "a buffer is misaligned (state and workspace need 64 bytes, tensors their element size)") \
    X(KC_ERR_NO_WEIGHTS, 4, "the weights were not embedded: read NAME.state into the state buffer instead")

typedef enum {
#define KC_STATUS_ENUM(symbol, value, message) symbol = value,
    KC_STATUS_LIST(KC_STATUS_ENUM)
#undef KC_STATUS_ENUM
} kc_status;

/* A human-readable message for a status code. */
static inline const char *kc_status_string(int status) {
    switch (status) {
#define KC_STATUS_CASE(symbol, value, message) case value: return message;
        KC_STATUS_LIST(KC_STATUS_CASE)
#undef KC_STATUS_CASE
    }
    return "unknown kcompile status";
}

enum { KC_FLOAT32 = 1, KC_INT32 = 2 };
#define KC_MAX_RANK 8

/* One input or output of an entry: dims[i] == -1 is the batch dimension. */
typedef struct {
    const char *name;
    int32_t dtype;      /* KC_FLOAT32 or KC_INT32 */
    int32_t rank;
    int64_t dims[KC_MAX_RANK];
} kc_tensor_info;

/* Data-parallel training (a library built with --data-parallel): NAME_train_step sums its
 * gradient vector over the replicas with the function set by NAME_set_allreduce(fn, ctx):
 * recv[i] = the sum over replicas of send[i], i < count; return 0, or an error code (the step's
 * update is then NaN and NAME_allreduce_status() returns the code). Without one, one replica. */
typedef int (*kc_allreduce_fn)(void *ctx, const float *send, float *recv, int64_t count);

#endif /* KCOMPILE_H */
