/* built.c: run a library written by `kcompile build` from R, without Python.
 *
 * The library (DIR/libNAME.so) is opened with dlopen and its C ABI (runtime/kcompile.h) found with
 * dlsym. A model is an external pointer to a kc_built: the library handle, the entry points, the
 * state (written once by NAME_init_state) and a workspace grown to the largest batch seen; its
 * finalizer frees them and closes the library. R arrays (column-major doubles or integers) are
 * copied into row-major float32/int32 buffers and the outputs copied back.
 *
 * Shapes are checked in R (R/built.R) against the tables this file reads (NAME_inputs, ...); the
 * copies here check element counts again so that nothing reads or writes past a buffer. Status
 * codes of the library go back to R, which words them from DIR/kcompile.h's KC_STATUS_LIST.
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <R.h>
#include <Rinternals.h>
#include <R_ext/Rdynload.h>

#define KC_FLOAT32 1
#define KC_INT32 2
#define KC_MAX_RANK 8
#define KC_ALIGN 64

typedef struct {            /* kcompile.h's kc_tensor_info */
    const char *name;
    int32_t dtype;
    int32_t rank;
    int64_t dims[KC_MAX_RANK];
} kc_tensor_info;

typedef int64_t (*state_size_fn)(void);
typedef int64_t (*workspace_size_fn)(int64_t);
typedef int (*init_state_fn)(void *);
typedef int (*predict_fn)(const void *, int64_t, const void *const *, void *const *, void *);
typedef int (*train_step_fn)(void *, int64_t, const void *const *, const void *const *, const float *,
                             float *, void *);
typedef int (*evaluate_fn)(const void *, int64_t, const void *const *, const void *const *, float *,
                           void *);

typedef struct {
    void *handle;
    state_size_fn state_size;
    workspace_size_fn workspace_size;
    init_state_fn init_state;
    predict_fn predict;
    train_step_fn train_step;
    evaluate_fn evaluate;
    const kc_tensor_info *inputs, *outputs, *targets;
    void *state_block, *state;          /* malloc'd block, and its 64-byte aligned start */
    int64_t state_bytes;
    void *workspace_block, *workspace;
    int64_t workspace_bytes;
} kc_built;

/* ------------------------------------------------------------------------ allocation, lifetime */

/* a zeroed buffer of `bytes` at a 64-byte boundary inside the returned block (NULL: no memory) */
static void *aligned_block(int64_t bytes, void **aligned) {
    size_t size = (size_t)(bytes > 0 ? bytes : 1) + KC_ALIGN;
    void *block = calloc(1, size);
    *aligned = block ? (void *)(((uintptr_t)block + KC_ALIGN - 1) & ~(uintptr_t)(KC_ALIGN - 1)) : NULL;
    return block;
}

static void release(kc_built *m) {
    if (!m) return;
    free(m->state_block);
    free(m->workspace_block);
    if (m->handle) dlclose(m->handle);
    free(m);
}

static void finalize(SEXP ptr) {
    release((kc_built *)R_ExternalPtrAddr(ptr));
    R_ClearExternalPtr(ptr);
}

static kc_built *model_of(SEXP ptr) {
    kc_built *m = TYPEOF(ptr) == EXTPTRSXP ? (kc_built *)R_ExternalPtrAddr(ptr) : NULL;
    if (!m) Rf_errorcall(R_NilValue, "kcompile: the built model was released (or is not one)");
    return m;
}

/* the workspace for `batch`, grown as needed; NULL when the library refuses the batch */
static void *workspace_for(kc_built *m, int64_t batch) {
    int64_t bytes = m->workspace_size(batch);
    if (bytes < 0) return NULL;
    if (bytes > m->workspace_bytes || !m->workspace_block) {
        void *aligned, *block = aligned_block(bytes, &aligned);
        if (!block) Rf_errorcall(R_NilValue, "kcompile: cannot allocate a workspace of %.0f bytes", (double)bytes);
        free(m->workspace_block);
        m->workspace_block = block, m->workspace = aligned, m->workspace_bytes = bytes;
    }
    return m->workspace;
}

/* ------------------------------------------------------------------------ opening a library */

