// The AVX2+FMA build of the masked cross-entropy row loops: the generic vector code of
// masked_ce_rows.h compiled for x86-64-v3, with 8-lane vectors (cpu/vec_math.h), as a whole
// translation unit (a target attribute on the entry points would not reach the helpers they
// inline); called only after a run-time CPU check (masked_ce.cpp).
#if defined(__x86_64__)
#define DK_VEC_AVX2 1  // cpu/vec_math.h: 8 lanes, one ymm register
#pragma GCC target("arch=x86-64-v3")
#endif

#include "cpu/masked_ce_rows.h"

namespace dk::cpu {

CeRowStats ce_stats_v3(const float* row, int64_t vocab) { return ce_stats(row, vocab); }
CeRowStats ce_stats_v3(const _Float16* row, int64_t vocab) { return ce_stats(row, vocab); }
CeRowStats ce_stats_v3(const bf16_bits* row, int64_t vocab) { return ce_stats(row, vocab); }
void ce_softmax_scaled_v3(const float* row, float* out, int64_t vocab, float lse, float a) {
  ce_softmax_scaled(row, out, vocab, lse, a);
}
void ce_softmax_scaled_v3(const _Float16* row, _Float16* out, int64_t vocab, float lse, float a) {
  ce_softmax_scaled(row, out, vocab, lse, a);
}
void ce_softmax_scaled_v3(const bf16_bits* row, bf16_bits* out, int64_t vocab, float lse, float a) {
  ce_softmax_scaled(row, out, vocab, lse, a);
}

}  // namespace dk::cpu
