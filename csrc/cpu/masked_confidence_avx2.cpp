// The AVX2+FMA build of the greedy masked_confidence row loop: this whole translation unit
// targets x86-64-v3 with 8-lane vectors (cpu/vec_math.h), and is only called after a run-time CPU
// check (masked_confidence.cpp). A target attribute on the entry points alone would not reach the
// lambdas and helpers they inline: g++ would compile those for the base ISA.
#if defined(__x86_64__)
#define DK_VEC_AVX2 1  // cpu/vec_math.h: 8 lanes, one ymm register
#pragma GCC target("arch=x86-64-v3")
#endif

#include "cpu/masked_confidence_rows.h"

namespace dk::cpu {

RowResult finite_row_v3(const float* row, int64_t vocab) { return finite_row<Exp2Generic>(row, vocab); }
RowResult finite_row_v3(const _Float16* row, int64_t vocab) { return finite_row<Exp2Generic>(row, vocab); }
RowResult finite_row_v3(const uint16_t* row, int64_t vocab) { return finite_row<Exp2Generic>(row, vocab); }

}  // namespace dk::cpu