/* .Call(kc_built_open, path, name): the model, with its state initialised. Its "status"
 * attribute is init_state's status (KC_ERR_NO_WEIGHTS: the weights are in NAME.state). */
SEXP kc_built_open(SEXP path, SEXP name) {
    const char *file = CHAR(STRING_ELT(path, 0)), *prefix = CHAR(STRING_ELT(name, 0));
    char symbol[512];
    kc_built *m = calloc(1, sizeof(kc_built));
    if (!m) Rf_errorcall(R_NilValue, "kcompile: out of memory");
    dlerror();
    m->handle = dlopen(file, RTLD_NOW | RTLD_LOCAL);
    if (!m->handle) {
        const char *why = dlerror();
        char message[1024];
        snprintf(message, sizeof message, "%s", why ? why : "unknown error");
        free(m);
        Rf_errorcall(R_NilValue, "kc_load_built: cannot open %s: %s", file, message);
    }
#define FIND(field, type, suffix)                                                \
    snprintf(symbol, sizeof symbol, "%s_%s", prefix, suffix);                    \
    m->field = (type)dlsym(m->handle, symbol);
    FIND(state_size, state_size_fn, "state_size")
    FIND(workspace_size, workspace_size_fn, "workspace_size")
    FIND(init_state, init_state_fn, "init_state")
    FIND(predict, predict_fn, "predict")
    FIND(train_step, train_step_fn, "train_step")
    FIND(evaluate, evaluate_fn, "evaluate")
    FIND(inputs, const kc_tensor_info *, "inputs")
    FIND(outputs, const kc_tensor_info *, "outputs")
    FIND(targets, const kc_tensor_info *, "targets")
#undef FIND
    if (!m->state_size || !m->workspace_size || !m->init_state) {
        release(m);
        Rf_errorcall(R_NilValue, "kc_load_built: %s does not export %s_state_size, %s_workspace_size and "
                     "%s_init_state: not a library of the model '%s' built by kcompile", file, prefix, prefix,
                     prefix, prefix);
    }
    m->state_bytes = m->state_size();
    m->state_block = m->state_bytes >= 0 ? aligned_block(m->state_bytes, &m->state) : NULL;
    if (!m->state_block) {
        release(m);
        Rf_errorcall(R_NilValue, "kc_load_built: cannot allocate the state of %s", file);
    }
    int status = m->init_state(m->state);
    SEXP ptr = PROTECT(R_MakeExternalPtr(m, Rf_install("kcompile_built"), R_NilValue));
    R_RegisterCFinalizerEx(ptr, finalize, TRUE);
    Rf_setAttrib(ptr, Rf_install("status"), Rf_ScalarInteger(status));
    UNPROTECT(1);
    return ptr;
}

/* .Call(kc_built_entries, model): which entries the library exports */
SEXP kc_built_entries(SEXP ptr) {
    kc_built *m = model_of(ptr);
    SEXP out = PROTECT(Rf_allocVector(LGLSXP, 3)), names = PROTECT(Rf_allocVector(STRSXP, 3));
    LOGICAL(out)[0] = m->predict != NULL, LOGICAL(out)[1] = m->train_step != NULL;
    LOGICAL(out)[2] = m->evaluate != NULL;
    SET_STRING_ELT(names, 0, Rf_mkChar("predict"));
    SET_STRING_ELT(names, 1, Rf_mkChar("train"));
    SET_STRING_ELT(names, 2, Rf_mkChar("evaluate"));
    Rf_setAttrib(out, R_NamesSymbol, names);
    UNPROTECT(2);
    return out;
}

/* .Call(kc_built_table, model, which, count): the first `count` rows of NAME_inputs / NAME_outputs
 * / NAME_targets (which = 0, 1, 2) as list(list(name, dtype, dims)), or NULL when the library has
 * no such table. `count` comes from the manifest: the tables carry no length of their own. */
