// Torch-facing entry of the CUDA launcher; linked into the CUDA build of _C and into the
// emulated module, which provide the launcher from nvcc and from g++ respectively.
#include "kernels/launchers.h"
#include "ops/masked_confidence.h"
#include "ops/masked_confidence_common.h"

namespace dk {

MaskedConfidenceResult masked_confidence_launcher(const at::Tensor& logits, const at::Tensor& x,
                                                  int64_t mask_id, DK_MASKED_CONFIDENCE_OPTION_PARAMS,
                                                  void* stream) {
  MaskedConfidenceOutputs out;
  const auto params = prepare_masked_confidence(logits, x, mask_id, DK_MASKED_CONFIDENCE_OPTION_ARGS, out);
  launch_masked_confidence(params, stream);
  return {out.x0, out.confidence, out.lse};
}

}  // namespace dk
