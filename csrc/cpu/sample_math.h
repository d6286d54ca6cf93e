// Vector math of the CPU sampling path (internal linkage, like vec_math.h: translation units
// built for different x86 levels must never share an out-of-line copy): natural log, Philox
// for kVecWidth consecutive counters at once, and the Gumbel noise of the 4 kVecWidth consecutive
// vocabulary ids those counters cover.
#pragma once
#include <cstdint>
#if defined(DK_VEC_AVX2)  // after the file's x86-64-v3 target pragma
#include <immintrin.h>
#endif

#include "cpu/vec_math.h"
#include "kernels/philox.cuh"

namespace dk::cpu {
namespace {

#define DK_AI inline __attribute__((always_inline))

typedef uint64_t vu64 __attribute__((vector_size(4 * kVecWidth)));  // kVecWidth / 2 lanes

// log(x) for positive normal x, to about 1 ulp: x = 2^e m with m in [sqrt(1/2), sqrt(2)), then
// log(1 + f) by the classic degree-9 minimax polynomial (Cephes logf).
DK_AI vfloat vlog(vfloat x) {
  vint bits = (vint)x;
  vint e = (bits >> 23) - 127;
  vfloat m = (vfloat)((bits & 0x007fffff) | 0x3f800000);  // [1, 2)
  const vint big = m > splat(1.41421356f);
  m = big ? m * 0.5f : m;
  e = e - big;  // big lanes are -1
  const vfloat f = m - 1.f;
  const vfloat f2 = f * f;
  vfloat p = splat(7.0376836292e-2f);
  p = p * f - 1.1514610310e-1f;
  p = p * f + 1.1676998740e-1f;
  p = p * f - 1.2420140846e-1f;
  p = p * f + 1.4249322787e-1f;
  p = p * f - 1.6668057665e-1f;
  p = p * f + 2.0000714765e-1f;
  p = p * f - 2.4999993993e-1f;
  p = p * f + 3.3333331174e-1f;
  const vfloat ef = __builtin_convertvector(e, vfloat);
  vfloat y = f * f2 * p;
  y = y + ef * -2.12194440e-4f;
  y = y - 0.5f * f2;
  return (f + y) + ef * 0.693359375f;
}

// High and low words of a * b for every lane: even and odd lanes through 64-bit products.
DK_AI void vmulhilo(uint32_t a, vuint b, vuint& hi, vuint& lo) {
#if defined(DK_VEC_AVX512)  // (the target pragma of the AVX-512 files does not define __AVX512F__)
  // vpmuludq is the 32 x 32 -> 64 multiply, one uop. GCC with AVX512DQ turns the generic form
  // below into vpandq + vpmullq (3 uops on port 0 of an Intel core: the 7 vpmullq per round were
  // the hottest instructions of the sampled row in a perf profile) and may do the same to
  // _mm512_mul_epu32, and `b * a` is vpmulld (2 uops): hence the asm, and the low words taken
  // from the same two products. Multiplies and 512-bit shifts share port 0 on Intel cores, so the
  // words are moved by shuffles (port 5): one to bring the odd words down, one two-source
  // permute each for the high and the low words.
  const __m512i bi = (__m512i)b, av = _mm512_set1_epi32(static_cast<int>(a));
  const __m512i odd_in = _mm512_shuffle_epi32(bi, _MM_PERM_DDBB);  // words 1, 1, 3, 3, ...
  __m512i even, odd;
  asm("vpmuludq %2, %1, %0" : "=v"(even) : "v"(bi), "v"(av));
  asm("vpmuludq %2, %1, %0" : "=v"(odd) : "v"(odd_in), "v"(av));
  const __m512i hi_idx = _mm512_setr_epi32(1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31);
  const __m512i lo_idx = _mm512_setr_epi32(0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30);
  hi = (vuint)_mm512_permutex2var_epi32(even, hi_idx, odd);
  lo = (vuint)_mm512_permutex2var_epi32(even, lo_idx, odd);
#elif defined(DK_VEC_AVX2)
  // vpmuludq (32 x 32 -> 64) on the even words and on the odd words shifted down: AVX2 has no
  // 64-bit multiply for the generic form below to map to.
  const __m256i bi = (__m256i)b, av = _mm256_set1_epi32(static_cast<int>(a));
  const __m256i even = _mm256_mul_epu32(bi, av);
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(bi, 32), av);
  hi = (vuint)_mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xaa);
  lo = b * a;
#else
  const vu64 w = (vu64)b;
  const vu64 even = (w & 0xffffffffu) * a;
  const vu64 odd = (w >> 32) * a;
  hi = (vuint)((even >> 32) | (odd & 0xffffffff00000000ull));
  lo = b * a;
#endif
}