SEXP kc_built_table(SEXP ptr, SEXP which, SEXP count) {
    kc_built *m = model_of(ptr);
    int w = Rf_asInteger(which), n = Rf_asInteger(count);
    const kc_tensor_info *table = w == 0 ? m->inputs : w == 1 ? m->outputs : m->targets;
    if (!table || n < 0) return R_NilValue;
    SEXP out = PROTECT(Rf_allocVector(VECSXP, n));
    for (int i = 0; i < n; i++) {
        const kc_tensor_info *t = &table[i];
        int rank = t->rank < 0 ? 0 : t->rank > KC_MAX_RANK ? KC_MAX_RANK : t->rank;
        SEXP row = PROTECT(Rf_allocVector(VECSXP, 3)), dims = PROTECT(Rf_allocVector(REALSXP, rank));
        for (int k = 0; k < rank; k++) REAL(dims)[k] = (double)t->dims[k];
        SET_VECTOR_ELT(row, 0, Rf_mkString(t->name ? t->name : ""));
        SET_VECTOR_ELT(row, 1, Rf_ScalarInteger(t->dtype));
        SET_VECTOR_ELT(row, 2, dims);
        SEXP names = PROTECT(Rf_allocVector(STRSXP, 3));
        SET_STRING_ELT(names, 0, Rf_mkChar("name"));
        SET_STRING_ELT(names, 1, Rf_mkChar("dtype"));
        SET_STRING_ELT(names, 2, Rf_mkChar("dims"));
        Rf_setAttrib(row, R_NamesSymbol, names);
        SET_VECTOR_ELT(out, i, row);
        UNPROTECT(3);
    }
    UNPROTECT(1);
    return out;
}

/* .Call(kc_built_get_state, model) -> raw; .Call(kc_built_set_state, model, raw) */
SEXP kc_built_get_state(SEXP ptr) {
    kc_built *m = model_of(ptr);
    SEXP out = PROTECT(Rf_allocVector(RAWSXP, (R_xlen_t)m->state_bytes));
    if (m->state_bytes) memcpy(RAW(out), m->state, (size_t)m->state_bytes);
    UNPROTECT(1);
    return out;
}

SEXP kc_built_set_state(SEXP ptr, SEXP bytes) {
    kc_built *m = model_of(ptr);
    if (TYPEOF(bytes) != RAWSXP || XLENGTH(bytes) != m->state_bytes)
        Rf_errorcall(R_NilValue, "kcompile: the state must be a raw vector of %.0f bytes", (double)m->state_bytes);
    if (m->state_bytes) memcpy(m->state, RAW(bytes), (size_t)m->state_bytes);
    return R_NilValue;
}

/* ------------------------------------------------------------------------ tensors */

/* Walk the elements of an array of dims[0..rank-1] in R's column-major order, with `row` the
 * offset of the same element in row-major order. */
#define FOR_EACH_ELEMENT(rank, dims, col, row, body)                                     \
    do {                                                                                 \
        int64_t stride_[KC_MAX_RANK], index_[KC_MAX_RANK] = {0}, total_ = 1;             \
        for (int k_ = (rank) - 1; k_ >= 0; k_--) stride_[k_] = total_, total_ *= (dims)[k_]; \
        int64_t row = 0;                                                                 \
        for (int64_t col = 0; col < total_; col++) {                                     \
            body;                                                                        \
            for (int k_ = 0; k_ < (rank); k_++) {                                        \
                row += stride_[k_];                                                      \
                if (++index_[k_] < (dims)[k_]) break;                                    \
                row -= stride_[k_] * (dims)[k_], index_[k_] = 0;                         \
            }                                                                            \
        }                                                                                \
    } while (0)

/* the dims of tensor `t` at `batch` */
static int64_t tensor_dims(const kc_tensor_info *t, int64_t batch, int64_t *dims) {
    int64_t count = 1;
    for (int k = 0; k < t->rank; k++) dims[k] = t->dims[k] == -1 ? batch : t->dims[k], count *= dims[k];
    return count;
}

/* the R array x (already the tensor's shape, doubles for float32 and integers for int32) as a
 * row-major buffer that lives until the .Call returns */
