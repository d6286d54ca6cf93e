// The task body of the brgemm CPU attention (see attention_gemm.h). The whole translation unit
// targets x86-64-v4: it is only called when attention_gemm.cpp found AVX-512 (and, for
// bfloat16, AMX). No torch headers here; the GEMMs go through gemm_bf16 / gemm_f32.
#if defined(__x86_64__)
#define DK_VEC_AVX512 1  // cpu/vec_math.h: vmax as vmaxps
#pragma GCC target("arch=x86-64-v4")
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include "cpu/attention_gemm.h"
#include "cpu/vec_math.h"

namespace dk::cpu {
namespace {

constexpr int64_t R = kGemmRows;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr float kLn2 = 0.69314718055994531f;
static_assert(R == 2 * kVecWidth, "a row of S^T is two vectors");
static_assert(kGemmChunkBf16 % kVecWidth == 0 && kGemmChunkF32 % kVecWidth == 0, "P is transposed in blocks of 16 keys");

typedef uint16_t vu16x2 __attribute__((vector_size(4 * kVecWidth)));

#define DK_INLINE inline __attribute__((always_inline))

DK_INLINE float to_float(float x) { return x; }
DK_INLINE float to_float(uint16_t h) { return bf16_bits_to_float(h); }
template <typename T>
DK_INLINE T from_float(float f) {
  if constexpr (std::is_same_v<T, uint16_t>) {
    return float_to_bf16_bits(f);
  } else {
    return f;
  }
}

// In-register transpose of a 16 x 16 block of 32-bit lanes: four rounds, each swapping the
// off-diagonal sub-blocks of size B (8, 4, 2, 1) between rows i and i + B.
template <int B, size_t... J>
DK_INLINE vfloat mix_lo(vfloat a, vfloat b, std::index_sequence<J...>) {
  return __builtin_shufflevector(a, b, ((J & B) ? static_cast<int>(kVecWidth + J - B) : static_cast<int>(J))...);
}
template <int B, size_t... J>
DK_INLINE vfloat mix_hi(vfloat a, vfloat b, std::index_sequence<J...>) {
  return __builtin_shufflevector(a, b, ((J & B) ? static_cast<int>(kVecWidth + J) : static_cast<int>(J + B))...);
}
template <int B>
DK_INLINE void transpose_round(vfloat (&v)[kVecWidth]) {
  for (int i = 0; i < kVecWidth; ++i) {
    if (i & B) continue;
    const vfloat a = v[i], b = v[i | B];
    v[i] = mix_lo<B>(a, b, std::make_index_sequence<kVecWidth>{});
    v[i | B] = mix_hi<B>(a, b, std::make_index_sequence<kVecWidth>{});
  }
}
DK_INLINE void transpose16(vfloat (&v)[kVecWidth]) {
  transpose_round<8>(v);
  transpose_round<4>(v);
  transpose_round<2>(v);
  transpose_round<1>(v);
}

// dst[w * R + r] = src_r[w] for 32-bit words w < words and rows r < R (zero where src_r is
// null): the transpose that packs Q^T.
DK_INLINE void transpose_rows(const uint32_t* const (&src)[R], int64_t words, uint32_t* dst) {
  int64_t w0 = 0;
  for (; w0 + kVecWidth <= words; w0 += kVecWidth) {
    for (int64_t r0 = 0; r0 < R; r0 += kVecWidth) {
      vfloat v[kVecWidth];
      for (int i = 0; i < kVecWidth; ++i) {
        if (src[r0 + i] != nullptr) {
          std::memcpy(&v[i], src[r0 + i] + w0, sizeof v[i]);
        } else {
          v[i] = splat(0.f);
        }
      }
      transpose16(v);
      for (int i = 0; i < kVecWidth; ++i) std::memcpy(dst + (w0 + i) * R + r0, &v[i], sizeof v[i]);
    }
  }
  for (; w0 < words; ++w0)
    for (int64_t r = 0; r < R; ++r) dst[w0 * R + r] = src[r] != nullptr ? src[r][w0] : 0u;
}

// Q^T of one head for S^T = K Q^T: column r is stacked query row row0 + r (zero past rows).
// bf16 VNNI [d/2][R][2] is the same transpose on 32-bit words (pairs of consecutive e). Widened
// (bf16 rows, float32 GEMMs): element by element, d x 32 per head and task.
template <typename In, typename T>
void pack_q(const AttentionParams& p, const GemmTask& t, int64_t hh, T* dst) {
  const int64_t d = p.head_dim, group = p.heads_q / p.heads_kv;
  const In* q = static_cast<const In*>(p.q);
  const In* rows[R];
  for (int64_t r = 0; r < R; ++r) {
    rows[r] = nullptr;
    if (r < t.rows) {
      const int64_t row = t.row0 + r, hg = row / p.q_len, l = row - hg * p.q_len;
      rows[r] = q + t.b * p.q_sb + l * p.q_sl + ((t.hkv0 + hh) * group + hg) * p.q_sh;
    }
  }
  if constexpr (std::is_same_v<In, T>) {
    const uint32_t* src[R];
    for (int64_t r = 0; r < R; ++r) src[r] = reinterpret_cast<const uint32_t*>(rows[r]);
    transpose_rows(src, d * static_cast<int64_t>(sizeof(T)) / 4, reinterpret_cast<uint32_t*>(dst));
  } else {
    for (int64_t e = 0; e < d; ++e)
      for (int64_t r = 0; r < R; ++r) dst[e * R + r] = rows[r] != nullptr ? to_float(rows[r][e]) : 0.f;
  }
}

// Online softmax down the n rows of S^T (scores times c = scale * log2(e)) for the 32 query
// rows of the tile, fused with the transpose: P [R][C] (bf16: rounded to nearest even; columns
// [n, round_up(n, 16)) are 0) goes straight from registers to pm. Updates m and l and returns
// the factor for the rows' old output in alpha.
template <typename T, int64_t C>
DK_INLINE void softmax_to_p(const float* s, int64_t n, float c, float* m, float* l, float* alpha, T* pm) {
  // max(c * s) = c * max(s) for c >= 0, c * min(s) otherwise.
  const vfloat ninf = splat(kNegInf), pinf = splat(-kNegInf), zero = splat(0.f);
  vfloat hi[2] = {ninf, ninf}, lo[2] = {pinf, pinf};
  for (int64_t j = 0; j < n; ++j) {
    for (int h = 0; h < 2; ++h) {
      const vfloat x = load16(s + j * R + h * kVecWidth);
      hi[h] = vmax(hi[h], x);
      lo[h] = x < lo[h] ? x : lo[h];
    }
  }
  const vfloat cv = splat(c);
  vfloat u[2], sum[2] = {zero, zero};
  for (int h = 0; h < 2; ++h) {
    const vfloat mx = (c >= 0.f ? hi[h] : lo[h]) * cv;
    const vfloat m_old = load16(m + h * kVecWidth);
    const vfloat m_new = vmax(m_old, mx);
    // A row whose scores are all -inf so far (infinite inputs) has no mass: subtracting 0
    // instead of -inf keeps 2^(-inf) = 0 there (vexp2 clamps it to 2^-126, times l = 0).
    u[h] = m_new == ninf ? zero : m_new;
    store16(alpha + h * kVecWidth, vexp2(m_old - u[h]));
    store16(m + h * kVecWidth, m_new);
  }
  for (int64_t j0 = 0; j0 < n; j0 += kVecWidth) {
    const int64_t valid = std::min<int64_t>(kVecWidth, n - j0);
    for (int h = 0; h < 2; ++h) {
      vfloat v[kVecWidth];
      for (int i = 0; i < kVecWidth; ++i) {
        if (i < valid) {
          const vfloat x = load16(s + (j0 + i) * R + h * kVecWidth) * cv;
          // vexp2 clamps at 2^-126: a key hidden by a block rule (-inf) must give exactly 0.
          v[i] = x == ninf ? zero : vexp2(x - u[h]);
          sum[h] += v[i];
        } else {
          v[i] = zero;
        }
      }
      transpose16(v);
      for (int i = 0; i < kVecWidth; ++i) {
        T* dst = pm + (h * kVecWidth + i) * C + j0;
        if constexpr (std::is_same_v<T, uint16_t>) {
          vuint b = (vuint)v[i];
          b += 0x7fffu + ((b >> 16) & 1u);  // NaN (only from NaN inputs) stays NaN
          const vu16 hb = __builtin_convertvector(b >> 16, vu16);
          std::memcpy(dst, &hb, sizeof hb);
        } else {
          store16(dst, v[i]);
        }
      }
    }
  }
  for (int h = 0; h < 2; ++h) store16(l + h * kVecWidth, load16(l + h * kVecWidth) * load16(alpha + h * kVecWidth) + sum[h]);
}

// Two V rows a, b (b null: zeros) interleaved element by element: one VNNI row pair.
DK_INLINE void pack_v_bf16_pair(const uint16_t* a, const uint16_t* b, int64_t d, uint16_t* out) {
  int64_t e = 0;
  if (b != nullptr) {
    for (; e + 2 * kVecWidth <= d; e += 2 * kVecWidth) {
      vu16x2 va, vb;
      std::memcpy(&va, a + e, sizeof va);
      std::memcpy(&vb, b + e, sizeof vb);
      const vu16x2 w0 = __builtin_shufflevector(va, vb, 0, 32, 1, 33, 2, 34, 3, 35, 4, 36, 5, 37, 6, 38, 7, 39, 8,
                                                40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47);
      const vu16x2 w1 = __builtin_shufflevector(va, vb, 16, 48, 17, 49, 18, 50, 19, 51, 20, 52, 21, 53, 22, 54, 23,
                                                55, 24, 56, 25, 57, 26, 58, 27, 59, 28, 60, 29, 61, 30, 62, 31, 63);
      std::memcpy(out + 2 * e, &w0, sizeof w0);
      std::memcpy(out + 2 * e + 2 * kVecWidth, &w1, sizeof w1);
    }
  }
  for (; e < d; ++e) {
    out[2 * e] = a[e];
    out[2 * e + 1] = b != nullptr ? b[e] : uint16_t(0);
  }
}

// The chunk's K rows ([head][C][d]) and V rows ([head][C][d]; bf16 in VNNI row pairs, the odd
// tail paired with zeros) of every head of the group, read key row by key row: the group's heads
// are adjacent in a cache row, so each row is one contiguous run the hardware prefetchers
// stream, where the GEMMs reading one head's strided rows straight from the cache would wait on
// every row. Then A (K) and B (V) have a leading dimension of d and stay in L2.
// A cache row into the staging buffer: a copy, or bf16 widened to float32.
DK_INLINE void copy_row(const float* src, float* dst, int64_t d) { std::memcpy(dst, src, sizeof(float) * d); }
DK_INLINE void copy_row(const uint16_t* src, uint16_t* dst, int64_t d) { std::memcpy(dst, src, sizeof(uint16_t) * d); }
DK_INLINE void copy_row(const uint16_t* src, float* dst, int64_t d) {
  int64_t e = 0;
  for (; e + kVecWidth <= d; e += kVecWidth) store16(dst + e, load16(src + e));
  for (; e < d; ++e) dst[e] = to_float(src[e]);
}

template <typename In, typename T>
DK_INLINE void stage_chunk(const In* kc, int64_t ksl, int64_t ksh, const In* vc, int64_t vsl, int64_t vsh,
                           const int64_t* keys, int64_t n, int64_t nk, int64_t nheads, int64_t d, int64_t C,
                           T* kst, T* vst) {
  for (int64_t j = 0; j < nk; j += 2) {
    const bool second = j + 1 < n;
    const In* k0 = kc + keys[j] * ksl;
    const In* k1 = second ? kc + keys[j + 1] * ksl : nullptr;
    const In* v0 = vc + keys[j] * vsl;
    const In* v1 = second ? vc + keys[j + 1] * vsl : nullptr;
    for (int64_t hh = 0; hh < nheads; ++hh) {
      T* kd = kst + (hh * C + j) * d;
      T* vd = vst + (hh * C + j) * d;
      copy_row(k0 + hh * ksh, kd, d);
      if (second) copy_row(k1 + hh * ksh, kd + d, d);
      if constexpr (std::is_same_v<T, uint16_t>) {
        pack_v_bf16_pair(v0 + hh * vsh, second ? v1 + hh * vsh : nullptr, d, vd);
      } else {
        copy_row(v0 + hh * vsh, vd, d);
        if (second) copy_row(v1 + hh * vsh, vd + d, d);
      }
    }
  }
}

// In: the tensors' element type; T: the GEMMs' (bf16 on AMX, float32 otherwise: on AVX-512
// without AMX, bf16 caches are widened as they are staged).
template <typename In, typename T>
void run_task(const AttentionParams& p, const GemmTask& t, const GemmScratch& w, const GemmOptions& opts) {
  constexpr bool kBf16 = std::is_same_v<T, uint16_t>;
  constexpr bool kInPlace = std::is_same_v<In, float> && std::is_same_v<T, float>;
  constexpr int64_t C = kBf16 ? kGemmChunkBf16 : kGemmChunkF32;
  const int64_t d = p.head_dim, group = p.heads_q / p.heads_kv;
  const float c = p.scale * kLog2e;
  T* qp = static_cast<T*>(w.q);
  T* pm = static_cast<T*>(w.p);
  T* vs = static_cast<T*>(w.v);
  T* ks = static_cast<T*>(w.k);
  const int64_t qstride = d * R;
  for (int64_t hh = 0; hh < t.nheads; ++hh) {
    pack_q<In, T>(p, t, hh, qp + hh * qstride);
    std::fill(w.m + hh * R, w.m + (hh + 1) * R, kNegInf);
    std::fill(w.l + hh * R, w.l + (hh + 1) * R, 0.f);
    std::fill(w.o + hh * R * d, w.o + (hh + 1) * R * d, 0.f);
  }

  const In* kc = static_cast<const In*>(p.k_cache) + t.b * p.kc_sb + t.hkv0 * p.kc_sh;
  const In* vc = static_cast<const In*>(p.v_cache) + t.b * p.vc_sb + t.hkv0 * p.vc_sh;
  alignas(64) float alpha[R];
  for (int64_t c0 = 0; c0 < t.nkeys; c0 += C) {
    const int64_t n = std::min(C, t.nkeys - c0), nk = kBf16 ? (n + 1) / 2 * 2 : n;
    const int64_t* keys = t.keys + c0;
    const ChunkMask cm = classify_gemm_chunk(p, t, keys, n, w.bias);
    if (cm == ChunkMask::None) continue;  // no row sees these keys: never read
    // float32 chunks of consecutive keys: the GEMMs read K and V in place (leading dimension
    // the cache row), no staging copy.
    const bool in_place = kInPlace && !opts.stage_always && keys[n - 1] - keys[0] == n - 1;
    if (!in_place) stage_chunk(kc, p.kc_sl, p.kc_sh, vc, p.vc_sl, p.vc_sh, keys, n, nk, t.nheads, d, C, ks, vs);
    for (int64_t hh = 0; hh < t.nheads; ++hh) {
      float* o = w.o + hh * R * d;
      const T* kh = ks + hh * C * d;
      const T* vh = vs + hh * C * d;
      int64_t ldk = d, ldv = d;
      if constexpr (kInPlace) {
        if (in_place) {
          kh = kc + keys[0] * p.kc_sl + hh * p.kc_sh;
          vh = vc + keys[0] * p.vc_sl + hh * p.vc_sh;
          ldk = p.kc_sl;
          ldv = p.vc_sl;
        }
      }
      if constexpr (kBf16) {
        gemm_bf16(n, R, d, d, R, R, false, kh, qp + hh * qstride, w.s);
      } else {
        gemm_f32(n, R, d, ldk, R, R, false, kh, qp + hh * qstride, w.s);
      }
      if (cm == ChunkMask::Partial) {
        // Scaled scores with hidden keys at -inf (a select, so a NaN score of a hidden key stays
        // out), then the softmax with a unit scale.
        for (int64_t e = 0; e < n * R; e += kVecWidth) {
          const vfloat x = load16(w.s + e) * splat(c);
          store16(w.s + e, load16(w.bias + e) == splat(0.f) ? x : splat(kNegInf));
        }
        softmax_to_p<T, C>(w.s, n, 1.f, w.m + hh * R, w.l + hh * R, alpha, pm);
      } else {
        softmax_to_p<T, C>(w.s, n, c, w.m + hh * R, w.l + hh * R, alpha, pm);
      }
      for (int64_t r = 0; r < R; ++r) {
        if (alpha[r] == 1.f) continue;
        const vfloat av = splat(alpha[r]);
        float* orow = o + r * d;
        int64_t e = 0;
        for (; e + kVecWidth <= d; e += kVecWidth) store16(orow + e, load16(orow + e) * av);
        for (; e < d; ++e) orow[e] *= alpha[r];
      }
      if constexpr (kBf16) {
        gemm_bf16(R, d, nk, C, d, d, true, pm, vh, o);
      } else {
        gemm_f32(R, d, n, C, ldv, d, true, pm, vh, o);
      }
    }
  }

  In* out = static_cast<In*>(p.out);
  for (int64_t hh = 0; hh < t.nheads; ++hh) {
    for (int64_t r = 0; r < t.rows; ++r) {
      const int64_t row = t.row0 + r, hg = row / p.q_len, ql = row - hg * p.q_len;
      const int64_t h = (t.hkv0 + hh) * group + hg;
      const float m = w.m[hh * R + r], l = w.l[hh * R + r];
      // No valid key (l == 0): output 0 and lse -inf.
      const float inv = l > 0.f ? 1.f / l : 0.f;
      const float* o = w.o + (hh * R + r) * d;
      In* dst = out + ((t.b * p.q_len + ql) * p.heads_q + h) * d;
      for (int64_t e = 0; e < d; ++e) dst[e] = from_float<In>(o[e] * inv);
      if (p.lse != nullptr)
        p.lse[(t.b * p.heads_q + h) * p.q_len + ql] = l > 0.f ? (m + std::log2(l)) * kLn2 : kNegInf;
    }
  }
}

#undef DK_INLINE

}  // namespace

void attend_gemm_task_v4(const AttentionParams& p, const GemmTask& t, const GemmScratch& w, const GemmOptions& o) {
  if (p.kind == ScalarKind::BFloat16) {
    if (o.widen_bf16) {
      run_task<uint16_t, float>(p, t, w, o);
    } else {
      run_task<uint16_t, uint16_t>(p, t, w, o);
    }
  } else {
    run_task<float, float>(p, t, w, o);
  }
}

}  // namespace dk::cpu
