#include "ops/masked_confidence.h"

#include "cpu/masked_confidence.h"
#include "ops/masked_confidence_common.h"

namespace dk {

MaskedConfidenceResult masked_confidence_cpu(const at::Tensor& logits, const at::Tensor& x, int64_t mask_id,
                                             DK_MASKED_CONFIDENCE_OPTION_PARAMS) {
  MaskedConfidenceOutputs out;
  const auto params = prepare_masked_confidence(logits, x, mask_id, DK_MASKED_CONFIDENCE_OPTION_ARGS, out);
  cpu::masked_confidence(params);
  return {out.x0, out.confidence, out.lse};
}

}  // namespace dk