static void *to_row_major(SEXP x, const kc_tensor_info *t, int64_t batch, const char *what) {
    int64_t dims[KC_MAX_RANK], count = tensor_dims(t, batch, dims);
    int want = t->dtype == KC_INT32 ? INTSXP : REALSXP;
    if (TYPEOF(x) != want || XLENGTH(x) != count)
        Rf_errorcall(R_NilValue, "kcompile: %s '%s' has %.0f elements, expected %.0f", what, t->name,
                     (double)XLENGTH(x), (double)count);
    void *data = R_alloc((size_t)(count ? count : 1), 4);
    if (want == REALSXP) {
        const double *src = REAL(x);
        float *dst = data;
        FOR_EACH_ELEMENT(t->rank, dims, j, r, dst[r] = (float)src[j]);
    } else {
        const int *src = INTEGER(x);
        int32_t *dst = data;
        FOR_EACH_ELEMENT(t->rank, dims, j, r, dst[r] = (int32_t)src[j]);
    }
    return data;
}

static SEXP from_row_major(const void *data, const kc_tensor_info *t, int64_t batch) {
    int64_t dims[KC_MAX_RANK], count = tensor_dims(t, batch, dims);
    SEXP out = PROTECT(Rf_allocVector(t->dtype == KC_INT32 ? INTSXP : REALSXP, (R_xlen_t)count));
    if (t->dtype == KC_INT32) {
        const int32_t *src = data;
        int *dst = INTEGER(out);
        FOR_EACH_ELEMENT(t->rank, dims, j, r, dst[j] = src[r]);
    } else {
        const float *src = data;
        double *dst = REAL(out);
        FOR_EACH_ELEMENT(t->rank, dims, j, r, dst[j] = (double)src[r]);
    }
    if (t->rank >= 2) {
        SEXP dim = PROTECT(Rf_allocVector(INTSXP, t->rank));
        for (int k = 0; k < t->rank; k++) INTEGER(dim)[k] = (int)dims[k];
        Rf_setAttrib(out, R_DimSymbol, dim);
        UNPROTECT(1);
    }
    UNPROTECT(1);
    return out;
}

static const void **row_major_list(SEXP list, const kc_tensor_info *table, int64_t batch, const char *what) {
    R_xlen_t n = XLENGTH(list);
    const void **pointers = (const void **)R_alloc((size_t)(n ? n : 1), sizeof(void *));
    for (R_xlen_t i = 0; i < n; i++) pointers[i] = to_row_major(VECTOR_ELT(list, i), &table[i], batch, what);
    return pointers;
}

static int64_t batch_of(SEXP batch) {
    double b = Rf_asReal(batch);
    if (!(b >= 1 && b <= 9.0e15)) Rf_errorcall(R_NilValue, "kcompile: bad batch size");
    return (int64_t)b;
}

static SEXP status_result(int status, SEXP value) {
    PROTECT(value);
    SEXP out = PROTECT(Rf_allocVector(VECSXP, 2));
    SET_VECTOR_ELT(out, 0, Rf_ScalarInteger(status));
    SET_VECTOR_ELT(out, 1, value);
    UNPROTECT(2);
    return out;
}

#define KC_ERR_BAD_BATCH 2

/* ------------------------------------------------------------------------ entries */

/* .Call(kc_built_predict, model, inputs, n_outputs, batch) -> list(status, outputs) */
SEXP kc_built_predict(SEXP ptr, SEXP inputs, SEXP n_outputs, SEXP batch_) {
    kc_built *m = model_of(ptr);
    if (!m->predict || !m->inputs || !m->outputs) Rf_errorcall(R_NilValue, "kcompile: the library has no predict entry");
    int64_t batch = batch_of(batch_);
    int n_out = Rf_asInteger(n_outputs);
    const void **in = row_major_list(inputs, m->inputs, batch, "input");
    void **out = (void **)R_alloc((size_t)(n_out > 0 ? n_out : 1), sizeof(void *));
    int64_t dims[KC_MAX_RANK];
    for (int i = 0; i < n_out; i++) {
        int64_t count = tensor_dims(&m->outputs[i], batch, dims);
        out[i] = R_alloc((size_t)(count ? count : 1), 4);
    }
    void *workspace = workspace_for(m, batch);
    if (!workspace) return status_result(KC_ERR_BAD_BATCH, R_NilValue);
    int status = m->predict(m->state, batch, (const void *const *)in, (void *const *)out, workspace);
    if (status) return status_result(status, R_NilValue);
    SEXP results = PROTECT(Rf_allocVector(VECSXP, n_out));
    for (int i = 0; i < n_out; i++) SET_VECTOR_ELT(results, i, from_row_major(out[i], &m->outputs[i], batch));
    SEXP answer = status_result(0, results);
    UNPROTECT(1);
    return answer;
}

