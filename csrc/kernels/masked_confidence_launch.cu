// Host launcher of masked_confidence. nvcc builds it for the GPU; setup.py has g++ compile this
// same file against the SIMT emulator. Three paths:
//   - few rows (any option): the split-vocabulary kernels: slices, then a merge, with the filter
//     threshold launches in between when top-p / top-k may apply (masked_confidence_split.cuh
//     explains the occupancy math);
//   - greedy defaults: the one-pass kernel (masked_confidence.cuh);
//   - anything else: the general one-block-per-row kernel (masked_confidence_general.cuh).
// Greedy calls take one of two kernel variants, chosen by the environment variable DK_MC_KERNEL
// so that one GPU run can time both: "v1" (masked_confidence.cuh and the general slice kernel)
// or "v2" (masked_confidence_vec.cuh: 16-byte loads, per-trip maxima); unset or empty means
// kGreedyV2ByDefault. It is read at every call (a getenv, well under a microsecond) so that a test
// can switch it within one process. Sampled rows (temperature > 0) likewise take DK_MC_SAMPLE:
// "v1" skips a Gumbel group only against the thread's own best, "v2" (default) against the
// perturbed score of the row's (split path: the slice's) argmax from the start; the tokens are
// the same (sampling_block.cuh, thread_gumbel_best).
#include "simt/simt.h"
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include "kernels/launchers.h"
#include "kernels/masked_confidence.cuh"
#include "kernels/masked_confidence_general.cuh"
#include "kernels/masked_confidence_split.cuh"
#include "kernels/masked_confidence_vec.cuh"

