#include "ops/attention_common.h"

#include <ATen/MemoryOverlap.h>
#include <ATen/ops/empty.h>

#include <cmath>
#include <limits>

#include "ops/checks.h"
#include "ops/poison.h"
#include "ops/scalar_kind.h"

namespace dk {
namespace {

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

}  // namespace

AttentionParams prepare_attention(DK_ATTENTION_ARGS, bool host_checks_write_starts,
                                  AttentionOutputs& out) {
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
    check_same_device(ws, "cache_seqlens", q, "q");
    DK_CHECK_ARG(ws.scalar_type() == at::kLong, "cache_seqlens", "must be int64, got ", ws.scalar_type());
    DK_CHECK_ARG(ws.dim() == 1 && ws.size(0) == batch, "cache_seqlens", "must have shape [batch] = [",
                 batch, "], got ", ws.sizes());
    DK_CHECK_ARG(ws.is_contiguous(), "cache_seqlens", "must be contiguous");
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
    const auto& kl = *key_lengths;
    check_same_device(kl, "key_lengths", q, "q");
    DK_CHECK_ARG(kl.scalar_type() == at::kLong, "key_lengths", "must be int64, got ", kl.scalar_type());
    DK_CHECK_ARG(kl.dim() == 1 && kl.size(0) == batch, "key_lengths", "must have shape [batch] = [",
                 batch, "], got ", kl.sizes());
    DK_CHECK_ARG(kl.is_contiguous(), "key_lengths", "must be contiguous");
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
  p.out = out.out.data_ptr();
  p.lse = return_lse ? out.lse.data_ptr<float>() : nullptr;
  p.write_status = status;
  return p;
}

}  // namespace dk
