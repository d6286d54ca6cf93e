// The top-p / top-k thresholds of the split-vocabulary path (masked_confidence_split.cuh), for
// rows too few to give every SM a row: the same three-level radix select as the one-block kernel
// (sampling_block.cuh, radix_threshold), but each level's histogram is built by every slice of
// the row and summed into one per-row histogram in global memory by integer atomics (exact, so
// the sum and the pick are the same in any order), then one block per row picks the bin.
//
// Launches per call: prep (per row: merge the slices' statistics, reset the searches), then per
// filter and level a histogram launch over the slices and a pick launch per row.
#pragma once
#include "simt/simt.h"  // first: under g++ it defines the CUDA keywords
#include <cstdint>
#include "kernels/masked_confidence_params.h"
#include "kernels/sampling_block.cuh"
#include "kernels/sampling_row.cuh"
#include "kernels/softmax_stats.cuh"

namespace dk {

// Per row; index 0 is top-p (by mass), 1 is top-k (by count).
struct FilterState {
  float lmax;                     // the row's max logit (mass reference: lmax / T)
  int32_t finite;                 // computed row whose logits are finite: the later launches run
  int32_t searching[2];           // that filter's search is still on
  uint32_t prefix[2];             // key bits decided so far
  unsigned long long want[2];     // remaining target (count, or mass in 2^-40 units)
  float tau[2];                   // the threshold found; -inf: keeps everything (or no filter)
};

// The temperature the filters see: 1 for a greedy row (as in the one-block kernel).
DK_HOST_DEVICE float filter_inv(const RowSettings& s) { return s.sampled() ? s.inv_temperature : 1.f; }

// One block per row: the row's statistics from its slices, the searches reset, the histogram
// zeroed. Rows the filters do not apply to keep tau = -inf.
template <int kThreads, typename Partial>
__global__ void __launch_bounds__(kThreads) filter_prep_kernel(MaskedConfidenceParams p, int64_t slices,
                                                              const Partial* partials, FilterState* states,
                                                              unsigned long long* hist) {
  const int64_t rows = p.batch * p.seq;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    unsigned long long* h = hist + row * kRadixBins;
    for (int i = threadIdx.x; i < kRadixBins; i += kThreads) h[i] = 0;
    if (threadIdx.x != 0) continue;
    const int64_t b = row / p.seq;
    const int64_t l = row - b * p.seq;
    FilterState f;
    f.lmax = -INFINITY;
    f.finite = 0;
    for (int i = 0; i < 2; ++i) f.searching[i] = 0, f.prefix[i] = 0, f.want[i] = 0, f.tau[i] = -INFINITY;
    if (row_active(p, b, l, p.x[b * p.x_stride_b + l * p.x_stride_l])) {
      SoftmaxStats st = partials[row * slices].raw;
      for (int64_t i = 1; i < slices; ++i) st = softmax_stats_merge(st, partials[row * slices + i].raw);
      const RowSettings s = row_settings(p, b);
      f.lmax = st.max;
      f.finite = st.first_nan == kNoIndex && st.max > -INFINITY && st.max < INFINITY;
      // As the one-block kernel: the filters shape the draw, and Dream's confidence (the sampled
      // distribution's); a greedy row with LLaDA's confidence or random ones needs neither.
      const bool shaped = s.sampled() || (!p.confidence_from_logits && p.kind != ConfidenceKind::Random);
      if (f.finite && shaped) {
        f.searching[0] = s.top_p < 1.f;
        f.searching[1] = s.top_k > 0 && s.top_k < p.vocab;
        f.want[1] = static_cast<unsigned long long>(s.top_k);
      }
    }
    states[row] = f;
  }
}

// One level of filter `kFilter` (0: top-p, 1: top-k): each slice adds its histogram (built in
// shared memory) into the row's.
template <typename T, int kThreads, int kFilter>
__global__ void __launch_bounds__(kThreads) filter_histogram_kernel(MaskedConfidenceParams p, int64_t slices,
                                                                   int64_t length, int level,
                                                                   const FilterState* states,
                                                                   unsigned long long* hist) {
  constexpr bool kByMass = kFilter == 0;
  SIMT_SHARED(unsigned long long, local, [kRadixBins]);
  const RadixLevel lv = radix_level(level);
  const int64_t jobs = p.batch * p.seq * slices;
  for (int64_t job = blockIdx.x; job < jobs; job += gridDim.x) {
    const int64_t row = job / slices;
    const FilterState& f = states[row];
    if (!f.searching[kFilter]) continue;  // uniform
    const int64_t slice = job - row * slices;
    const int64_t b = row / p.seq;
    const int64_t l = row - b * p.seq;
    const T* logits = static_cast<const T*>(p.logits) + b * p.logits_stride_b + l * p.logits_stride_l;
    const float inv = filter_inv(row_settings(p, b));
    const RowPenalty penalty = row_penalty(p, b, l);
    const RowValues<T> z{logits, p.suppress_ids, p.num_suppress, inv, penalty};
    const int64_t begin = slice * length;
    const int64_t end = begin + length < p.vocab ? begin + length : p.vocab;
    for (int i = threadIdx.x; i < kRadixBins; i += kThreads) local[i] = 0;
    __syncthreads();
    radix_histogram<kThreads, kByMass>(z, begin, end, f.lmax * inv, lv, f.prefix[kFilter], local);
    __syncthreads();
    unsigned long long* h = hist + row * kRadixBins;
    for (int i = threadIdx.x; i < static_cast<int>(lv.bins); i += kThreads)
      if (local[i] != 0) atomicAdd(&h[i], local[i]);
    __syncthreads();  // local is zeroed by the next job
  }
}

// One block per row: the bin of this level from the summed histogram, the search advanced, the
// histogram zeroed for the next level.
template <int kThreads, int kFilter>
__global__ void __launch_bounds__(kThreads) filter_pick_kernel(MaskedConfidenceParams p, int level,
                                                              FilterState* states, unsigned long long* hist) {
  constexpr bool kByMass = kFilter == 0;
  SIMT_SHARED(unsigned long long, scan, [2 * kThreads]);
  SIMT_SHARED(unsigned long long, pick, [2]);
  const RadixLevel lv = radix_level(level);
  const int64_t rows = p.batch * p.seq;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    FilterState& f = states[row];
    if (!f.searching[kFilter]) continue;  // uniform
    unsigned long long* h = hist + row * kRadixBins;
    const float top_p = row_settings(p, row / p.seq).top_p;
    unsigned long long want = f.want[kFilter];
    const unsigned long long chosen = radix_pick<kThreads, kByMass>(h, lv, level, top_p, want, scan, pick);
    // radix_pick ends with a barrier: every thread has read the histogram.
    for (int i = threadIdx.x; i < kRadixBins; i += kThreads) h[i] = 0;
    if (threadIdx.x == 0) {
      if (chosen == ~0ull) {  // the mass never passes top_p: keep everything
        f.searching[kFilter] = 0;
      } else {
        f.prefix[kFilter] |= static_cast<uint32_t>(chosen) << lv.shift;
        f.want[kFilter] = want;
        if (level == 2) {
          f.searching[kFilter] = 0;
          f.tau[kFilter] = from_order_key(f.prefix[kFilter]);
        }
      }
    }
    __syncthreads();  // the state is read again by the next row's job only after this
  }
}

}  // namespace dk
