// CUDA kernels of torch.ops.diffusion_kernels: device guard + current stream, then the
// torch-free launcher.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "ops/masked_confidence.h"
#include "ops/masked_ce.h"
#include "ops/forward_mask.h"

namespace {

std::tuple<at::Tensor, at::Tensor> masked_confidence_cuda(const at::Tensor& logits,
                                                          const at::Tensor& x, int64_t mask_id) {
  const c10::cuda::CUDAGuard guard(logits.device());
  return dk::masked_confidence_launcher(logits, x, mask_id,
                                        c10::cuda::getCurrentCUDAStream().stream());
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
  m.impl("masked_ce_forward", &masked_ce_forward_cuda);
  m.impl("masked_ce_backward", &masked_ce_backward_cuda);
  m.impl("masked_ce_forward_backward_", &masked_ce_forward_backward_cuda);
  m.impl("forward_mask", &forward_mask_cuda);
}
