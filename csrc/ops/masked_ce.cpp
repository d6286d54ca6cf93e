#include "ops/masked_ce.h"

#include "cpu/masked_ce.h"
#include "ops/masked_ce_common.h"

namespace dk {

std::tuple<at::Tensor, at::Tensor> masked_ce_forward_cpu(const at::Tensor& logits, const at::Tensor& targets,
                                                         const at::Tensor& masked) {
  MaskedCeTensors t;
  const auto p = prepare_masked_ce_forward(logits, targets, masked, t);
  check_masked_targets_in_range(p);
  cpu::masked_ce_forward(p);
  return {t.ce, t.lse};
}

at::Tensor masked_ce_backward_cpu(const at::Tensor& grad_ce, const at::Tensor& grad_lse, const at::Tensor& logits,
                                  const at::Tensor& targets, const at::Tensor& masked, const at::Tensor& lse) {
  MaskedCeTensors t;
  const auto p = prepare_masked_ce_backward(grad_ce, grad_lse, logits, targets, masked, lse, t);
  check_masked_targets_in_range(p);
  cpu::masked_ce_backward(p);
  return t.grad_logits;
}

std::tuple<at::Tensor, at::Tensor> masked_ce_forward_backward_cpu(at::Tensor& logits, const at::Tensor& targets,
                                                                  const at::Tensor& masked, const at::Tensor& scale) {
  MaskedCeTensors t;
  const auto p = prepare_masked_ce_forward_backward(logits, targets, masked, scale, t);
  check_masked_targets_in_range(p);
  cpu::masked_ce_forward_backward(p);
  return {t.ce, t.lse};
}

}  // namespace dk
