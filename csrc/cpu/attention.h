#pragma once
#include "kernels/attention_params.h"

namespace dk::cpu {

// Native CPU implementation: writes the new rows into the caches, then attends (float32 math).
void attention_with_kv_cache(const AttentionParams& params);

}  // namespace dk::cpu
