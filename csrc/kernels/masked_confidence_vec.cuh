// Greedy masked confidence, vectorised variant ("v2", DK_MC_KERNEL selects it; the launcher
// explains the switch): the same results as masked_confidence.cuh up to the rounding of the
// softmax sum (tokens, the non-finite policy and the lowest-index argmax are identical), built for
// memory-level parallelism (bench/GPU_NOTES.md):
//   - 16-byte loads (8 bf16/fp16 or 4 float32 ids), kUnroll of them issued before any is used;
//     a scalar head up to the first 16-byte boundary and a scalar tail keep any row start legal;
//   - per trip, the maximum of the trip's registers first (a tree of fmaxf, NaN ignored), then
//     the exponentials against the updated running max as independent terms summed as a tree:
//     no compare-and-branch per element; a new maximum (rare after the first trips) or a NaN
//     (the trip's sum turns NaN) is handled by a per-trip branch that re-reads the registers.
#pragma once
#include "simt/simt.h"  // first: under g++ it defines the CUDA keywords
#include <cstdint>
#include <cstdlib>
#include "kernels/dtype.cuh"
#include "kernels/masked_confidence_params.h"
#include "kernels/masked_confidence_split.cuh"
#include "kernels/sampling_row.cuh"
#include "kernels/softmax_stats.cuh"

namespace dk {

template <typename T>
struct VecTraits {
  static constexpr int kVec = 16 / static_cast<int>(sizeof(T));
};

// 16 bytes at a 16-byte aligned address (the emulator checks the alignment a GPU would fault on).
__device__ __forceinline__ uint4 load_vec16(const void* ptr) {
#ifndef __CUDACC__
  if (reinterpret_cast<uintptr_t>(ptr) % 16 != 0) std::abort();
#endif
  return __ldg(static_cast<const uint4*>(ptr));
}

__device__ __forceinline__ void unpack_vec(const uint4& w, float (&v)[4], const float*) {
  v[0] = __uint_as_float(w.x);
  v[1] = __uint_as_float(w.y);
  v[2] = __uint_as_float(w.z);
  v[3] = __uint_as_float(w.w);
}

// bf16 is the upper half of a float32: a shift or a mask per element.
__device__ __forceinline__ void unpack_vec(const uint4& w, float (&v)[8], const __nv_bfloat16*) {
  const unsigned words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    v[2 * i] = __uint_as_float(words[i] << 16);
    v[2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);
  }
}

__device__ __forceinline__ void unpack_vec(const uint4& w, float (&v)[8], const __half*) {
  const unsigned words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    v[2 * i] = __half2float(__ushort_as_half(static_cast<unsigned short>(words[i] & 0xffffu)));
    v[2 * i + 1] = __half2float(__ushort_as_half(static_cast<unsigned short>(words[i] >> 16)));
  }
}

// One trip of a thread: vectors first, first + kThreads, ... (kU of them, element ids increasing)
// starting at element id `id0` of vector `first`, folded into `st` exactly as softmax_stats_push
// would fold them one by one, except for the rounding of the sum.
template <typename T, int kThreads, int kU, bool kPenalty>
__device__ __forceinline__ void vec_trip(SoftmaxStats& st, const T* aligned, int64_t first, int64_t id0,
                                         const RowPenalty& pen) {
  constexpr int kVec = VecTraits<T>::kVec;
  uint4 raw[kU];
#pragma unroll
  for (int u = 0; u < kU; ++u) raw[u] = load_vec16(aligned + (first + u * kThreads) * kVec);
  float v[kU][kVec];
#pragma unroll
  for (int u = 0; u < kU; ++u) unpack_vec(raw[u], v[u], static_cast<const T*>(nullptr));
  if constexpr (kPenalty) {
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      const int64_t at = pen.index - (id0 + (first + u * kThreads) * kVec);
      if (static_cast<uint64_t>(at) < static_cast<uint64_t>(kVec)) {  // rare: the one penalised id
#pragma unroll
        for (int e = 0; e < kVec; ++e) v[u][e] = e == at ? v[u][e] - pen.amount : v[u][e];
      }
    }
  }
  float m[kU];
