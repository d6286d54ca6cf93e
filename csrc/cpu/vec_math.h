// Everything here has internal linkage: translation units built for different x86 levels
// (the *_avx2.cpp and *_avx512.cpp files) must never share an out-of-line copy.
//
// Fixed-width float vectors (GCC vector extensions) and the math the CPU kernels need on
// them, with no intrinsics: 16 lanes (one AVX-512 register, or four SSE registers) unless the
// file defines DK_VEC_AVX2 (before any include, under its x86-64-v3 target pragma): then 8 lanes,
// one AVX2 register. Without AVX-512, g++ has no register mode for a 64-byte vector: it keeps
// one in memory and splits every compare and select (a > b ? a : b) into 16 scalar ones.
#pragma once
#include <cstdint>
#include <cstring>

#include "kernels/dtype.h"
#if defined(DK_VEC_AVX512)  // after the file's x86-64-v4 target pragma
#include <immintrin.h>
#endif

namespace dk::cpu {
namespace {  // see above: no shared out-of-line copies

#if defined(DK_VEC_AVX2)
constexpr int kVecWidth = 8;
#else
constexpr int kVecWidth = 16;
#endif
typedef float vfloat __attribute__((vector_size(4 * kVecWidth)));
typedef int32_t vint __attribute__((vector_size(4 * kVecWidth)));
typedef uint32_t vuint __attribute__((vector_size(4 * kVecWidth)));
typedef _Float16 vhalf __attribute__((vector_size(2 * kVecWidth)));

typedef uint16_t vu16 __attribute__((vector_size(2 * kVecWidth)));

inline __attribute__((always_inline)) vfloat splat(float f) { return vfloat{} + f; }

// kVecWidth consecutive elements as floats, in order; and the store of a float vector.
inline __attribute__((always_inline)) vfloat load16(const float* p) {
  vfloat v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline __attribute__((always_inline)) vfloat load16(const _Float16* p) {
  vhalf h;
  std::memcpy(&h, p, sizeof h);
  return __builtin_convertvector(h, vfloat);
}
inline __attribute__((always_inline)) vfloat load16(const uint16_t* p) {  // bfloat16: the top half of a float32
  vu16 h;
  std::memcpy(&h, p, sizeof h);
  return (vfloat)(__builtin_convertvector(h, vuint) << 16);
}
inline __attribute__((always_inline)) void store16(float* p, vfloat v) { std::memcpy(p, &v, sizeof v); }

// Loads 2 * kVecWidth consecutive elements as two float vectors. The lanes may come out in
// any order (callers only reduce over them), which lets bfloat16 skip a widening shuffle.
inline __attribute__((always_inline)) void load_pair(const float* p, vfloat& a, vfloat& b) {
  std::memcpy(&a, p, sizeof a);
  std::memcpy(&b, p + kVecWidth, sizeof b);
}
inline __attribute__((always_inline)) void load_pair(const _Float16* p, vfloat& a, vfloat& b) {
  vhalf h0, h1;
  std::memcpy(&h0, p, sizeof h0);
  std::memcpy(&h1, p + kVecWidth, sizeof h1);
  a = __builtin_convertvector(h0, vfloat);
  b = __builtin_convertvector(h1, vfloat);
}
// bfloat16 is the top half of a float32: each 32-bit word holds an even element in its low
// half and an odd element in its high half (little endian).
inline __attribute__((always_inline)) void load_pair(const uint16_t* p, vfloat& a, vfloat& b) {
  vuint w;
  std::memcpy(&w, p, sizeof w);
  a = (vfloat)(w << 16);
  b = (vfloat)(w & 0xffff0000u);
}

inline __attribute__((always_inline)) float load_scalar(const float* p) { return *p; }
inline __attribute__((always_inline)) float load_scalar(const _Float16* p) { return static_cast<float>(*p); }
inline __attribute__((always_inline)) float load_scalar(const bf16_bits* p) { return bf16_bits_to_float(*p); }

// a > b ? a : b, NaN in a ignored. In a file built for x86-64-v4 (each *_avx512.cpp defines
// DK_VEC_AVX512 before any include: the target pragma does not define __AVX512F__) that is
// exactly vmaxps a, b, which g++ (even from _mm512_max_ps) emits as a compare plus a masked copy:
// two uops, and a second load when `a` came from memory. Hence the asm.
inline __attribute__((always_inline)) vfloat vmax(vfloat a, vfloat b) {
#if defined(DK_VEC_AVX512)
  vfloat r;
  asm("vmaxps %2, %1, %0" : "=v"(r) : "v"(a), "v"(b));  // Intel order: vmaxps r, a, b
  return r;
#else
  return a > b ? a : b;
#endif
}

// 2^t to about 1 ulp for t in [-126, 127]; smaller t gives 2^-126 (~1e-38) instead of 0,
// harmless in a softmax sum that is >= 1; NaN propagates. t = k + r with integer k and
// |r| <= 1/2, then 2^r by a degree-6 polynomial fitted for relative error (2.6e-9 on the
// interval, below float rounding), then the exponent bits of 2^k.
inline __attribute__((always_inline)) vfloat vexp2(vfloat t) {
  t = t < splat(-126.f) ? splat(-126.f) : t;
  t = t > splat(127.f) ? splat(127.f) : t;
  // Adding 1.5 * 2^23 rounds to an integer held in the low mantissa bits: no float -> int
  // conversion, which would be undefined for NaN.
  const vfloat shift = splat(12582912.f);
  const vfloat biased = t + shift;
  const vfloat k = biased - shift;
  const vint ki = (vint)biased - (vint)shift;
  const vfloat r = t - k;
  vfloat p = splat(1.5345810970757157e-4f);
  p = p * r + 1.3399930903688073e-3f;
  p = p * r + 9.618489071726799e-3f;
  p = p * r + 5.550328642129898e-2f;
  p = p * r + 2.4022646248340607e-1f;
  p = p * r + 6.931471824645996e-1f;
  p = p * r + 1.f;
  return p * (vfloat)((ki + 127) << 23);
}

constexpr float kLog2e = 1.44269504088896341f;

// 2^t for t <= 0 (softmax terms): same polynomial, no upper clamp (callers never pass t > 0
// except with an infinite or NaN maximum, which they detect afterwards).
// term: 2^t for any t <= 127 (the greedy row loop's terms, some above its running max).
struct Exp2Generic {
  static inline __attribute__((always_inline)) vfloat nonpositive(vfloat t) { return vexp2(t); }
  static inline __attribute__((always_inline)) vfloat term(vfloat t) { return vexp2(t); }
};


// Largest lane of v (callers never pass a NaN lane: their maxima are built by vmax, which drops
// NaN). The AVX-512 build halves the vector four times, 8 instructions instead of g++'s ~30
// scalar extracts and compares: this runs once per 64 ids in the Gumbel argmax.
inline __attribute__((always_inline)) float hmax(vfloat v) {
#if defined(DK_VEC_AVX512)
  const __m512 x = (__m512)v;
  vfloat m = vmax(v, (vfloat)_mm512_shuffle_f32x4(x, x, _MM_SHUFFLE(1, 0, 3, 2)));
  m = vmax(m, (vfloat)_mm512_shuffle_f32x4((__m512)m, (__m512)m, _MM_SHUFFLE(2, 3, 0, 1)));
  m = vmax(m, (vfloat)_mm512_permute_ps((__m512)m, _MM_SHUFFLE(1, 0, 3, 2)));
  m = vmax(m, (vfloat)_mm512_permute_ps((__m512)m, _MM_SHUFFLE(2, 3, 0, 1)));
  return m[0];
#else
  float m = v[0];
  for (int i = 1; i < kVecWidth; ++i) m = v[i] > m ? v[i] : m;
  return m;
#endif
}

// Whether any lane of a comparison result is set.
inline __attribute__((always_inline)) bool any_lane(vint v) {
#if defined(DK_VEC_AVX512)
  return _mm512_test_epi32_mask((__m512i)v, (__m512i)v) != 0;
#else
  bool any = false;
  for (int i = 0; i < kVecWidth; ++i) any |= v[i] != 0;
  return any;
#endif
}

inline __attribute__((always_inline)) double hsum(vfloat v) {
  double s = 0.0;
  for (int i = 0; i < kVecWidth; ++i) s += v[i];
  return s;
}

}  // namespace
}  // namespace dk::cpu
