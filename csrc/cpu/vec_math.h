// Fixed-width float vectors (GCC vector extensions) and the math the CPU kernels need on
// them. Vector extensions give the same 16-lane code in every target_clones clone: one
// AVX-512 register, two AVX2 registers or four SSE registers, with no intrinsics.
#pragma once
#include <cstdint>
#include <cstring>

namespace dk::cpu {

constexpr int kVecWidth = 16;
typedef float vfloat __attribute__((vector_size(4 * kVecWidth)));
typedef int32_t vint __attribute__((vector_size(4 * kVecWidth)));
typedef uint32_t vuint __attribute__((vector_size(4 * kVecWidth)));
typedef uint16_t vhalfbits __attribute__((vector_size(2 * kVecWidth)));
typedef _Float16 vhalf __attribute__((vector_size(2 * kVecWidth)));

inline __attribute__((always_inline)) vfloat splat(float f) { return vfloat{} + f; }

inline __attribute__((always_inline)) vfloat load_vec(const float* p) {
  vfloat v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline __attribute__((always_inline)) vfloat load_vec(const _Float16* p) {
  vhalf h;
  std::memcpy(&h, p, sizeof h);
  return __builtin_convertvector(h, vfloat);
}
// bfloat16 is the top half of a float32.
inline __attribute__((always_inline)) vfloat load_vec(const uint16_t* p) {
  vhalfbits h;
  std::memcpy(&h, p, sizeof h);
  return (vfloat)(__builtin_convertvector(h, vuint) << 16);
}

inline __attribute__((always_inline)) float load_scalar(const float* p) { return *p; }
inline __attribute__((always_inline)) float load_scalar(const _Float16* p) { return static_cast<float>(*p); }
inline __attribute__((always_inline)) float load_scalar(const uint16_t* p) {
  const uint32_t u = static_cast<uint32_t>(*p) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline __attribute__((always_inline)) vfloat vmax(vfloat a, vfloat b) { return a > b ? a : b; }

// exp(x) to about 1 ulp for x in [-87.3, 88.7]; smaller x gives ~1e-38 instead of 0 (harmless
// in a softmax sum that is >= 1); NaN propagates. Cody-Waite reduction x = k ln2 + r,
// |r| <= ln2/2, then a degree-7 Taylor polynomial (truncation < 1e-8 relative there).
inline __attribute__((always_inline)) vfloat vexp(vfloat x) {
  x = x < splat(-87.3f) ? splat(-87.3f) : x;
  x = x > splat(88.7f) ? splat(88.7f) : x;
  // Adding 1.5 * 2^23 rounds to an integer held in the low mantissa bits: no float -> int
  // conversion, which would be undefined for NaN.
  const vfloat shift = splat(12582912.f);
  const vfloat t = x * 1.44269504088896341f + shift;
  const vfloat k = t - shift;
  const vint ki = (vint)t - (vint)shift;
  const vfloat r = (x - k * 0.693145751953125f) - k * 1.428606765330187045e-06f;
  vfloat p = splat(1.f / 5040.f);
  p = p * r + 1.f / 720.f;
  p = p * r + 1.f / 120.f;
  p = p * r + 1.f / 24.f;
  p = p * r + 1.f / 6.f;
  p = p * r + 0.5f;
  p = p * r + 1.f;
  p = p * r + 1.f;
  return p * (vfloat)((ki + 127) << 23);
}

inline __attribute__((always_inline)) float hmax(vfloat v) {
  float m = v[0];
  for (int i = 1; i < kVecWidth; ++i) m = v[i] > m ? v[i] : m;
  return m;
}

inline __attribute__((always_inline)) double hsum(vfloat v) {
  double s = 0.0;
  for (int i = 0; i < kVecWidth; ++i) s += v[i];
  return s;
}

}  // namespace dk::cpu
