// Torch-facing entry of the forward_mask launcher (CUDA build and emulated module).
#include "kernels/launchers.h"
#include "ops/forward_mask.h"
#include "ops/forward_mask_common.h"

namespace dk {

ForwardMaskResult forward_mask_launcher(const at::Tensor& x0, int64_t mask_id, double eps,
                                        const std::optional<at::Tensor>& t,
                                        const std::optional<at::Tensor>& prompt_lengths, int64_t seed,
                                        int64_t offset, bool antithetic, void* stream) {
  ForwardMaskTensors out;
  const auto p = prepare_forward_mask(x0, mask_id, eps, t, prompt_lengths, seed, offset, antithetic, out);
  launch_forward_mask(p, stream);
  return {out.x_t, out.masked, out.p_mask};
}

}  // namespace dk
