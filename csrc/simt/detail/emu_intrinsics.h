// Part of simt/simt.h (emulator): atomics, math and bit intrinsics, min/max.
// Overload sets follow CUDA's headers, so code that compiles here also compiles under nvcc.
// The fast-math intrinsics are computed with their accurate <cmath> counterparts: compare
// emulated results with tolerances, not bitwise, against the GPU.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <ctime>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

#include "simt/detail/emu_runtime.h"

namespace simt::detail {

template <class T>
inline std::atomic_ref<T> atomic_at(T* p, const char* what) {
  if (reinterpret_cast<uintptr_t>(p) % std::atomic_ref<T>::required_alignment) {
    char buf[48];
    std::snprintf(buf, sizeof buf, "%p", static_cast<void*>(p));
    const std::string problem = std::string(what) + ": address " + buf + " is misaligned for its type";
    if (const Fiber* f = tl_fiber) {
      san::Ignore ig;
      throw KernelError(problem, coord(f->launch->block_idx), coord(f->tid), nullptr, 0);
    }
    throw KernelError("simt: " + problem);
  }
  return std::atomic_ref<T>(*p);
}

template <class T, class F>
inline T atomic_update(T* p, const char* what, F next) {
  auto a = atomic_at(p, what);
  T old = a.load();
  while (!a.compare_exchange_weak(old, next(old))) {
  }
  return old;
}

}  // namespace simt::detail

// ----------------------------------------------------------------------------------- atomics ---
// Sequentially consistent: stronger than the GPU's relaxed atomics, which keeps TSan quiet about
// the usual "atomic counter, then read the partials" patterns.

#define SIMT_ATOMIC_ALIASES_(name)                                             \
  template <class... A>                                                        \
  inline auto name##_block(A... a) -> decltype(name(a...)) { return name(a...); } \
  template <class... A>                                                        \
  inline auto name##_system(A... a) -> decltype(name(a...)) { return name(a...); }

