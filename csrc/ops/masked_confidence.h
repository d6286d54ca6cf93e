#pragma once
#include <ATen/core/Tensor.h>
#include <tuple>

#include "ops/masked_confidence_args.h"

namespace dk {

// CPU kernel registration target.
MaskedConfidenceResult masked_confidence_cpu(const at::Tensor& logits, const at::Tensor& x, int64_t mask_id,
                                             DK_MASKED_CONFIDENCE_OPTION_PARAMS);

// Runs the CUDA launcher on whatever device the tensors are on: CUDA in the real build, CPU
// under the emulator. `stream` is the cudaStream_t to launch on (nullptr when emulated).
MaskedConfidenceResult masked_confidence_launcher(const at::Tensor& logits, const at::Tensor& x,
                                                  int64_t mask_id, DK_MASKED_CONFIDENCE_OPTION_PARAMS,
                                                  void* stream);

}  // namespace dk
