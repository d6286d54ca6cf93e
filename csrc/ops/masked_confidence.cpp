#include "ops/masked_confidence.h"

#include "cpu/masked_confidence.h"
#include "ops/masked_confidence_common.h"

namespace dk {

std::tuple<at::Tensor, at::Tensor> masked_confidence_cpu(const at::Tensor& logits,
                                                         const at::Tensor& x, int64_t mask_id) {
  MaskedConfidenceOutputs out;
  const auto params = prepare_masked_confidence(logits, x, mask_id, out);
  cpu::masked_confidence(params);
  return {out.x0, out.confidence};
}

}  // namespace dk
