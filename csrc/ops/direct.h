// Direct entries of the per-step ops for bindings.cpp: the registered op's function, called
// without the dispatcher when ops/fast_path.h says that is equivalent; nullopt otherwise (the
// caller then calls the registered op). Same arguments as the op schemas.
#pragma once
#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

namespace dk {

std::optional<at::Tensor> select_transfer_direct(
    const at::Tensor& conf, c10::string_view rule, const std::optional<at::Tensor>& k, int64_t k_value,
    double threshold, double eps, double factor, double alg_temp, int64_t seed, int64_t offset,
    const std::optional<at::Tensor>& x, const std::optional<at::Tensor>& x0,
    const std::optional<at::Tensor>& seed_tensor, const std::optional<at::Tensor>& offset_tensor,
    const std::optional<at::Tensor>& threshold_tensor, bool strict);

std::optional<std::tuple<at::Tensor, at::Tensor, at::Tensor>> masked_confidence_direct(
    const at::Tensor& logits, const at::Tensor& x, int64_t mask_id, const std::optional<at::Tensor>& temperature,
    double temperature_value, const std::optional<at::Tensor>& top_p, double top_p_value,
    const std::optional<at::Tensor>& top_k, int64_t top_k_value, c10::string_view confidence,
    bool confidence_from_logits, const std::optional<at::Tensor>& block_start, int64_t block_start_value,
    const std::optional<at::Tensor>& block_end, int64_t block_end_value,
    const std::optional<at::Tensor>& suppress_ids, const std::optional<at::Tensor>& seed, int64_t seed_value,
    const std::optional<at::Tensor>& offset, int64_t offset_value, bool return_lse, bool all_positions,
    const std::optional<at::Tensor>& prev_token_penalty, double prev_token_penalty_value);

std::optional<std::tuple<at::Tensor, at::Tensor, at::Tensor>> forward_mask_direct(
    const at::Tensor& x0, int64_t mask_id, double eps, const std::optional<at::Tensor>& t,
    const std::optional<at::Tensor>& prompt_lengths, int64_t seed, int64_t offset, bool antithetic);

std::optional<std::tuple<at::Tensor, at::Tensor>> masked_ce_forward_direct(const at::Tensor& logits,
                                                                           const at::Tensor& targets,
                                                                           const at::Tensor& masked);

}  // namespace dk
