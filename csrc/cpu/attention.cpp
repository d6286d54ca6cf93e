// CPU attention_with_kv_cache: the cache write (row copies), then a flash-style pass over the
// valid keys per (batch row, kv head, block of query rows), with the keys split further when
// there are fewer such tasks than threads; the splits merge through their log-sum-exps.
#include "cpu/attention.h"

#include <stdexcept>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "cpu/attention_tile.h"
#include "cpu/isa_level.h"

namespace dk::cpu {
namespace {

template <typename T>
void attend_any(Level level, const AttentionParams& p, const AttnTask& t, const AttnScratch& w) {
  const T* tag = nullptr;
  switch (level) {
    case Level::V4: return attend_v4(p, t, w, tag);
    case Level::V3: return attend_v3(p, t, w, tag);
    default: return attend_base(p, t, w, tag);
  }
}

void swap_bytes(char* a, char* b, int64_t bytes) {
  char tmp[512];
  for (int64_t o = 0; o < bytes; o += sizeof tmp) {
    const int64_t n = std::min<int64_t>(sizeof tmp, bytes - o);
    std::memcpy(tmp, a + o, n);
    std::memcpy(a + o, b + o, n);
    std::memcpy(b + o, tmp, n);
  }
}

int64_t start_of(const AttentionParams& p, int64_t b) {
  return p.write_starts != nullptr ? p.write_starts[b] : p.write_start;
}

// The range was validated by the op (ops/attention.cpp) before anything is written. With swap,
// the cache rows and the (scratch) new rows trade places, so a second swap restores the cache.
void write_cache(const AttentionParams& p, int64_t elem, bool swap) {
  if (p.new_len == 0) return;
  const int64_t rows = p.batch * p.new_len * p.heads_kv;
  const int64_t bytes = p.head_dim * elem;
  // 64 KiB of K (and of V) per piece: a decode step's few rows are copied by the calling thread,
  // since waking the pool costs more than the copy, and more so on a busy machine.
  at::parallel_for(0, rows, std::max<int64_t>(1, 65536 / std::max<int64_t>(bytes, 1)), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t h = r % p.heads_kv, bl = r / p.heads_kv, l = bl % p.new_len, b = bl / p.new_len;
      const int64_t row = start_of(p, b) + l;
      auto* kc = static_cast<char*>(p.k_cache) + (b * p.kc_sb + row * p.kc_sl + h * p.kc_sh) * elem;
      auto* vc = static_cast<char*>(p.v_cache) + (b * p.vc_sb + row * p.vc_sl + h * p.vc_sh) * elem;
      const auto* kn = static_cast<const char*>(p.k_new) + (b * p.kn_sb + l * p.kn_sl + h * p.kn_sh) * elem;
      const auto* vn = static_cast<const char*>(p.v_new) + (b * p.vn_sb + l * p.vn_sl + h * p.vn_sh) * elem;
      if (swap) {
        swap_bytes(kc, const_cast<char*>(kn), bytes);
        swap_bytes(vc, const_cast<char*>(vn), bytes);
      } else {
        std::memcpy(kc, kn, bytes);
        std::memcpy(vc, vn, bytes);
      }
    }
  });
}

template <typename T>
void store_row(const float* o, float inv_l, T* dst, int64_t d) {
  for (int64_t i = 0; i < d; ++i) {
    const float v = o[i] * inv_l;
    if constexpr (std::is_same_v<T, uint16_t>) {
      dst[i] = float_to_bf16_bits(v);
    } else {
      dst[i] = static_cast<T>(v);
    }
  }
}

constexpr float kLn2 = 0.69314718055994531f;

