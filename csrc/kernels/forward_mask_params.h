// Plain description of one forward_mask call (masked-diffusion forward noising).
//
// Random stream (Philox, kernels/philox.cuh, key (seed, offset)): the token draw of position l
// in batch row b is philox_uniform(key, b, l); the time draw of row b is
// philox_uniform(key, b, kForwardMaskTimeColumn). Positions are far below that column, so the
// two never share a counter.
#pragma once
#include <cstdint>

namespace dk {

constexpr uint64_t kForwardMaskTimeColumn = uint64_t{1} << 33;

struct ForwardMaskParams {
  const int64_t* x0;                 // [batch, seq]
  int64_t x0_stride_b, x0_stride_l;  // in elements
  int64_t batch, seq;
  int64_t mask_id;
  float one_minus_eps, eps;          // p = one_minus_eps * t + eps, each product/sum rounded once
  const float* t;                    // [batch] contiguous, or nullptr: drawn (uniform or antithetic)
  bool antithetic;                   // t_b = (u_b / batch + b / batch) mod 1 (MDLM's stratified t)
  const int64_t* prompt_lengths;     // [batch] contiguous, or nullptr; positions l < length stay clean
  uint64_t seed, offset;
  int64_t* x_t;                      // [batch, seq] contiguous
  bool* masked;                      // [batch, seq] contiguous
  float* p_mask;                     // [batch, seq] contiguous
};

}  // namespace dk
