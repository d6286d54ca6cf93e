#pragma once
#include "kernels/attention_params.h"

namespace dk::cpu {

// Copies k_new / v_new into the caches (the range was validated by the op).
void write_kv_cache(const AttentionParams& params);

// Native CPU attention over the valid keys of the (already written) caches, float32 math.
void attend(const AttentionParams& params);

}  // namespace dk::cpu
