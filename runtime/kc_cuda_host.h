/* kc_cuda_host.h: the CUDA driver calls of a kcompile GPU library, included once by NAME_host.c
 * (which defines KC_MODEL_NAME and KC_NUM_FUNCTIONS first). The driver is found with dlopen at the
 * first call; failures become KC_ERR_NO_DEVICE / KC_ERR_DEVICE with a message in kc_error. */
#ifndef KC_CUDA_HOST_H
#define KC_CUDA_HOST_H

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include "kcompile_cuda.h"

typedef int (*kc_fn_init)(unsigned);
typedef int (*kc_fn_int_ptr)(int *);
typedef int (*kc_fn_device_get)(int *, int);
typedef int (*kc_fn_ctx_retain)(void **, int);
typedef int (*kc_fn_ptr)(void *);
typedef int (*kc_fn_void)(void);
typedef int (*kc_fn_module_load)(void **, const void *, unsigned, int *, void **);
typedef int (*kc_fn_get_function)(void **, void *, const char *);
typedef int (*kc_fn_htod)(uint64_t, const void *, size_t);
typedef int (*kc_fn_memset8)(uint64_t, unsigned char, size_t);
typedef int (*kc_fn_memset32)(uint64_t, unsigned, size_t);
typedef int (*kc_fn_launch)(void *, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void *,
                            void **, void **);
typedef int (*kc_fn_error_name)(int, const char **);

static struct {
    int ready;
    void *lib, *context, *module;
    void *functions[KC_NUM_FUNCTIONS];
    const char *const *names;
    kc_fn_init cuInit;
    kc_fn_int_ptr cuDeviceGetCount;
    kc_fn_device_get cuDeviceGet;
    kc_fn_ctx_retain cuDevicePrimaryCtxRetain;
    kc_fn_ptr cuCtxSetCurrent;
    kc_fn_void cuCtxSynchronize;
    kc_fn_module_load cuModuleLoadDataEx;
    kc_fn_get_function cuModuleGetFunction;
    kc_fn_htod cuMemcpyHtoD;
    kc_fn_memset8 cuMemsetD8;
    kc_fn_memset32 cuMemsetD32;
    kc_fn_launch cuLaunchKernel;
    kc_fn_error_name cuGetErrorName;
} kc_cuda;
static pthread_mutex_t kc_lock = PTHREAD_MUTEX_INITIALIZER;
static char kc_error[1024] = "";

static int kc_fail(int status, const char *call, int code, const char *kernel) {
    const char *name = "unknown CUDA error";
    if (kc_cuda.cuGetErrorName) kc_cuda.cuGetErrorName(code, &name);
    snprintf(kc_error, sizeof kc_error, "%s: %s%s%s failed: %s (%d)", KC_MODEL_NAME, call,
             kernel ? " of kernel " : "", kernel ? kernel : "", name ? name : "?", code);
    return status;
}

