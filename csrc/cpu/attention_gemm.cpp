// Driver of the GEMM-structured CPU attention (see attention_gemm.h): tasks, threads, scratch,
// the block-rule chunk masks, and the wrappers over ATen's brgemm. The task bodies are in
// attention_gemm_avx512.cpp and attention_gemm_avx2.cpp.
#include "cpu/attention_gemm.h"

#include <ATen/Parallel.h>
#include <ATen/native/CPUBlas.h>
#include <c10/util/BFloat16.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "cpu/attention.h"
#include "cpu/isa_level.h"
#include "kernels/attention_mask.h"

namespace dk::cpu {
namespace {

int64_t align64(int64_t bytes) { return (bytes + 63) / 64 * 64; }

struct Tiling {
  int64_t rtiles, nheads, hgroups, tasks;
};

// Row tiles of the stacked query rows; kv heads per task as many as possible (a chunk's cache
// rows then serve more heads) while leaving two tasks per thread.
Tiling tiling(const AttentionParams& p) {
  Tiling t;
  const int64_t stacked = p.heads_q / p.heads_kv * p.q_len;
  t.rtiles = (stacked + kGemmRows - 1) / kGemmRows;
  const int64_t threads = at::get_num_threads();
  t.nheads = std::min(kGemmHeads, p.heads_kv);
  auto count = [&] {
    t.hgroups = (p.heads_kv + t.nheads - 1) / t.nheads;
    t.tasks = p.batch * t.hgroups * t.rtiles;
  };
  count();
  while (t.nheads > 1 && t.tasks < 2 * threads) {
    t.nheads = (t.nheads + 1) / 2;
    count();
  }
  return t;
}

// brgemm has AMX bfloat16 kernels here. Read per call, like the ISA level, so the tests cover
// every form: DK_CPU_ATTENTION_WIDEN=1 widens bfloat16 even on AMX; DK_CPU_ATTENTION_STAGE=1
// stages float32 chunks that the kernel would otherwise read in place.
bool env_is_1(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && std::strcmp(v, "1") == 0;
}
bool bf16_on_amx() { return !env_is_1("DK_CPU_ATTENTION_WIDEN") && at::native::cpublas::could_pack(at::kBFloat16); }

}  // namespace

void gemm_bf16(int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb, int64_t ldc, bool add,
               const uint16_t* a, const uint16_t* b_vnni, float* c) {
  at::native::cpublas::brgemm(m, n, k, lda, ldb, ldc, add, reinterpret_cast<const c10::BFloat16*>(a),
                              reinterpret_cast<const c10::BFloat16*>(b_vnni), c, /*is_vnni=*/true);
}

void gemm_f32(int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb, int64_t ldc, bool add,
              const float* a, const float* b, float* c) {
  at::native::cpublas::brgemm(m, n, k, lda, ldb, ldc, add, a, b, c, /*is_vnni=*/false);
}

int64_t gemm_scratch_bytes(int64_t head_dim, int64_t nheads) {
  const int64_t d = (head_dim + 1) / 2 * 2, f = 4;
  return align64(nheads * d * kGemmRows * f) + align64(kGemmChunk * kGemmRows * f) +
         align64(kGemmRows * kGemmChunk * f) + 2 * align64(nheads * kGemmChunk * d * f) +
         align64(nheads * kGemmRows * d * f) + 2 * align64(nheads * kGemmRows * f) +
         align64(kGemmChunk * kGemmRows * f);
}

void gemm_scratch_layout(void* base, int64_t head_dim, int64_t nheads, GemmScratch& w) {
  const int64_t d = (head_dim + 1) / 2 * 2, f = 4;
  char* c = static_cast<char*>(base);
  auto take = [&](int64_t bytes) {
    char* r = c;
    c += align64(bytes);
    return r;
  };
  w.q = take(nheads * d * kGemmRows * f);
  w.s = reinterpret_cast<float*>(take(kGemmChunk * kGemmRows * f));
  w.p = take(kGemmRows * kGemmChunk * f);
  w.v = take(nheads * kGemmChunk * d * f);
  w.k = take(nheads * kGemmChunk * d * f);
  w.o = reinterpret_cast<float*>(take(nheads * kGemmRows * d * f));
  w.m = reinterpret_cast<float*>(take(nheads * kGemmRows * f));
  w.l = reinterpret_cast<float*>(take(nheads * kGemmRows * f));
  w.bias = reinterpret_cast<float*>(take(kGemmChunk * kGemmRows * f));
}

ChunkMask classify_gemm_chunk(const AttentionParams& p, const GemmTask& t, const int64_t* keys, int64_t n,
                              float* bias) {
  if (p.causal_block <= 0) return ChunkMask::All;
  constexpr int64_t R = kGemmRows;
  const int64_t start = attn_mask::row_start(p, t.b);
  int64_t seen = 0;
  for (int64_t r = 0; r < R; ++r) {
    if (r >= t.rows) {
      for (int64_t j = 0; j < n; ++j) bias[j * R + r] = 0.f;
      continue;
    }
    const int64_t i = (t.row0 + r) % p.q_len;
    const attn_mask::KeySpans span = attn_mask::visible(p, attn_mask::query_position(p, start, i));
    for (int64_t j = 0; j < n; ++j) {
      const bool v = attn_mask::sees(span, keys[j]);
      bias[j * R + r] = v ? 0.f : -std::numeric_limits<float>::infinity();
      seen += v;
    }
  }
  if (seen == 0) return ChunkMask::None;
  return seen == t.rows * n ? ChunkMask::All : ChunkMask::Partial;
}

bool gemm_attention_usable(const AttentionParams& p, bool even_with_idle_threads) {
  const Level level = cpu_level();
  if (level == Level::Base || p.batch == 0 || p.q_len == 0) return false;
  // Without a split of the keys, fewer tasks than threads would leave threads idle.
  const int64_t stacked = p.heads_q / p.heads_kv * p.q_len;
  if (!even_with_idle_threads &&
      p.batch * p.heads_kv * ((stacked + kGemmRows - 1) / kGemmRows) < at::get_num_threads())
    return false;
  if (level == Level::V3) return p.kind != ScalarKind::Float64;  // every dtype widened to float32
  switch (p.kind) {
    case ScalarKind::Float32: return true;
    case ScalarKind::BFloat16:
      // VNNI pairs along head_dim on AMX (brgemm's bfloat16 kernels need it for the VNNI
      // layout); any head_dim widened to float32 otherwise.
      return p.head_dim % 2 == 0 || !bf16_on_amx();
    default: return false;
  }
}

void attend_gemm(const AttentionParams& p) {
  const Tiling tl = tiling(p);
  const auto keys = valid_key_lists(p);
  const int64_t stacked = p.heads_q / p.heads_kv * p.q_len;
  const int64_t bytes = gemm_scratch_bytes(p.head_dim, tl.nheads);
  const bool v4 = cpu_level() == Level::V4;
  const bool widen = p.kind == ScalarKind::BFloat16 && !(v4 && bf16_on_amx());
  const GemmOptions opts{widen, env_is_1("DK_CPU_ATTENTION_STAGE")};
  at::parallel_for(0, tl.tasks, 1, [&](int64_t begin, int64_t end) {
    // Kept per thread across calls: a fresh ~1 MB block would be mapped and page-faulted in on
    // every call, a visible cost next to the attention itself.
    thread_local std::vector<char> buf;
    if (buf.size() < static_cast<size_t>(bytes + 64)) buf.assign(static_cast<size_t>(bytes + 64), 0);
    void* base = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(buf.data()) + 63) & ~uintptr_t(63));
    GemmScratch w;
    gemm_scratch_layout(base, p.head_dim, tl.nheads, w);
    for (int64_t i = begin; i < end; ++i) {
      GemmTask t;
      const int64_t rt = i % tl.rtiles, bg = i / tl.rtiles, hgi = bg % tl.hgroups;
      t.b = bg / tl.hgroups;
      t.hkv0 = hgi * tl.nheads;
      t.nheads = std::min(tl.nheads, p.heads_kv - t.hkv0);
      t.row0 = rt * kGemmRows;
      t.rows = std::min(kGemmRows, stacked - t.row0);
      const auto& kb = keys[t.b];
      int64_t first = 0, last = static_cast<int64_t>(kb.size());
      if (p.causal_block > 0) {  // keys no row of the tile can see are never read
        const attn_mask::KeySpans span = attn_mask::visible_for_rows(p, t.b, t.row0, t.rows);
        first = std::lower_bound(kb.begin(), kb.end(), span.lo0) - kb.begin();
        last = std::max(first, static_cast<int64_t>(std::lower_bound(kb.begin(), kb.end(), attn_mask::span_end(span)) -
                                                    kb.begin()));
      }
      t.keys = kb.data() + first;
      t.nkeys = last - first;
      if (v4) {
        attend_gemm_task_v4(p, t, w, opts);
      } else {
        attend_gemm_task_v3(p, t, w, opts);
      }
    }
    // Give back the AMX tile state this thread configured.
    if (p.kind == ScalarKind::BFloat16 && !widen) at::native::cpublas::brgemm_release(true);
  });
}

}  // namespace dk::cpu
