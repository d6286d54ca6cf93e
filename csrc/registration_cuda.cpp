// CUDA kernels of torch.ops.diffusion_kernels: device guard + current stream, then the
// torch-free launcher.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "ops/attention.h"
#include "ops/masked_confidence.h"
#include "ops/select_transfer.h"
#include "ops/masked_ce.h"
#include "ops/forward_mask.h"

namespace {

dk::MaskedConfidenceResult masked_confidence_cuda(const at::Tensor& logits, const at::Tensor& x,
                                                  int64_t mask_id, DK_MASKED_CONFIDENCE_OPTION_PARAMS) {
  const c10::cuda::CUDAGuard guard(logits.device());
  return dk::masked_confidence_launcher(logits, x, mask_id, DK_MASKED_CONFIDENCE_OPTION_ARGS,
                                        c10::cuda::getCurrentCUDAStream().stream());
}

at::Tensor select_transfer_cuda(const at::Tensor& confidence, c10::string_view rule,
                                const std::optional<at::Tensor>& k, int64_t k_value, double threshold,
                                double eps, double factor, double alg_temp, int64_t seed, int64_t offset,
                                const std::optional<at::Tensor>& x, const std::optional<at::Tensor>& x0,
                                const std::optional<at::Tensor>& seed_tensor,
                                const std::optional<at::Tensor>& offset_tensor) {
  const c10::cuda::CUDAGuard guard(confidence.device());
  return dk::select_transfer_launcher({confidence, std::string_view(rule.data(), rule.size()), k, k_value,
                                       threshold, eps, factor, alg_temp, seed, offset, x, x0, seed_tensor, offset_tensor},
                                      c10::cuda::getCurrentCUDAStream().stream());
}

std::tuple<at::Tensor, at::Tensor> attention_with_kv_cache_cuda(DK_ATTENTION_ARGS) {
  const c10::cuda::CUDAGuard guard(q.device());
  return dk::attention_with_kv_cache_launcher(DK_ATTENTION_ARG_NAMES, c10::cuda::getCurrentCUDAStream().stream());
}

std::tuple<at::Tensor, at::Tensor> masked_ce_forward_cuda(const at::Tensor& logits, const at::Tensor& targets,
                                                          const at::Tensor& masked) {
  const c10::cuda::CUDAGuard guard(logits.device());
  return dk::masked_ce_forward_launcher(logits, targets, masked, c10::cuda::getCurrentCUDAStream().stream());
}

at::Tensor masked_ce_backward_cuda(const at::Tensor& grad_ce, const at::Tensor& grad_lse, const at::Tensor& logits,
                                   const at::Tensor& targets, const at::Tensor& masked, const at::Tensor& lse) {
  const c10::cuda::CUDAGuard guard(logits.device());
  return dk::masked_ce_backward_launcher(grad_ce, grad_lse, logits, targets, masked, lse,
                                         c10::cuda::getCurrentCUDAStream().stream());
}

std::tuple<at::Tensor, at::Tensor> masked_ce_forward_backward_cuda(at::Tensor& logits, const at::Tensor& targets,
                                                                   const at::Tensor& masked, const at::Tensor& scale) {
  const c10::cuda::CUDAGuard guard(logits.device());
  return dk::masked_ce_forward_backward_launcher(logits, targets, masked, scale,
                                                 c10::cuda::getCurrentCUDAStream().stream());
}

dk::ForwardMaskResult forward_mask_cuda(const at::Tensor& x0, int64_t mask_id, double eps,
                                        const std::optional<at::Tensor>& t,
                                        const std::optional<at::Tensor>& prompt_lengths, int64_t seed,
                                        int64_t offset, bool antithetic) {
  const c10::cuda::CUDAGuard guard(x0.device());
  return dk::forward_mask_launcher(x0, mask_id, eps, t, prompt_lengths, seed, offset, antithetic,
                                   c10::cuda::getCurrentCUDAStream().stream());
}

}  // namespace

TORCH_LIBRARY_IMPL(diffusion_kernels, CUDA, m) {
  m.impl("masked_confidence", &masked_confidence_cuda);
  m.impl("select_transfer", &select_transfer_cuda);
  m.impl("attention_with_kv_cache", &attention_with_kv_cache_cuda);
  m.impl("masked_ce_forward", &masked_ce_forward_cuda);
  m.impl("masked_ce_backward", &masked_ce_backward_cuda);
  m.impl("masked_ce_forward_backward_", &masked_ce_forward_backward_cuda);
  m.impl("forward_mask", &forward_mask_cuda);
}
