// Checks and Params filling shared by the CPU and launcher entry points of attention_with_kv_cache.
#pragma once
#include <ATen/core/Tensor.h>

#include "kernels/attention_params.h"
#include "ops/attention.h"

namespace dk {

struct AttentionOutputs {
  at::Tensor out, lse;
};

// Validates the arguments, allocates the outputs on q's device and describes the call.
// With `host_checks_write_starts`, a per-row write_starts tensor is range-checked here (it must
// then be readable by the host); otherwise the kernel checks it on the device.
AttentionParams prepare_attention(DK_ATTENTION_ARGS, bool host_checks_write_starts,
                                  AttentionOutputs& out);

}  // namespace dk
