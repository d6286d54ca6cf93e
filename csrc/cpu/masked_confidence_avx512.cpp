// The AVX-512 build of the masked_confidence row loop: this whole translation unit targets
// x86-64-v4, and is only called after a run-time CPU check (masked_confidence.cpp).
#if defined(__x86_64__)
#define DK_VEC_AVX512 1  // cpu/vec_math.h: vmax as vmaxps
#pragma GCC target("arch=x86-64-v4")
#include <immintrin.h>
#endif

#include "cpu/masked_confidence_rows.h"
#include "cpu/masked_confidence_sample.h"

namespace dk::cpu {
namespace {

#if defined(__x86_64__)
// Sampled rows: terms below 2^-126 are returned as exactly 0 rather than subnormal. On Intel
// cores every subnormal result of vscalefps (and every sum it then feeds) costs a microcode assist, and low
// temperatures make most of the vocabulary such terms (T = 0.2 on randn * 3 logits: z - max down
// to -130), so the assists can cost several times the rest of the row. Such terms are under
// 2^-126 of the row's largest term, far below the float32 resolution of its sum. The zero-masked vscalefps never computes those lanes; NaN lanes stay
// NaN (the compare is unordered-true).
DK_AI __mmask16 exp2_normal_lanes(__m512 t) { return _mm512_cmp_ps_mask(t, _mm512_set1_ps(-126.f), _CMP_NLT_UQ); }

// r = t - round(t) by vreduceps (one uop, exact), k = t - r, then 2^k applied with vscalefps.
// vreduceps maps -inf to r = 0 (k = -inf, so 2^k = 0) and NaN to NaN: no clamp is needed. Same
// polynomial as vexp2.
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
    return (vfloat)_mm512_maskz_scalef_ps(exp2_normal_lanes(x), p, k);
  }
};

// The greedy row loop only sums the terms (the probability of the argmax is 1 / sum), so one
// polynomial degree less is enough there: degree 5 fitted for relative error on [0, 1), 1.6e-7 in
// float32 evaluation (mean -4e-9) against 6e-8. r = t - floor(t) by vreduceps rounding down, so
// vscalefps, which scales by 2^floor(t), takes t itself: no t - r. Valid for any t <= 127 (the
// fused loop passes terms above its running max); -inf gives 0 and NaN stays NaN.
struct Exp2Avx512Sum {
  static inline __attribute__((always_inline)) vfloat term(vfloat t) {
    const __m512 x = (__m512)t;
    const __m512 r = _mm512_reduce_ps(x, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    __m512 p = _mm512_set1_ps(0.001867129816673696f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.009017030708491802f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.05579991266131401f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.24016444385051727f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.6931512951850891f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
    // No subnormal mask here, unlike Exp2Avx512: greedy terms are subnormal only for logits
    // more than 87 below the row's max, and the compare cost the loop 10 % (0.51-0.54 vs
    // 0.60-0.61 ms at [1, 32, 126464] on one Xeon thread).
    return (vfloat)_mm512_scalef_ps(p, x);
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
