// The per-row bodies of the CPU masked cross-entropy, shared by the translation units built for
// each x86 level (masked_ce.cpp: base; masked_ce_avx2.cpp: v3; masked_ce_avx512.cpp: v4).
// Internal linkage only, except the declared entry points.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "cpu/vec_math.h"

namespace dk::cpu {

// max and sum of exp(x - max) of a row; `finite` is false when the fast path saw a NaN or an
// infinity, in which case the caller takes the exact scalar path.
struct CeRowStats {
  float max;
  double sum;
  bool finite;
};

// Fast paths, one build per x86 level.
#define DK_DECLARE_CE_ROW_FNS(level)                                                          \
  CeRowStats ce_stats_##level(const float* row, int64_t vocab);                              \
  CeRowStats ce_stats_##level(const _Float16* row, int64_t vocab);                           \
  CeRowStats ce_stats_##level(const bf16_bits* row, int64_t vocab);                          \
  void ce_softmax_scaled_##level(const float* row, float* out, int64_t vocab, float lse, float a);        \
  void ce_softmax_scaled_##level(const _Float16* row, _Float16* out, int64_t vocab, float lse, float a);  \
  void ce_softmax_scaled_##level(const bf16_bits* row, bf16_bits* out, int64_t vocab, float lse, float a);
DK_DECLARE_CE_ROW_FNS(base)
DK_DECLARE_CE_ROW_FNS(v3)
DK_DECLARE_CE_ROW_FNS(v4)
#undef DK_DECLARE_CE_ROW_FNS

namespace {

constexpr int64_t kCeChunk = 2048;  // floats: the staging buffer stays in L1
static_assert(kCeChunk % kVecWidth == 0);

// In-order stores of kVecWidth elements (the gradient is written back element by element, so
// no lane permutation as in load_pair); the loads are vec_math.h's load16.
inline __attribute__((always_inline)) void ce_store(float* p, vfloat v) { std::memcpy(p, &v, sizeof v); }
inline __attribute__((always_inline)) void ce_store(_Float16* p, vfloat v) {
  const vhalf h = __builtin_convertvector(v, vhalf);
  std::memcpy(p, &h, sizeof h);
}
// Round to nearest even; NaN stays a (quiet) NaN instead of rounding into infinity.
inline __attribute__((always_inline)) void ce_store(bf16_bits* p, vfloat v) {
  const vuint u = (vuint)v;
  const vuint rounded = (u + (0x7fffu + ((u >> 16) & 1u))) >> 16;
  const vuint is_nan = (vuint)((u & 0x7fffffffu) > 0x7f800000u);
  const vuint r = (is_nan & ((u >> 16) | 0x40u)) | (~is_nan & rounded);
  const vu16 h = __builtin_convertvector(r, vu16);
  std::memcpy(p, &h, sizeof h);
}

inline float ce_scalar_load(const float* p) { return *p; }
inline float ce_scalar_load(const _Float16* p) { return static_cast<float>(*p); }
inline float ce_scalar_load(const bf16_bits* p) { return load_scalar(p); }
inline double ce_scalar_load(const double* p) { return *p; }

template <typename T>
inline void ce_scalar_store(T* p, float v) {
  vfloat lanes = splat(v);
  T tmp[kVecWidth];
  ce_store(tmp, lanes);
  *p = tmp[0];
}
inline void ce_scalar_store(double* p, double v) { *p = v; }

// Loads `n` < kVecWidth elements; the rest of the lanes get `fill`.
template <typename T>
inline vfloat ce_load_partial(const T* p, int64_t n, float fill) {
  vfloat v = splat(fill);
  for (int64_t k = 0; k < n; ++k) v[k] = ce_scalar_load(p + k);
  return v;
}

// 2^t for t <= 0 with exact 0 below 2^-126 (softmax of -inf logits is 0, as in torch); NaN stays NaN.
inline __attribute__((always_inline)) vfloat ce_exp2_nonpositive(vfloat t) {
  const vfloat p = vexp2(t);
  return t < splat(-126.f) ? splat(0.f) : p;
}

template <typename T>
inline __attribute__((always_inline)) CeRowStats ce_stats(const T* row, int64_t vocab) {
  vfloat buf[kCeChunk / kVecWidth];
  float run_max = -std::numeric_limits<float>::infinity();
  double run_sum = 0.0;  // across chunks in double; within a chunk, four float vectors
  for (int64_t c0 = 0; c0 < vocab; c0 += kCeChunk) {
    const int64_t n = std::min(kCeChunk, vocab - c0);
    const int64_t full = n / kVecWidth;
    vfloat m0 = splat(-std::numeric_limits<float>::infinity()), m1 = m0;
    int64_t q = 0;
    for (; q + 1 < full; q += 2) {
      buf[q] = load16(row + c0 + q * kVecWidth);
      buf[q + 1] = load16(row + c0 + (q + 1) * kVecWidth);
      m0 = vmax(buf[q], m0);
      m1 = vmax(buf[q + 1], m1);
    }
    int64_t nvec = full;
    if (q < full) {
      buf[q] = load16(row + c0 + q * kVecWidth);
      m0 = vmax(buf[q], m0);
    }
    if (full * kVecWidth < n) {  // ragged tail padded with -inf, which adds exactly 0
      buf[nvec] = ce_load_partial(row + c0 + full * kVecWidth, n - full * kVecWidth,
                                  -std::numeric_limits<float>::infinity());
      m0 = vmax(buf[nvec], m0);
      ++nvec;
    }
    const float chunk_max = hmax(vmax(m0, m1));
    if (chunk_max > run_max) {
      run_sum *= std::exp(static_cast<double>(run_max) - chunk_max);
      run_max = chunk_max;
    }
    // NaN-only, -inf-only or +inf so far; or |max| > 2^24, where the rounding of x * log2(e) (about
    // |x| * 2^-24) can push the shifted exponents of the largest terms out of range (sum 0).
    if (!(std::fabs(run_max) <= 0x1p24f)) return {run_max, 0.0, false};
    const vfloat mx = splat(run_max * kLog2e);
    vfloat s0 = splat(0.f), s1 = s0, s2 = s0, s3 = s0;
    int64_t v = 0;
    for (; v + 3 < nvec; v += 4) {
      s0 += ce_exp2_nonpositive(buf[v] * kLog2e - mx);
      s1 += ce_exp2_nonpositive(buf[v + 1] * kLog2e - mx);
      s2 += ce_exp2_nonpositive(buf[v + 2] * kLog2e - mx);
      s3 += ce_exp2_nonpositive(buf[v + 3] * kLog2e - mx);
    }
    for (; v < nvec; ++v) s0 += ce_exp2_nonpositive(buf[v] * kLog2e - mx);
    run_sum += hsum((s0 + s1) + (s2 + s3));
  }
  // A NaN anywhere makes the sum NaN.
  return {run_max, run_sum, std::isfinite(run_sum) && std::isfinite(run_max)};
}

// out[j] = a * exp(row[j] - lse); `out` may alias `row` (each vector is read before it is written).
template <typename T>
inline __attribute__((always_inline)) void ce_softmax_scaled(const T* row, T* out, int64_t vocab, float lse,
                                                             float a) {
  const vfloat l = splat(lse), va = splat(a);
  int64_t j = 0;
  for (; j + kVecWidth <= vocab; j += kVecWidth)
    ce_store(out + j, va * ce_exp2_nonpositive((load16(row + j) - l) * kLog2e));
  for (; j < vocab; ++j) {
    const float x = ce_scalar_load(row + j);
    ce_scalar_store(out + j, a * std::exp(x - lse));
  }
}

}  // namespace
}  // namespace dk::cpu
