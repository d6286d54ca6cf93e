#include "cpu/forward_mask.h"

#include <ATen/Parallel.h>

#include "kernels/forward_mask_math.cuh"

namespace dk::cpu {

void forward_mask(const ForwardMaskParams& p) {
  at::parallel_for(0, p.batch, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const float prob = forward_mask_p(p, forward_mask_time(p, b));
      const int64_t prompt_len = p.prompt_lengths != nullptr ? p.prompt_lengths[b] : 0;
      for (int64_t l = 0; l < p.seq; ++l) forward_mask_position(p, b, l, prob, prompt_len);
    }
  });
}

}  // namespace dk::cpu
