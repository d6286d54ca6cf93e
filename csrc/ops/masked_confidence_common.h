// Checks and Params filling shared by the CPU and launcher entry points.
#pragma once
#include <ATen/core/Tensor.h>

#include "kernels/masked_confidence_params.h"
#include "ops/masked_confidence_args.h"

namespace dk {

struct MaskedConfidenceOutputs {
  at::Tensor x0, confidence, lse;
};

// Validates the arguments, allocates the outputs on the inputs' device and describes the call.
MaskedConfidenceParams prepare_masked_confidence(const at::Tensor& logits, const at::Tensor& x, int64_t mask_id,
                                                 DK_MASKED_CONFIDENCE_OPTION_PARAMS,
                                                 MaskedConfidenceOutputs& out);

}  // namespace dk
