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
// Round with vrndscaleps and apply 2^k with vscalefps, which underflows to 0 by itself; the
// clamp only keeps -inf from turning r into NaN. Same polynomial as vexp2.
struct Exp2Avx512 {
  static inline __attribute__((always_inline)) vfloat nonpositive(vfloat t) {
    // vmaxps returns its second operand when either is NaN: t second, so NaN propagates.
    const __m512 x = _mm512_max_ps(_mm512_set1_ps(-150.f), (__m512)t);
    const __m512 k = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 r = _mm512_sub_ps(x, k);
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
#else
using Exp2Avx512 = Exp2Generic;  // never selected off x86
#endif

}  // namespace

RowResult finite_row_v4(const float* row, int64_t vocab) { return finite_row<Exp2Avx512>(row, vocab); }
RowResult finite_row_v4(const _Float16* row, int64_t vocab) { return finite_row<Exp2Avx512>(row, vocab); }
RowResult finite_row_v4(const uint16_t* row, int64_t vocab) { return finite_row<Exp2Avx512>(row, vocab); }

SampleRowResult sample_row_v4(const float* row, const SampleRowArgs& a) { return sample_row<Exp2Avx512>(row, a); }
SampleRowResult sample_row_v4(const _Float16* row, const SampleRowArgs& a) { return sample_row<Exp2Avx512>(row, a); }
SampleRowResult sample_row_v4(const uint16_t* row, const SampleRowArgs& a) { return sample_row<Exp2Avx512>(row, a); }

}  // namespace dk::cpu
