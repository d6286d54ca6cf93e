// select_transfer: one thread block per row. The threshold rules need only the row's best key
// (a block max), so they read the row twice and never sort. Top-k and the factor rule sort the
// row's 64-bit keys (kernels/select_transfer_keys.h) with a bitonic network, in shared memory up
// to kMaxSharedSort keys and in a global scratch row beyond, then transfer the first n ranks.
// Every step is order-independent (atomic max/min/add on integers, a data-oblivious sorting
// network, barriers between phases), so the result is bitwise identical in every thread order.
#pragma once
#include "simt/simt.h"  // first: under g++ it defines the CUDA keywords
#include <cstdint>
#include "kernels/select_transfer_keys.h"
#include "kernels/select_transfer_params.h"

namespace dk {

constexpr int64_t kMaxSharedSort = 4096;  // 32 KiB of keys: fits the default 48 KiB limit

__device__ __forceinline__ float st_conf(const SelectTransferParams& p, int64_t b, int64_t i) {
  return p.confidence[b * p.conf_stride_b + i * p.conf_stride_l];
}

__device__ __forceinline__ void st_transfer(const SelectTransferParams& p, int64_t b, int64_t i) {
  p.mask[b * p.seq + i] = true;
  if (p.x != nullptr) p.x[b * p.x_stride_b + i * p.x_stride_l] = p.x0[b * p.x0_stride_b + i * p.x0_stride_l];
}

// Threshold / ThresholdRowMax. Every position is written exactly once.
__global__ void select_transfer_threshold_kernel(SelectTransferParams p) {
  SIMT_SHARED(unsigned long long, best_key, [1]);
  for (int64_t b = blockIdx.x; b < p.batch; b += gridDim.x) {
    if (threadIdx.x == 0) best_key[0] = 0;
    __syncthreads();
    unsigned long long best = 0;
    for (int64_t i = threadIdx.x; i < p.seq; i += blockDim.x) {
      const float c = st_conf(p, b, i);
      if (is_candidate(c)) {
        const unsigned long long key = transfer_key(c, i);
        best = key > best ? key : best;
      }
    }
    atomicMax(&best_key[0], best);
    __syncthreads();
    best = best_key[0];
    const int64_t best_index = best != 0 ? key_index(best) : -1;
    const float bound = p.rule == TransferRule::Threshold ? p.threshold : fminf(p.threshold, key_value(best) - p.eps);
    for (int64_t i = threadIdx.x; i < p.seq; i += blockDim.x) {
      const float c = st_conf(p, b, i);
      const bool take = is_candidate(c) && (c >= bound || i == best_index);
      p.mask[b * p.seq + i] = take;
      if (take && p.x != nullptr) p.x[b * p.x_stride_b + i * p.x_stride_l] = p.x0[b * p.x0_stride_b + i * p.x0_stride_l];
    }
    __syncthreads();  // best_key is reset for the next row
  }
}

// TopK / Factor. `len` is the sort length: a power of two >= seq. Keys live in dynamic shared
// memory when kShared, else in p.scratch (one row of p.scratch_len per batch row).
template <bool kShared>
__global__ void select_transfer_sort_kernel(SelectTransferParams p, int64_t len) {
  SIMT_DYNAMIC_SHARED(unsigned long long, smem_keys);
  SIMT_SHARED(int, counters, [2]);  // [0]: candidates, [1]: first failing rank (Factor)
  const PhiloxKey philox{p.seed, p.offset};
  const bool gumbel = p.rule == TransferRule::TopK && p.alg_temp > 0;
  for (int64_t b = blockIdx.x; b < p.batch; b += gridDim.x) {
    unsigned long long* keys =
        kShared ? smem_keys : reinterpret_cast<unsigned long long*>(p.scratch) + b * p.scratch_len;
    if (threadIdx.x == 0) counters[0] = 0;
    int local = 0;
    for (int64_t i = threadIdx.x; i < len; i += blockDim.x) {
      unsigned long long key = 0;
      if (i < p.seq) {
        const float c = st_conf(p, b, i);
        if (is_candidate(c)) {
          ++local;
          key = transfer_key(gumbel ? gumbel_key(c, p.alg_temp, philox, static_cast<uint32_t>(b), i) : c, i);
        }
        p.mask[b * p.seq + i] = false;
      }
      keys[i] = key;
    }
    __syncthreads();  // counters[0] reset before the adds
    atomicAdd(&counters[0], local);
    // Bitonic network, descending overall: each pass compares len / 2 disjoint pairs.
    for (int64_t size = 2; size <= len; size <<= 1) {
      for (int64_t stride = size >> 1; stride > 0; stride >>= 1) {
        __syncthreads();
        for (int64_t t = threadIdx.x; t < (len >> 1); t += blockDim.x) {
          const int64_t i = 2 * t - (t & (stride - 1));
          const int64_t j = i + stride;
          const unsigned long long a = keys[i], c = keys[j];
          const bool descending = (i & size) == 0;
          if (descending ? a < c : a > c) {
            keys[i] = c;
            keys[j] = a;
          }
        }
      }
    }
    __syncthreads();
    const int64_t ncand = counters[0];
    int64_t n;
    if (p.rule == TransferRule::TopK) {
      const int64_t k = p.k != nullptr ? p.k[b * p.k_stride] : p.k_value;
      n = k < 0 ? 0 : (k < ncand ? k : ncand);  // negative counts are not checked on the GPU
    } else {
      if (threadIdx.x == 0) counters[1] = static_cast<int>(ncand);
      __syncthreads();
      for (int64_t r = 1 + threadIdx.x; r < ncand; r += blockDim.x) {
        if (!factor_passes(r, key_value(keys[r]), p.factor)) atomicMin(&counters[1], static_cast<int>(r));
      }
      __syncthreads();
      n = counters[1];
    }
    for (int64_t r = threadIdx.x; r < n; r += blockDim.x) st_transfer(p, b, key_index(keys[r]));
    __syncthreads();  // keys and counters are rewritten for the next row
  }
}

}  // namespace dk
