// The AVX-512 build of the masked_confidence row loop: this whole translation unit targets
// x86-64-v4, and is only called after a run-time CPU check (masked_confidence.cpp).
#if defined(__x86_64__)
#pragma GCC target("arch=x86-64-v4")
#include <immintrin.h>
#endif

#include "cpu/masked_confidence_rows.h"
#include "cpu/masked_confidence_sample.h"

namespace dk::cpu {
namespace {

#if defined(__x86_64__)
// r = t - round(t) by vreduceps (one uop, exact), k = t - r, then 2^k applied with vscalefps,
// which underflows to 0 by itself. vreduceps maps -inf to r = 0 (k = -inf, so 2^k = 0) and NaN
// to NaN: no clamp is needed. Same polynomial as vexp2, and bitwise the same results as the
// clamp + vrndscaleps form it replaces (inputs below -150 gave 0 there too).
struct Exp2Avx512 {
  static inline __attribute__((always_inline)) vfloat nonpositive(vfloat t) {
    const __m512 x = (__m512)t;
    const __m512 r = _mm512_reduce_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 k = _mm512_sub_ps(x, r);
    __m512 p = _mm512_set1_ps(1.5345810970757157e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3399930903688073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(9.618489071726799e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.550328642129898e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(2.4022646248340607e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(6.931471824645996e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
    return (vfloat)_mm512_scalef_ps(p, k);
  }
};

// The greedy row loop only sums the terms (the probability of the argmax is 1 / sum), so one
// polynomial degree less is enough there: degree 5 fitted for relative error, 1.8e-7 in float32
// evaluation (1.5 ulp) against 6e-8, for one FMA of the ~10 instructions per 16 elements. The
// sampling rows keep the degree-6 form: their probabilities feed top-p comparisons.
struct Exp2Avx512Sum {
  static inline __attribute__((always_inline)) vfloat nonpositive(vfloat t) {
    const __m512 x = (__m512)t;
    const __m512 r = _mm512_reduce_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 k = _mm512_sub_ps(x, r);
    __m512 p = _mm512_set1_ps(0.0013218673411756754f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.009671700187027454f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.05550893023610115f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.24022237956523895f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.6931468844413757f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
    return (vfloat)_mm512_scalef_ps(p, k);
  }
};
#else
using Exp2Avx512 = Exp2Generic;  // never selected off x86
using Exp2Avx512Sum = Exp2Generic;
#endif

}  // namespace

RowResult finite_row_v4(const float* row, int64_t vocab) { return finite_row<Exp2Avx512Sum>(row, vocab); }
RowResult finite_row_v4(const _Float16* row, int64_t vocab) { return finite_row<Exp2Avx512Sum>(row, vocab); }
RowResult finite_row_v4(const uint16_t* row, int64_t vocab) { return finite_row<Exp2Avx512Sum>(row, vocab); }

SampleRowResult sample_row_v4(const float* row, const SampleRowArgs& a) { return sample_row<Exp2Avx512>(row, a); }
SampleRowResult sample_row_v4(const _Float16* row, const SampleRowArgs& a) { return sample_row<Exp2Avx512>(row, a); }
SampleRowResult sample_row_v4(const uint16_t* row, const SampleRowArgs& a) { return sample_row<Exp2Avx512>(row, a); }

}  // namespace dk::cpu
