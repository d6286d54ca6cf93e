// Host launchers of the masked cross-entropy kernels. nvcc builds them for the GPU;
// setup.py has g++ compile this same file against the SIMT emulator.
#include "simt/simt.h"
#include <algorithm>
#include <stdexcept>
#include <string>

#include "kernels/launchers.h"
#include "kernels/masked_ce.cuh"

namespace dk {
namespace {

constexpr int kThreads = 256;
constexpr int kPerThread = 4;            // backward: elements per thread per tile
constexpr int64_t kMaxRowBlocks = int64_t{1} << 30;
constexpr int64_t kMaxGridY = 65535;     // the backward kernel strides over rows beyond it

void require_cuda_dtype(ScalarKind kind, const char* what) {
  if (kind == ScalarKind::Float64) throw std::invalid_argument(std::string(what) + ": float64 logits are CPU-only");
}

}  // namespace

void launch_masked_ce_forward(const MaskedCeParams& p, void* stream) {
  require_cuda_dtype(p.kind, "masked_ce_forward");
  if (p.rows == 0) return;
  const dim3 grid(static_cast<unsigned>(std::min(p.rows, kMaxRowBlocks)));
  const auto s = static_cast<cudaStream_t>(stream);
  switch (p.kind) {
    case ScalarKind::Float32: simt::launch(masked_ce_forward_kernel<float, kThreads>, grid, dim3(kThreads), 0, s, p); break;
    case ScalarKind::Float16: simt::launch(masked_ce_forward_kernel<__half, kThreads>, grid, dim3(kThreads), 0, s, p); break;
    case ScalarKind::BFloat16: simt::launch(masked_ce_forward_kernel<__nv_bfloat16, kThreads>, grid, dim3(kThreads), 0, s, p); break;
    case ScalarKind::Float64: break;
  }
  simt::check_launch("masked_ce_forward");
}

void launch_masked_ce_backward(const MaskedCeParams& p, void* stream) {
  require_cuda_dtype(p.kind, "masked_ce_backward");
  if (p.rows == 0 || p.vocab == 0) return;
  constexpr int64_t kTile = int64_t{kThreads} * kPerThread;
  const dim3 grid(static_cast<unsigned>((p.vocab + kTile - 1) / kTile),
                  static_cast<unsigned>(std::min(p.rows, kMaxGridY)));
  const auto s = static_cast<cudaStream_t>(stream);
  switch (p.kind) {
    case ScalarKind::Float32: simt::launch(masked_ce_backward_kernel<float, kThreads, kPerThread>, grid, dim3(kThreads), 0, s, p); break;
    case ScalarKind::Float16: simt::launch(masked_ce_backward_kernel<__half, kThreads, kPerThread>, grid, dim3(kThreads), 0, s, p); break;
    case ScalarKind::BFloat16: simt::launch(masked_ce_backward_kernel<__nv_bfloat16, kThreads, kPerThread>, grid, dim3(kThreads), 0, s, p); break;
    case ScalarKind::Float64: break;
  }
  simt::check_launch("masked_ce_backward");
}

void launch_masked_ce_forward_backward(const MaskedCeParams& p, void* stream) {
  require_cuda_dtype(p.kind, "masked_ce_forward_backward_");
  if (p.rows == 0) return;
  const dim3 grid(static_cast<unsigned>(std::min(p.rows, kMaxRowBlocks)));
  const auto s = static_cast<cudaStream_t>(stream);
  switch (p.kind) {
    case ScalarKind::Float32: simt::launch(masked_ce_forward_backward_kernel<float, kThreads>, grid, dim3(kThreads), 0, s, p); break;
    case ScalarKind::Float16: simt::launch(masked_ce_forward_backward_kernel<__half, kThreads>, grid, dim3(kThreads), 0, s, p); break;
    case ScalarKind::BFloat16: simt::launch(masked_ce_forward_backward_kernel<__nv_bfloat16, kThreads>, grid, dim3(kThreads), 0, s, p); break;
    case ScalarKind::Float64: break;
  }
  simt::check_launch("masked_ce_forward_backward_");
}

}  // namespace dk
