// masked_confidence with every option (temperature, top-p/top-k, confidence kinds and source,
// suppressed ids): one thread block per row, several passes over the row, which stays in L2
// between them (126464 bf16 logits are 247 KiB). The steps and formulas are the CPU row's
// (csrc/cpu/masked_confidence_sample.h), so both give the same tokens for the same seed except
// where two perturbed scores lie within a few ulps (logf here, a polynomial log there):
//   1. max / argmax / first NaN / online sum of the raw row (non-finite policy, lse, LLaDA prob);
//   2. LLaDA's margin/entropy from the raw softmax: one statistics pass;
//   3. filters on z = logits / T: radix threshold search, one histogram pass per level;
//   4. the Gumbel argmax over {z >= tau}: Philox per group of 4 ids, hopeless groups skipped
//      (DK_MC_SAMPLE=v2: measured against the argmax's own perturbed score from the start);
//   5. the confidence of the sampled distribution: one statistics pass.
#pragma once
#include "simt/simt.h"  // first: under g++ it defines the CUDA keywords
#include <cstdint>
#include "kernels/masked_confidence_params.h"
#include "kernels/sampling_block.cuh"
#include "kernels/sampling_row.cuh"
#include "kernels/softmax_stats.cuh"

namespace dk {

// The raw row's online statistics, valid in every thread.
template <typename T, int kThreads>
__device__ __forceinline__ SoftmaxStats block_raw_stats(const RowValues<T>& raw, int64_t n, SoftmaxStats* scratch,
                                                        SoftmaxStats* broadcast) {
  SoftmaxStats st = softmax_stats_empty();
  for (int64_t j = threadIdx.x; j < n; j += kThreads) softmax_stats_push(st, raw(j), j);
  st = block_merge<kThreads>(st, scratch);
  if (threadIdx.x == 0) broadcast[0] = st;
  __syncthreads();
  st = broadcast[0];
  __syncthreads();
  return st;
}

template <typename T, int kThreads>
__global__ void __launch_bounds__(kThreads, 4) masked_confidence_general_kernel(MaskedConfidenceParams p) {
  SIMT_SHARED(SoftmaxStats, stats_scratch, [kThreads / 32]);
  SIMT_SHARED(SoftmaxStats, stats_bc, [1]);
  SIMT_SHARED(DistStats, dist_scratch, [kThreads / 32 + 1]);
  SIMT_SHARED(Best, best_scratch, [kThreads / 32 + 1]);
  SIMT_SHARED(unsigned long long, hist, [kRadixBins]);
  SIMT_SHARED(unsigned long long, scan, [2 * kThreads]);
  SIMT_SHARED(unsigned long long, pick, [2]);
  const PhiloxKey key = philox_key(p);
  const int64_t rows = p.batch * p.seq, n = p.vocab;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t b = row / p.seq;
    const int64_t l = row - b * p.seq;
    const int64_t token_in = p.x[b * p.x_stride_b + l * p.x_stride_l];
    if (!row_active(p, b, l, token_in)) {  // uniform across the block
      if (threadIdx.x == 0) {
        p.x0[row] = token_in;
        p.confidence[row] = -INFINITY;
        if (p.lse) p.lse[row] = -INFINITY;
      }
      continue;
    }
    const T* logits = static_cast<const T*>(p.logits) + b * p.logits_stride_b + l * p.logits_stride_l;
    const RowSettings s = row_settings(p, b);
    const RowPenalty penalty = row_penalty(p, b, l);
    const RowValues<T> raw{logits, p.suppress_ids, p.num_suppress, 1.f, penalty};
    const SoftmaxStats st = block_raw_stats<T, kThreads>(raw, n, stats_scratch, stats_bc);
    if (st.first_nan != kNoIndex || st.max == -INFINITY || st.max == INFINITY) {  // the greedy policy
      if (threadIdx.x == 0) softmax_stats_finish(st, &p.x0[row], &p.confidence[row], p.lse ? &p.lse[row] : nullptr);
      continue;
    }
    const float lmax = st.max;
    const ConfidenceKind kind = p.kind;
    const bool random = kind == ConfidenceKind::Random;
    int64_t token = st.argmax;
    float conf = 0.f;
    if (p.confidence_from_logits && (kind == ConfidenceKind::Margin || kind == ConfidenceKind::NegEntropy))
      conf = confidence_from_stats(kind, block_dist_for<kThreads>(kind, raw, 0, n, lmax, -INFINITY, dist_scratch), lmax, 0.f);
    if (s.sampled() || (!p.confidence_from_logits && !random)) {
      const float inv = s.sampled() ? s.inv_temperature : 1.f;
      const RowValues<T> z{logits, p.suppress_ids, p.num_suppress, inv, penalty};
      const float m = lmax * inv;  // rounding is monotone: the max of the products
      float tau = -INFINITY;
      if (s.top_p < 1.f) tau = radix_threshold<kThreads, true>(z, n, m, s.top_p, 0, hist, scan, pick);
      if (s.top_k > 0 && s.top_k < n)
        tau = fmaxf(tau, radix_threshold<kThreads, false>(z, n, m, 0.f, s.top_k, hist, scan, pick));
      if (s.sampled()) {
        // The argmax is kept (z_a = m >= tau): its score bounds the winner's from below.
        const float floor =
            p.gumbel_floor ? gumbel_score_of(z, st.argmax, 0, n, tau, key, static_cast<uint32_t>(row)) : -INFINITY;
        const Best own = thread_gumbel_best<kThreads>(z, 0, n, tau, key, static_cast<uint32_t>(row), floor);
        token = block_allreduce<kThreads>(own, best_scratch, BestShfl{}, BestMerge{}).index;
      }
      if (!p.confidence_from_logits && !random) {
        const DistStats d = block_dist_for<kThreads>(kind, z, 0, n, m, tau, dist_scratch);
        conf = confidence_from_stats(kind, d, m, kind == ConfidenceKind::Prob ? z(token) : 0.f);
      }
    }
    if (random) conf = philox_uniform(key, static_cast<uint32_t>(row), kRandomConfidenceColumn);
    else if (p.confidence_from_logits && kind == ConfidenceKind::Prob)
      conf = static_cast<float>(exp(static_cast<double>(raw(token)) - lmax) / st.sum);
    if (threadIdx.x == 0) {
      p.x0[row] = token;
      p.confidence[row] = conf;
      if (p.lse) p.lse[row] = lmax + logf(st.sum);
    }
  }
}

}  // namespace dk
