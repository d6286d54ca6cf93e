// Online softmax statistics of one row, with an argmax that keeps the lowest index
// on ties and remembers the first NaN, so the kernel reproduces torch.argmax/softmax
// on non-finite rows (policy documented in diffusion_kernels/reference.py).
#pragma once
#include "simt/simt.h"
#include <cmath>
#include <cstdint>

#include "kernels/dtype.cuh"

namespace dk {

constexpr int64_t kNoIndex = INT64_MAX;

struct SoftmaxStats {
  float max;        // largest non-NaN value seen (-inf if none)
  float sum;        // sum of exp(v - max) over finite-or-+inf values
  int64_t argmax;   // lowest index holding `max`
  int64_t first_nan;
};

__device__ __forceinline__ SoftmaxStats softmax_stats_empty() {
  return SoftmaxStats{-INFINITY, 0.f, kNoIndex, kNoIndex};
}

// Indices must arrive in increasing order per thread: the strict `>` keeps the first maximum.
__device__ __forceinline__ void softmax_stats_push(SoftmaxStats& st, float v, int64_t j) {
  if (isnan(v)) {
    if (st.first_nan == kNoIndex) st.first_nan = j;
  } else if (v > st.max) {
    st.sum = st.sum * expf(st.max - v) + 1.f;
    st.max = v;
    st.argmax = j;
  } else if (v != -INFINITY) {
    st.sum += expf(v - st.max);
  }
}

// Symmetric, so a butterfly leaves every lane with bitwise the same result.
__device__ __forceinline__ SoftmaxStats softmax_stats_merge(const SoftmaxStats& a,
                                                           const SoftmaxStats& b) {
  SoftmaxStats r;
  r.max = fmaxf(a.max, b.max);
  // `==` first: exp(-inf - -inf) would be NaN for two empty halves.
  r.sum = (a.max == r.max ? a.sum : a.sum * expf(a.max - r.max)) +
          (b.max == r.max ? b.sum : b.sum * expf(b.max - r.max));
  r.argmax = a.max > b.max ? a.argmax : (b.max > a.max ? b.argmax : min(a.argmax, b.argmax));
  r.first_nan = min(a.first_nan, b.first_nan);
  return r;
}

__device__ __forceinline__ SoftmaxStats shfl_xor_stats(const SoftmaxStats& st, int lane_mask) {
  SoftmaxStats o;
  o.max = __shfl_xor_sync(0xffffffffu, st.max, lane_mask);
  o.sum = __shfl_xor_sync(0xffffffffu, st.sum, lane_mask);
  o.argmax = __shfl_xor_sync(0xffffffffu, static_cast<long long>(st.argmax), lane_mask);
  o.first_nan = __shfl_xor_sync(0xffffffffu, static_cast<long long>(st.first_nan), lane_mask);
  return o;
}

__device__ __forceinline__ SoftmaxStats warp_merge(SoftmaxStats st) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) st = softmax_stats_merge(st, shfl_xor_stats(st, off));
  return st;
}

// Block-wide merge; the result is valid in every thread of warp 0.
// `scratch` holds one entry per warp and must not be reused before a __syncthreads.
template <int kThreads>
__device__ __forceinline__ SoftmaxStats block_merge(SoftmaxStats st, SoftmaxStats* scratch) {
  static_assert(kThreads % 32 == 0 && kThreads <= 1024, "whole warps only");
  constexpr int kWarps = kThreads / 32;
  st = warp_merge(st);
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  if (lane == 0) scratch[warp] = st;
  __syncthreads();
  if (warp == 0) {
    st = lane < kWarps ? scratch[lane] : softmax_stats_empty();
    st = warp_merge(st);
  }
  return st;
}

// x[j] as float, lowered by `amount` at id `index` when kPenalty (masked_confidence's
// previous-token penalty; a compile-time flag, so the plain loop has no compare).
template <bool kPenalty, typename T>
__device__ __forceinline__ float penalised_value(const T* x, int64_t j, int64_t index, float amount) {
  const float v = to_float(x[j]);
  return kPenalty && j == index ? v - amount : v;
}

// One row's statistics, merged across the block (valid in warp 0, as block_merge): each thread
// streams a strided slice of the row, four independent loads in flight, indices increasing.
// kPenalty: id `penalty_index` counts as its logit minus `penalty`.
template <typename T, int kThreads, bool kPenalty = false>
__device__ __forceinline__ SoftmaxStats block_row_stats(const T* x, int64_t vocab, SoftmaxStats* scratch,
                                                        int64_t penalty_index = -1, float penalty = 0.f) {
  SoftmaxStats st = softmax_stats_empty();
  int64_t j = threadIdx.x;
  for (; j + 3 * kThreads < vocab; j += 4 * kThreads) {
    const float v0 = penalised_value<kPenalty>(x, j, penalty_index, penalty);
    const float v1 = penalised_value<kPenalty>(x, j + kThreads, penalty_index, penalty);
    const float v2 = penalised_value<kPenalty>(x, j + 2 * kThreads, penalty_index, penalty);
    const float v3 = penalised_value<kPenalty>(x, j + 3 * kThreads, penalty_index, penalty);
    softmax_stats_push(st, v0, j);
    softmax_stats_push(st, v1, j + kThreads);
    softmax_stats_push(st, v2, j + 2 * kThreads);
    softmax_stats_push(st, v3, j + 3 * kThreads);
  }
  for (; j < vocab; j += kThreads) softmax_stats_push(st, penalised_value<kPenalty>(x, j, penalty_index, penalty), j);
  return block_merge<kThreads>(st, scratch);
}

// The op's result for a row from its statistics: token, probability of that token and the
// row's log-sum-exp (`lse` may be null).
__device__ __forceinline__ void softmax_stats_finish(const SoftmaxStats& st, int64_t* token,
                                                     float* prob, float* lse) {
  float l;
  if (st.first_nan != kNoIndex) {           // torch.argmax picks the first NaN; softmax is NaN
    *token = st.first_nan;
    *prob = NAN;
    l = NAN;
  } else if (st.max == -INFINITY) {         // all -inf: argmax 0, softmax 0/0
    *token = 0;
    *prob = NAN;
    l = -INFINITY;
  } else if (st.max == INFINITY) {          // softmax is inf/inf
    *token = st.argmax;
    *prob = NAN;
    l = INFINITY;
  } else {
    *token = st.argmax;
    *prob = 1.f / st.sum;                   // exp(max - max) / sum
    l = st.max + logf(st.sum);
  }
  if (lse) *lse = l;
}

}  // namespace dk
