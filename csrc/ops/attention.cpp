#include "ops/attention.h"

#include <ATen/ops/_scaled_dot_product_flash_attention_for_cpu.h>

#include <cstdlib>
#include <cstring>

#include "cpu/attention.h"
#include "ops/attention_common.h"

namespace dk {
namespace {

// DK_CPU_ATTENTION=native forces the native kernel (tests cover both paths); read per call.
bool native_forced() {
  const char* v = std::getenv("DK_CPU_ATTENTION");
  return v != nullptr && std::strcmp(v, "native") == 0;
}

// Every key valid: ATen's CPU flash attention (AMX/AVX-512 GEMMs) is faster than the native
// kernel on the dual-cache shapes (bench/attention_ratio.py), so it does the attention after the
// cache write. GQA without copying K/V: the g query heads of a kv head become g * q_len rows.
void attend_with_aten(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
                      double scale, AttentionOutputs& out) {
  const int64_t b = q.size(0), lq = q.size(1), hq = q.size(2), d = q.size(3), hkv = k_cache.size(2);
  const int64_t g = hq / hkv;
  const auto qs = q.view({b, lq, hkv, g, d}).permute({0, 2, 3, 1, 4}).reshape({b, hkv, g * lq, d});
  auto [o, lse] = at::_scaled_dot_product_flash_attention_for_cpu(
      qs, k_cache.transpose(1, 2), v_cache.transpose(1, 2), 0.0, false, std::nullopt, scale);
  out.out.view({b, lq, hkv, g, d}).copy_(o.view({b, hkv, g, lq, d}).permute({0, 3, 1, 2, 4}));
  if (out.lse.numel() > 0) out.lse.copy_(lse.view({b, hq, lq}));
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> attention_with_kv_cache_cpu(DK_ATTENTION_ARGS) {
  AttentionOutputs out;
  const auto params = prepare_attention(DK_ATTENTION_ARG_NAMES, /*host_checks_write_starts=*/true, out);
  cpu::write_kv_cache(params);
  const bool dense = !key_padding_mask.has_value() && !key_lengths.has_value();
  if (dense && !native_forced() && q.numel() > 0 && k_cache.size(1) > 0) {
    attend_with_aten(q, k_cache, v_cache, params.scale, out);
  } else {
    cpu::attend(params);
  }
  return {out.out, out.lse};
}

}  // namespace dk
