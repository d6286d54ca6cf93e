// Split-vocabulary path of masked_confidence for few rows: several blocks per row each reduce a
// slice of the vocabulary into partial statistics in a global scratch; a last launch merges the
// slices of each row in slice order (a fixed serial order: deterministic) and writes the outputs.
//
// Why: one block per row leaves batch 1 x block 32 = 32 blocks for a 132-SM H100. A block of 256
// threads with 4 loads in flight each has 2 KiB of bf16 requests outstanding; at ~600 ns of DRAM
// latency that is ~3.5 GB/s per block (Little's law), so 32 blocks pull ~110 GB/s of the 3.35 TB/s
// and 24 % of the SMs have any work. The H100 keeps 2048 threads = 8 such blocks per SM resident
// (registers and shared memory permitting), 1056 blocks on 132 SMs; about 4 per SM (528 blocks,
// ~1 MiB in flight) already saturates DRAM, so the launcher cuts each row into
// ceil(528 / rows) slices of at least kMinSliceLength ids (each thread then still has >= 8 ids,
// enough to amortise the partial's write) and caps the slices at 1024 per row.
// On a GPU what binds is each thread's serial softmax_stats_push chain rather than the requests in
// flight, so wider (16-byte) loads do not help this path.
//
// Unfiltered rows (greedy or Gumbel-max at any temperature, every confidence kind
// from either source, block bounds, suppressed ids, lse) take one slice launch: their statistics
// merge exactly as online softmax statistics and Gumbel maxima do. margin and neg_entropy take a second pass over the
// slice (it is in L1/L2 by then) for the top two values and sum e (z - m) against the slice's own
// max m, which the merge rescales to the row's: e^(m - M) (h + (m - M) s).
//
// Filtered rows (top-p / top-k) need the row's threshold before the draw: a statistics launch
// over the slices, then per radix level a histogram launch over the slices (summed into one
// histogram per row by integer atomics: exact in any order) and a pick launch per row
// (masked_confidence_split_filters.cuh), then the draw and the kept set's statistics over the
// slices against the row's max, and the merge: with both filters 16 launches, none of which waits
// for the host (per-row filter values are read on the device).
#pragma once
#include "simt/simt.h"  // first: under g++ it defines the CUDA keywords
#include <cstdint>
#include "kernels/masked_confidence_params.h"
#include "kernels/masked_confidence_split_filters.cuh"
#include "kernels/sampling_block.cuh"
#include "kernels/sampling_row.cuh"
#include "kernels/softmax_stats.cuh"

