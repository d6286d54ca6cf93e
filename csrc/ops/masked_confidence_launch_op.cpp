// Torch-facing entry of the CUDA launcher; linked into the CUDA build of _C and into the
// emulated module, which provide the launcher from nvcc and from g++ respectively.
#include <ATen/ops/empty.h>

#include "kernels/launchers.h"
#include "ops/masked_confidence.h"
#include "ops/masked_confidence_common.h"

namespace dk {

MaskedConfidenceResult masked_confidence_launcher(const at::Tensor& logits, const at::Tensor& x,
                                                  int64_t mask_id, DK_MASKED_CONFIDENCE_OPTION_PARAMS,
                                                  void* stream) {
  MaskedConfidenceOutputs out;
  auto params = prepare_masked_confidence(logits, x, mask_id, DK_MASKED_CONFIDENCE_OPTION_ARGS, out);
  at::Tensor scratch;
  if (const int64_t bytes = masked_confidence_scratch_bytes(params); bytes > 0) {
    scratch = at::empty({(bytes + 15) / 16, 2}, logits.options().dtype(at::kLong));  // 16-byte aligned
    params.scratch = scratch.data_ptr();
    params.scratch_bytes = bytes;
  }
  launch_masked_confidence(params, stream);
  return {out.x0, out.confidence, out.lse};
}

}  // namespace dk
