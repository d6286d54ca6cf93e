// A row slice streamed to the threads of a block in 16-byte loads.
//
// Why: with one 2-byte load per element and four in flight, a 256-thread block keeps 2 KiB of
// requests outstanding; the greedy and slice kernels on an H200 (2026-12-04) ran at 490-670 GB/s
// of the card's 4.2 TB/s. Little's law at ~600 ns of DRAM latency wants ~20 KB in flight per SM:
// four 16-byte loads per thread give 16 KiB per block.
#pragma once
#include "simt/simt.h"  // first: under g++ it defines the CUDA keywords
#include <cstdint>
#include <cstring>
#include "kernels/dtype.cuh"

namespace dk {

template <typename T>
struct Pack16 {
  static constexpr int kN = 16 / static_cast<int>(sizeof(T));
  T v[kN];
};

template <typename T>
__device__ __forceinline__ Pack16<T> load_pack16(const T* p) {  // p is 16-byte aligned
  const uint4 bits = *reinterpret_cast<const uint4*>(p);
  Pack16<T> r;
  memcpy(&r, &bits, sizeof r);
  return r;
}

// Calls visit(to_float(row[j]), j) for the j in [begin, end) this thread owns, in increasing j
// (the argmax's lowest-index rule relies on it). Ownership: the few elements before the first
// 16-byte boundary go to threads 0, 1, ..., the 16-byte packs round-robin over the threads, the
// ragged end (fewer than a pack) to threads 0, 1, ... again. Any alignment of row + begin works.
template <int kThreads, typename T, typename Visit>
__device__ __forceinline__ void stream_row(const T* row, int64_t begin, int64_t end, Visit&& visit) {
  constexpr int kN = Pack16<T>::kN;
  constexpr int kUnroll = 4;
  static_assert(kThreads >= kN, "the head and the tail take one element per thread");
  const int64_t t = threadIdx.x;
  const int64_t misalign = static_cast<int64_t>(reinterpret_cast<uintptr_t>(row + begin) & 15) / sizeof(T);
  int64_t head = misalign == 0 ? 0 : kN - misalign;
  if (head > end - begin) head = end - begin;
  if (t < head) visit(to_float(row[begin + t]), begin + t);
  const int64_t start = begin + head;
  const int64_t packs = (end - start) / kN;
  int64_t k = t;
  for (; k + (kUnroll - 1) * kThreads < packs; k += kUnroll * kThreads) {
    Pack16<T> pk[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) pk[u] = load_pack16(row + start + (k + u * kThreads) * kN);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
#pragma unroll
      for (int e = 0; e < kN; ++e) visit(to_float(pk[u].v[e]), start + (k + u * kThreads) * kN + e);
    }
  }
  for (; k < packs; k += kThreads) {
    const Pack16<T> pk = load_pack16(row + start + k * kN);
#pragma unroll
    for (int e = 0; e < kN; ++e) visit(to_float(pk.v[e]), start + k * kN + e);
  }
  const int64_t rest = start + packs * kN + t;
  if (rest < end) visit(to_float(row[rest]), rest);
}

}  // namespace dk