namespace dk {

constexpr int64_t kSplitTargetBlocks = 4 * 132;
constexpr int64_t kMinSliceLength = 2048;
constexpr int64_t kMaxSlices = 1024;

struct SlicePartial {
  SoftmaxStats raw;  // online statistics of the logits (argmax, non-finite policy, lse, LLaDA prob)
  SoftmaxStats z;    // of z = logits / T (the sampled distribution's normaliser); unused when greedy
  Best best;         // the slice's Gumbel argmax
  DistStats dist;    // margin / neg_entropy: statistics of their distribution against dist_max
  float dist_max;    // the slice's max of that distribution (-inf: nothing to add)
};

// The distribution margin and neg_entropy are computed on: the raw logits (LLaDA's source) or
// z = logits / T (Dream's; logits themselves when greedy).
DK_HOST_DEVICE float dist_inv(const MaskedConfidenceParams& p, const RowSettings& s) {
  return !p.confidence_from_logits && s.sampled() ? s.inv_temperature : 1.f;
}
DK_HOST_DEVICE bool needs_dist(ConfidenceKind kind) {
  return kind == ConfidenceKind::Margin || kind == ConfidenceKind::NegEntropy;
}

// Slice length (a multiple of 4: Philox groups never straddle slices) and count for `p`; 1 slice
// means the one-block-per-row kernels.
struct SplitPlan {
  int64_t slices, length;
  bool filtered;  // some row may have top-p / top-k: the threshold launches run
};

// Whether the slices compute distribution statistics: margin / neg_entropy, and with filters
// Dream's prob too (renormalised over the kept set).
DK_HOST_DEVICE bool uses_dist(const MaskedConfidenceParams& p, const SplitPlan& plan) {
  return needs_dist(p.kind) || (plan.filtered && p.kind == ConfidenceKind::Prob && !p.confidence_from_logits);
}

inline SplitPlan split_plan(const MaskedConfidenceParams& p) {
  const int64_t rows = p.batch * p.seq;
  const bool filtered = p.top_p != nullptr || p.top_p_value < 1.f || p.top_k != nullptr ||
                        (p.top_k_value > 0 && p.top_k_value < p.vocab);
  if (rows == 0 || rows * 2 > kSplitTargetBlocks) return {1, p.vocab, false};
  int64_t slices = (kSplitTargetBlocks + rows - 1) / rows;
  slices = slices < p.vocab / kMinSliceLength ? slices : p.vocab / kMinSliceLength;
  slices = slices < kMaxSlices ? slices : kMaxSlices;
  if (slices <= 1) return {1, p.vocab, false};
  int64_t length = ((p.vocab + slices - 1) / slices + 3) / 4 * 4;
  return {(p.vocab + length - 1) / length, length, filtered};
}

// What a slice launch computes: everything at once (unfiltered rows), or for filtered rows first
// the statistics (the row's max and the non-finite policy need them), then, once the thresholds
// are known, the draw and the kept set's statistics.
enum class SlicePhase { All, Stats, Draw };

template <typename T, int kThreads, SlicePhase kPhase>
__global__ void __launch_bounds__(kThreads) masked_confidence_slice_kernel(MaskedConfidenceParams p,
                                                                          SplitPlan plan,
                                                                          SlicePartial* partials,
                                                                          const FilterState* states) {
  SIMT_SHARED(SoftmaxStats, stats_scratch, [kThreads / 32]);
  SIMT_SHARED(Best, best_scratch, [kThreads / 32 + 1]);
  SIMT_SHARED(DistStats, dist_scratch, [kThreads / 32 + 1]);
  SIMT_SHARED(float, raw_max, [1]);
  SIMT_SHARED(int64_t, raw_argmax, [1]);
  const PhiloxKey key = philox_key(p);
  const int64_t jobs = p.batch * p.seq * plan.slices;
  for (int64_t job = blockIdx.x; job < jobs; job += gridDim.x) {
    const int64_t row = job / plan.slices;
    const int64_t slice = job - row * plan.slices;
    const int64_t b = row / p.seq;
    const int64_t l = row - b * p.seq;
    if (!row_active(p, b, l, p.x[b * p.x_stride_b + l * p.x_stride_l])) continue;  // uniform
    const T* logits = static_cast<const T*>(p.logits) + b * p.logits_stride_b + l * p.logits_stride_l;
    const RowSettings s = row_settings(p, b);
    const RowPenalty penalty = row_penalty(p, b, l);
    const RowValues<T> raw{logits, p.suppress_ids, p.num_suppress, 1.f, penalty};
    const int64_t begin = slice * plan.length;
    const int64_t end = begin + plan.length < p.vocab ? begin + plan.length : p.vocab;
    SlicePartial& out = partials[job];
    if constexpr (kPhase != SlicePhase::Draw) {
      SoftmaxStats st = softmax_stats_empty(), zt = softmax_stats_empty();
      for (int64_t j = begin + threadIdx.x; j < end; j += kThreads) {
        const float v = raw(j);
        softmax_stats_push(st, v, j);
        if (kPhase == SlicePhase::All && s.sampled()) softmax_stats_push(zt, v * s.inv_temperature, j);
      }
      st = block_merge<kThreads>(st, stats_scratch);
      __syncthreads();  // stats_scratch is reused
      zt = block_merge<kThreads>(zt, stats_scratch);
      if (threadIdx.x == 0) {
        out.raw = st;
        out.z = zt;
        raw_max[0] = st.max;  // block_merge's result is in warp 0 only
        raw_argmax[0] = st.argmax;
      }
      __syncthreads();
    }
    if constexpr (kPhase == SlicePhase::Stats) {
      continue;  // raw_max is not read: nothing to wait for
    } else {
      // All: against the slice's own max, no threshold. Draw: against the row's, over {z >= tau}.
      float tau = -INFINITY, lmax = 0.f;
      int64_t slice_argmax = kNoIndex;  // the slice's raw argmax: the Gumbel skip's floor (v2)
      bool finite = true;
      if constexpr (kPhase == SlicePhase::Draw) {
        const FilterState& f = states[row];
        finite = f.finite != 0;
        tau = fmaxf(f.tau[0], f.tau[1]);
        lmax = f.lmax;
        slice_argmax = out.raw.argmax;  // written by the statistics launch
      } else {
        lmax = raw_max[0];
        slice_argmax = raw_argmax[0];
        __syncthreads();  // raw_max and raw_argmax are rewritten by the next job
      }
      if (!finite) continue;  // uniform: the merge applies the non-finite policy
      Best best{-INFINITY, INT64_MAX};
      if (s.sampled()) {
        const RowValues<T> z{logits, p.suppress_ids, p.num_suppress, s.inv_temperature, penalty};
        // A kept slice argmax's score bounds the slice's best from below (-inf when not kept).
        const float floor = p.gumbel_floor ? gumbel_score_of(z, slice_argmax, begin, end, tau, key,
                                                             static_cast<uint32_t>(row))
                                           : -INFINITY;
        const Best own = thread_gumbel_best<kThreads>(z, begin, end, tau, key, static_cast<uint32_t>(row), floor);
        best = block_allreduce<kThreads>(own, best_scratch, BestShfl{}, BestMerge{});
      }
      DistStats dist{0.0, 0.0, -INFINITY, -INFINITY};
      float dist_max = -INFINITY;
      if (uses_dist(p, plan)) {
        const float inv = dist_inv(p, s);
        const float m = lmax * inv;  // rounding is monotone: the max of the products
        // LLaDA's margin/entropy (confidence from the logits) are over the whole raw row.
        const float keep = p.confidence_from_logits ? -INFINITY : tau;
        // An all -inf slice adds nothing; +inf or NaN rows take the non-finite policy in the merge.
        if (m > -INFINITY && m < INFINITY) {
          const RowValues<T> z{logits, p.suppress_ids, p.num_suppress, inv, penalty};
          dist = block_dist_for<kThreads>(p.kind, z, begin, end, m, keep, dist_scratch);
          dist_max = m;
        }
      }
      if (threadIdx.x == 0) {
        out.best = best;
        out.dist = dist;
        out.dist_max = dist_max;
      }
    }
  }
}

// One thread per row: merges the row's slices in order, then the same finishing rules as the
// one-block kernels.
template <typename T>
__global__ void masked_confidence_merge_kernel(MaskedConfidenceParams p, SplitPlan plan,
                                               const SlicePartial* partials) {
  const int64_t rows = p.batch * p.seq;
  for (int64_t row = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; row < rows;
       row += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = row / p.seq;
    const int64_t l = row - b * p.seq;
    const int64_t token_in = p.x[b * p.x_stride_b + l * p.x_stride_l];
    if (!row_active(p, b, l, token_in)) {
      p.x0[row] = token_in;
      p.confidence[row] = -INFINITY;
      if (p.lse) p.lse[row] = -INFINITY;
      continue;
    }
    const SlicePartial* part = partials + row * plan.slices;
    SoftmaxStats st = part[0].raw, zt = part[0].z;
    Best best = part[0].best;
    float dist_max = part[0].dist_max;
    for (int64_t i = 1; i < plan.slices; ++i) {
      st = softmax_stats_merge(st, part[i].raw);
      zt = softmax_stats_merge(zt, part[i].z);
      best = best_merge(best, part[i].best);
      dist_max = fmaxf(dist_max, part[i].dist_max);
    }
    if (st.first_nan != kNoIndex || st.max == -INFINITY || st.max == INFINITY) {
      softmax_stats_finish(st, &p.x0[row], &p.confidence[row], p.lse ? &p.lse[row] : nullptr);
      continue;
    }
    const RowSettings s = row_settings(p, b);
    const T* logits = static_cast<const T*>(p.logits) + b * p.logits_stride_b + l * p.logits_stride_l;
    const int64_t token = s.sampled() ? best.index : st.argmax;
    const RowPenalty penalty = row_penalty(p, b, l);
    // Never a suppressed id: those are -inf and lose.
    const float v = to_float(logits[token]) - (token == penalty.index ? penalty.amount : 0.f);
    float conf;
    if (uses_dist(p, plan)) {
      // Each slice's sums are against its own max m (against the row's, with filters: f = 1):
      // rescale to the row's max M in slice order.
      DistStats d{0.0, 0.0, -INFINITY, -INFINITY};
      for (int64_t i = 0; i < plan.slices; ++i) {
        const DistStats& ds = part[i].dist;
        if (part[i].dist_max == -INFINITY) continue;
        const double shift = static_cast<double>(part[i].dist_max) - dist_max;
        const double f = exp(shift);
        d = dist_merge(d, DistStats{ds.sum * f, (ds.zsum + shift * ds.sum) * f, ds.top1, ds.top2});
      }
      const float z_token = v * dist_inv(p, s);  // for Dream's prob over the kept set
      conf = confidence_from_stats(p.kind, d, dist_max, z_token);
    } else if (p.kind == ConfidenceKind::Random) conf = philox_uniform(philox_key(p), static_cast<uint32_t>(row), kRandomConfidenceColumn);
    else if (s.sampled() && !p.confidence_from_logits)
      conf = static_cast<float>(exp(static_cast<double>(v * s.inv_temperature) - zt.max) / zt.sum);
    else conf = static_cast<float>(exp(static_cast<double>(v) - st.max) / st.sum);
    p.x0[row] = token;
    p.confidence[row] = conf;
    if (p.lse) p.lse[row] = st.max + logf(st.sum);
  }
}

}  // namespace dk