#define SIMT_ATOMIC_RMW_(name, T, method)                                      \
  inline T name(T* address, T val) {                                           \
    return ::simt::detail::atomic_at(address, #name).method(val);              \
  }
SIMT_ATOMIC_RMW_(atomicAdd, int, fetch_add)
SIMT_ATOMIC_RMW_(atomicAdd, unsigned int, fetch_add)
SIMT_ATOMIC_RMW_(atomicAdd, unsigned long long, fetch_add)
SIMT_ATOMIC_RMW_(atomicAdd, float, fetch_add)
SIMT_ATOMIC_RMW_(atomicAdd, double, fetch_add)
SIMT_ATOMIC_RMW_(atomicSub, int, fetch_sub)
SIMT_ATOMIC_RMW_(atomicSub, unsigned int, fetch_sub)
SIMT_ATOMIC_RMW_(atomicExch, int, exchange)
SIMT_ATOMIC_RMW_(atomicExch, unsigned int, exchange)
SIMT_ATOMIC_RMW_(atomicExch, unsigned long long, exchange)
SIMT_ATOMIC_RMW_(atomicExch, float, exchange)
SIMT_ATOMIC_RMW_(atomicAnd, int, fetch_and)
SIMT_ATOMIC_RMW_(atomicAnd, unsigned int, fetch_and)
SIMT_ATOMIC_RMW_(atomicAnd, long long, fetch_and)
SIMT_ATOMIC_RMW_(atomicAnd, unsigned long long, fetch_and)
SIMT_ATOMIC_RMW_(atomicOr, int, fetch_or)
SIMT_ATOMIC_RMW_(atomicOr, unsigned int, fetch_or)
SIMT_ATOMIC_RMW_(atomicOr, long long, fetch_or)
SIMT_ATOMIC_RMW_(atomicOr, unsigned long long, fetch_or)
SIMT_ATOMIC_RMW_(atomicXor, int, fetch_xor)
SIMT_ATOMIC_RMW_(atomicXor, unsigned int, fetch_xor)
SIMT_ATOMIC_RMW_(atomicXor, long long, fetch_xor)
SIMT_ATOMIC_RMW_(atomicXor, unsigned long long, fetch_xor)
#undef SIMT_ATOMIC_RMW_

#define SIMT_ATOMIC_MINMAX_(T)                                                                 \
  inline T atomicMin(T* address, T val) {                                                      \
    return ::simt::detail::atomic_update(address, "atomicMin", [val](T o) { return val < o ? val : o; }); \
  }                                                                                            \
  inline T atomicMax(T* address, T val) {                                                      \
    return ::simt::detail::atomic_update(address, "atomicMax", [val](T o) { return val > o ? val : o; }); \
  }
SIMT_ATOMIC_MINMAX_(int)
SIMT_ATOMIC_MINMAX_(unsigned int)
SIMT_ATOMIC_MINMAX_(long long)
SIMT_ATOMIC_MINMAX_(unsigned long long)
#undef SIMT_ATOMIC_MINMAX_

inline unsigned int atomicInc(unsigned int* address, unsigned int val) {
  return ::simt::detail::atomic_update(address, "atomicInc",
                                       [val](unsigned o) { return o >= val ? 0u : o + 1; });
}
inline unsigned int atomicDec(unsigned int* address, unsigned int val) {
  return ::simt::detail::atomic_update(address, "atomicDec",
                                       [val](unsigned o) { return (o == 0 || o > val) ? val : o - 1; });
}

#define SIMT_ATOMIC_CAS_(T)                                                    \
  inline T atomicCAS(T* address, T compare, T val) {                           \
    ::simt::detail::atomic_at(address, "atomicCAS").compare_exchange_strong(compare, val); \
    return compare;                                                            \
  }
SIMT_ATOMIC_CAS_(int)
SIMT_ATOMIC_CAS_(unsigned int)
SIMT_ATOMIC_CAS_(unsigned long long)
SIMT_ATOMIC_CAS_(unsigned short)
#undef SIMT_ATOMIC_CAS_

SIMT_ATOMIC_ALIASES_(atomicAdd)
SIMT_ATOMIC_ALIASES_(atomicSub)
SIMT_ATOMIC_ALIASES_(atomicExch)
SIMT_ATOMIC_ALIASES_(atomicMin)
SIMT_ATOMIC_ALIASES_(atomicMax)
SIMT_ATOMIC_ALIASES_(atomicInc)
SIMT_ATOMIC_ALIASES_(atomicDec)
SIMT_ATOMIC_ALIASES_(atomicAnd)
SIMT_ATOMIC_ALIASES_(atomicOr)
SIMT_ATOMIC_ALIASES_(atomicXor)
SIMT_ATOMIC_ALIASES_(atomicCAS)
#undef SIMT_ATOMIC_ALIASES_

// Fibers switch only at sync points, so fences order nothing more; GCC's TSan cannot model them.
inline void __threadfence() {
#if !SIMT_TSAN
  std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
}
inline void __threadfence_block() { __threadfence(); }
inline void __threadfence_system() { __threadfence(); }

inline long long clock64() {  // nanoseconds, monotonic: only differences mean anything
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000ll + ts.tv_nsec;
}
inline void __nanosleep(unsigned) {}

// -------------------------------------------------------------------------- memory helpers -----

template <class T> inline T __ldg(const T* p) { return *p; }
template <class T> inline T __ldca(const T* p) { return *p; }
template <class T> inline T __ldcg(const T* p) { return *p; }
template <class T> inline T __ldcs(const T* p) { return *p; }
template <class T> inline T __ldlu(const T* p) { return *p; }
template <class T> inline T __ldcv(const T* p) { return *p; }
template <class T> inline void __stwb(T* p, T v) { *p = v; }
template <class T> inline void __stcg(T* p, T v) { *p = v; }
template <class T> inline void __stcs(T* p, T v) { *p = v; }
template <class T> inline void __stwt(T* p, T v) { *p = v; }

// ------------------------------------------------------------------------------------ math -----

// glibc declares most of these names itself (as internal aliases), so they carry noexcept to
// match. CUDA has no __exp2f: use exp2f, which is already fast on the GPU.
inline float __expf(float x) noexcept { return std::exp(x); }
inline float __exp10f(float x) noexcept { return std::pow(10.0f, x); }
inline float __logf(float x) noexcept { return std::log(x); }
inline float __log2f(float x) noexcept { return std::log2(x); }
inline float __log10f(float x) noexcept { return std::log10(x); }
inline float __powf(float x, float y) noexcept { return std::pow(x, y); }
inline float __sinf(float x) noexcept { return std::sin(x); }
inline float __cosf(float x) noexcept { return std::cos(x); }
inline float __tanf(float x) noexcept { return std::tan(x); }
inline void __sincosf(float x, float* s, float* c) noexcept { *s = std::sin(x), *c = std::cos(x); }
inline float __fdividef(float x, float y) noexcept { return x / y; }
inline float fdividef(float x, float y) noexcept { return x / y; }
inline float rsqrtf(float x) noexcept { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) noexcept { return 1.0 / std::sqrt(x); }
inline float __frsqrt_rn(float x) noexcept { return 1.0f / std::sqrt(x); }
inline float __fsqrt_rn(float x) noexcept { return std::sqrt(x); }
inline float __frcp_rn(float x) noexcept { return 1.0f / x; }
inline float __saturatef(float x) noexcept { return x >= 1.0f ? 1.0f : (x > 0.0f ? x : 0.0f); }  // NaN -> 0
inline float __fmaf_rn(float a, float b, float c) noexcept { return std::fma(a, b, c); }
inline double __fma_rn(double a, double b, double c) noexcept { return std::fma(a, b, c); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }

namespace simt::detail {
// GPU float->int conversions saturate and map NaN to 0 (C++ leaves that undefined).
template <class I, class F>
inline I saturate_to(F r) {
  if (std::isnan(r)) return 0;
  if (r <= static_cast<F>(std::numeric_limits<I>::min())) return std::numeric_limits<I>::min();
  if (r >= static_cast<F>(std::numeric_limits<I>::max())) return std::numeric_limits<I>::max();
  return static_cast<I>(r);
}
}  // namespace simt::detail

inline int __float2int_rn(float x) { return simt::detail::saturate_to<int>(std::nearbyint(x)); }
inline int __float2int_rz(float x) { return simt::detail::saturate_to<int>(std::trunc(x)); }
inline int __float2int_rd(float x) { return simt::detail::saturate_to<int>(std::floor(x)); }
inline int __float2int_ru(float x) { return simt::detail::saturate_to<int>(std::ceil(x)); }
inline unsigned __float2uint_rn(float x) { return simt::detail::saturate_to<unsigned>(std::nearbyint(x)); }
inline unsigned __float2uint_rz(float x) { return simt::detail::saturate_to<unsigned>(std::trunc(x)); }
inline long long __float2ll_rn(float x) { return simt::detail::saturate_to<long long>(std::nearbyint(x)); }
inline long long __float2ll_rz(float x) { return simt::detail::saturate_to<long long>(std::trunc(x)); }
inline int __double2int_rn(double x) { return simt::detail::saturate_to<int>(std::nearbyint(x)); }
inline int __double2int_rz(double x) { return simt::detail::saturate_to<int>(std::trunc(x)); }
inline float __int2float_rn(int x) { return static_cast<float>(x); }
inline float __uint2float_rn(unsigned x) { return static_cast<float>(x); }
inline float __ll2float_rn(long long x) { return static_cast<float>(x); }
inline float __double2float_rn(double x) { return static_cast<float>(x); }

inline int __float_as_int(float x) { return std::bit_cast<int>(x); }
inline unsigned __float_as_uint(float x) { return std::bit_cast<unsigned>(x); }
inline float __int_as_float(int x) { return std::bit_cast<float>(x); }
inline float __uint_as_float(unsigned x) { return std::bit_cast<float>(x); }
inline long long __double_as_longlong(double x) { return std::bit_cast<long long>(x); }
inline double __longlong_as_double(long long x) { return std::bit_cast<double>(x); }
inline int __double2hiint(double x) { return static_cast<int>(std::bit_cast<unsigned long long>(x) >> 32); }
inline int __double2loint(double x) { return static_cast<int>(std::bit_cast<unsigned long long>(x)); }
inline double __hiloint2double(int hi, int lo) {
  return std::bit_cast<double>((static_cast<unsigned long long>(static_cast<unsigned>(hi)) << 32) |
                               static_cast<unsigned>(lo));
}

// ------------------------------------------------------------------------------------ bits -----

inline int __popc(unsigned x) { return std::popcount(x); }
inline int __popcll(unsigned long long x) { return std::popcount(x); }
inline int __clz(int x) { return std::countl_zero(static_cast<unsigned>(x)); }
inline int __clzll(long long x) { return std::countl_zero(static_cast<unsigned long long>(x)); }
inline int __ffs(int x) { return x ? std::countr_zero(static_cast<unsigned>(x)) + 1 : 0; }
inline int __ffsll(long long x) { return x ? std::countr_zero(static_cast<unsigned long long>(x)) + 1 : 0; }
inline unsigned __brev(unsigned x) {
  unsigned r = 0;
  for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
  return r;
}
inline unsigned long long __brevll(unsigned long long x) {
  return (static_cast<unsigned long long>(__brev(static_cast<unsigned>(x))) << 32) |
         __brev(static_cast<unsigned>(x >> 32));
}
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
  const unsigned long long v = (static_cast<unsigned long long>(y) << 32) | x;
  unsigned r = 0;
  for (int i = 0; i < 4; ++i) r |= static_cast<unsigned>((v >> (8 * ((s >> (4 * i)) & 7))) & 0xff) << (8 * i);
  return r;
}
inline unsigned __funnelshift_l(unsigned lo, unsigned hi, unsigned shift) {
  const unsigned long long v = (static_cast<unsigned long long>(hi) << 32) | lo;
  return static_cast<unsigned>((v << (shift & 31)) >> 32);
}
inline unsigned __funnelshift_lc(unsigned lo, unsigned hi, unsigned shift) {
  const unsigned long long v = (static_cast<unsigned long long>(hi) << 32) | lo;
  return static_cast<unsigned>((v << std::min(shift, 32u)) >> 32);
}
inline unsigned __funnelshift_r(unsigned lo, unsigned hi, unsigned shift) {
  const unsigned long long v = (static_cast<unsigned long long>(hi) << 32) | lo;
  return static_cast<unsigned>(v >> (shift & 31));
}
inline unsigned __funnelshift_rc(unsigned lo, unsigned hi, unsigned shift) {
  const unsigned long long v = (static_cast<unsigned long long>(hi) << 32) | lo;
  return static_cast<unsigned>(v >> std::min(shift, 32u));
}
inline int __mulhi(int a, int b) { return static_cast<int>((static_cast<long long>(a) * b) >> 32); }
inline unsigned __umulhi(unsigned a, unsigned b) {
  return static_cast<unsigned>((static_cast<unsigned long long>(a) * b) >> 32);
}
namespace simt::detail {
__extension__ typedef __int128 int128;  // __extension__: no -Wpedantic noise in users' builds
__extension__ typedef unsigned __int128 uint128;
}  // namespace simt::detail
inline long long __mul64hi(long long a, long long b) {
  return static_cast<long long>((static_cast<simt::detail::int128>(a) * b) >> 64);
}
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  return static_cast<unsigned long long>((static_cast<simt::detail::uint128>(a) * b) >> 64);
}

