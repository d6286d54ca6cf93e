// The AVX2+FMA build of the greedy masked_confidence row loop: this whole translation unit
// targets x86-64-v3 with 8-lane vectors (cpu/vec_math.h), and is only called after a run-time CPU
// check (masked_confidence.cpp). A target attribute on the entry points alone would not reach the
// lambdas and helpers they inline: g++ would compile those for the base ISA.
#if defined(__x86_64__)
#define DK_VEC_AVX2 1  // cpu/vec_math.h: 8 lanes, one ymm register
#pragma GCC target("arch=x86-64-v3")
#include <immintrin.h>
#endif

#include "cpu/masked_confidence_rows.h"

namespace dk::cpu {
namespace {

// The greedy loop's term 2^t for t <= 127, with fewer instructions than vexp2: the loop is
// compute bound on AVX2 (two cores running vexp2 fall well short of DRAM speed).
// - The row only needs the sum of the terms (the probability of the argmax is 1 / sum), so a
//   polynomial one degree lower than vexp2's, as in the AVX-512 build: degree 5 fitted for
//   relative error on [-1/2, 1/2], 1.6e-7 in float32 evaluation (mean -2e-8) against 8e-8.
//   2^0 is exactly 1, so a row's maximum contributes exactly 1.
// - No upper clamp: a term above 2^127 only occurs in a chunk whose max jumped past the running
//   one by more than 64, which finite_row sums again. The lower clamp is one vmaxps (unordered
//   returns the second operand: NaN stays NaN).
// - The exponent bias is folded into the rounding constant: t + (1.5 * 2^23 + 127) holds k + 127
//   in its low mantissa bits, so those bits shifted by 23 are 2^k; the caller's `s += term`
//   then compiles to one FMA.
struct Exp2Avx2Sum {
  static inline __attribute__((always_inline)) vfloat term(vfloat t) {
#if defined(__x86_64__)
    t = (vfloat)_mm256_max_ps(_mm256_set1_ps(-126.f), (__m256)t);
#else
    t = splat(-126.f) > t ? splat(-126.f) : t;
#endif
    const vfloat shift = splat(12583039.f);  // 1.5 * 2^23 + 127
    const vfloat biased = t + shift;
    const vfloat r = t - (biased - shift);
    vfloat p = splat(1.3302209554240108e-3f);
    p = p * r + 9.67293232679367e-3f;
    p = p * r + 5.55061511695385e-2f;
    p = p * r + 2.4022217094898224e-1f;
    p = p * r + 6.931470632553101e-1f;
    p = p * r + 1.f;
    return p * (vfloat)((vint)biased << 23);
  }
};

}  // namespace

RowResult finite_row_v3(const float* row, int64_t vocab) { return finite_row<Exp2Avx2Sum>(row, vocab); }
RowResult finite_row_v3(const _Float16* row, int64_t vocab) { return finite_row<Exp2Avx2Sum>(row, vocab); }
RowResult finite_row_v3(const uint16_t* row, int64_t vocab) { return finite_row<Exp2Avx2Sum>(row, vocab); }

}  // namespace dk::cpu