#define KC_CHECK(call, args, kernel)                                            \
    do {                                                                        \
        int kc_code = kc_cuda.call args;                                        \
        if (kc_code) return kc_fail(KC_ERR_DEVICE, #call, kc_code, kernel);     \
    } while (0)

static int kc_load(const char *ptx, const char *const *names) {
    const char *path = getenv("KCOMPILE_LIBCUDA");
    kc_cuda.lib = dlopen(path && *path ? path : "libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!kc_cuda.lib) {
        snprintf(kc_error, sizeof kc_error, "%s: no CUDA driver: dlopen(%s) failed: %s", KC_MODEL_NAME,
                 path && *path ? path : "libcuda.so.1", dlerror());
        return KC_ERR_NO_DEVICE;
    }
#define KC_SYM(field, symbol)                                                                   \
    if (!(*(void **)&kc_cuda.field = dlsym(kc_cuda.lib, symbol))) {                              \
        snprintf(kc_error, sizeof kc_error, "%s: the CUDA driver lacks %s", KC_MODEL_NAME, symbol); \
        return KC_ERR_NO_DEVICE;                                                                 \
    }
    KC_SYM(cuGetErrorName, "cuGetErrorName")
    KC_SYM(cuInit, "cuInit")
    KC_SYM(cuDeviceGetCount, "cuDeviceGetCount")
    KC_SYM(cuDeviceGet, "cuDeviceGet")
    KC_SYM(cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain")
    KC_SYM(cuCtxSetCurrent, "cuCtxSetCurrent")
    KC_SYM(cuCtxSynchronize, "cuCtxSynchronize")
    KC_SYM(cuModuleLoadDataEx, "cuModuleLoadDataEx")
    KC_SYM(cuModuleGetFunction, "cuModuleGetFunction")
    KC_SYM(cuMemcpyHtoD, "cuMemcpyHtoD_v2")
    KC_SYM(cuMemsetD8, "cuMemsetD8_v2")
    KC_SYM(cuMemsetD32, "cuMemsetD32_v2")
    KC_SYM(cuLaunchKernel, "cuLaunchKernel")
#undef KC_SYM
    int code = kc_cuda.cuInit(0), count = 0, device = 0;
    if (code) return kc_fail(KC_ERR_NO_DEVICE, "cuInit", code, NULL);
    code = kc_cuda.cuDeviceGetCount(&count);
    if (code) return kc_fail(KC_ERR_NO_DEVICE, "cuDeviceGetCount", code, NULL);
    if (count < 1) {
        snprintf(kc_error, sizeof kc_error, "%s: the CUDA driver reports no GPU", KC_MODEL_NAME);
        return KC_ERR_NO_DEVICE;
    }
    KC_CHECK(cuDeviceGet, (&device, 0), NULL);
    KC_CHECK(cuDevicePrimaryCtxRetain, (&kc_cuda.context, device), NULL);
    KC_CHECK(cuCtxSetCurrent, (kc_cuda.context), NULL);
    KC_CHECK(cuModuleLoadDataEx, (&kc_cuda.module, ptx, 0, NULL, NULL), NULL);
    for (int i = 0; i < KC_NUM_FUNCTIONS; i++)
        KC_CHECK(cuModuleGetFunction, (&kc_cuda.functions[i], kc_cuda.module, names[i]), names[i]);
    kc_cuda.names = names;
    return KC_OK;
}

/* Load the driver, the context and the module once; later calls make the context current. */
static int kc_init(const char *ptx, const char *const *names) {
    int status = KC_OK;
    pthread_mutex_lock(&kc_lock);
    if (!kc_cuda.ready) {
        status = kc_load(ptx, names);
        kc_cuda.ready = status == KC_OK;
    }
    pthread_mutex_unlock(&kc_lock);
    if (status) return status;
    KC_CHECK(cuCtxSetCurrent, (kc_cuda.context), NULL);
    return KC_OK;
}

static inline int64_t kc_max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* The caller's array of `count` device pointers: none NULL, each aligned to its element. */
static int kc_pointers(const void *const *array, int count, uint64_t *out) {
    if (!array && count) return KC_ERR_NULL_POINTER;
    for (int i = 0; i < count; i++) {
        if (!array[i]) return KC_ERR_NULL_POINTER;
        if ((uintptr_t)array[i] % 4) return KC_ERR_MISALIGNED;
        out[i] = (uint64_t)(uintptr_t)array[i];
    }
    return KC_OK;
}

static int kc_launch(int function, int64_t n, int64_t count, unsigned block, uint64_t *addresses, int na) {
    void *params[64];
    if (na > 62) return kc_fail(KC_ERR_DEVICE, "kc_launch (more than 62 buffers)", 0, kc_cuda.names[function]);
    params[0] = &n;
    params[1] = &count;
    for (int i = 0; i < na; i++) params[2 + i] = &addresses[i];
    unsigned grid = (unsigned)((count + block - 1) / block);
    KC_CHECK(cuLaunchKernel, (kc_cuda.functions[function], grid, 1, 1, block, 1, 1, 0, NULL, params, NULL),
             kc_cuda.names[function]);
    return KC_OK;
}

static int kc_finish(void) {
    KC_CHECK(cuCtxSynchronize, (), NULL);
    return KC_OK;
}

static inline int kc_copy_in(uint64_t device, const void *host, size_t bytes) {
    KC_CHECK(cuMemcpyHtoD, (device, host, bytes), NULL);
    return kc_finish();
}

static inline int kc_zero(uint64_t device, size_t bytes) {
    KC_CHECK(cuMemsetD8, (device, 0, bytes), NULL);
    return kc_finish();
}

static inline int kc_fill_ones(uint64_t device, int64_t count) {   /* 1.0f = 0x3f800000 */
    KC_CHECK(cuMemsetD32, (device, 0x3f800000u, (size_t)count), NULL);
    return KC_OK;
}

#endif /* KC_CUDA_HOST_H */
