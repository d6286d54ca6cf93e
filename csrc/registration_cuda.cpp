// CUDA kernels of torch.ops.diffusion_kernels: device guard + current stream, then the
// torch-free launcher.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "ops/masked_confidence.h"

namespace {

dk::MaskedConfidenceResult masked_confidence_cuda(const at::Tensor& logits, const at::Tensor& x,
                                                  int64_t mask_id, DK_MASKED_CONFIDENCE_OPTION_PARAMS) {
  const c10::cuda::CUDAGuard guard(logits.device());
  return dk::masked_confidence_launcher(logits, x, mask_id, DK_MASKED_CONFIDENCE_OPTION_ARGS,
                                        c10::cuda::getCurrentCUDAStream().stream());
}

}  // namespace

TORCH_LIBRARY_IMPL(diffusion_kernels, CUDA, m) {
  m.impl("masked_confidence", &masked_confidence_cuda);
}
