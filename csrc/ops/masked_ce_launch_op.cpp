// Torch-facing entries of the masked CE launchers; linked into the CUDA build of _C and into the
// emulated module. Targets are not range-checked here (that would read device memory): the
// kernels write NaN for a masked row whose target is out of range, never out of bounds.
#include "kernels/launchers.h"
#include "ops/masked_ce.h"
#include "ops/masked_ce_common.h"

namespace dk {

std::tuple<at::Tensor, at::Tensor> masked_ce_forward_launcher(const at::Tensor& logits, const at::Tensor& targets,
                                                              const at::Tensor& masked, void* stream) {
  check_not_float64(logits);
  MaskedCeTensors t;
  const auto p = prepare_masked_ce_forward(logits, targets, masked, t);
  launch_masked_ce_forward(p, stream);
  return {t.ce, t.lse};
}

at::Tensor masked_ce_backward_launcher(const at::Tensor& grad_ce, const at::Tensor& grad_lse,
                                       const at::Tensor& logits, const at::Tensor& targets,
                                       const at::Tensor& masked, const at::Tensor& lse, void* stream) {
  check_not_float64(logits);
  MaskedCeTensors t;
  const auto p = prepare_masked_ce_backward(grad_ce, grad_lse, logits, targets, masked, lse, t);
  launch_masked_ce_backward(p, stream);
  return t.grad_logits;
}

std::tuple<at::Tensor, at::Tensor> masked_ce_forward_backward_launcher(at::Tensor& logits, const at::Tensor& targets,
                                                                       const at::Tensor& masked,
                                                                       const at::Tensor& scale, void* stream) {
  check_not_float64(logits);
  MaskedCeTensors t;
  const auto p = prepare_masked_ce_forward_backward(logits, targets, masked, scale, t);
  launch_masked_ce_forward_backward(p, stream);
  return {t.ce, t.lse};
}

}  // namespace dk
