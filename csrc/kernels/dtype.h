// The floating dtypes the kernels take and the bfloat16 bit helpers: no torch, no CUDA, so the
// params structs, the CPU kernels, the launchers and the native tests all share them.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace dk {

// Float64 is taken by the CPU masked CE only (for gradcheck); every other kernel rejects it.
enum class ScalarKind : int32_t { Float32 = 0, Float16 = 1, BFloat16 = 2, Float64 = 3 };

// bfloat16 in storage: the top half of a float32.
using bf16_bits = uint16_t;

namespace {  // internal linkage: TUs built for different x86 levels must not share a copy

inline __attribute__((always_inline)) float bf16_bits_to_float(bf16_bits b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Round to nearest even; a NaN becomes the quiet NaN 0x7fc0 instead of rounding into infinity.
inline __attribute__((always_inline)) bf16_bits float_to_bf16_bits(float f) {
  if (std::isnan(f)) return 0x7fc0;
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<bf16_bits>(u >> 16);
}

}  // namespace
}  // namespace dk
