// Direct entries of the per-step ops for bindings.cpp: the registered op's function, called
// without the dispatcher when ops/fast_path.h says that is equivalent; nullopt otherwise (the
// caller then calls the registered op). The ops with many options take them as one struct, which
// both the registered op (from its schema's arguments) and bindings.cpp (from Python objects) fill.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <tuple>

namespace dk {

// The arguments of torch.ops.diffusion_kernels.masked_confidence (same names and defaults).
struct MaskedConfidenceArgs {
  at::Tensor logits, x;
  int64_t mask_id = 0;
  std::optional<at::Tensor> temperature;
  double temperature_value = 0.0;
  std::optional<at::Tensor> top_p;
  double top_p_value = 1.0;
  std::optional<at::Tensor> top_k;
  int64_t top_k_value = 0;
  c10::string_view confidence = "prob";  // valid for the duration of the call
  bool confidence_from_logits = false;
  std::optional<at::Tensor> block_start;
  int64_t block_start_value = 0;
  std::optional<at::Tensor> block_end;
  int64_t block_end_value = std::numeric_limits<int64_t>::max();
  std::optional<at::Tensor> suppress_ids, seed;
  int64_t seed_value = 0;
  std::optional<at::Tensor> offset;
  int64_t offset_value = 0;
  bool return_lse = false, all_positions = false;
  std::optional<at::Tensor> prev_token_penalty;
  double prev_token_penalty_value = 0.0;
};

// The arguments of torch.ops.diffusion_kernels.attention_with_kv_cache (same order as its schema).
struct AttentionArgs {
  at::Tensor q, k_cache, v_cache;
  std::optional<at::Tensor> k_new, v_new;
  int64_t write_start = 0;
  std::optional<at::Tensor> write_starts, key_padding_mask, key_lengths;
  std::optional<double> scale;
  bool return_lse = false;
  std::optional<at::Tensor> write_status;
  int64_t causal_block_size = 0, noisy_length = 0;
  bool store_kv = true;
};

std::optional<at::Tensor> select_transfer_direct(
    const at::Tensor& conf, c10::string_view rule, const std::optional<at::Tensor>& k, int64_t k_value,
    double threshold, double eps, double factor, double alg_temp, int64_t seed, int64_t offset,
    const std::optional<at::Tensor>& x, const std::optional<at::Tensor>& x0,
    const std::optional<at::Tensor>& seed_tensor, const std::optional<at::Tensor>& offset_tensor,
    const std::optional<at::Tensor>& threshold_tensor, bool strict);

std::optional<std::tuple<at::Tensor, at::Tensor, at::Tensor>> masked_confidence_direct(const MaskedConfidenceArgs& a);

std::optional<std::tuple<at::Tensor, at::Tensor>> attention_direct(const AttentionArgs& a);

std::optional<std::tuple<at::Tensor, at::Tensor, at::Tensor>> forward_mask_direct(
    const at::Tensor& x0, int64_t mask_id, double eps, const std::optional<at::Tensor>& t,
    const std::optional<at::Tensor>& prompt_lengths, int64_t seed, int64_t offset, bool antithetic);

std::optional<std::tuple<at::Tensor, at::Tensor>> masked_ce_forward_direct(const at::Tensor& logits,
                                                                           const at::Tensor& targets,
                                                                           const at::Tensor& masked);

}  // namespace dk