// The index range of the batch row's valid keys that the task's rows can see under a block rule:
// keys after it are never read (uninitialised cache rows past the blocks in flight included).
std::pair<int64_t, int64_t> task_keys(const AttentionParams& p, const AttnTask& t, const std::vector<int64_t>& kb) {
  if (p.causal_block <= 0) return {0, static_cast<int64_t>(kb.size())};
  const attn_mask::KeySpans span = attn_mask::visible_for_rows(p, t.b, t.row0, t.rows);
  const int64_t first = std::lower_bound(kb.begin(), kb.end(), span.lo0) - kb.begin();
  const int64_t last = std::lower_bound(kb.begin(), kb.end(), attn_mask::span_end(span)) - kb.begin();
  return {first, std::max(first, last)};
}

template <typename T>
void run(const AttentionParams& p) {
  const int64_t group = p.heads_q / p.heads_kv;
  const int64_t stacked = group * p.q_len;
  if (p.batch == 0 || stacked == 0) return;
  const int64_t d = p.head_dim, dp = round_up(d, kDimAlign);
  const auto keys = valid_key_lists(p);
  int64_t max_keys = 0;
  for (const auto& k : keys) max_keys = std::max<int64_t>(max_keys, k.size());

  const int64_t qblocks = (stacked + kRowBlock - 1) / kRowBlock;
  const int64_t hgroups = (p.heads_kv + kHeadGroup - 1) / kHeadGroup;
  const int64_t tasks = p.batch * hgroups * qblocks;
  // Split the keys only as far as needed to give every thread work, and never below a few chunks.
  const int64_t threads = at::get_num_threads();
  const int64_t splits = std::clamp<int64_t>((2 * threads + tasks - 1) / tasks, 1,
                                             std::max<int64_t>(1, max_keys / (4 * kKeyChunk)));
  const Level level = cpu_level();
  const int64_t head_block = kRowBlock * dp, state = kHeadGroup * head_block;

  // Partial results of every (task, split): unnormalised o, m and l per head and row.
  std::vector<float> part_o, part_ml;
  if (splits > 1) {
    part_o.resize(static_cast<size_t>(tasks * splits * state));
    part_ml.resize(static_cast<size_t>(tasks * splits * kHeadGroup * kRowBlock * 2));
  }
  T* out = static_cast<T*>(p.out);
  auto finish_row = [&](int64_t b, int64_t hkv, int64_t row, const float* o, float m, float l) {
    const int64_t hg = row / p.q_len, ql = row - hg * p.q_len, h = hkv * group + hg;
    T* dst = out + ((b * p.q_len + ql) * p.heads_q + h) * d;
    // No valid key (l == 0): output 0 and lse -inf.
    store_row(o, l > 0.f ? 1.f / l : 0.f, dst, d);
    if (p.lse != nullptr)
      p.lse[(b * p.heads_q + h) * p.q_len + ql] =
          l > 0.f ? (m + std::log2(l)) * kLn2 : -std::numeric_limits<float>::infinity();
  };
  auto task_of = [&](int64_t task, AttnTask& t) {
    const int64_t qb = task % qblocks, bg = task / qblocks, hgi = bg % hgroups;
    t.b = bg / hgroups;
    t.hkv0 = hgi * kHeadGroup;
    t.nheads = std::min(kHeadGroup, p.heads_kv - t.hkv0);
    t.row0 = qb * kRowBlock;
    t.rows = std::min(kRowBlock, stacked - t.row0);
  };

  at::parallel_for(0, tasks * splits, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> buf(static_cast<size_t>(2 * state + 2 * kKeyChunk * dp + 2 * kRowBlock * kKeyChunk +
                                               2 * kHeadGroup * kRowBlock));
    AttnScratch w;
    w.q = buf.data();
    w.o = w.q + state;
    w.k = w.o + state;
    w.v = w.k + kKeyChunk * dp;
    w.s = w.v + kKeyChunk * dp;
    w.m = w.s + kRowBlock * kKeyChunk;
    w.l = w.m + kHeadGroup * kRowBlock;
    w.bias = w.l + kHeadGroup * kRowBlock;
    for (int64_t i = begin; i < end; ++i) {
      const int64_t task = i / splits, split = i % splits;
      AttnTask t;
      task_of(task, t);
      const auto& kb = keys[t.b];
      const auto [first, last] = task_keys(p, t, kb);
      const int64_t n = last - first, k0 = first + n * split / splits, k1 = first + n * (split + 1) / splits;
      t.keys = kb.data() + k0;
      t.nkeys = k1 - k0;
      attend_any<T>(level, p, t, w);
      for (int64_t hh = 0; hh < t.nheads; ++hh) {
        const float* o = w.o + hh * head_block;
        const float* m = w.m + hh * kRowBlock;
        const float* l = w.l + hh * kRowBlock;
        if (splits == 1) {
          for (int64_t r = 0; r < t.rows; ++r) finish_row(t.b, t.hkv0 + hh, t.row0 + r, o + r * dp, m[r], l[r]);
        } else {
          std::memcpy(part_o.data() + i * state + hh * head_block, o, sizeof(float) * t.rows * dp);
          float* pml = part_ml.data() + (i * kHeadGroup + hh) * kRowBlock * 2;
          for (int64_t r = 0; r < t.rows; ++r) pml[2 * r] = m[r], pml[2 * r + 1] = l[r];
        }
      }
    }
  });
  if (splits == 1) return;

  at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> o(dp);
    for (int64_t task = begin; task < end; ++task) {
      AttnTask t;
      task_of(task, t);
      for (int64_t hh = 0; hh < t.nheads; ++hh) {
        for (int64_t r = 0; r < t.rows; ++r) {
          auto ml = [&](int64_t s) { return &part_ml[(((task * splits + s) * kHeadGroup + hh) * kRowBlock + r) * 2]; };
          float m = -std::numeric_limits<float>::infinity();
          for (int64_t s = 0; s < splits; ++s) m = std::max(m, ml(s)[0]);
          std::fill(o.begin(), o.end(), 0.f);
          float l = 0.f;
          for (int64_t s = 0; s < splits && m != -std::numeric_limits<float>::infinity(); ++s) {
            if (ml(s)[1] == 0.f) continue;  // split without keys
            const float f = std::exp2(ml(s)[0] - m);
            l += ml(s)[1] * f;
            const float* po = &part_o[(task * splits + s) * state + hh * head_block + r * dp];
            for (int64_t e = 0; e < d; ++e) o[e] += po[e] * f;
          }
          finish_row(t.b, t.hkv0 + hh, t.row0 + r, o.data(), m, l);
        }
      }
    }
  });
}

}  // namespace

