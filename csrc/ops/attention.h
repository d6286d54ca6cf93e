#pragma once
#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

namespace dk {

// Arguments in schema order (schemas.h: DK_SCHEMA_ATTENTION_WITH_KV_CACHE).
#define DK_ATTENTION_ARGS                                                                     \
  const at::Tensor &q, const at::Tensor &k_cache, const at::Tensor &v_cache,                  \
      const std::optional<at::Tensor> &k_new, const std::optional<at::Tensor> &v_new,         \
      int64_t write_start, const std::optional<at::Tensor> &write_starts,                     \
      const std::optional<at::Tensor> &key_padding_mask,                                      \
      const std::optional<at::Tensor> &key_lengths, std::optional<double> scale, bool return_lse, \
      const std::optional<at::Tensor> &write_status
#define DK_ATTENTION_ARG_NAMES                                                                \
  q, k_cache, v_cache, k_new, v_new, write_start, write_starts, key_padding_mask, key_lengths, \
      scale, return_lse, write_status

// CPU kernel registration target.
std::tuple<at::Tensor, at::Tensor> attention_with_kv_cache_cpu(DK_ATTENTION_ARGS);

// Runs the CUDA launcher on whatever device the tensors are on: CUDA in the real build, CPU
// under the emulator. `stream` is the cudaStream_t to launch on (nullptr when emulated).
std::tuple<at::Tensor, at::Tensor> attention_with_kv_cache_launcher(DK_ATTENTION_ARGS, void* stream);

}  // namespace dk
