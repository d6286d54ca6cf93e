// Which build of a CPU kernel's inner loop to run: each hot loop is compiled once per x86 level
// (portable, x86-64-v3 = AVX2+FMA, x86-64-v4 = AVX-512) and picked at run time. The v3 and v4
// builds are whole translation units (*_avx2.cpp, *_avx512.cpp) under a target pragma: a target
// attribute on a function does not reach the lambdas and helpers it inlines.
#pragma once

namespace dk::cpu {

enum class Level { Base, V3, V4 };

// What this CPU supports, lowered by DK_CPU_ISA=base|v3 (read at every call, so the tests can
// cover every build on one machine).
Level cpu_level();

}  // namespace dk::cpu
