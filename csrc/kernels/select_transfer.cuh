// select_transfer. The threshold rules need only the row's best key (a block max), so one block
// per row reads the row twice and never sorts. Top-k and the factor rule sort the row's 64-bit
// keys (kernels/select_transfer_keys.h) and transfer the first n ranks: up to kMaxSharedSort
// positions one block per row with a bitonic network in shared memory; beyond, several blocks per
// row (chunk sorts, then merge passes in a global scratch, then one block per row to finish).
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
    // The dInfer rule has no fallback: its bound is <= the row's best unless the threshold is NaN.
    const int64_t best_index = best != 0 && p.rule == TransferRule::Threshold ? key_index(best) : -1;
    const float bound = threshold_bound(p, b, key_value(best));
    for (int64_t i = threadIdx.x; i < p.seq; i += blockDim.x) {
      const float c = st_conf(p, b, i);
      const bool pass = p.strict ? c > bound : c >= bound;
      const bool take = is_candidate(c) && (pass || i == best_index);
      p.mask[b * p.seq + i] = take;
      if (take && p.x != nullptr) p.x[b * p.x_stride_b + i * p.x_stride_l] = p.x0[b * p.x0_stride_b + i * p.x0_stride_l];
    }
    __syncthreads();  // best_key is reset for the next row
  }
}

// The row's transfer count from its keys sorted descending (`ncand` nonzero keys first), then
// the transfers of ranks [0, n). `counter` is a shared int; every thread of the block calls this.
__device__ __forceinline__ void finish_sorted_row(const SelectTransferParams& p, int64_t b,
                                                  const unsigned long long* keys, int64_t ncand, int* counter) {
  int64_t n;
  if (p.rule == TransferRule::TopK) {
    const int64_t k = p.k != nullptr ? p.k[b * p.k_stride] : p.k_value;
    n = k < 0 ? 0 : (k < ncand ? k : ncand);  // negative counts are not checked on the GPU
  } else {
    // Factor: once a rank fails, every later rank fails too (factor > 0), so n is the first
    // failing rank: an order-independent atomic min.
    if (threadIdx.x == 0) *counter = static_cast<int>(ncand);
    __syncthreads();
    for (int64_t r = 1 + threadIdx.x; r < ncand; r += blockDim.x) {
      if (!factor_passes(r, key_value(keys[r]), p.factor)) atomicMin(counter, static_cast<int>(r));
    }
    __syncthreads();
    n = *counter;
  }
  for (int64_t r = threadIdx.x; r < n; r += blockDim.x) st_transfer(p, b, key_index(keys[r]));
}

__device__ __forceinline__ unsigned long long sort_key(const SelectTransferParams& p, int64_t b, int64_t i) {
  if (i >= p.seq) return 0;
  const float c = st_conf(p, b, i);
  if (!is_candidate(c)) return 0;
  const bool gumbel = p.rule == TransferRule::TopK && p.alg_temp > 0;
  const PhiloxKey philox = transfer_philox_key(p);
  return transfer_key(gumbel ? gumbel_key(c, p.alg_temp, philox, static_cast<uint32_t>(b), i) : c, i);
}

// Bitonic network over keys[0, len) (len a power of two), descending overall: each pass compares
// len / 2 disjoint pairs; barriers between passes.
__device__ __forceinline__ void bitonic_sort_desc(unsigned long long* keys, int64_t len) {
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
}

// TopK / Factor for rows of up to kMaxSharedSort positions: one block per row, keys in dynamic
// shared memory (`len`: a power of two >= seq).
__global__ void __launch_bounds__(1024) select_transfer_sort_kernel(SelectTransferParams p, int64_t len) {
  SIMT_DYNAMIC_SHARED(unsigned long long, keys);
  SIMT_SHARED(int, counters, [2]);  // [0]: candidates, [1]: first failing rank (Factor)
  for (int64_t b = blockIdx.x; b < p.batch; b += gridDim.x) {
    if (threadIdx.x == 0) counters[0] = 0;
    int local = 0;
    for (int64_t i = threadIdx.x; i < len; i += blockDim.x) {
      keys[i] = sort_key(p, b, i);
      local += keys[i] != 0;
      if (i < p.seq) p.mask[b * p.seq + i] = false;
    }
    __syncthreads();  // counters[0] reset before the adds
    atomicAdd(&counters[0], local);
    bitonic_sort_desc(keys, len);
    finish_sorted_row(p, b, keys, counters[0], &counters[1]);
    __syncthreads();  // keys and counters are rewritten for the next row
  }
}

