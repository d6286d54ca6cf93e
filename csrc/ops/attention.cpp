// torch.ops.diffusion_kernels.attention_with_kv_cache: argument checks, the Params fill and the
// dispatch (ops/registration.h): on the CPU after the cache write, the brgemm kernel, ATen's flash
// attention or the native kernel; on CUDA the cache-write and attention launchers.
#include <ATen/MemoryOverlap.h>
#include <ATen/ops/_scaled_dot_product_flash_attention_for_cpu.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <tuple>

#include "cpu/attention.h"
#include "cpu/attention_gemm.h"
#include "kernels/attention_launchers.h"
#include "kernels/launchers.h"
#include "ops/checks.h"
#include "ops/poison.h"
#include "ops/registration.h"

namespace dk {
namespace {

struct AttentionOutputs {
  at::Tensor out, lse;
};

void check_bhld(const at::Tensor& t, const char* name, const at::Tensor& q) {
  check_dim(t, name, 4, "[batch, seq, heads, head_dim]");
  check_same_device(t, name, q, "q");
  DK_CHECK_ARG(t.scalar_type() == q.scalar_type(), name, "must have the dtype of 'q' (",
               q.scalar_type(), "), got ", t.scalar_type());
  check_last_dim_contiguous(t, name);
}

// A write into `t` must not land in `other`, which the op reads or writes too.
void check_no_overlap(const at::Tensor& t, const char* name, const at::Tensor& other,
                      const char* other_name) {
  const auto status = at::get_overlap_status(t, other);
  DK_CHECK_ARG(status != at::MemOverlapStatus::Full && status != at::MemOverlapStatus::Partial,
               name, "must not share memory with '", other_name, "'");
}

// Validates the arguments, allocates the outputs on q's device and describes the call.
// With `host_checks_write_starts`, a per-row write_starts tensor is range-checked here (it must
// then be readable by the host); otherwise the kernel checks it on the device.
AttentionParams prepare_attention(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
                                  const std::optional<at::Tensor>& k_new, const std::optional<at::Tensor>& v_new,
                                  int64_t write_start, const std::optional<at::Tensor>& write_starts,
                                  const std::optional<at::Tensor>& key_padding_mask,
                                  const std::optional<at::Tensor>& key_lengths, std::optional<double> scale,
                                  bool return_lse, const std::optional<at::Tensor>& write_status,
                                  int64_t causal_block_size, int64_t noisy_length,
                                  bool host_checks_write_starts, AttentionOutputs& out) {
  check_dim(q, "q", 4, "[batch, q_len, heads_q, head_dim]");
  const auto kind = scalar_kind_of(q, "q");
  check_last_dim_contiguous(q, "q");
  check_bhld(k_cache, "k_cache", q);
  check_bhld(v_cache, "v_cache", q);
  const int64_t batch = q.size(0), q_len = q.size(1), heads_q = q.size(2), head_dim = q.size(3);
  const int64_t cache_len = k_cache.size(1), heads_kv = k_cache.size(2);
  DK_CHECK_ARG(head_dim >= 1, "q", "must have a non-empty head_dim, got shape ", q.sizes());
  DK_CHECK_ARG(k_cache.size(0) == batch && k_cache.size(3) == head_dim, "k_cache",
               "must have shape [batch, cache_len, heads_kv, head_dim] with batch = ", batch,
               " and head_dim = ", head_dim, " from 'q', got ", k_cache.sizes());
  DK_CHECK_ARG(v_cache.sizes() == k_cache.sizes(), "v_cache", "must have the shape of 'k_cache' (",
               k_cache.sizes(), "), got ", v_cache.sizes());
  DK_CHECK_ARG(heads_kv >= 1 && heads_q % heads_kv == 0, "k_cache",
               "must have a number of heads that divides heads_q = ", heads_q, ", got ", heads_kv);
  DK_CHECK_ARG(at::has_internal_overlap(k_cache) != at::MemOverlap::Yes, "k_cache",
               "is written in place and must not have overlapping elements (e.g. an expanded tensor)");
  DK_CHECK_ARG(at::has_internal_overlap(v_cache) != at::MemOverlap::Yes, "v_cache",
               "is written in place and must not have overlapping elements (e.g. an expanded tensor)");
  check_no_overlap(k_cache, "k_cache", v_cache, "v_cache");
  check_no_overlap(k_cache, "k_cache", q, "q");
  check_no_overlap(v_cache, "v_cache", q, "q");

  DK_CHECK_ARG(k_new.has_value() == v_new.has_value(), k_new.has_value() ? "v" : "k",
               "must be given together with '", k_new.has_value() ? "k" : "v", "'");
  int64_t new_len = 0;
  if (k_new.has_value()) {
    check_bhld(*k_new, "k", q);
    check_bhld(*v_new, "v", q);
    new_len = k_new->size(1);
    DK_CHECK_ARG(k_new->size(0) == batch && k_new->size(2) == heads_kv && k_new->size(3) == head_dim,
                 "k", "must have shape [batch, new_len, heads_kv, head_dim] = [", batch, ", *, ",
                 heads_kv, ", ", head_dim, "], got ", k_new->sizes());
    DK_CHECK_ARG(v_new->sizes() == k_new->sizes(), "v", "must have the shape of 'k' (",
                 k_new->sizes(), "), got ", v_new->sizes());
    for (const auto* cache : {&k_cache, &v_cache}) {
      const char* cname = cache == &k_cache ? "k_cache" : "v_cache";
      check_no_overlap(*cache, cname, *k_new, "k");
      check_no_overlap(*cache, cname, *v_new, "v");
    }
  }

  if (write_starts.has_value()) {
    const auto& ws = *write_starts;
    check_batch_int64(ws, "cache_seqlens", batch, q, "q");
    if (host_checks_write_starts && new_len > 0) {
      const int64_t* s = ws.data_ptr<int64_t>();
      for (int64_t b = 0; b < batch; ++b)
        DK_CHECK_ARG(s[b] >= 0 && s[b] <= cache_len - new_len, "cache_seqlens",
                     "puts the write range [", s[b], ", ", s[b] + new_len, ") of batch row ", b,
                     " outside the cache rows [0, ", cache_len, ")");
    }
  } else if (new_len > 0) {
    DK_CHECK_ARG(write_start >= 0 && write_start <= cache_len - new_len, "cache_seqlens",
                 "puts the write range [", write_start, ", ", write_start + new_len,
                 ") outside the cache rows [0, ", cache_len, ")");
  }

  if (key_padding_mask.has_value()) {
    const auto& m = *key_padding_mask;
    check_same_device(m, "key_padding_mask", q, "q");
    DK_CHECK_ARG(m.scalar_type() == at::kBool, "key_padding_mask", "must be bool (True = valid key), got ",
                 m.scalar_type());
    DK_CHECK_ARG(m.dim() == 2 && m.size(0) == batch && m.size(1) == cache_len, "key_padding_mask",
                 "must have shape [batch, cache_len] = [", batch, ", ", cache_len, "], got ", m.sizes());
  }
  if (key_lengths.has_value()) {
    check_batch_int64(*key_lengths, "key_lengths", batch, q, "q");
  }
  DK_CHECK_ARG(causal_block_size >= 0, "causal_block_size", "must be a positive int (or None), got ",
               causal_block_size);
  if (noisy_length != 0) {
    DK_CHECK_ARG(causal_block_size > 0, "noisy_length", "needs 'causal_block_size' (the block size of the layout)");
    DK_CHECK_ARG(noisy_length > 0 && noisy_length <= cache_len, "noisy_length",
                 "must lie in [1, cache_len = ", cache_len, "] (the x_t half of x_t (+) x_0), got ", noisy_length);
  }
  const double sc = scale.has_value() ? *scale : 1.0 / std::sqrt(static_cast<double>(head_dim));
  DK_CHECK_ARG(std::isfinite(sc) && std::abs(sc) <= std::numeric_limits<float>::max(), "softmax_scale",
               "must be finite in float32, got ", sc);
  int32_t* status = nullptr;
  if (write_status.has_value()) {
    const auto& st = *write_status;
    check_same_device(st, "write_status", q, "q");
    DK_CHECK_ARG(st.scalar_type() == at::kInt && st.numel() == 1, "write_status",
                 "must be a one-element int32 tensor, got a ", st.scalar_type(), " tensor of shape ", st.sizes());
    for (const auto* cache : {&k_cache, &v_cache})
      check_no_overlap(st, "write_status", *cache, cache == &k_cache ? "k_cache" : "v_cache");
    status = st.data_ptr<int32_t>();
  }

  out.out = at::empty({batch, q_len, heads_q, head_dim}, q.options());
  out.lse = at::empty({return_lse ? batch : 0, heads_q, q_len}, q.options().dtype(at::kFloat));
  poison(out.out);
  poison(out.lse);

  AttentionParams p{};
  p.kind = kind;
  p.batch = batch;
  p.q_len = q_len;
  p.heads_q = heads_q;
  p.heads_kv = heads_kv;
  p.head_dim = head_dim;
  p.cache_len = cache_len;
  p.new_len = new_len;
  p.scale = static_cast<float>(sc);
  p.q = q.data_ptr();
  p.q_sb = q.stride(0), p.q_sl = q.stride(1), p.q_sh = q.stride(2);
  p.k_cache = k_cache.data_ptr();
  p.v_cache = v_cache.data_ptr();
  p.kc_sb = k_cache.stride(0), p.kc_sl = k_cache.stride(1), p.kc_sh = k_cache.stride(2);
  p.vc_sb = v_cache.stride(0), p.vc_sl = v_cache.stride(1), p.vc_sh = v_cache.stride(2);
  if (new_len > 0) {
    p.k_new = k_new->data_ptr();
    p.v_new = v_new->data_ptr();
    p.kn_sb = k_new->stride(0), p.kn_sl = k_new->stride(1), p.kn_sh = k_new->stride(2);
    p.vn_sb = v_new->stride(0), p.vn_sl = v_new->stride(1), p.vn_sh = v_new->stride(2);
  }
  p.write_start = write_start;
  p.write_starts = write_starts.has_value() ? write_starts->data_ptr<int64_t>() : nullptr;
  if (key_padding_mask.has_value()) {
    p.key_mask = key_padding_mask->data_ptr<bool>();
    p.km_sb = key_padding_mask->stride(0), p.km_sl = key_padding_mask->stride(1);
  }
  p.key_lengths = key_lengths.has_value() ? key_lengths->data_ptr<int64_t>() : nullptr;
  p.causal_block = causal_block_size;
  p.noisy_length = noisy_length;
  p.out = out.out.data_ptr();
  p.lse = return_lse ? out.lse.data_ptr<float>() : nullptr;
  p.write_status = status;
  return p;
}

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
// key valid (bench/attention_ratio.py finds the crossover): each 32-row tile streams the whole
// cache again, while ATen packs K/V once for all rows. With a mask the brgemm kernel beats the
// native one at every size.
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
  // ATen's lse [b, hkv, g * lq] need not be contiguous: copy it into the matching view of ours.
  if (out.lse.numel() > 0) out.lse.view({b, hkv, g * lq}).copy_(lse);
}

// cp.async and the 32-bit Q loads need 16-byte aligned rows: base and every row stride.
bool rows_aligned(const void* base, int64_t sb, int64_t sl, int64_t sh) {
  constexpr int64_t kElems = 8;  // 16 bytes of a 16-bit dtype
  return reinterpret_cast<uintptr_t>(base) % 16 == 0 && sb % kElems == 0 && sl % kElems == 0 && sh % kElems == 0;
}

// A fresh (hence aligned) contiguous copy, in [batch, len, heads, head_dim] layout.
at::Tensor aligned_copy(const at::Tensor& t) {
  return at::empty(t.sizes(), t.options()).copy_(t);
}

// store_kv=False: the new rows go through a scratch copy that trades places with the cache rows
// before the attention and again after it, so every kernel reads "cache + new rows" where a write
// would have put them and the caches end bitwise unchanged.
struct ScratchRows {
  at::Tensor k, v;
};

ScratchRows use_scratch_rows(AttentionParams& p, const at::Tensor& k_new, const at::Tensor& v_new) {
  ScratchRows s{at::empty(k_new.sizes(), k_new.options()).copy_(k_new),
                at::empty(v_new.sizes(), v_new.options()).copy_(v_new)};
  p.k_new = s.k.data_ptr();
  p.v_new = s.v.data_ptr();
  p.kn_sb = s.k.stride(0), p.kn_sl = s.k.stride(1), p.kn_sh = s.k.stride(2);
  p.vn_sb = s.v.stride(0), p.vn_sl = s.v.stride(1), p.vn_sh = s.v.stride(2);
  return s;
}

template <Backend B>
std::tuple<at::Tensor, at::Tensor> attention_with_kv_cache(
    const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache, const std::optional<at::Tensor>& k_new,
    const std::optional<at::Tensor>& v_new, int64_t write_start, const std::optional<at::Tensor>& write_starts,
    const std::optional<at::Tensor>& key_padding_mask, const std::optional<at::Tensor>& key_lengths,
    std::optional<double> scale, bool return_lse, const std::optional<at::Tensor>& write_status,
    int64_t causal_block_size, int64_t noisy_length, bool store_kv) {
  const DeviceScope<B> scope(q);
  AttentionOutputs out;
  // On CUDA write_starts stays on the device: the cache-write kernel range-checks it (no host sync).
  auto p = prepare_attention(q, k_cache, v_cache, k_new, v_new, write_start, write_starts, key_padding_mask,
                             key_lengths, scale, return_lse, write_status, causal_block_size, noisy_length,
                             /*host_checks_write_starts=*/B == Backend::Cpu, out);
  const bool swap = !store_kv && p.new_len > 0;
  ScratchRows scratch;
  // CUDA's fused step reads the new rows from k/v themselves: no scratch copy, no swap.
  bool fused = false;
  if constexpr (B != Backend::Cpu) fused = attention_fused_step(p);
  if (swap && !fused) scratch = use_scratch_rows(p, *k_new, *v_new);
  if constexpr (B == Backend::Cpu) {
    cpu::write_kv_cache(p, swap);
    // ATen's flash attention takes no mask: masked and block-rule calls go to the other kernels.
    const bool dense = !key_padding_mask.has_value() && !key_lengths.has_value() && causal_block_size == 0;
    const Path path = forced_path();
    const bool gemm_ok = path != Path::Native && path != Path::Aten &&
                         cpu::gemm_attention_usable(p, /*even_with_idle_threads=*/path == Path::Gemm);
    const int64_t stacked_rows = q.size(1) * (q.size(2) / std::max<int64_t>(1, k_cache.size(2)));
    if (gemm_ok && (path == Path::Gemm || !dense || stacked_rows <= gemm_max_stacked_rows(q))) {
      cpu::attend_gemm(p);
    } else if (dense && path != Path::Native && q.numel() > 0 && k_cache.size(1) > 0) {
      attend_with_aten(q, k_cache, v_cache, p.scale, out);
    } else {
      cpu::attend(p);
    }
    if (swap) cpu::write_kv_cache(p, true);
  } else {
    void* stream = scope.stream();
    DK_CHECK_ARG(p.kind != ScalarKind::Float32, "q", "must be float16 or bfloat16 on CUDA (float32 is CPU-only)");
    DK_CHECK_ARG(p.head_dim == 64 || p.head_dim == 128, "q", "must have head_dim 64 or 128 on CUDA, got ", p.head_dim);

    if (fused) {
      p.new_rows = store_kv ? AttentionParams::NewRows::kReadWrite : AttentionParams::NewRows::kRead;
    } else if (swap) {
      launch_attention_cache_swap(p, stream);
    } else {
      launch_attention_cache_write(p, stream);
    }

    // Unaligned layouts (e.g. a head_dim window of a wider buffer) read from aligned copies, made
    // after the write on the same stream.
    AttentionParams a = p;
    at::Tensor q_copy, k_copy, v_copy;
    if (!rows_aligned(a.q, a.q_sb, a.q_sl, a.q_sh)) {
      q_copy = aligned_copy(q);
      a.q = q_copy.data_ptr();
      a.q_sb = q_copy.stride(0), a.q_sl = q_copy.stride(1), a.q_sh = q_copy.stride(2);
    }
    if (!rows_aligned(a.k_cache, a.kc_sb, a.kc_sl, a.kc_sh)) {
      k_copy = aligned_copy(k_cache);
      a.k_cache = k_copy.data_ptr();
      a.kc_sb = k_copy.stride(0), a.kc_sl = k_copy.stride(1), a.kc_sh = k_copy.stride(2);
    }
    if (!rows_aligned(a.v_cache, a.vc_sb, a.vc_sl, a.vc_sh)) {
      v_copy = aligned_copy(v_cache);
      a.v_cache = v_copy.data_ptr();
      a.vc_sb = v_copy.stride(0), a.vc_sl = v_copy.stride(1), a.vc_sh = v_copy.stride(2);
    }

    a.num_splits = attention_num_splits(a);
    at::Tensor workspace;
    if (a.num_splits > 1) {
      const int64_t rows = a.batch * a.heads_q * a.q_len;
      workspace = at::empty({a.num_splits * rows * (a.head_dim + 1)}, q.options().dtype(at::kFloat));
      a.o_partial = workspace.data_ptr<float>();
      a.lse_partial = a.o_partial + a.num_splits * rows * a.head_dim;
    }
    // A launch refused on the host after the swap must still put the cache rows back.
    try {
      launch_attention(a, stream);
    } catch (...) {
      if (swap && !fused) launch_attention_cache_swap(p, stream);
      throw;
    }
    if (swap && !fused) launch_attention_cache_swap(p, stream);  // the caller's cache, not an aligned copy
  }
  return {out.out, out.lse};
}

}  // namespace
}  // namespace dk

// k_cache / v_cache are written in place (rows [write_start, write_start + new_len) of each
// batch row; with store_kv=False they are attended as if written and left bitwise unchanged);
// lse is empty ([0, heads_q, q_len]) unless return_lse. write_status ([1] int32) is set to 1 when
// write_starts is out of range on the device (nothing is written then). causal_block_size and
// noisy_length: 0 = off (kernels/attention_mask.h).
DK_REGISTER_OP("attention_with_kv_cache",
               "attention_with_kv_cache(Tensor q, Tensor(a!) k_cache, Tensor(b!) v_cache, Tensor? k_new, "
               "Tensor? v_new, int write_start, Tensor? write_starts, Tensor? key_padding_mask, "
               "Tensor? key_lengths, float? scale, bool return_lse, Tensor(c!)? write_status=None, "
               "int causal_block_size=0, int noisy_length=0, bool store_kv=True) "
               "-> (Tensor out, Tensor lse)",
               dk::attention_with_kv_cache)
