// The AVX-512 build of the CPU attention task body: this whole translation unit targets
// x86-64-v4 and is only called after a run-time CPU check (attention.cpp).
#if defined(__x86_64__)
#define DK_VEC_AVX512 1  // cpu/vec_math.h: vmax as vmaxps
#pragma GCC target("arch=x86-64-v4")
#endif

#include "cpu/attention_tile.h"

namespace dk::cpu {

DK_DEFINE_ATTEND_FNS(v4)

}  // namespace dk::cpu
