// Launchers of attention_with_kv_cache beyond those in launchers.h.
#pragma once
#include "kernels/attention_params.h"

namespace dk {

// store_kv=False: cache rows and the new rows trade places (params.k_new / v_new must point to a
// writable scratch copy); launched before the attention and again after it, which restores the
// cache. Checks the starts on the device like launch_attention_cache_write.
void launch_attention_cache_swap(const AttentionParams& params, void* stream);

// Whether launch_attention can do the whole step in one launch (params.new_rows = kRead for
// store_kv=False, kReadWrite otherwise, instead of the write or swap launches around it): new
// rows, a query, 16-byte aligned rows of the caches and the new rows, k/v with the caches' row
// stride (e.g. contiguous k/v beside contiguous caches), and DK_ATTENTION_LAUNCH unset or
// "fused" ("separate" keeps the launches apart; another value throws std::invalid_argument).
// Read per call.
bool attention_fused_step(const AttentionParams& params);

// Whether rows of a [batch, len, heads, head_dim] 16-bit tensor at `base` with these element
// strides are 16-byte aligned (cp.async and the fused write need it).
bool attention_rows_aligned(const void* base, int64_t sb, int64_t sl, int64_t sh);

}  // namespace dk
