#pragma once
#include <ATen/core/Tensor.h>
#include <tuple>

namespace dk {

// CPU kernel registration targets.
std::tuple<at::Tensor, at::Tensor> masked_ce_forward_cpu(const at::Tensor& logits, const at::Tensor& targets,
                                                         const at::Tensor& masked);
at::Tensor masked_ce_backward_cpu(const at::Tensor& grad_ce, const at::Tensor& grad_lse, const at::Tensor& logits,
                                  const at::Tensor& targets, const at::Tensor& masked, const at::Tensor& lse);
std::tuple<at::Tensor, at::Tensor> masked_ce_forward_backward_cpu(at::Tensor& logits, const at::Tensor& targets,
                                                                  const at::Tensor& masked, const at::Tensor& scale);

// The CUDA launchers on whatever device the tensors are on: CUDA in the real build, CPU under the
// emulator. `stream` is the cudaStream_t to launch on (nullptr when emulated).
std::tuple<at::Tensor, at::Tensor> masked_ce_forward_launcher(const at::Tensor& logits, const at::Tensor& targets,
                                                              const at::Tensor& masked, void* stream);
at::Tensor masked_ce_backward_launcher(const at::Tensor& grad_ce, const at::Tensor& grad_lse,
                                       const at::Tensor& logits, const at::Tensor& targets,
                                       const at::Tensor& masked, const at::Tensor& lse, void* stream);
std::tuple<at::Tensor, at::Tensor> masked_ce_forward_backward_launcher(at::Tensor& logits, const at::Tensor& targets,
                                                                       const at::Tensor& masked,
                                                                       const at::Tensor& scale, void* stream);

}  // namespace dk
