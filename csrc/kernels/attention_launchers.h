// Launchers of attention_with_kv_cache beyond those in launchers.h.
#pragma once
#include "kernels/attention_params.h"

namespace dk {

// store_kv=False: cache rows and the new rows trade places (params.k_new / v_new must point to a
// writable scratch copy); launched before the attention and again after it, which restores the
// cache. Checks the starts on the device like launch_attention_cache_write.
void launch_attention_cache_swap(const AttentionParams& params, void* stream);

}  // namespace dk