// philox4x32_10 for counters (c0 + lane, row, offset lo, offset hi), lane = 0..kVecWidth-1.
DK_AI void vphilox(PhiloxKey key, uint32_t row, uint32_t c0, vuint out[4]) {
  vuint x0 = vuint{} + c0, x1 = vuint{} + row;
  for (int i = 0; i < kVecWidth; ++i) x0[i] += static_cast<uint32_t>(i);
  vuint x2 = vuint{} + static_cast<uint32_t>(key.offset), x3 = vuint{} + static_cast<uint32_t>(key.offset >> 32);
  uint32_t k0 = static_cast<uint32_t>(key.seed), k1 = static_cast<uint32_t>(key.seed >> 32);
  for (int round = 0; round < 10; ++round) {
    vuint hi0, lo0, hi1, lo1;
    vmulhilo(0xD2511F53u, x0, hi0, lo0);
    vmulhilo(0xCD9E8D57u, x2, hi1, lo1);
    x0 = hi1 ^ x1 ^ k0;
    x1 = lo1;
    x2 = hi0 ^ x3 ^ k1;
    x3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  out[0] = x0, out[1] = x1, out[2] = x2, out[3] = x3;
}

// Gumbel noise for vocabulary ids [col0, col0 + 4 kVecWidth) of `row` (col0 a multiple of 4), in
// column order: g[q][i] is column col0 + kVecWidth q + i. Same formula as philox_gumbel, vector
// logs. `w` the Philox words of that group (philox_block_words).
DK_AI void philox_block_words(PhiloxKey key, uint32_t row, uint64_t col0, vuint w[4]) {
  vphilox(key, row, static_cast<uint32_t>(col0 >> 2), w);
}

DK_AI void gumbel_block(const vuint w[4], vfloat g[4]) {
  vfloat t[4];
  for (int q = 0; q < 4; ++q) {
    const vfloat u = __builtin_convertvector(w[q] >> 9, vfloat) * 1.1920928955078125e-07f + 5.9604644775390625e-08f;
    t[q] = -vlog(-vlog(u));
  }
  // Word q of lane c is column 4c + q: a 4 x kVecWidth transpose.
#if defined(DK_VEC_AVX2)
  const vfloat ab_lo = __builtin_shufflevector(t[0], t[1], 0, 8, 1, 9, 2, 10, 3, 11);
  const vfloat ab_hi = __builtin_shufflevector(t[0], t[1], 4, 12, 5, 13, 6, 14, 7, 15);
  const vfloat cd_lo = __builtin_shufflevector(t[2], t[3], 0, 8, 1, 9, 2, 10, 3, 11);
  const vfloat cd_hi = __builtin_shufflevector(t[2], t[3], 4, 12, 5, 13, 6, 14, 7, 15);
  g[0] = __builtin_shufflevector(ab_lo, cd_lo, 0, 1, 8, 9, 2, 3, 10, 11);
  g[1] = __builtin_shufflevector(ab_lo, cd_lo, 4, 5, 12, 13, 6, 7, 14, 15);
  g[2] = __builtin_shufflevector(ab_hi, cd_hi, 0, 1, 8, 9, 2, 3, 10, 11);
  g[3] = __builtin_shufflevector(ab_hi, cd_hi, 4, 5, 12, 13, 6, 7, 14, 15);
#else
  const vfloat ab_lo = __builtin_shufflevector(t[0], t[1], 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const vfloat ab_hi = __builtin_shufflevector(t[0], t[1], 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const vfloat cd_lo = __builtin_shufflevector(t[2], t[3], 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const vfloat cd_hi = __builtin_shufflevector(t[2], t[3], 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  g[0] = __builtin_shufflevector(ab_lo, cd_lo, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
  g[1] = __builtin_shufflevector(ab_lo, cd_lo, 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31);
  g[2] = __builtin_shufflevector(ab_hi, cd_hi, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
  g[3] = __builtin_shufflevector(ab_hi, cd_hi, 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31);
#endif
}

}  // namespace
}  // namespace dk::cpu
