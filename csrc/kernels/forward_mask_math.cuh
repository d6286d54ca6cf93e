// The per-row and per-position arithmetic of forward_mask, shared by the CPU loop and the CUDA
// kernel so both round identically (and match the PyTorch reference bit for bit).
#pragma once
#include <cstdint>

#include "kernels/forward_mask_params.h"
#include "kernels/philox.cuh"

namespace dk {

DK_HOST_DEVICE PhiloxKey forward_mask_key(const ForwardMaskParams& p) {
  return PhiloxKey{p.seed, p.offset};
}

DK_HOST_DEVICE float forward_mask_time(const ForwardMaskParams& p, int64_t b) {
  if (p.t != nullptr) return p.t[b];
  const float u = philox_uniform(forward_mask_key(p), static_cast<uint32_t>(b), kForwardMaskTimeColumn);
  if (!p.antithetic) return u;
  // Same operations as torch's (u / n + arange(n) / n) % 1 in float32; the sum is below 2, so
  // one subtraction is the remainder (exact by Sterbenz).
  const float n = static_cast<float>(p.batch);
  const float t = u / n + static_cast<float>(b) / n;
  return t >= 1.f ? t - 1.f : t;
}

// (1 - eps) * t + eps with two roundings, as two separate tensor ops do. nvcc narrows a float
// product taken through double back to a float multiply and then contracts it with the addition
// into one fma.rn.f32 (p_mask would then be one ulp off the CPU's), so the
// device uses __fmul_rn, which is never contracted. On the host the double product (exact for
// two floats) plus one conversion keeps g++ from contracting.
DK_HOST_DEVICE float forward_mask_p(const ForwardMaskParams& p, float t) {
#ifdef __CUDA_ARCH__
  const float prod = __fmul_rn(p.one_minus_eps, t);
#else
  const float prod = static_cast<float>(static_cast<double>(p.one_minus_eps) * static_cast<double>(t));
#endif
  return prod + p.eps;
}

DK_HOST_DEVICE void forward_mask_position(const ForwardMaskParams& p, int64_t b, int64_t l, float prob,
                                          int64_t prompt_len) {
  const int64_t token = p.x0[b * p.x0_stride_b + l * p.x0_stride_l];
  const float u = philox_uniform(forward_mask_key(p), static_cast<uint32_t>(b), static_cast<uint64_t>(l));
  const bool m = l >= prompt_len && u < prob;
  const int64_t out = b * p.seq + l;
  p.x_t[out] = m ? p.mask_id : token;
  p.masked[out] = m;
  p.p_mask[out] = prob;
}

}  // namespace dk
