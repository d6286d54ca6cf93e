// Host launcher of masked_confidence. nvcc builds it for the GPU; csrc/emulated/ compiles this
// same file with g++ against the SIMT emulator. Three paths:
//   - few rows, no filter (any confidence kind): the split-vocabulary pair of kernels
//     (masked_confidence_split.cuh explains the occupancy math);
//   - greedy defaults: the one-pass kernel (masked_confidence.cuh);
//   - anything else: the general one-block-per-row kernel (masked_confidence_general.cuh).
#include "simt/simt.h"
#include <algorithm>
#include <stdexcept>
#include "kernels/launchers.h"
#include "kernels/masked_confidence.cuh"
#include "kernels/masked_confidence_general.cuh"
#include "kernels/masked_confidence_split.cuh"

namespace dk {
namespace {

// The kernels stride over their jobs, so the grid cap only bounds the launch, not the problem.
constexpr int64_t kMaxBlocks = int64_t{1} << 30;

template <typename T>
void launch_typed(const MaskedConfidenceParams& p, cudaStream_t s) {
  constexpr int kThreads = 256;
  const int64_t rows = p.batch * p.seq;
  const SplitPlan plan = split_plan(p);
  if (plan.slices > 1) {
    if (p.scratch == nullptr || p.scratch_bytes < masked_confidence_scratch_bytes(p))
      throw std::runtime_error("masked_confidence: the split-vocabulary path needs its scratch buffer");
    auto* partials = static_cast<SlicePartial*>(p.scratch);
    const dim3 grid(static_cast<unsigned>(std::min(rows * plan.slices, kMaxBlocks)));
    simt::launch(masked_confidence_slice_kernel<T, kThreads>, grid, dim3(kThreads), 0, s, p, plan, partials);
    simt::check_launch("masked_confidence (slices)");
    constexpr int kMergeThreads = 128;
    const dim3 merge_grid(static_cast<unsigned>(std::min((rows + kMergeThreads - 1) / kMergeThreads, kMaxBlocks)));
    simt::launch(masked_confidence_merge_kernel<T>, merge_grid, dim3(kMergeThreads), 0, s, p, plan,
                 static_cast<const SlicePartial*>(partials));
    return;
  }
  const dim3 grid(static_cast<unsigned>(std::min(rows, kMaxBlocks)));
  if (p.general())
    simt::launch(masked_confidence_general_kernel<T, kThreads>, grid, dim3(kThreads), 0, s, p);
  else
    simt::launch(masked_confidence_kernel<T, kThreads>, grid, dim3(kThreads), 0, s, p);
}

}  // namespace

int64_t masked_confidence_scratch_bytes(const MaskedConfidenceParams& p) {
  const SplitPlan plan = split_plan(p);
  return plan.slices > 1 ? p.batch * p.seq * plan.slices * static_cast<int64_t>(sizeof(SlicePartial)) : 0;
}

void launch_masked_confidence(const MaskedConfidenceParams& p, void* stream) {
  if (p.batch * p.seq == 0) return;
  const auto s = static_cast<cudaStream_t>(stream);
  switch (p.logits_kind) {
    case ScalarKind::Float32: launch_typed<float>(p, s); break;
    case ScalarKind::Float16: launch_typed<__half>(p, s); break;
    case ScalarKind::BFloat16: launch_typed<__nv_bfloat16>(p, s); break;
  }
  simt::check_launch("masked_confidence");
}

}  // namespace dk
