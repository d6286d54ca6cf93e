// simt.h: one CUDA kernel source, two builds.
//
//   nvcc  (__CUDACC__): almost nothing is added; simt::launch is `<<<>>>`.
//   g++   (SIMT_EMULATED == 1): a CPU emulator. Each CUDA thread is a fiber, the fibers of a block
//         run on the calling OS thread, blocks run one after another. Barriers, warp collectives,
//         launch limits and shared memory are checked; misuse throws simt::KernelError naming the
//         block, the thread and the kernel's file:line. Design: research/simt_emulation.md §3, §7.
//
// Rules for kernel and launcher code (both builds):
//   * Include this header FIRST, before any CUDA header (under g++ it defines __shared__,
//     __global__, ... and then includes vector_types.h, vector_functions.h, cuda_fp16.h,
//     cuda_bf16.h and math_constants.h itself). The wrong order is an #error.
//   * Dynamic shared memory: SIMT_DYNAMIC_SHARED(T, name) instead of `extern __shared__ T name[]`.
//   * Static shared memory: plain `__shared__` works (one process-wide copy under g++); prefer
//     SIMT_SHARED(T, name, [N][M]) which gives every block fresh, 0xFF-poisoned, exact-size
//     storage, so uninitialised reads and overruns show up (ASan, or a canary check at block end).
//   * Launch with simt::launch(kernel, grid, block, smem_bytes, stream, args...), raise the dynamic
//     shared-memory limit with simt::set_max_dynamic_smem(kernel, bytes), then call
//     simt::check_launch("what") (throws std::runtime_error on a CUDA error; no-op under g++).
//   * Emulator-only code goes under `#elif SIMT_EMULATED` after a `#if defined(__CUDA_ARCH__)`
//     branch: nvcc's host pass sees neither macro and still parses the `#else`.
//   * Do not write `__noinline__` (libstdc++ uses that spelling) and do not build the emulated code
//     with -ffast-math (breaks -inf/NaN handling). The emulator needs -std=c++20 and -pthread.
//
// Emulator configuration, read at every launch (simt::options() fields override them):
//   SIMT_ORDER=forward|reverse|random   order in which runnable fibers are resumed (forward)
//   SIMT_SEED=<int>                     seed of the random order (0)
//   SIMT_STRICT=1|0                     barrier after an exit / exit while others wait is an error (1)
//   SIMT_STACK_KB=<int>                 fiber stack size (256; 1024 under ASan)
// Build with -DSIMT_USE_UCONTEXT to use swapcontext instead of the x86-64 assembly switch.
#pragma once

#include "simt/detail/common.h"

#if defined(__CUDACC__)
// ------------------------------------------------------------------------------------ nvcc -----
#define SIMT_EMULATED 0

// The emulator gets these from the same headers; include them here too, so kernels see the same
// names (__half, __nv_bfloat16, CUDART_INF_F, ...) in both builds.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math_constants.h>

#include <cstddef>
#include <string>
#include <utility>

#define SIMT_DYNAMIC_SHARED(T, name)                                  \
  extern __shared__ __align__(16) unsigned char simt_dyn_smem_[];    \
  T* name = reinterpret_cast<T*>(simt_dyn_smem_)

#define SIMT_SHARED(T, name, dims) __shared__ T name dims

namespace simt {

template <class... P, class... A>
inline void launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                   A&&... args) {
  kernel<<<grid, block, smem, stream>>>(std::forward<A>(args)...);
}

template <class... P>
inline void set_max_dynamic_smem(void (*kernel)(P...), size_t bytes) {
  const cudaError_t e = cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel),
                                             cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             static_cast<int>(bytes));
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("simt::set_max_dynamic_smem: ") + cudaGetErrorString(e));
}

inline void check_launch(const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

}  // namespace simt

#else
// ------------------------------------------------------------------------------ emulator -------
#define SIMT_EMULATED 1
#include "simt/detail/emu_keywords.h"    // before anything else: keywords, CUDA host headers
#include "simt/detail/emu_runtime.h"     // fibers, scheduler, errors, options
#include "simt/detail/emu_sync.h"        // __syncthreads*, warp collectives
#include "simt/detail/emu_intrinsics.h"  // atomics, math and bit intrinsics
#include "simt/detail/emu_launch.h"      // simt::launch, shared memory, limits
#endif