#pragma unroll
  for (int u = 0; u < kU; ++u) {
    float a = fmaxf(v[u][0], v[u][1]);
#pragma unroll
    for (int e = 2; e < kVec; e += 2) a = fmaxf(a, fmaxf(v[u][e], v[u][e + 1]));
    m[u] = a;
  }
#pragma unroll
  for (int w = 1; w < kU; w *= 2)
#pragma unroll
    for (int u = 0; u + w < kU; u += 2 * w) m[u] = fmaxf(m[u], m[u + w]);
  const float tm = m[0];  // NaN only when the whole trip is NaN: then not > max
  if (tm > st.max) {      // the first id holding tm: this trip's, since all earlier ids are < st.max
    int64_t arg = kNoIndex;
#pragma unroll
    for (int u = kU - 1; u >= 0; --u)
#pragma unroll
      for (int e = kVec - 1; e >= 0; --e)
        if (v[u][e] == tm) arg = id0 + (first + u * kThreads) * kVec + e;
    st.sum *= expf(st.max - tm);  // as softmax_stats_push: 0 when the old max is -inf
    st.max = tm;
    st.argmax = arg;
  }
  // -inf max so far: every value is -inf or NaN; against 0 they add exactly 0 (or NaN).
  const float ms = st.max == -INFINITY ? 0.f : st.max;
  float s[kU];
#pragma unroll
  for (int u = 0; u < kU; ++u) {
    float e0 = expf(v[u][0] - ms), e1 = expf(v[u][1] - ms);
#pragma unroll
    for (int e = 2; e < kVec; e += 2) {
      e0 += expf(v[u][e] - ms);
      e1 += expf(v[u][e + 1] - ms);
    }
    s[u] = e0 + e1;
  }
#pragma unroll
  for (int w = 1; w < kU; w *= 2)
#pragma unroll
    for (int u = 0; u + w < kU; u += 2 * w) s[u] += s[u + w];
  // Every term is <= 1 unless a value is NaN (or +inf against a +inf max, where the sum is unused).
  if (isnan(s[0]) && st.first_nan == kNoIndex) {
#pragma unroll
    for (int u = kU - 1; u >= 0; --u)
#pragma unroll
      for (int e = kVec - 1; e >= 0; --e)
        if (isnan(v[u][e])) st.first_nan = id0 + (first + u * kThreads) * kVec + e;
  }
  st.sum += s[0];
}

// This thread's statistics of ids [begin, end) of row `x` (not merged across the block): a scalar
// head up to the first 16-byte boundary, kUnroll vectors per trip, single vectors, a scalar tail;
// each thread's ids increase, as softmax_stats_push needs.
template <typename T, int kThreads, int kUnroll, bool kPenalty>
__device__ __forceinline__ SoftmaxStats thread_vec_stats(const T* x, int64_t begin, int64_t end, const RowPenalty& pen) {
  constexpr int kVec = VecTraits<T>::kVec;
  static_assert(kVec <= kThreads, "the head and tail take one id per thread");
  SoftmaxStats st = softmax_stats_empty();
  const int tid = threadIdx.x;
  const int64_t n = end - begin;
  const int64_t misalign = static_cast<int64_t>(reinterpret_cast<uintptr_t>(x + begin) % 16) / static_cast<int64_t>(sizeof(T));
  const int64_t head = misalign == 0 ? 0 : (kVec - misalign < n ? kVec - misalign : n);
  const int64_t id0 = begin + head;  // first id of the vectors
  const int64_t vecs = (n - head) / kVec;
  const int64_t tail = id0 + vecs * kVec;
  auto scalar = [&](int64_t j) {
    const float v = to_float(x[j]);
    softmax_stats_push(st, kPenalty && j == pen.index ? v - pen.amount : v, j);
  };
  if (tid < head) scalar(begin + tid);
  const T* aligned = x + id0;
  int64_t i = tid;
  for (; i + (kUnroll - 1) * kThreads < vecs; i += kUnroll * kThreads)
    vec_trip<T, kThreads, kUnroll, kPenalty>(st, aligned, i, id0, pen);
  for (; i < vecs; i += kThreads) vec_trip<T, kThreads, 1, kPenalty>(st, aligned, i, id0, pen);
  if (tail + tid < end) scalar(tail + tid);
  return st;
}

