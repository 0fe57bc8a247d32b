/* kcompile_cuda.h: what a GPU library (kcompile build --target nvptx-sm_NN) adds to kcompile.h.
 *
 * The entries keep kcompile.h's ABI, with device memory: state and workspace are device
 * allocations (cuMemAlloc: 256-byte aligned), the inputs/outputs/x/y arrays are host arrays of
 * device pointers, sample_weight and loss point to device memory. The library loads the CUDA
 * driver (libcuda.so.1, or the path in KCOMPILE_LIBCUDA) with dlopen at the first call, so it links
 * and loads on machines without CUDA; there every entry returns KC_ERR_NO_DEVICE.
 * NAME_last_error() (declared in NAME_cuda.h) names the failing driver call and kernel.
 */
#ifndef KCOMPILE_CUDA_H
#define KCOMPILE_CUDA_H

#include "kcompile.h"

#define KC_ERR_NO_DEVICE 16   /* no CUDA driver or no GPU: see NAME_last_error() */
#define KC_ERR_DEVICE 17      /* a CUDA driver call failed (a launch, a copy, loading the PTX) */

static inline const char *kc_cuda_status_string(int status) {
    if (status == KC_ERR_NO_DEVICE) return "no CUDA driver or no GPU";
    if (status == KC_ERR_DEVICE) return "a CUDA driver call failed";
    return kc_status_string(status);
}

#endif /* KCOMPILE_CUDA_H */
