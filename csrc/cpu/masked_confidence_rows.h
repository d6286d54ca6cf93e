// The per-row body of the CPU masked_confidence, shared by the translation units built for
// each x86 level (masked_confidence.cpp, masked_confidence_avx512.cpp). Internal linkage only.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "cpu/vec_math.h"

namespace dk::cpu {

// token -1 means "row not all finite: take the exact path".
struct RowResult {
  int64_t token;
  float prob;
  float lse;  // log-sum-exp of the row
};

// The fast path for each x86 level; the v4 ones live in masked_confidence_avx512.cpp.
#define DK_DECLARE_ROW_FNS(level)                                            \
  RowResult finite_row_##level(const float* row, int64_t vocab);            \
  RowResult finite_row_##level(const _Float16* row, int64_t vocab);         \
  RowResult finite_row_##level(const uint16_t* row, int64_t vocab);
DK_DECLARE_ROW_FNS(base)
DK_DECLARE_ROW_FNS(v3)
DK_DECLARE_ROW_FNS(v4)

namespace {

constexpr int64_t kChunk = 2048;  // floats: the staging buffer stays in L1
static_assert(kChunk % (2 * kVecWidth) == 0);

using bf16_bits = uint16_t;

inline float load(const float* p, int64_t i) { return load_scalar(p + i); }
inline float load(const _Float16* p, int64_t i) { return load_scalar(p + i); }
inline float load(const bf16_bits* p, int64_t i) { return load_scalar(p + i); }

// The reference policy for rows that are not all finite: mirrors torch.argmax + softmax.
template <typename T>
RowResult nonfinite_row(const T* row, int64_t vocab) {
  float best = -std::numeric_limits<float>::infinity();
  int64_t best_index = -1;
  for (int64_t j = 0; j < vocab; ++j) {
    const float v = load(row, j);
    if (std::isnan(v)) return {j, std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::quiet_NaN()};
    if (v > best) best = v, best_index = j;
  }
  if (best_index < 0) return {0, std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::infinity()};
  if (std::isinf(best)) return {best_index, std::numeric_limits<float>::quiet_NaN(), best};
  // Finite max with some -inf entries: exact two-pass softmax.
  double sum = 0;
  for (int64_t j = 0; j < vocab; ++j) sum += std::exp(static_cast<double>(load(row, j)) - best);
  return {best_index, static_cast<float>(1.0 / sum), static_cast<float>(best + std::log(sum))};
}

// Returns token -1 when the row is not all finite; the caller then takes the exact path.
template <typename Exp2, typename T>
inline __attribute__((always_inline)) RowResult finite_row(const T* row, int64_t vocab) {
  vfloat buf[kChunk / kVecWidth];
  float run_max = -std::numeric_limits<float>::infinity();
  double run_sum = 0.0;  // across chunks in double: float32 here cost ~1e-6 relative at V = 126464
  int64_t run_arg = 0;
  for (int64_t c0 = 0; c0 < vocab; c0 += kChunk) {
    const int64_t n = std::min(kChunk, vocab - c0);
    const int64_t pairs = n / (2 * kVecWidth);
    vfloat m0 = splat(-std::numeric_limits<float>::infinity()), m1 = m0;
    for (int64_t q = 0; q < pairs; ++q) {
      load_pair(row + c0 + q * 2 * kVecWidth, buf[2 * q], buf[2 * q + 1]);
      m0 = vmax(buf[2 * q], m0);
      m1 = vmax(buf[2 * q + 1], m1);
    }
    // Ragged tail: up to two vectors padded with -inf (each pad lane adds 2^-126 to the sum).
    int64_t nvec = 2 * pairs;
    for (int64_t i = nvec * kVecWidth; i < n; i += kVecWidth, ++nvec) {
      vfloat t = splat(-std::numeric_limits<float>::infinity());
      for (int64_t k = 0; k < kVecWidth && i + k < n; ++k) t[k] = load(row, c0 + i + k);
      buf[nvec] = t;
      m0 = vmax(t, m0);
    }
    const float chunk_max = hmax(vmax(m0, m1));
    if (chunk_max > run_max) {  // strict: an equal max in a later chunk keeps the earlier index
      int64_t at = 0;
      while (load(row, c0 + at) != chunk_max) ++at;
      run_arg = c0 + at;
      run_sum *= std::exp(static_cast<double>(run_max) - chunk_max);
      run_max = chunk_max;
    }
    // exp(v - max) = 2^(v log2e - max log2e): one fused multiply-add feeds the exponential.
    const vfloat mx = splat(run_max * kLog2e);
    vfloat s0 = splat(0.f), s1 = s0, s2 = s0, s3 = s0;
    int64_t v = 0;
    // Pull the next chunk toward L1 while the exponentials keep the core busy: the first pass
    // over a chunk is otherwise bound by load latency. (A prefetch never faults, even past the row.)
    const char* next = reinterpret_cast<const char*>(row + c0 + kChunk);
    for (; v + 3 < nvec; v += 4) {
      __builtin_prefetch(next + v * kVecWidth * sizeof(T));
      __builtin_prefetch(next + (v + 2) * kVecWidth * sizeof(T));
      if constexpr (sizeof(T) == 4) {
        __builtin_prefetch(next + (v + 1) * kVecWidth * sizeof(T));
        __builtin_prefetch(next + (v + 3) * kVecWidth * sizeof(T));
      }
      s0 += Exp2::nonpositive(buf[v] * kLog2e - mx);
      s1 += Exp2::nonpositive(buf[v + 1] * kLog2e - mx);
      s2 += Exp2::nonpositive(buf[v + 2] * kLog2e - mx);
      s3 += Exp2::nonpositive(buf[v + 3] * kLog2e - mx);
    }
    for (; v < nvec; ++v) s0 += Exp2::nonpositive(buf[v] * kLog2e - mx);
    run_sum += hsum((s0 + s1) + (s2 + s3));
  }
  // A NaN anywhere makes the sum NaN; an infinite max shows directly. Both go to the exact path.
  if (!std::isfinite(run_sum) || !std::isfinite(run_max)) return {-1, 0.f, 0.f};
  return {run_arg, static_cast<float>(1.0 / run_sum), static_cast<float>(run_max + std::log(run_sum))};
}

}  // namespace
}  // namespace dk::cpu
