// The AVX2+FMA build of the CPU attention task body: this whole translation unit targets
// x86-64-v3 (a target attribute on the entry points would not reach the helpers they inline) and
// is only called after a run-time CPU check (attention.cpp). It keeps 16-lane vectors: the tile
// code (hsum16, the 4 x 16 output blocks) is written for 16 lanes.
#if defined(__x86_64__)
#pragma GCC target("arch=x86-64-v3")
#endif

#include "cpu/attention_tile.h"

namespace dk::cpu {

DK_DEFINE_ATTEND_FNS(v3)

}  // namespace dk::cpu
