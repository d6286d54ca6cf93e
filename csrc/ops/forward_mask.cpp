#include "ops/forward_mask.h"

#include "cpu/forward_mask.h"
#include "ops/forward_mask_common.h"

namespace dk {

ForwardMaskResult forward_mask_cpu(const at::Tensor& x0, int64_t mask_id, double eps,
                                   const std::optional<at::Tensor>& t,
                                   const std::optional<at::Tensor>& prompt_lengths, int64_t seed,
                                   int64_t offset, bool antithetic) {
  ForwardMaskTensors out;
  const auto p = prepare_forward_mask(x0, mask_id, eps, t, prompt_lengths, seed, offset, antithetic, out);
  cpu::forward_mask(p);
  return {out.x_t, out.masked, out.p_mask};
}

}  // namespace dk
