// Part of simt/simt.h (emulator): CUDA keywords and builtin variables for g++/clang++.
#pragma once

// crt/host_defines.h defines __shared__ & co. only where they are not yet defined, and to nothing
// on a host compiler. If it came first, every "shared" array would silently be per thread.
#if defined(__HOST_DEFINES_H__)
#error "simt/simt.h must be included before any CUDA header (cuda_runtime.h, cuda_fp16.h, ...)"
#endif
#if __cplusplus < 202002L
#error "the SIMT emulator needs C++20 (-std=c++20): it uses std::atomic_ref and std::source_location"
#endif

#define __global__
#define __device__
#define __host__
#define __managed__
#define __grid_constant__
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// Blocks run one after another and launches are serialised, so one copy per process is enough.
#define __shared__ static
#define __constant__ static

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <vector_functions.h>
#include <vector_types.h>

// The CUDA headers redefine it (for nvcc's front end); keep the host meaning.
#undef __forceinline__
#define __forceinline__ inline __attribute__((always_inline))

#include <cmath>
#include <cstdint>
#include <math.h>  // libstdc++'s wrapper puts isnan/isinf/... into the global namespace, as CUDA does

// Rewritten by the scheduler before every fiber switch (threadIdx) or block (the others).
inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;
constexpr int warpSize = 32;
