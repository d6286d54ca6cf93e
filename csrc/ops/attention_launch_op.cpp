// Torch-facing entry of the attention_with_kv_cache CUDA launchers; linked into the CUDA build of
// _C and into the emulated module, which provide the launchers from nvcc and g++ respectively.
#include <ATen/ops/empty.h>

#include <cstdint>

#include "kernels/launchers.h"
#include "ops/attention.h"
#include "ops/attention_common.h"
#include "ops/checks.h"

namespace dk {
namespace {

// cp.async and the 32-bit Q loads need 16-byte aligned rows: base and every row stride.
bool rows_aligned(const void* base, int64_t sb, int64_t sl, int64_t sh) {
  constexpr int64_t kElems = 8;  // 16 bytes of a 16-bit dtype
  return reinterpret_cast<uintptr_t>(base) % 16 == 0 && sb % kElems == 0 && sl % kElems == 0 && sh % kElems == 0;
}

// A fresh (hence aligned) contiguous copy, in [batch, len, heads, head_dim] layout.
at::Tensor aligned_copy(const at::Tensor& t) {
  return at::empty(t.sizes(), t.options()).copy_(t);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> attention_with_kv_cache_launcher(DK_ATTENTION_ARGS, void* stream) {
  AttentionOutputs out;
  // write_starts stays on the device: the cache-write kernel range-checks it (no host sync).
  auto p = prepare_attention(DK_ATTENTION_ARG_NAMES, /*host_checks_write_starts=*/false, out);
  DK_CHECK_ARG(p.kind != ScalarKind::Float32, "q", "must be float16 or bfloat16 on CUDA (float32 is CPU-only)");
  DK_CHECK_ARG(p.head_dim == 64 || p.head_dim == 128, "q", "must have head_dim 64 or 128 on CUDA, got ", p.head_dim);

  launch_attention_cache_write(p, stream);

  // Unaligned layouts (e.g. a head_dim window of a wider buffer) read from aligned copies, made
  // after the write on the same stream.
  at::Tensor q_copy, k_copy, v_copy;
  if (!rows_aligned(p.q, p.q_sb, p.q_sl, p.q_sh)) {
    q_copy = aligned_copy(q);
    p.q = q_copy.data_ptr();
    p.q_sb = q_copy.stride(0), p.q_sl = q_copy.stride(1), p.q_sh = q_copy.stride(2);
  }
  if (!rows_aligned(p.k_cache, p.kc_sb, p.kc_sl, p.kc_sh)) {
    k_copy = aligned_copy(k_cache);
    p.k_cache = k_copy.data_ptr();
    p.kc_sb = k_copy.stride(0), p.kc_sl = k_copy.stride(1), p.kc_sh = k_copy.stride(2);
  }
  if (!rows_aligned(p.v_cache, p.vc_sb, p.vc_sl, p.vc_sh)) {
    v_copy = aligned_copy(v_cache);
    p.v_cache = v_copy.data_ptr();
    p.vc_sb = v_copy.stride(0), p.vc_sl = v_copy.stride(1), p.vc_sh = v_copy.stride(2);
  }

  p.num_splits = attention_num_splits(p);
  at::Tensor workspace;
  if (p.num_splits > 1) {
    const int64_t rows = p.batch * p.heads_q * p.q_len;
    workspace = at::empty({p.num_splits * rows * (p.head_dim + 1)}, q.options().dtype(at::kFloat));
    p.o_partial = workspace.data_ptr<float>();
    p.lse_partial = p.o_partial + p.num_splits * rows * p.head_dim;
  }
  launch_attention(p, stream);
  return {out.out, out.lse};
}

}  // namespace dk
