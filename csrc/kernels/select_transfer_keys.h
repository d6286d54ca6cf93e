// The arithmetic every select_transfer implementation shares (CPU, CUDA, emulated): candidates
// become 64-bit sort keys whose order is "confidence descending, then index ascending", so a
// top-n of keys is unique and ties resolve to the lowest index without any comparator logic.
//
//   key = sortable(value) << 32 | ~index      (0 for a non-candidate; below every candidate)
//
// sortable() maps float bits to an unsigned integer with the same order (-0.0 folded onto +0.0
// so the two zeros tie). A candidate's sortable value is >= sortable(-inf) = 0x007fffff > 0.
#pragma once
#include <cmath>
#include <cstdint>

#include "kernels/philox.cuh"  // DK_HOST_DEVICE, Philox
#include "kernels/select_transfer_params.h"

namespace dk {

DK_HOST_DEVICE uint32_t float_bits(float v) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(v);
#else
  uint32_t u;
  __builtin_memcpy(&u, &v, sizeof u);
  return u;
#endif
}

DK_HOST_DEVICE float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float v;
  __builtin_memcpy(&v, &u, sizeof v);
  return v;
#endif
}

// Arithmetic, not branches: the CPU builds a key for every position of a row whose signs
// (-inf at non-candidates) come in an unpredictable pattern.
DK_HOST_DEVICE uint32_t sortable_bits(float v) {
  uint32_t u = float_bits(v);
  u &= 0u - static_cast<uint32_t>(u != 0x80000000u);                     // -0.0 -> +0.0
  const uint32_t negative = 0u - (u >> 31);                              // all ones if sign set
  return u ^ (negative | 0x80000000u);                                   // ~u or u | sign
}

DK_HOST_DEVICE float unsortable_bits(uint32_t s) {
  return bits_float((s & 0x80000000u) ? (s & 0x7fffffffu) : ~s);
}

DK_HOST_DEVICE bool is_candidate(float c) { return c - c == 0.0f; }  // finite (NaN/inf give NaN)

DK_HOST_DEVICE uint64_t transfer_key(float value, int64_t index) {
  return (static_cast<uint64_t>(sortable_bits(value)) << 32) | static_cast<uint32_t>(~static_cast<uint32_t>(index));
}

DK_HOST_DEVICE int64_t key_index(uint64_t key) { return static_cast<uint32_t>(~static_cast<uint32_t>(key)); }
DK_HOST_DEVICE float key_value(uint64_t key) { return unsortable_bits(static_cast<uint32_t>(key >> 32)); }

// The Philox key of the alg_temp draws; the one-element tensors, when given, are read where the
// kernel runs (on the device for CUDA, so a captured graph picks up a new seed/offset).
DK_HOST_DEVICE PhiloxKey transfer_philox_key(const SelectTransferParams& p) {
  return {p.seed_tensor != nullptr ? static_cast<uint64_t>(*p.seed_tensor) : p.seed,
          p.offset_tensor != nullptr ? static_cast<uint64_t>(*p.offset_tensor) : p.offset};
}

// alg_temp: Gumbel-top-k. confidence / alg_temp + Gumbel is formed in float64 (libm log differs
// by an ulp between glibc and CUDA; the rounding to float32 absorbs it) and ordered as float32.
DK_HOST_DEVICE float gumbel_key(float confidence, double alg_temp, PhiloxKey key, uint32_t row, uint64_t column) {
  // The word is picked with selects: philox_bits' dynamic index into the 4-word block would put
  // the block in local memory (a stack frame) in some kernels.
  const Uint4x32 w = philox_block(key, row, column);
  const uint64_t lane = column & 3;
  const uint32_t bits = lane == 0 ? w.v[0] : lane == 1 ? w.v[1] : lane == 2 ? w.v[2] : w.v[3];
  const double u = static_cast<double>(uniform_from_bits(bits));
  return static_cast<float>(static_cast<double>(confidence) / alg_temp - log(-log(u)));
}

// Threshold / ThresholdRowMax: the row's bound, from its best candidate's value. The per-row
// tensor entry replaces the scalar; min() keeps a NaN threshold NaN (as torch.minimum), so every
// comparison with it is false.
DK_HOST_DEVICE float threshold_bound(const SelectTransferParams& p, int64_t b, float best) {
  const float tau = p.threshold_tensor != nullptr ? p.threshold_tensor[b] : p.threshold;
  if (p.rule == TransferRule::Threshold) return tau;
  const float near_best = best - p.eps;
  return near_best < tau ? near_best : tau;
}

// Factor rule at 0-based rank r (the (r+1)-th best confidence c): the paper's
// (n + 1) * (1 - c_n) < f with n = r + 1, in float64.
DK_HOST_DEVICE bool factor_passes(int64_t rank, float c, double factor) {
  return static_cast<double>(rank + 2) * (1.0 - static_cast<double>(c)) < factor;
}

}  // namespace dk
