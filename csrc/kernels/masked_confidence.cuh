// Greedy masked confidence (block restriction and log-sum-exp included; the other options take
// masked_confidence_general.cuh or the split path): one thread block per (batch, position) row;
// each thread streams a strided slice of the vocabulary once, then the block merges statistics.
#pragma once
#include "simt/simt.h"  // first: under g++ it defines the CUDA keywords
#include <cstdint>
#include "kernels/dtype.cuh"
#include "kernels/masked_confidence_params.h"
#include "kernels/sampling_row.cuh"
#include "kernels/softmax_stats.cuh"

namespace dk {

// kPenalty: some row may have a previous-token penalty (p.penalized()); off, the loop is unchanged.
template <typename T, int kThreads, bool kPenalty>
__global__ void __launch_bounds__(kThreads) masked_confidence_kernel(MaskedConfidenceParams p) {
  SIMT_SHARED(SoftmaxStats, scratch, [kThreads / 32]);
  const int64_t rows = p.batch * p.seq;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t b = row / p.seq;
    const int64_t l = row - b * p.seq;
    const int64_t token = p.x[b * p.x_stride_b + l * p.x_stride_l];
    if (!row_active(p, b, l, token)) {  // uniform across the block: no thread reaches the barrier
      if (threadIdx.x == 0) {
        p.x0[row] = token;
        p.confidence[row] = -INFINITY;
        if (p.lse) p.lse[row] = -INFINITY;
      }
      continue;
    }
    const T* logits = static_cast<const T*>(p.logits) + b * p.logits_stride_b + l * p.logits_stride_l;
    const RowPenalty pen = kPenalty ? row_penalty(p, b, l) : RowPenalty{-1, 0.f};
    const SoftmaxStats st = block_row_stats<T, kThreads, kPenalty>(logits, p.vocab, scratch, pen.index, pen.amount);
    if (threadIdx.x == 0) softmax_stats_finish(st, &p.x0[row], &p.confidence[row], p.lse ? &p.lse[row] : nullptr);
    __syncthreads();  // scratch is rewritten by the next row
  }
}

}  // namespace dk
