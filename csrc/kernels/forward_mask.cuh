// forward_mask: one thread block per batch row, threads over positions. Every draw is a pure
// function of (seed, offset, row, column), so the result does not depend on the launch shape.
#pragma once
#include "simt/simt.h"  // first: under g++ it defines the CUDA keywords
#include <cstdint>

#include "kernels/forward_mask_math.cuh"

namespace dk {

template <int kThreads>
__global__ void __launch_bounds__(kThreads) forward_mask_kernel(ForwardMaskParams p) {
  for (int64_t b = blockIdx.x; b < p.batch; b += gridDim.x) {
    // Each thread derives the row's t itself: no shared memory, no barrier.
    const float prob = forward_mask_p(p, forward_mask_time(p, b));
    const int64_t prompt_len = p.prompt_lengths != nullptr ? p.prompt_lengths[b] : 0;
    for (int64_t l = threadIdx.x; l < p.seq; l += kThreads) forward_mask_position(p, b, l, prob, prompt_len);
  }
}

}  // namespace dk
