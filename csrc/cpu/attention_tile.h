// The CPU attention body for one task (batch row, kv head, block of query rows, key split),
// shared by the translation units built for each x86 level (attention.cpp, attention_avx2.cpp,
// attention_avx512.cpp). Internal linkage only, like vec_math.h.
//
// Layout of the work: the g = heads_q / heads_kv query heads that share a kv head are stacked
// as g * q_len rows, so a K/V row converted to float once serves every one of them (GQA costs
// no extra K/V traffic). Keys are visited through the batch row's list of valid key indices,
// so masked keys cost nothing and no -inf ever enters the softmax. Everything accumulates in
// float32; P stays float32 for P @ V (no rounding of the probabilities).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "cpu/attention.h"
#include "cpu/vec_math.h"
#include "kernels/attention_mask.h"
#include "kernels/attention_params.h"

namespace dk::cpu {

// Query rows per task and keys per chunk. kRowBlock is a multiple of the two micro-kernels'
// row blocks (4 for S = Q K^T, 6 for O += P V).
constexpr int64_t kRowBlock = 60;
constexpr int64_t kKeyChunk = 64;
constexpr int64_t kDimAlign = 64;  // head_dim padded with zeros to 4 vectors of 16

// Heads per task: enough that a chunk's K/V pages are reused, few enough that the per-head
// state (q, o, m, l) stays in L2.
constexpr int64_t kHeadGroup = 8;

struct AttnTask {
  int64_t b, hkv0, nheads;  // kv heads [hkv0, hkv0 + nheads)
  int64_t row0, rows;    // stacked query rows [row0, row0 + rows) of g * q_len
  const int64_t* keys;   // valid key indices of this split
  int64_t nkeys;
};

// Per-thread buffers; dp = head_dim rounded up to kDimAlign.
struct AttnScratch {
  float* q;  // [kHeadGroup][kRowBlock][dp], pre-scaled by scale * log2(e)
  float* k;  // [kKeyChunk][dp]
  float* v;  // [kKeyChunk][dp]
  float* s;  // [kRowBlock][kKeyChunk]
  float* o;  // [kHeadGroup][kRowBlock][dp], unnormalised
  float* m;  // [kHeadGroup][kRowBlock], running max in the log2 domain
  float* l;  // [kHeadGroup][kRowBlock], running sum of 2^(s - m)
  float* bias;  // [kRowBlock][kKeyChunk], 0 (visible) or -inf, for chunks only some rows see
};

// Declared for every level and storage type (bf16 is passed as its uint16_t bits).
#define DK_DECLARE_ATTEND_FNS(level)                                                          \
  void attend_##level(const AttentionParams& p, const AttnTask& t, const AttnScratch& w,     \
                      const float* dummy_float_tag);                                         \
  void attend_##level(const AttentionParams& p, const AttnTask& t, const AttnScratch& w,     \
                      const _Float16* dummy_half_tag);                                       \
  void attend_##level(const AttentionParams& p, const AttnTask& t, const AttnScratch& w,     \
                      const uint16_t* dummy_bf16_tag);
DK_DECLARE_ATTEND_FNS(base)
DK_DECLARE_ATTEND_FNS(v3)
DK_DECLARE_ATTEND_FNS(v4)