namespace dk {
namespace {

// The kernels stride over their jobs, so the grid cap only bounds the launch, not the problem.
constexpr int64_t kMaxBlocks = int64_t{1} << 30;

// The A/B switches DK_MC_KERNEL and DK_MC_SAMPLE: whether `variable` selects v2 ("v1" or "v2";
// unset or empty: `by_default`).
bool selects_v2(const char* variable, bool by_default) {
  const char* v = std::getenv(variable);
  if (v == nullptr || *v == '\0') return by_default;
  if (std::strcmp(v, "v1") == 0) return false;
  if (std::strcmp(v, "v2") == 0) return true;
  throw std::invalid_argument(std::string("masked_confidence: environment variable ") + variable +
                              " must be v1 or v2, got '" + v + "'");
}

constexpr bool kGreedyV2ByDefault = true;  // DK_MC_KERNEL
constexpr bool kSampleV2ByDefault = true;  // DK_MC_SAMPLE

// The split path's scratch: the slices' partials, then (filters) a state and a histogram per row.
struct SplitScratch {
  SlicePartial* partials;
  FilterState* states;
  unsigned long long* hist;
};

int64_t round16(int64_t bytes) { return (bytes + 15) / 16 * 16; }

int64_t split_scratch_bytes(const MaskedConfidenceParams& p, const SplitPlan& plan, SplitScratch* out) {
  const int64_t rows = p.batch * p.seq;
  const int64_t partial_bytes = round16(rows * plan.slices * static_cast<int64_t>(sizeof(SlicePartial)));
  const int64_t state_bytes = plan.filtered ? round16(rows * static_cast<int64_t>(sizeof(FilterState))) : 0;
  const int64_t hist_bytes = plan.filtered ? rows * kRadixBins * static_cast<int64_t>(sizeof(unsigned long long)) : 0;
  if (out != nullptr) {
    char* base = static_cast<char*>(p.scratch);
    out->partials = reinterpret_cast<SlicePartial*>(base);
    out->states = plan.filtered ? reinterpret_cast<FilterState*>(base + partial_bytes) : nullptr;
    out->hist = plan.filtered ? reinterpret_cast<unsigned long long*>(base + partial_bytes + state_bytes) : nullptr;
  }
  return partial_bytes + state_bytes + hist_bytes;
}

template <typename T, int kThreads, int kFilter>
void launch_filter_levels(const MaskedConfidenceParams& p, const SplitPlan& plan, const SplitScratch& w,
                          cudaStream_t s) {
  const int64_t rows = p.batch * p.seq;
  const dim3 grid(static_cast<unsigned>(std::min(rows * plan.slices, kMaxBlocks)));
  const dim3 row_grid(static_cast<unsigned>(std::min(rows, kMaxBlocks)));
  for (int level = 0; level < 3; ++level) {
    simt::launch(filter_histogram_kernel<T, kThreads, kFilter>, grid, dim3(kThreads), 0, s, p, plan.slices,
                 plan.length, level, static_cast<const FilterState*>(w.states), w.hist);
    simt::check_launch("masked_confidence (filter histogram)");
    simt::launch(filter_pick_kernel<kThreads, kFilter>, row_grid, dim3(kThreads), 0, s, p, level, w.states, w.hist);
    simt::check_launch("masked_confidence (filter pick)");
  }
}

template <typename T>
void launch_split(const MaskedConfidenceParams& p, const SplitPlan& plan, bool v2, cudaStream_t s) {
  constexpr int kThreads = 256;
  const int64_t rows = p.batch * p.seq;
  if (p.scratch == nullptr || p.scratch_bytes < masked_confidence_scratch_bytes(p))
    throw std::runtime_error("masked_confidence: the split-vocabulary path needs its scratch buffer");
  SplitScratch w;
  split_scratch_bytes(p, plan, &w);
  const dim3 grid(static_cast<unsigned>(std::min(rows * plan.slices, kMaxBlocks)));
  if (v2 && p.penalized()) {
    simt::launch(masked_confidence_vec_slice_kernel<T, kThreads, true>, grid, dim3(kThreads), 0, s, p, plan, w.partials);
    simt::check_launch("masked_confidence (vector slices)");
  } else if (v2) {
    simt::launch(masked_confidence_vec_slice_kernel<T, kThreads, false>, grid, dim3(kThreads), 0, s, p, plan, w.partials);
    simt::check_launch("masked_confidence (vector slices)");
  } else if (!plan.filtered) {
    simt::launch(masked_confidence_slice_kernel<T, kThreads, SlicePhase::All>, grid, dim3(kThreads), 0, s, p, plan,
                 w.partials, static_cast<const FilterState*>(nullptr));
    simt::check_launch("masked_confidence (slices)");
  } else {
    simt::launch(masked_confidence_slice_kernel<T, kThreads, SlicePhase::Stats>, grid, dim3(kThreads), 0, s, p,
                 plan, w.partials, static_cast<const FilterState*>(nullptr));
    simt::check_launch("masked_confidence (slice statistics)");
    const dim3 row_grid(static_cast<unsigned>(std::min(rows, kMaxBlocks)));
    simt::launch(filter_prep_kernel<kThreads, SlicePartial>, row_grid, dim3(kThreads), 0, s, p, plan.slices,
                 static_cast<const SlicePartial*>(w.partials), w.states, w.hist);
    simt::check_launch("masked_confidence (filter prep)");
    // Only the filters some row may have: the rows' own values are read on the device.
    if (p.top_p != nullptr || p.top_p_value < 1.f) launch_filter_levels<T, kThreads, 0>(p, plan, w, s);
    if (p.top_k != nullptr || (p.top_k_value > 0 && p.top_k_value < p.vocab))
      launch_filter_levels<T, kThreads, 1>(p, plan, w, s);
    simt::launch(masked_confidence_slice_kernel<T, kThreads, SlicePhase::Draw>, grid, dim3(kThreads), 0, s, p, plan,
                 w.partials, static_cast<const FilterState*>(w.states));
    simt::check_launch("masked_confidence (slice draw)");
  }
  constexpr int kMergeThreads = 128;
  const dim3 merge_grid(static_cast<unsigned>(std::min((rows + kMergeThreads - 1) / kMergeThreads, kMaxBlocks)));
  simt::launch(masked_confidence_merge_kernel<T>, merge_grid, dim3(kMergeThreads), 0, s, p, plan,
               static_cast<const SlicePartial*>(w.partials));
}

template <typename T>
void launch_typed(const MaskedConfidenceParams& p, cudaStream_t s) {
  constexpr int kThreads = 256;
  const int64_t rows = p.batch * p.seq;
  const SplitPlan plan = split_plan(p);
  const bool v2 = !p.general() && selects_v2("DK_MC_KERNEL", kGreedyV2ByDefault);
  if (plan.slices > 1) return launch_split<T>(p, plan, v2, s);
  const dim3 grid(static_cast<unsigned>(std::min(rows, kMaxBlocks)));
  if (p.general())
    simt::launch(masked_confidence_general_kernel<T, kThreads>, grid, dim3(kThreads), 0, s, p);
  else if (v2 && p.penalized())
    simt::launch(masked_confidence_vec_kernel<T, kThreads, true>, grid, dim3(kThreads), 0, s, p);
  else if (v2)
    simt::launch(masked_confidence_vec_kernel<T, kThreads, false>, grid, dim3(kThreads), 0, s, p);
  else if (p.penalized())
    simt::launch(masked_confidence_kernel<T, kThreads, true>, grid, dim3(kThreads), 0, s, p);
  else
    simt::launch(masked_confidence_kernel<T, kThreads, false>, grid, dim3(kThreads), 0, s, p);
}

}  // namespace

int64_t masked_confidence_scratch_bytes(const MaskedConfidenceParams& p) {
  const SplitPlan plan = split_plan(p);
  return plan.slices > 1 ? split_scratch_bytes(p, plan, nullptr) : 0;
}

void launch_masked_confidence(const MaskedConfidenceParams& params, void* stream) {
  if (params.batch * params.seq == 0) return;
  MaskedConfidenceParams p = params;
  p.gumbel_floor = p.general() && selects_v2("DK_MC_SAMPLE", kSampleV2ByDefault);  // only sampled calls read it
  const auto s = static_cast<cudaStream_t>(stream);
  switch (p.logits_kind) {
    case ScalarKind::Float32: launch_typed<float>(p, s); break;
    case ScalarKind::Float16: launch_typed<__half>(p, s); break;
    case ScalarKind::BFloat16: launch_typed<__nv_bfloat16>(p, s); break;
    case ScalarKind::Float64: throw std::invalid_argument("masked_confidence: float64 logits are not supported");
  }
  simt::check_launch("masked_confidence");
}

}  // namespace dk