constexpr int kVecUnroll = 4;

// One block per row, as masked_confidence_kernel.
template <typename T, int kThreads, bool kPenalty>
__global__ void __launch_bounds__(kThreads) masked_confidence_vec_kernel(MaskedConfidenceParams p) {
  SIMT_SHARED(SoftmaxStats, scratch, [kThreads / 32]);
  const int64_t rows = p.batch * p.seq;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t b = row / p.seq;
    const int64_t l = row - b * p.seq;
    const int64_t token = p.x[b * p.x_stride_b + l * p.x_stride_l];
    if (!row_active(p, b, l, token)) {  // uniform across the block
      if (threadIdx.x == 0) {
        p.x0[row] = token;
        p.confidence[row] = -INFINITY;
        if (p.lse) p.lse[row] = -INFINITY;
      }
      continue;
    }
    const T* logits = static_cast<const T*>(p.logits) + b * p.logits_stride_b + l * p.logits_stride_l;
    const RowPenalty pen = kPenalty ? row_penalty(p, b, l) : RowPenalty{-1, 0.f};
    SoftmaxStats st = thread_vec_stats<T, kThreads, kVecUnroll, kPenalty>(logits, 0, p.vocab, pen);
    st = block_merge<kThreads>(st, scratch);
    if (threadIdx.x == 0) softmax_stats_finish(st, &p.x0[row], &p.confidence[row], p.lse ? &p.lse[row] : nullptr);
    __syncthreads();  // scratch is rewritten by the next row
  }
}

// Greedy slices of the split path: only the raw statistics; masked_confidence_merge_kernel
// finishes the rows (the other fields are written empty, as the general slice kernel leaves them
// for a greedy row).
template <typename T, int kThreads, bool kPenalty>
__global__ void __launch_bounds__(kThreads) masked_confidence_vec_slice_kernel(MaskedConfidenceParams p, SplitPlan plan,
                                                                              SlicePartial* partials) {
  SIMT_SHARED(SoftmaxStats, scratch, [kThreads / 32]);
  const int64_t jobs = p.batch * p.seq * plan.slices;
  for (int64_t job = blockIdx.x; job < jobs; job += gridDim.x) {
    const int64_t row = job / plan.slices;
    const int64_t slice = job - row * plan.slices;
    const int64_t b = row / p.seq;
    const int64_t l = row - b * p.seq;
    if (!row_active(p, b, l, p.x[b * p.x_stride_b + l * p.x_stride_l])) continue;  // uniform
    const T* logits = static_cast<const T*>(p.logits) + b * p.logits_stride_b + l * p.logits_stride_l;
    const RowPenalty pen = kPenalty ? row_penalty(p, b, l) : RowPenalty{-1, 0.f};
    const int64_t begin = slice * plan.length;
    const int64_t end = begin + plan.length < p.vocab ? begin + plan.length : p.vocab;
    SoftmaxStats st = thread_vec_stats<T, kThreads, kVecUnroll, kPenalty>(logits, begin, end, pen);
    st = block_merge<kThreads>(st, scratch);
    if (threadIdx.x == 0) {
      SlicePartial& out = partials[job];
      out.raw = st;
      out.z = softmax_stats_empty();
      out.best = Best{-INFINITY, INT64_MAX};
      out.dist = DistStats{0.0, 0.0, -INFINITY, -INFINITY};
      out.dist_max = -INFINITY;
    }
    __syncthreads();  // scratch is rewritten by the next job
  }
}

}  // namespace dk
