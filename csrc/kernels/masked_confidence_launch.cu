// Host launcher of the greedy masked-confidence kernel. nvcc builds it for the GPU;
// csrc/emulated/ compiles this same file with g++ against the SIMT emulator.
#include "simt/simt.h"
#include <algorithm>
#include <stdexcept>
#include "kernels/launchers.h"
#include "kernels/masked_confidence.cuh"

namespace dk {

void launch_masked_confidence(const MaskedConfidenceParams& p, void* stream) {
  // Not yet written for CUDA: temperature, top-p/top-k, suppressed ids and the non-prob kinds.
  // A clear error rather than a silently greedy result.
  if (p.general())
    throw std::invalid_argument(
        "diffusion_kernels: masked_confidence with temperature, top_p, top_k, suppress_ids or a "
        "confidence other than 'prob' is implemented on CPU only so far; the CUDA kernel covers the "
        "greedy proposal (with block_start/block_end and return_lse)");
  const int64_t rows = p.batch * p.seq;
  if (rows == 0) return;
  constexpr int kThreads = 256;
  // The kernel strides over rows, so the grid cap only bounds the launch, not the problem.
  constexpr int64_t kMaxBlocks = int64_t{1} << 30;
  const dim3 grid(static_cast<unsigned>(std::min(rows, kMaxBlocks)));
  const dim3 block(kThreads);
  const auto s = static_cast<cudaStream_t>(stream);
  switch (p.logits_kind) {
    case ScalarKind::Float32:
      simt::launch(masked_confidence_kernel<float, kThreads>, grid, block, 0, s, p);
      break;
    case ScalarKind::Float16:
      simt::launch(masked_confidence_kernel<__half, kThreads>, grid, block, 0, s, p);
      break;
    case ScalarKind::BFloat16:
      simt::launch(masked_confidence_kernel<__nv_bfloat16, kThreads>, grid, block, 0, s, p);
      break;
  }
  simt::check_launch("masked_confidence");
}

}  // namespace dk
