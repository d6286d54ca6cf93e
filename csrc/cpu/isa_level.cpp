#include "cpu/isa_level.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace dk::cpu {
namespace {

Level detected_level() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    return Level::V4;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
    return Level::V3;
#endif
  return Level::Base;
}

}  // namespace

Level cpu_level() {
  static const Level detected = detected_level();
  const char* want = std::getenv("DK_CPU_ISA");
  if (want == nullptr) return detected;
  const Level asked = std::strcmp(want, "base") == 0 ? Level::Base
                      : std::strcmp(want, "v3") == 0 ? Level::V3
                                                     : Level::V4;
  return std::min(asked, detected);
}

}  // namespace dk::cpu
