// Masked cross-entropy: rows whose `masked` flag is false are skipped (their outputs are zeros).
// Forward and the fused forward+backward use one thread block per row: each thread streams a
// strided slice of the vocabulary into online softmax statistics, then a fixed butterfly merges
// them, so the result is bitwise the same in every thread schedule. Backward is elementwise once
// the forward's log-sum-exp is known.
#pragma once
#include "simt/simt.h"  // first: under g++ it defines the CUDA keywords
#include <cstdint>

#include "kernels/dtype.cuh"
#include "kernels/masked_ce_params.h"
#include "kernels/softmax_stats.cuh"

namespace dk {

__device__ __forceinline__ void ce_store(float* p, float v) { *p = v; }
__device__ __forceinline__ void ce_store(__half* p, float v) { *p = __float2half_rn(v); }
__device__ __forceinline__ void ce_store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

// As torch.logsumexp: NaN for a row with a NaN, +inf for one with a +inf, -inf for nothing but -inf.
__device__ __forceinline__ float ce_lse(const SoftmaxStats& st) {
  if (st.first_nan != kNoIndex) return NAN;
  if (!isfinite(st.max)) return st.max;
  return st.max + logf(st.sum);
}

// Thread 0 only: ce and lse of a masked row from its merged statistics. The CE is NaN where the
// lse is not finite, as torch's log_softmax.
template <typename T>
__device__ __forceinline__ void ce_row_finish(const SoftmaxStats& st, const T* x, int64_t target,
                                              int64_t vocab, float* ce, float* lse) {
  const float l = ce_lse(st);
  *lse = l;
  *ce = (target >= 0 && target < vocab && isfinite(l)) ? l - to_float(x[target]) : NAN;
}

template <typename T, int kThreads>
__global__ void __launch_bounds__(kThreads) masked_ce_forward_kernel(MaskedCeParams p) {
  SIMT_SHARED(SoftmaxStats, scratch, [kThreads / 32]);
  float* ce = static_cast<float*>(p.ce);
  float* lse = static_cast<float*>(p.lse);
  for (int64_t row = blockIdx.x; row < p.rows; row += gridDim.x) {
    if (!p.masked[row]) {  // uniform across the block: no thread reaches the barrier
      if (threadIdx.x == 0) ce[row] = 0.f, lse[row] = 0.f;
      continue;
    }
    const T* x = static_cast<const T*>(p.logits) + row * p.logits_stride;
    const SoftmaxStats st = block_row_stats<T, kThreads>(x, p.vocab, scratch);
    if (threadIdx.x == 0) ce_row_finish(st, x, p.targets[row], p.vocab, &ce[row], &lse[row]);
    __syncthreads();  // scratch is rewritten by the next row
  }
}

// grad = a * softmax - b * onehot(target), a = grad_ce + grad_lse, b = grad_ce; zeros at
// unmasked rows; NaN over a masked row whose target is out of range or whose lse is not finite.
template <typename T, int kThreads, int kPerThread>
__global__ void __launch_bounds__(kThreads) masked_ce_backward_kernel(MaskedCeParams p) {
  constexpr int64_t kTile = int64_t{kThreads} * kPerThread;
  const int64_t j0 = static_cast<int64_t>(blockIdx.x) * kTile + threadIdx.x;
  for (int64_t row = blockIdx.y; row < p.rows; row += gridDim.y) {
    T* g = static_cast<T*>(p.grad_logits) + row * p.grad_stride;
    if (!p.masked[row]) {
      for (int k = 0; k < kPerThread; ++k) {
        const int64_t j = j0 + int64_t{k} * kThreads;
        if (j < p.vocab) ce_store(&g[j], 0.f);
      }
      continue;
    }
    const T* x = static_cast<const T*>(p.logits) + row * p.logits_stride;
    const float lse = static_cast<const float*>(p.lse_in)[row];
    const float gce = static_cast<const float*>(p.grad_ce)[row];
    const float a = gce + static_cast<const float*>(p.grad_lse)[row];
    const int64_t target = p.targets[row];
    const bool valid = target >= 0 && target < p.vocab && isfinite(lse);
    for (int k = 0; k < kPerThread; ++k) {
      const int64_t j = j0 + int64_t{k} * kThreads;
      if (j >= p.vocab) break;
      const float prob = expf(to_float(x[j]) - lse);
      const float v = valid ? a * prob - (j == target ? gce : 0.f) : NAN;
      ce_store(&g[j], v);
    }
  }
}

// In place: the logits row becomes scale * (softmax - onehot(target)); ce and lse are written as
// by the forward kernel. Each element is read by the thread that overwrites it, and the target
// logit is read before the barrier that precedes every write.
template <typename T, int kThreads>
__global__ void __launch_bounds__(kThreads) masked_ce_forward_backward_kernel(MaskedCeParams p) {
  SIMT_SHARED(SoftmaxStats, scratch, [kThreads / 32]);
  SIMT_SHARED(float, row_lse, [1]);
  float* ce = static_cast<float*>(p.ce);
  float* lse = static_cast<float*>(p.lse);
  const float* scale = static_cast<const float*>(p.scale);
  for (int64_t row = blockIdx.x; row < p.rows; row += gridDim.x) {
    T* x = static_cast<T*>(p.logits) + row * p.logits_stride;
    if (!p.masked[row]) {
      if (threadIdx.x == 0) ce[row] = 0.f, lse[row] = 0.f;
      for (int64_t j = threadIdx.x; j < p.vocab; j += kThreads) ce_store(&x[j], 0.f);
      continue;
    }
    const SoftmaxStats st = block_row_stats<T, kThreads>(x, p.vocab, scratch);
    const int64_t target = p.targets[row];
    if (threadIdx.x == 0) {
      ce_row_finish(st, x, target, p.vocab, &ce[row], &lse[row]);
      row_lse[0] = isnan(ce[row]) ? NAN : lse[row];  // NaN poisons the whole gradient row
    }
    __syncthreads();
    const float l = row_lse[0];
    const float s = scale[row];
    for (int64_t j = threadIdx.x; j < p.vocab; j += kThreads) {
      const float prob = expf(to_float(x[j]) - l);
      ce_store(&x[j], s * (j == target ? prob - 1.f : prob));
    }
    __syncthreads();  // scratch and row_lse are rewritten by the next row
  }
}

}  // namespace dk
