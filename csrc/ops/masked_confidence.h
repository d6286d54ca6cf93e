#pragma once
#include <ATen/core/Tensor.h>
#include <tuple>

namespace dk {

// CPU kernel registration target.
std::tuple<at::Tensor, at::Tensor> masked_confidence_cpu(const at::Tensor& logits,
                                                         const at::Tensor& x, int64_t mask_id);

// Runs the CUDA launcher on whatever device the tensors are on: CUDA in the real build, CPU
// under the emulator. `stream` is the cudaStream_t to launch on (nullptr when emulated).
std::tuple<at::Tensor, at::Tensor> masked_confidence_launcher(const at::Tensor& logits,
                                                              const at::Tensor& x,
                                                              int64_t mask_id, void* stream);

}  // namespace dk
