#pragma once
#include <ATen/core/Tensor.h>
#include <optional>

#include "kernels/forward_mask_params.h"

namespace dk {

struct ForwardMaskTensors {
  at::Tensor t, prompt_lengths;  // contiguous copies kept alive during the launch
  at::Tensor x_t, masked, p_mask;
};

ForwardMaskParams prepare_forward_mask(const at::Tensor& x0, int64_t mask_id, double eps,
                                       const std::optional<at::Tensor>& t,
                                       const std::optional<at::Tensor>& prompt_lengths, int64_t seed,
                                       int64_t offset, bool antithetic, ForwardMaskTensors& out);

}  // namespace dk
