// Checks and Params filling shared by the CPU and launcher entry points of the masked CE ops.
#pragma once
#include <ATen/core/Tensor.h>

#include "kernels/masked_ce_params.h"

namespace dk {

// Keeps the contiguous copies of the per-row vectors alive while the kernel runs, and holds the
// freshly allocated outputs.
struct MaskedCeTensors {
  at::Tensor targets, masked, grad_ce, grad_lse, lse_in, scale;
  at::Tensor ce, lse, grad_logits;
};

MaskedCeParams prepare_masked_ce_forward(const at::Tensor& logits, const at::Tensor& targets,
                                         const at::Tensor& masked, MaskedCeTensors& t);
MaskedCeParams prepare_masked_ce_backward(const at::Tensor& grad_ce, const at::Tensor& grad_lse,
                                          const at::Tensor& logits, const at::Tensor& targets,
                                          const at::Tensor& masked, const at::Tensor& lse, MaskedCeTensors& t);
MaskedCeParams prepare_masked_ce_forward_backward(at::Tensor& logits, const at::Tensor& targets,
                                                  const at::Tensor& masked, const at::Tensor& scale,
                                                  MaskedCeTensors& t);

// CPU only (reads the data): every masked row's target must index the vocabulary.
void check_masked_targets_in_range(const MaskedCeParams& p);

// The launchers have no float64 kernels.
void check_not_float64(const at::Tensor& logits);

}  // namespace dk