/* .Call(kc_built_step, model, train, x, y, x_table, sample_weight, batch) -> list(status, loss):
 * train_step (train = TRUE, updates the state) or evaluate. x_table: the list(list(name, dtype,
 * dims)) of the inputs when the library has no NAME_inputs table (no predict entry). */
SEXP kc_built_step(SEXP ptr, SEXP train, SEXP x, SEXP y, SEXP x_table, SEXP sample_weight, SEXP batch_) {
    kc_built *m = model_of(ptr);
    int training = Rf_asLogical(train) == TRUE;
    if (training ? !m->train_step : !m->evaluate)
        Rf_errorcall(R_NilValue, "kcompile: the library has no %s entry", training ? "train_step" : "evaluate");
    if (!m->targets) Rf_errorcall(R_NilValue, "kcompile: the library has no targets table");
    int64_t batch = batch_of(batch_);
    const kc_tensor_info *inputs = m->inputs;
    if (!inputs) {   /* rows made from the manifest */
        R_xlen_t n = XLENGTH(x_table);
        kc_tensor_info *rows = (kc_tensor_info *)R_alloc((size_t)(n ? n : 1), sizeof(kc_tensor_info));
        for (R_xlen_t i = 0; i < n; i++) {
            SEXP row = VECTOR_ELT(x_table, i), dims = VECTOR_ELT(row, 2);
            rows[i].name = CHAR(STRING_ELT(VECTOR_ELT(row, 0), 0));
            rows[i].dtype = Rf_asInteger(VECTOR_ELT(row, 1));
            rows[i].rank = (int32_t)(XLENGTH(dims) > KC_MAX_RANK ? KC_MAX_RANK : XLENGTH(dims));
            for (int k = 0; k < rows[i].rank; k++) rows[i].dims[k] = (int64_t)REAL(dims)[k];
        }
        inputs = rows;
    }
    const void **xs = row_major_list(x, inputs, batch, "input");
    const void **ys = row_major_list(y, m->targets, batch, "target");
    float *weights = NULL;
    if (!Rf_isNull(sample_weight)) {
        if (TYPEOF(sample_weight) != REALSXP || XLENGTH(sample_weight) != batch)
            Rf_errorcall(R_NilValue, "kcompile: sample_weight must have one number per row (%.0f)", (double)batch);
        weights = (float *)R_alloc((size_t)batch, sizeof(float));
        for (int64_t i = 0; i < batch; i++) weights[i] = (float)REAL(sample_weight)[i];
    }
    void *workspace = workspace_for(m, batch);
    if (!workspace) return status_result(KC_ERR_BAD_BATCH, R_NilValue);
    float loss = 0;
    int status = training
        ? m->train_step(m->state, batch, (const void *const *)xs, (const void *const *)ys, weights, &loss, workspace)
        : m->evaluate(m->state, batch, (const void *const *)xs, (const void *const *)ys, &loss, workspace);
    return status_result(status, status ? R_NilValue : Rf_ScalarReal((double)loss));
}

/* ------------------------------------------------------------------------ registration */

static const R_CallMethodDef calls[] = {
    {"kc_built_open", (DL_FUNC)&kc_built_open, 2},
    {"kc_built_entries", (DL_FUNC)&kc_built_entries, 1},
    {"kc_built_table", (DL_FUNC)&kc_built_table, 3},
    {"kc_built_get_state", (DL_FUNC)&kc_built_get_state, 1},
    {"kc_built_set_state", (DL_FUNC)&kc_built_set_state, 2},
    {"kc_built_predict", (DL_FUNC)&kc_built_predict, 4},
    {"kc_built_step", (DL_FUNC)&kc_built_step, 7},
    {NULL, NULL, 0}};

void R_init_kcompile(DllInfo *dll) {
    R_registerRoutines(dll, NULL, calls, NULL, NULL);
    R_useDynamicSymbols(dll, FALSE);
}