namespace {  // see vec_math.h: no shared out-of-line copies between levels

#define DK_INLINE inline __attribute__((always_inline))

// A broadcast (splat() adds to +0.0, which the compiler must keep for -0.0 and emits as an add).
DK_INLINE vfloat bcast(float f) { return vfloat{f, f, f, f, f, f, f, f, f, f, f, f, f, f, f, f}; }

// Rows of one head are head_dim elements every heads * head_dim: a stride of several KiB that
// crosses a page per row, which the hardware prefetchers do not follow.
template <typename T>
DK_INLINE void prefetch_row(const T* row, int64_t elems) {
  const char* c = reinterpret_cast<const char*>(row);
  for (int64_t b = 0; b < elems * static_cast<int64_t>(sizeof(T)); b += 64) __builtin_prefetch(c + b);
}

// One row of head_dim elements to float, times mul, zero-padded to dp.
template <typename T>
DK_INLINE void row_to_float(const T* src, float* dst, int64_t d, int64_t dp, float mul) {
  int64_t i = 0;
  for (; i + kVecWidth <= d; i += kVecWidth) store16(dst + i, load16(src + i) * mul);
  for (; i < d; ++i) dst[i] = load_scalar(src + i) * mul;
  for (; i < dp; ++i) dst[i] = 0.f;
}

// lane k of the result = the sum of the lanes of v[k], by a transpose-and-add tree.
DK_INLINE vfloat hsum16(const vfloat (&v)[16]) {
  vfloat a[8], b[4], c[2];
  for (int i = 0; i < 8; ++i)
    a[i] = __builtin_shufflevector(v[2 * i], v[2 * i + 1], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
           __builtin_shufflevector(v[2 * i], v[2 * i + 1], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
  for (int i = 0; i < 4; ++i)
    b[i] = __builtin_shufflevector(a[2 * i], a[2 * i + 1], 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27) +
           __builtin_shufflevector(a[2 * i], a[2 * i + 1], 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
  for (int i = 0; i < 2; ++i)
    c[i] = __builtin_shufflevector(b[2 * i], b[2 * i + 1], 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29) +
           __builtin_shufflevector(b[2 * i], b[2 * i + 1], 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31);
  return __builtin_shufflevector(c[0], c[1], 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30) +
         __builtin_shufflevector(c[0], c[1], 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
}

// s[i][j] = q[i] . k[j] for rows [0, rows4) and keys [0, keys4), both multiples of 4:
// 4 x 4 dot products accumulate lane-wise over head_dim, then one tree reduces all 16.
DK_INLINE void scores_4x4(const float* q, const float* k, float* s, int64_t rows4, int64_t keys4,
                          int64_t dp) {
  for (int64_t i = 0; i < rows4; i += 4) {
    for (int64_t j = 0; j < keys4; j += 4) {
      vfloat acc[16] = {};
      for (int64_t d = 0; d < dp; d += kVecWidth) {
        const vfloat k0 = load16(k + (j + 0) * dp + d), k1 = load16(k + (j + 1) * dp + d);
        const vfloat k2 = load16(k + (j + 2) * dp + d), k3 = load16(k + (j + 3) * dp + d);
        for (int r = 0; r < 4; ++r) {
          const vfloat qv = load16(q + (i + r) * dp + d);
          acc[4 * r + 0] += qv * k0;
          acc[4 * r + 1] += qv * k1;
          acc[4 * r + 2] += qv * k2;
          acc[4 * r + 3] += qv * k3;
        }
      }
      const vfloat sums = hsum16(acc);
      for (int r = 0; r < 4; ++r)
        for (int c = 0; c < 4; ++c) s[(i + r) * kKeyChunk + j + c] = sums[4 * r + c];
    }
  }
}

// o[i] += sum_j p[i][j] v[j] for rows [0, rows6) (a multiple of 6) and keys [0, n):
// 6 rows x 4 vectors of head_dim stay in registers while the keys stream by.
DK_INLINE void accumulate_pv(const float* pm, const float* v, float* o, int64_t rows6, int64_t n,
                             int64_t dp) {
  for (int64_t i = 0; i < rows6; i += 6) {
    for (int64_t d = 0; d < dp; d += 4 * kVecWidth) {
      vfloat acc[6][4];
      for (int r = 0; r < 6; ++r)
        for (int c = 0; c < 4; ++c) acc[r][c] = load16(o + (i + r) * dp + d + c * kVecWidth);
      for (int64_t j = 0; j < n; ++j) {
        const float* vj = v + j * dp + d;
        const vfloat v0 = load16(vj), v1 = load16(vj + 16), v2 = load16(vj + 32), v3 = load16(vj + 48);
        for (int r = 0; r < 6; ++r) {
          const vfloat pr = bcast(pm[(i + r) * kKeyChunk + j]);
          acc[r][0] += pr * v0;
          acc[r][1] += pr * v1;
          acc[r][2] += pr * v2;
          acc[r][3] += pr * v3;
        }
      }
      for (int r = 0; r < 6; ++r)
        for (int c = 0; c < 4; ++c) store16(o + (i + r) * dp + d + c * kVecWidth, acc[r][c]);
    }
  }
}

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Under a block rule, which of the chunk's n keys each of the task's rows sees: fills bias for a
// partly visible chunk (padding rows up to pad_rows see everything: they are never stored).
DK_INLINE ChunkMask classify_chunk(const AttentionParams& p, const AttnTask& t, const int64_t* keys, int64_t n,
                                   int64_t pad_rows, float* bias) {
  if (p.causal_block <= 0) return ChunkMask::All;
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  const int64_t start = attn_mask::row_start(p, t.b);
  int64_t seen = 0;
  for (int64_t r = 0; r < t.rows; ++r) {
    const int64_t i = (t.row0 + r) % p.q_len;
    const attn_mask::KeySpans span = attn_mask::visible(p, attn_mask::query_position(p, start, i));
    float* br = bias + r * kKeyChunk;
    for (int64_t j = 0; j < n; ++j) {
      const bool v = attn_mask::sees(span, keys[j]);
      br[j] = v ? 0.f : kNegInf;
      seen += v;
    }
  }
  if (seen == 0) return ChunkMask::None;
  if (seen == t.rows * n) return ChunkMask::All;
  for (int64_t r = t.rows; r < pad_rows; ++r) std::fill(bias + r * kKeyChunk, bias + r * kKeyChunk + n, 0.f);
  return ChunkMask::Partial;
}

// Attends the task's rows of each of its kv heads over its keys; leaves the unnormalised output
// and the (m, l) pair of every row in the scratch (m = -inf, l = 0 when the task has no key).
// Keys are the outer loop and heads the inner one: the K/V rows of one key for all heads of the
// group are adjacent, so each page (and TLB entry) of a chunk serves every head.
template <typename T>
DK_INLINE void attend_task(const AttentionParams& p, const AttnTask& t, const AttnScratch& w) {
  const int64_t d = p.head_dim, dp = round_up(d, kDimAlign);
  const int64_t group = p.heads_q / p.heads_kv;
  const int64_t rows4 = round_up(t.rows, 4), rows6 = round_up(t.rows, 6);
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  const float qmul = p.scale * kLog2e;
  const int64_t head_block = kRowBlock * dp;

  const T* q = static_cast<const T*>(p.q);
  for (int64_t hh = 0; hh < t.nheads; ++hh) {
    for (int64_t r = 0; r < rows6; ++r) {
      float* dst = w.q + hh * head_block + r * dp;
      if (r < t.rows) {
        const int64_t row = t.row0 + r, hg = row / p.q_len, l = row - hg * p.q_len;
        const T* src = q + t.b * p.q_sb + l * p.q_sl + ((t.hkv0 + hh) * group + hg) * p.q_sh;
        row_to_float(src, dst, d, dp, qmul);
      } else {
        std::fill(dst, dst + dp, 0.f);  // padding rows: finite, never stored
      }
      w.m[hh * kRowBlock + r] = kNegInf;
      w.l[hh * kRowBlock + r] = 0.f;
    }
    std::fill(w.o + hh * head_block, w.o + hh * head_block + rows6 * dp, 0.f);
  }

  const T* kc = static_cast<const T*>(p.k_cache) + t.b * p.kc_sb + t.hkv0 * p.kc_sh;
  const T* vc = static_cast<const T*>(p.v_cache) + t.b * p.vc_sb + t.hkv0 * p.vc_sh;
  for (int64_t c0 = 0; c0 < t.nkeys; c0 += kKeyChunk) {
    const int64_t n = std::min(kKeyChunk, t.nkeys - c0), n4 = round_up(n, 4);
    const int64_t next = c0 + kKeyChunk, n_next = std::max<int64_t>(0, std::min(kKeyChunk, t.nkeys - next));
    const ChunkMask cm = classify_chunk(p, t, t.keys + c0, n, std::max(rows4, rows6), w.bias);
    if (cm == ChunkMask::None) continue;  // no row sees these keys: never read
    for (int64_t hh = 0; hh < t.nheads; ++hh) {
      float* qh = w.q + hh * head_block;
      float* oh = w.o + hh * head_block;
      float* mh = w.m + hh * kRowBlock;
      float* lh = w.l + hh * kRowBlock;
      for (int64_t j = 0; j < n4; ++j) {
        if (j < n_next) {  // this head's rows of the next chunk, spread over the work
          prefetch_row(kc + t.keys[next + j] * p.kc_sl + hh * p.kc_sh, d);
          prefetch_row(vc + t.keys[next + j] * p.vc_sl + hh * p.vc_sh, d);
        }
        if (j < n) {
          const int64_t key = t.keys[c0 + j];
          row_to_float(kc + key * p.kc_sl + hh * p.kc_sh, w.k + j * dp, d, dp, 1.f);
          row_to_float(vc + key * p.vc_sl + hh * p.vc_sh, w.v + j * dp, d, dp, 1.f);
        } else {
          std::fill(w.k + j * dp, w.k + (j + 1) * dp, 0.f);
        }
      }
      scores_4x4(qh, w.k, w.s, rows4, n4, dp);
      if (cm == ChunkMask::Partial) {  // a select, not an add: a NaN score of a hidden key stays out
        for (int64_t r = 0; r < rows4; ++r)
          for (int64_t j = 0; j < n; ++j)
            if (w.bias[r * kKeyChunk + j] != 0.f) w.s[r * kKeyChunk + j] = kNegInf;
      }

      // Online softmax in the log2 domain (q carries log2(e)).
      for (int64_t r = 0; r < rows6; ++r) {
        float* s = w.s + r * kKeyChunk;
        if (r >= rows4) std::fill(s, s + n, 0.f);  // rows only the P V kernel's block covers
        float mx = kNegInf;
        {
          vfloat vm = bcast(kNegInf);
          int64_t j = 0;
          for (; j + kVecWidth <= n; j += kVecWidth) vm = vmax(vm, load16(s + j));
          for (int e = 0; e < kVecWidth; ++e) mx = std::max(mx, vm[e]);
          for (; j < n; ++j) mx = std::max(mx, s[j]);
        }
        const float m_new = std::max(mh[r], mx);
        if (m_new == kNegInf) {  // every score -inf so far (infinite inputs): no mass yet
          std::fill(s, s + n, 0.f);
          continue;
        }
        const float alpha = std::exp2(mh[r] - m_new);
        const vfloat mv = bcast(m_new);
        vfloat acc = bcast(0.f);
        int64_t j = 0;
        for (; j + kVecWidth <= n; j += kVecWidth) {
          const vfloat x = load16(s + j);
          // vexp2 clamps at 2^-126: a hidden key's -inf score must give exactly 0.
          const vfloat e = x == bcast(kNegInf) ? bcast(0.f) : vexp2(x - mv);
          store16(s + j, e);
          acc += e;
        }
        float sum = static_cast<float>(hsum(acc));
        for (; j < n; ++j) {
          s[j] = std::exp2(s[j] - m_new);
          sum += s[j];
        }
        lh[r] = lh[r] * alpha + sum;
        mh[r] = m_new;
        if (alpha != 1.f) {
          float* o = oh + r * dp;
          for (int64_t e = 0; e < dp; e += kVecWidth) store16(o + e, load16(o + e) * alpha);
        }
      }
      accumulate_pv(w.s, w.v, oh, rows6, n, dp);
    }
  }
}

#undef DK_INLINE

}  // namespace

// Defines attend_<level> for the three storage types inside a translation unit built for that
// level (a target attribute on these functions would not reach the helpers they inline).
#define DK_DEFINE_ATTEND_FNS(level)                                                                      \
  void attend_##level(const AttentionParams& p, const AttnTask& t, const AttnScratch& w, const float*) {    \
    attend_task<float>(p, t, w);                                                                         \
  }                                                                                                      \
  void attend_##level(const AttentionParams& p, const AttnTask& t, const AttnScratch& w, const _Float16*) { \
    attend_task<_Float16>(p, t, w);                                                                      \
  }                                                                                                      \
  void attend_##level(const AttentionParams& p, const AttnTask& t, const AttnScratch& w, const uint16_t*) { \
    attend_task<uint16_t>(p, t, w);                                                                      \
  }

}  // namespace dk::cpu