// ------------------------------------------------------------------------------- min / max -----
// Plain overloads in the global namespace, as CUDA declares them; std::min/std::max are untouched.
// Mixed signed/unsigned pairs convert to unsigned, as in CUDA.

#define SIMT_MINMAX_(R, A, B)                                            \
  inline R min(A a, B b) { return static_cast<R>(a) < static_cast<R>(b) ? static_cast<R>(a) : static_cast<R>(b); } \
  inline R max(A a, B b) { return static_cast<R>(a) > static_cast<R>(b) ? static_cast<R>(a) : static_cast<R>(b); }
SIMT_MINMAX_(int, int, int)
SIMT_MINMAX_(unsigned int, unsigned int, unsigned int)
SIMT_MINMAX_(unsigned int, int, unsigned int)
SIMT_MINMAX_(unsigned int, unsigned int, int)
SIMT_MINMAX_(long, long, long)
SIMT_MINMAX_(unsigned long, unsigned long, unsigned long)
SIMT_MINMAX_(unsigned long, long, unsigned long)
SIMT_MINMAX_(unsigned long, unsigned long, long)
SIMT_MINMAX_(long long, long long, long long)
SIMT_MINMAX_(unsigned long long, unsigned long long, unsigned long long)
SIMT_MINMAX_(unsigned long long, long long, unsigned long long)
SIMT_MINMAX_(unsigned long long, unsigned long long, long long)
#undef SIMT_MINMAX_
// NaN handling as fminf/fmaxf (the GPU's min.f32 returns the other operand).
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }
inline double min(double a, double b) { return std::fmin(a, b); }
inline double max(double a, double b) { return std::fmax(a, b); }
inline double min(float a, double b) { return std::fmin(static_cast<double>(a), b); }
inline double max(float a, double b) { return std::fmax(static_cast<double>(a), b); }
inline double min(double a, float b) { return std::fmin(a, static_cast<double>(b)); }
inline double max(double a, float b) { return std::fmax(a, static_cast<double>(b)); }
inline unsigned umin(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned umax(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long llmin(long long a, long long b) { return a < b ? a : b; }
inline long long llmax(long long a, long long b) { return a > b ? a : b; }
inline unsigned long long ullmin(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline unsigned long long ullmax(unsigned long long a, unsigned long long b) { return a > b ? a : b; }

#include <math_constants.h>  // CUDART_INF_F & co.; some are spelled with __int_as_float
