#pragma once
#include <ATen/core/Tensor.h>
#include <optional>
#include <tuple>

namespace dk {

using ForwardMaskResult = std::tuple<at::Tensor, at::Tensor, at::Tensor>;

ForwardMaskResult forward_mask_cpu(const at::Tensor& x0, int64_t mask_id, double eps,
                                   const std::optional<at::Tensor>& t,
                                   const std::optional<at::Tensor>& prompt_lengths, int64_t seed,
                                   int64_t offset, bool antithetic);

// The CUDA launcher on the tensors' device (CUDA, or CPU under the emulator).
ForwardMaskResult forward_mask_launcher(const at::Tensor& x0, int64_t mask_id, double eps,
                                        const std::optional<at::Tensor>& t,
                                        const std::optional<at::Tensor>& prompt_lengths, int64_t seed,
                                        int64_t offset, bool antithetic, void* stream);

}  // namespace dk
