// Host launcher of forward_mask. nvcc builds it for the GPU; setup.py has g++ compile this same
// file against the SIMT emulator.
#include "simt/simt.h"
#include <algorithm>

#include "kernels/forward_mask.cuh"
#include "kernels/launchers.h"

namespace dk {

void launch_forward_mask(const ForwardMaskParams& p, void* stream) {
  if (p.batch == 0 || p.seq == 0) return;
  constexpr int kThreads = 256;
  constexpr int64_t kMaxBlocks = int64_t{1} << 30;  // the kernel strides over rows
  const dim3 grid(static_cast<unsigned>(std::min(p.batch, kMaxBlocks)));
  simt::launch(forward_mask_kernel<kThreads>, grid, dim3(kThreads), 0, static_cast<cudaStream_t>(stream), p);
  simt::check_launch("forward_mask");
}

}  // namespace dk
