#pragma once
#include <cstdint>
#include <vector>

#include "kernels/attention_params.h"

namespace dk::cpu {

// Per chunk of keys under a block rule: whether no row, or every row, of a task sees each key.
enum class ChunkMask { None, All, Partial };

// Copies k_new / v_new into the caches (the range was validated by the op). With swap, k_new /
// v_new must be writable scratch: cache rows and new rows trade places (twice restores the cache).
void write_kv_cache(const AttentionParams& params, bool swap = false);

// The valid key indices of every batch row, in increasing order.
std::vector<std::vector<int64_t>> valid_key_lists(const AttentionParams& params);

// Native CPU attention over the valid keys of the (already written) caches, float32 math.
void attend(const AttentionParams& params);

}  // namespace dk::cpu
