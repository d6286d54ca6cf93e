#include "ops/attention.h"

#include "cpu/attention.h"
#include "ops/attention_common.h"

namespace dk {

std::tuple<at::Tensor, at::Tensor> attention_with_kv_cache_cpu(DK_ATTENTION_ARGS) {
  AttentionOutputs out;
  const auto params = prepare_attention(DK_ATTENTION_ARG_NAMES, /*host_checks_write_starts=*/true, out);
  cpu::attention_with_kv_cache(params);
  return {out.out, out.lse};
}

}  // namespace dk
