#include "ops/attention.h"

#include <ATen/ops/_scaled_dot_product_flash_attention_for_cpu.h>

#include <cstdlib>
#include <cstring>

#include "cpu/attention.h"
#include "cpu/attention_gemm.h"
#include "ops/attention_common.h"

namespace dk {
namespace {

enum class Path { Auto, Native, Aten, Gemm };

// DK_CPU_ATTENTION=native|aten|gemm forces a path where it applies (tests cover every path);
// read per call.
Path forced_path() {
  const char* v = std::getenv("DK_CPU_ATTENTION");
  if (v == nullptr) return Path::Auto;
  if (std::strcmp(v, "native") == 0) return Path::Native;
  if (std::strcmp(v, "aten") == 0) return Path::Aten;
  if (std::strcmp(v, "gemm") == 0) return Path::Gemm;
  return Path::Auto;
}

// Query rows per kv head up to which the brgemm kernel beats ATen's flash attention with every
// key valid (32 heads x 128, 512 keys, 1 thread: bf16 32 rows 3.3 vs 4.7 ms, 64 rows 7.1 vs 9.0,
// 128 rows 11.9 vs 10.7; fp32 128 rows 13.5 vs 19.5, 256 rows 32.8 vs 29.3): each 32-row tile
// streams the whole cache again, while ATen packs K/V once for all rows. With a mask the brgemm
// kernel beats the native one at every size (512 rows: bf16 39 vs 80 ms, fp32 52 vs 73 ms).
int64_t gemm_max_stacked_rows(const at::Tensor& q) { return q.scalar_type() == at::kBFloat16 ? 64 : 128; }

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
  const Path path = forced_path();
  const bool gemm_ok = path != Path::Native && path != Path::Aten &&
                       cpu::gemm_attention_usable(params, /*even_with_idle_threads=*/path == Path::Gemm);
  const int64_t stacked_rows = q.size(1) * (q.size(2) / std::max<int64_t>(1, k_cache.size(2)));
  if (gemm_ok && (path == Path::Gemm || !dense || stacked_rows <= gemm_max_stacked_rows(q))) {
    cpu::attend_gemm(params);
  } else if (dense && path != Path::Native && q.numel() > 0 && k_cache.size(1) > 0) {
    attend_with_aten(q, k_cache, v_cache, params.scale, out);
  } else {
    cpu::attend(params);
  }
  return {out.out, out.lse};
}

}  // namespace dk
