// Per-row view of a masked_confidence call, shared by the CPU kernel, the CUDA kernels and the
// emulator (host + device, no simt dependency): which rows are computed and with what settings.
#pragma once
#include <cstdint>

#include "kernels/masked_confidence_params.h"
#include "kernels/philox.cuh"

namespace dk {

// The Philox column of the `random` confidence: above any vocabulary id (philox.cuh allows 34-bit
// columns), so it never reuses one of the row's Gumbel draws. Mirrored in reference.py.
constexpr uint64_t kRandomConfidenceColumn = uint64_t{1} << 33;

// Largest Gumbel value philox_gumbel can return, rounded up: the uniform is at most 1 - 2^-24,
// so -log(-log(u)) <= 16.636. A token with z + kGumbelMax < best score cannot win.
constexpr float kGumbelMax = 16.75f;

struct RowSettings {
  float inv_temperature;  // 0 when the row takes the argmax
  float top_p;            // < 1: filter
  int64_t top_k;          // in (0, vocab): filter
  DK_HOST_DEVICE bool sampled() const { return inv_temperature > 0.f; }
  DK_HOST_DEVICE bool filtered(int64_t vocab) const { return top_p < 1.f || (top_k > 0 && top_k < vocab); }
};

DK_HOST_DEVICE RowSettings row_settings(const MaskedConfidenceParams& p, int64_t b) {
  RowSettings s;
  const float t = p.temperature ? p.temperature[b] : p.temperature_value;
  // A temperature so small that 1/t overflows float32 is the argmax limit. One above 2^126 (+inf
  // included) counts as 2^126: 1/t stays a normal float (never flushed to 0, which would mean
  // the argmax) and -inf logits stay -inf, so the row samples (all but) uniformly, T's limit.
  const float inv = t > 0.f ? 1.f / (t < 0x1p126f ? t : 0x1p126f) : 0.f;
  s.inv_temperature = inv <= 3.4028234e38f ? inv : 0.f;
  s.top_p = p.top_p ? p.top_p[b] : p.top_p_value;
  if (!(s.top_p < 1.f)) s.top_p = 1.f;  // NaN and >= 1: no filter
  if (s.top_p < 0.f) s.top_p = 0.f;     // below 0: as 0, the maximum and its ties
  s.top_k = p.top_k ? p.top_k[b] : p.top_k_value;
  return s;
}

// Whether position (b, l) is computed: masked (or any token, with all_positions) and inside the
// row's block.
DK_HOST_DEVICE bool row_active(const MaskedConfidenceParams& p, int64_t b, int64_t l, int64_t token) {
  const int64_t start = p.block_start ? p.block_start[b] : p.block_start_value;
  const int64_t end = p.block_end ? p.block_end[b] : p.block_end_value;
  return (token == p.mask_id || p.all_positions) && l >= start && l < end;
}

// The vocabulary id whose logit position (b, l) lowers, and by how much: index -1 when none.
struct RowPenalty {
  int64_t index;
  float amount;
};

DK_HOST_DEVICE RowPenalty row_penalty(const MaskedConfidenceParams& p, int64_t b, int64_t l) {
  // p.penalized(), spelled out: the Params methods are host-only.
  if (l == 0 || (p.prev_token_penalty == nullptr && !(p.prev_token_penalty_value > 0.f))) return {-1, 0.f};
  const float lambda = p.prev_token_penalty ? p.prev_token_penalty[b] : p.prev_token_penalty_value;
  const int64_t prev = p.x[b * p.x_stride_b + (l - 1) * p.x_stride_l];
  if (!(lambda > 0.f) || prev < 0 || prev >= p.vocab) return {-1, 0.f};
  return {prev, lambda};
}

DK_HOST_DEVICE PhiloxKey philox_key(const MaskedConfidenceParams& p) {
  return PhiloxKey{p.seed ? static_cast<uint64_t>(*p.seed) : p.seed_value,
                   p.offset ? static_cast<uint64_t>(*p.offset) : p.offset_value};
}

}  // namespace dk
