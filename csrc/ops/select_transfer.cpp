#include "ops/select_transfer.h"

#include "cpu/select_transfer.h"
#include "ops/checks.h"
#include "ops/select_transfer_common.h"

namespace dk {

at::Tensor select_transfer_cpu(const at::Tensor& confidence, c10::string_view rule,
                               const std::optional<at::Tensor>& k, int64_t k_value, double threshold,
                               double eps, double factor, double alg_temp, int64_t seed, int64_t offset,
                               const std::optional<at::Tensor>& x, const std::optional<at::Tensor>& x0,
                               const std::optional<at::Tensor>& seed_tensor,
                               const std::optional<at::Tensor>& offset_tensor) {
  const SelectTransferArgs args{confidence, std::string_view(rule.data(), rule.size()), k, k_value, threshold, eps,
                                factor, alg_temp, seed, offset, x, x0, seed_tensor, offset_tensor};
  at::Tensor mask;
  const auto params = prepare_select_transfer(args, mask);
  // Host memory: per-row counts can be checked here for free (the CUDA path clamps them to 0
  // instead of synchronising).
  for (int64_t b = 0; params.k != nullptr && b < params.batch; ++b) {
    DK_CHECK_ARG(params.k[b * params.k_stride] >= 0, "k", "must be >= 0, got ", params.k[b * params.k_stride],
                 " for row ", b);
  }
  cpu::select_transfer(params);
  return mask;
}

}  // namespace dk
