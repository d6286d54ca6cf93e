// The argument list of masked_confidence after (logits, x, mask_id), written once: every entry
// point (CPU, CUDA, emulated) takes exactly the schema's arguments (csrc/schemas.h).
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include <optional>

#define DK_MASKED_CONFIDENCE_OPTION_PARAMS                                                          \
  const std::optional<at::Tensor>&temperature, double temperature_value,                           \
      const std::optional<at::Tensor>&top_p, double top_p_value, const std::optional<at::Tensor>&top_k, \
      int64_t top_k_value, c10::string_view confidence, bool confidence_from_logits,               \
      const std::optional<at::Tensor>&block_start, int64_t block_start_value,                      \
      const std::optional<at::Tensor>&block_end, int64_t block_end_value,                          \
      const std::optional<at::Tensor>&suppress_ids, const std::optional<at::Tensor>&seed,          \
      int64_t seed_value, const std::optional<at::Tensor>&offset, int64_t offset_value, bool return_lse

#define DK_MASKED_CONFIDENCE_OPTION_ARGS                                                        \
  temperature, temperature_value, top_p, top_p_value, top_k, top_k_value, confidence,           \
      confidence_from_logits, block_start, block_start_value, block_end, block_end_value,       \
      suppress_ids, seed, seed_value, offset, offset_value, return_lse

namespace dk {

using MaskedConfidenceResult = std::tuple<at::Tensor, at::Tensor, at::Tensor>;

}  // namespace dk
