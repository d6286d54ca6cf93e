// Element loads shared by every kernel: storage type -> float32 for accumulation.
#pragma once
#include "simt/simt.h"  // must precede any CUDA header (under g++ it defines the keywords)
#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace dk {

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

}  // namespace dk
