// The AVX2+FMA build of the sampled masked_confidence row (masked_confidence_sample.h): this
// whole translation unit targets x86-64-v3, and is only called after a run-time CPU check
// (masked_confidence.cpp). 8-lane vectors (cpu/vec_math.h): 16-lane ones have no register mode
// without AVX-512, and g++ splits their compares and selects into scalar ones.
#if defined(__x86_64__)
#define DK_VEC_AVX2 1  // cpu/vec_math.h: 8 lanes, one ymm register
#pragma GCC target("arch=x86-64-v3")
#endif

#include "cpu/masked_confidence_sample.h"

namespace dk::cpu {

SampleRowResult sample_row_v3(const float* row, const SampleRowArgs& a) { return sample_row<Exp2Generic>(row, a); }
SampleRowResult sample_row_v3(const _Float16* row, const SampleRowArgs& a) { return sample_row<Exp2Generic>(row, a); }
SampleRowResult sample_row_v3(const uint16_t* row, const SampleRowArgs& a) { return sample_row<Exp2Generic>(row, a); }

}  // namespace dk::cpu
