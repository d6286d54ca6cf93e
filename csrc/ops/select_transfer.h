#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>
#include <string_view>

namespace dk {

// The arguments of the select_transfer schema, in order (see csrc/schemas.h).
struct SelectTransferArgs {
  const at::Tensor& confidence;
  std::string_view rule;
  const std::optional<at::Tensor>& k;
  int64_t k_value;
  double threshold, eps, factor, alg_temp;
  int64_t seed, offset;
  const std::optional<at::Tensor>& x;
  const std::optional<at::Tensor>& x0;
  const std::optional<at::Tensor>& seed_tensor;
  const std::optional<at::Tensor>& offset_tensor;
};

// CPU kernel registration target.
at::Tensor select_transfer_cpu(const at::Tensor& confidence, c10::string_view rule,
                               const std::optional<at::Tensor>& k, int64_t k_value, double threshold,
                               double eps, double factor, double alg_temp, int64_t seed, int64_t offset,
                               const std::optional<at::Tensor>& x, const std::optional<at::Tensor>& x0,
                               const std::optional<at::Tensor>& seed_tensor,
                               const std::optional<at::Tensor>& offset_tensor);

// Runs the CUDA launcher on whatever device the tensors are on: CUDA in the real build, CPU
// under the emulator. `stream` is the cudaStream_t to launch on (nullptr when emulated).
at::Tensor select_transfer_launcher(const SelectTransferArgs& args, void* stream);

}  // namespace dk
