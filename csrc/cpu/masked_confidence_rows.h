// The per-row body of the CPU masked_confidence, shared by the translation units built for
// each x86 level (masked_confidence.cpp, masked_confidence_avx2.cpp,
// masked_confidence_sample_avx2.cpp, masked_confidence_avx512.cpp). Internal linkage only.
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

// The fast path for each x86 level, one translation unit per level.
#define DK_DECLARE_ROW_FNS(level)                                            \
  RowResult finite_row_##level(const float* row, int64_t vocab);            \
  RowResult finite_row_##level(const _Float16* row, int64_t vocab);         \
  RowResult finite_row_##level(const uint16_t* row, int64_t vocab);
DK_DECLARE_ROW_FNS(base)
DK_DECLARE_ROW_FNS(v3)
DK_DECLARE_ROW_FNS(v4)

namespace {

constexpr int64_t kChunk = 2048;  // elements: a chunk stays in L1 for the rare second pass
static_assert(kChunk % (2 * kVecWidth) == 0);

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

inline __attribute__((always_inline)) vfloat exp2_arg(vfloat v, vfloat mx) { return v * kLog2e - mx; }

// The first index in [0, n) whose element equals `value`, which one of them does. Lanes are
// inspected only in the vector that has a match (the greedy row and the sampled row both search
// for their maximum once, mid-row on average).
template <typename T>
int64_t first_index_of(const T* p, int64_t n, float value) {
  const vfloat v = splat(value);
  int64_t i = 0;
  for (; i + kVecWidth <= n; i += kVecWidth)
    if (any_lane((vint)(load16(p + i) == v))) break;
  while (i < n && load(p, i) != value) ++i;  // bounded: a value not found must not read past the row
  return i;
}

// Returns token -1 when the row is not all finite; the caller then takes the exact path.
//
// One pass: every element is loaded once and exponentiated against `ref`, the largest value of
// the chunks before it, while the chunk's own max is tracked. A chunk whose max exceeds `ref`
// needs no second pass: its terms are then 2^t with 0 < t <= 64 log2(e), far inside float32, and
// its sum is rescaled with the running sum afterwards. Only the first chunk (no `ref` yet) is
// scanned for its max first, and a chunk that jumps above `ref` by more than 64 is summed again
// against its own max. (Staging the chunk as floats for a max pass, then an exponential pass,
// cost a store and a load per element: about a fifth of the loop.)
template <typename Exp2, typename T>
inline __attribute__((always_inline)) RowResult finite_row(const T* row, int64_t vocab) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  constexpr float kMaxJump = 64.f;  // e^64 = 2^92.3: 2048 such terms still fit in float32
  constexpr int64_t kLine = 64 / sizeof(T);  // elements per cache line
  float ref = -kInf;    // terms are exp(v - ref)
  double run_sum = 0.0; // relative to ref; across chunks in double (float32 cost ~1e-6 at V = 126464)
  float best = -kInf;   // max so far, and the first chunk holding it (searched once, at the end:
  int64_t best_chunk = 0;  // the max rises in ~ln(chunks) chunks, a scalar search each cost ~15 %)
  float bias = 0.f;     // the last fused pass's exponent offset (see fused)
  for (int64_t c0 = 0; c0 < vocab; c0 += kChunk) {
    const int64_t n = std::min(kChunk, vocab - c0);
    const T* p = row + c0;
    const int64_t full = n / (2 * kVecWidth) * (2 * kVecWidth);
    // Up to two vectors of the ragged tail, padded with -inf.
    vfloat tail[2] = {splat(-kInf), splat(-kInf)};
    for (int64_t i = full; i < n; ++i) tail[(i - full) / kVecWidth][(i - full) % kVecWidth] = load(p, i);
    auto chunk_max_only = [&] {
      vfloat m0 = vmax(tail[0], tail[1]), m1 = m0;
      for (int64_t i = 0; i < full; i += 2 * kVecWidth) {
        vfloat a, b;
        load_pair(p + i, a, b);
        m0 = vmax(a, m0);
        m1 = vmax(b, m1);
      }
      return hmax(vmax(m0, m1));
    };
    // The fused pass: max of the chunk and the sum of exp(v - against), as 2^(v log2e - mx) with
    // mx = against log2e rounded. Where the compiler fuses v log2e - mx into one FMA (v3, v4),
    // every term carries the same factor 2^e, e = against log2e - mx (up to 2^-24 |mx|: 5e-6
    // relative at a max of 90); it is divided out afterwards, as the exponent the same expression
    // gives at v = against (0 where there is no FMA).
    auto fused = [&](float against, float& cmax) {
      const vfloat mx = splat(against * kLog2e);
      bias = exp2_arg(splat(against), mx)[0];
      vfloat m0 = vmax(tail[0], tail[1]), m1 = m0;
      vfloat s0 = Exp2::term(exp2_arg(tail[0], mx)) + Exp2::term(exp2_arg(tail[1], mx));
      vfloat s1 = splat(0.f), s2 = s1, s3 = s1;
      int64_t i = 0;
      if constexpr (kVecWidth == 8) {
        // AVX2 has 16 vector registers: the term's constants take ~11, so one max and two sum
        // accumulators (spilled accumulators cost a store and a load per vector).
        for (; i + 4 * kVecWidth <= full; i += 4 * kVecWidth) {
          for (int64_t e = 0; e < 4 * kVecWidth; e += kLine) __builtin_prefetch(p + kChunk + i + e);
          vfloat a, b, c, d;
          load_pair(p + i, a, b);
          load_pair(p + i + 2 * kVecWidth, c, d);
          m0 = vmax(a, m0);
          m0 = vmax(b, m0);
          m0 = vmax(c, m0);
          m0 = vmax(d, m0);
          s0 += Exp2::term(exp2_arg(a, mx));
          s1 += Exp2::term(exp2_arg(b, mx));
          s0 += Exp2::term(exp2_arg(c, mx));
          s1 += Exp2::term(exp2_arg(d, mx));
        }
      }
      for (; i + 4 * kVecWidth <= full; i += 4 * kVecWidth) {
        // The next chunk's lines, a chunk ahead: the hardware prefetcher alone leaves the loop
        // waiting on loads when two cores stream rows from DRAM.
        for (int64_t e = 0; e < 4 * kVecWidth; e += kLine) __builtin_prefetch(p + kChunk + i + e);
        vfloat a, b, c, d;
        load_pair(p + i, a, b);
        load_pair(p + i + 2 * kVecWidth, c, d);
        m0 = vmax(a, m0);
        m1 = vmax(b, m1);
        m0 = vmax(c, m0);
        m1 = vmax(d, m1);
        s0 += Exp2::term(exp2_arg(a, mx));
        s1 += Exp2::term(exp2_arg(b, mx));
        s2 += Exp2::term(exp2_arg(c, mx));
        s3 += Exp2::term(exp2_arg(d, mx));
      }
      for (; i < full; i += 2 * kVecWidth) {
        vfloat a, b;
        load_pair(p + i, a, b);
        m0 = vmax(a, m0);
        m1 = vmax(b, m1);
        s0 += Exp2::term(exp2_arg(a, mx));
        s1 += Exp2::term(exp2_arg(b, mx));
      }
      cmax = hmax(vmax(m0, m1));
      return hsum((s0 + s1) + (s2 + s3)) * std::exp2(-static_cast<double>(bias));
    };
    if (ref == -kInf) {
      ref = chunk_max_only();
      if (ref == -kInf) {  // all -inf so far, or NaN: nothing to add, unless NaN
        for (int64_t i = 0; i < n; ++i)
          if (std::isnan(load(p, i))) return {-1, 0.f, 0.f};
        continue;
      }
    }
    float cmax;
    double csum = fused(ref, cmax);
    // With an FMA the offset is the rounding error of against * log2e: beyond |against| ~ 1e7 it
    // exceeds 1 and the terms leave float32's range, so such rows take the exact path.
    if (!(std::fabs(bias) <= 1.f)) return {-1, 0.f, 0.f};
    if (cmax > best) {  // strict: an equal max in a later chunk keeps the earlier index
      best = cmax;
      best_chunk = c0;
    }
    if (cmax > ref) {
      float against = ref;
      if (!(cmax <= ref + kMaxJump)) {  // the terms may have overflowed: sum again
        against = cmax;
        csum = fused(against, cmax);
        if (!(std::fabs(bias) <= 1.f)) return {-1, 0.f, 0.f};
      }
      run_sum = run_sum * std::exp(static_cast<double>(ref) - cmax) + csum * std::exp(static_cast<double>(against) - cmax);
      ref = cmax;
    } else {
      run_sum += csum;
    }
  }
  // A NaN anywhere makes the sum NaN; an infinite max shows directly. Both go to the exact path.
  if (!std::isfinite(run_sum) || !std::isfinite(best)) return {-1, 0.f, 0.f};
  const int64_t best_index = best_chunk + first_index_of(row + best_chunk, std::min(kChunk, vocab - best_chunk), best);
  return {best_index, static_cast<float>(1.0 / run_sum), static_cast<float>(best + std::log(run_sum))};
}

}  // namespace
}  // namespace dk::cpu