// Longer rows, several blocks per row in three steps (no grid-wide synchronisation: each step is
// its own launch). Scratch row b holds two buffers of `len` keys.
// 1. Each block sorts one kMaxSharedSort chunk of one row in shared memory into buffer 0 and
//    clears the row's mask there.
__global__ void __launch_bounds__(1024) select_transfer_chunk_sort_kernel(SelectTransferParams p, int64_t len) {
  SIMT_DYNAMIC_SHARED(unsigned long long, keys);
  const int64_t chunks = len / kMaxSharedSort;
  for (int64_t job = blockIdx.x; job < p.batch * chunks; job += gridDim.x) {
    const int64_t b = job / chunks;
    const int64_t base = (job - b * chunks) * kMaxSharedSort;
    for (int64_t j = threadIdx.x; j < kMaxSharedSort; j += blockDim.x) {
      keys[j] = sort_key(p, b, base + j);
      if (base + j < p.seq) p.mask[b * p.seq + base + j] = false;
    }
    bitonic_sort_desc(keys, kMaxSharedSort);
    unsigned long long* out = reinterpret_cast<unsigned long long*>(p.scratch) + b * p.scratch_len + base;
    for (int64_t j = threadIdx.x; j < kMaxSharedSort; j += blockDim.x) out[j] = keys[j];
    __syncthreads();  // keys are rewritten for the next chunk
  }
}

// Number of keys in run[0, n) (sorted descending) that are > key, or >= key when `inclusive`.
__device__ __forceinline__ int64_t count_above(const unsigned long long* run, int64_t n, unsigned long long key,
                                               bool inclusive) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = (lo + hi) >> 1;
    if (run[mid] > key || (inclusive && run[mid] == key)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

// 2. One pass of a merge sort: sorted runs of `width` keys are merged pairwise from buffer `from`
//    into the other buffer. Every key goes straight to its rank in the merged pair (its index in
//    its run plus the count of larger keys in the partner run; equal keys, i.e. the zeros of
//    non-candidates, place the left run first), so threads need no coordination.
__global__ void select_transfer_merge_kernel(SelectTransferParams p, int64_t len, int64_t width, int from) {
  const int64_t total = p.batch * len;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = e / len;
    const int64_t pos = e - b * len;
    const unsigned long long* src = reinterpret_cast<const unsigned long long*>(p.scratch) + b * p.scratch_len + from * len;
    unsigned long long* dst = reinterpret_cast<unsigned long long*>(p.scratch) + b * p.scratch_len + (1 - from) * len;
    const int64_t pair = pos / (2 * width) * (2 * width);
    const bool left = pos - pair < width;
    const int64_t i = left ? pos - pair : pos - pair - width;
    const unsigned long long key = src[pos];
    const unsigned long long* partner = src + pair + (left ? width : 0);
    dst[pair + i + count_above(partner, width, key, !left)] = key;
  }
}

// 3. One block per row over the fully sorted buffer `from`.
__global__ void __launch_bounds__(1024) select_transfer_finish_kernel(SelectTransferParams p, int64_t len, int from) {
  SIMT_SHARED(int, counters, [2]);
  for (int64_t b = blockIdx.x; b < p.batch; b += gridDim.x) {
    const unsigned long long* keys =
        reinterpret_cast<const unsigned long long*>(p.scratch) + b * p.scratch_len + from * len;
    if (threadIdx.x == 0) counters[0] = 0;
    int local = 0;
    for (int64_t i = threadIdx.x; i < len; i += blockDim.x) local += keys[i] != 0;
    __syncthreads();
    atomicAdd(&counters[0], local);
    __syncthreads();
    finish_sorted_row(p, b, keys, counters[0], &counters[1]);
    __syncthreads();
  }
}

}  // namespace dk