std::vector<std::vector<int64_t>> valid_key_lists(const AttentionParams& p) {
  std::vector<std::vector<int64_t>> keys(p.batch);
  for (int64_t b = 0; b < p.batch; ++b) {
    int64_t end = p.cache_len;
    if (p.key_lengths != nullptr) end = std::clamp<int64_t>(p.key_lengths[b], 0, p.cache_len);
    keys[b].reserve(end);
    for (int64_t j = 0; j < end; ++j)
      if (p.key_mask == nullptr || p.key_mask[b * p.km_sb + j * p.km_sl]) keys[b].push_back(j);
  }
  return keys;
}

DK_DEFINE_ATTEND_FNS(base)  // v3: attention_avx2.cpp; v4: attention_avx512.cpp

void write_kv_cache(const AttentionParams& params, bool swap) {
  write_cache(params, params.kind == ScalarKind::Float32 ? 4 : 2, swap);
}

void attend(const AttentionParams& params) {
  switch (params.kind) {
    case ScalarKind::Float32: return run<float>(params);
    case ScalarKind::Float16: return run<_Float16>(params);
    case ScalarKind::BFloat16: return run<bf16_bits>(params);
    case ScalarKind::Float64: throw std::invalid_argument("attention_with_kv_cache: float64 is not supported");
  }
}

}  // namespace dk::cpu
