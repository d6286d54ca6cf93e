// The AVX2+FMA task body of the GEMM-structured CPU attention (see attention_gemm.h): the same
// tasks, chunks and block-rule handling as the AVX-512 body, on 8-lane vectors and float32
// throughout. ATen's brgemm needs AVX-512 and its float32 BLAS entry is not exported, so the two
// GEMMs are register-blocked loops here. bfloat16 and float16 K/V are widened to float32 as they
// are staged, Q once per task (pre-scaled by scale * log2(e)).
//
// Per chunk of keys and head: S^T = K Q^T (key rows down, the 32 query rows across: four
// vectors), an online softmax down its columns that leaves P^T in place, then O += P V reading
// P^T through swapped strides (the A operand is only ever broadcast, so its layout is free).
// The whole translation unit targets x86-64-v3: it is only called after a run-time CPU check.
#if defined(__x86_64__)
#define DK_VEC_AVX2 1  // cpu/vec_math.h: 8-lane vectors
#pragma GCC target("arch=x86-64-v3")
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "cpu/attention_gemm.h"
#include "cpu/vec_math.h"

namespace dk::cpu {
namespace {

constexpr int64_t R = kGemmRows;
constexpr int64_t RV = R / kVecWidth;  // vectors per row of S^T
constexpr int64_t C = kGemmChunkAvx2;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr float kLn2 = 0.69314718055994531f;
static_assert(R % kVecWidth == 0, "a row of S^T is whole vectors");
static_assert(C <= kGemmChunk, "the driver sizes the scratch for kGemmChunk keys");

#define DK_INLINE inline __attribute__((always_inline))

// a * b + c in one rounding (g++ does not contract a * b + c under -std=c++20), and a broadcast
// load (splat() adds +0.0, an extra instruction in the GEMMs' inner loop).
DK_INLINE vfloat vfma(vfloat a, vfloat b, vfloat c) {
#if defined(__x86_64__)
  return (vfloat)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
#else
  return a * b + c;
#endif
}
DK_INLINE vfloat bcast(const float* f) {
#if defined(__x86_64__)
  return (vfloat)_mm256_broadcast_ss(f);
#else
  return splat(*f);
#endif
}

template <typename T>
DK_INLINE T from_float(float f) {
  if constexpr (std::is_same_v<T, uint16_t>) {
    return float_to_bf16_bits(f);
  } else {
    return static_cast<T>(f);
  }
}

// C[i][j] (+)= sum_e A(i, e) B[e][j] for MR rows and NV vectors of columns, held in registers
// (MR * NV accumulators: 12 hide the FMA latency with 16 registers). A(i, e) = a[i * ra + e * ca].
template <int MR, int NV>
DK_INLINE void gemm_block(int64_t k, const float* a, int64_t ra, int64_t ca, const float* b, int64_t ldb, float* c,
                          int64_t ldc, bool add) {
  vfloat acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = add ? load16(c + r * ldc + v * kVecWidth) : splat(0.f);
  for (int64_t e = 0; e < k; ++e) {
    vfloat bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = load16(b + e * ldb + v * kVecWidth);
    for (int r = 0; r < MR; ++r) {
      const vfloat x = bcast(a + r * ra + e * ca);
      for (int v = 0; v < NV; ++v) acc[r][v] = vfma(x, bv[v], acc[r][v]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) store16(c + r * ldc + v * kVecWidth, acc[r][v]);
}

// All m rows of one NV-vector column block: blocks of MR rows, the rest with fewer.
template <int MR, int NV>
void gemm_rows(int64_t m, int64_t k, const float* a, int64_t ra, int64_t ca, const float* b, int64_t ldb, float* c,
               int64_t ldc, bool add) {
  int64_t i = 0;
  for (; i + MR <= m; i += MR) gemm_block<MR, NV>(k, a + i * ra, ra, ca, b, ldb, c + i * ldc, ldc, add);
  if constexpr (MR > 1) {
    if (i < m) gemm_rows<MR - 1, NV>(m - i, k, a + i * ra, ra, ca, b, ldb, c + i * ldc, ldc, add);
  }
}

// C [m, n] (+)= A [m, k] B [k, n], row-major B and C: column blocks of NV vectors, then
// narrower ones, then the last n % 8 columns one by one.
template <int MR, int NV>
void gemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t ra, int64_t ca, const float* b, int64_t ldb,
          float* c, int64_t ldc, bool add) {
  int64_t j = 0;
  for (; j + NV * kVecWidth <= n; j += NV * kVecWidth) gemm_rows<MR, NV>(m, k, a, ra, ca, b + j, ldb, c + j, ldc, add);
  if constexpr (NV > 1) {
    if (j < n) gemm<MR, NV - 1>(m, n - j, k, a, ra, ca, b + j, ldb, c + j, ldc, add);
  } else {
    for (; j < n; ++j) {
      for (int64_t i = 0; i < m; ++i) {
        float s = add ? c[i * ldc + j] : 0.f;
        for (int64_t e = 0; e < k; ++e) s = std::fma(a[i * ra + e * ca], b[e * ldb + j], s);
        c[i * ldc + j] = s;
      }
    }
  }
}

// Q^T of one head, times mul: column r is stacked query row row0 + r (zero past the task's rows).
template <typename In>
void pack_q(const AttentionParams& p, const GemmTask& t, int64_t hh, float mul, float* dst) {
  const int64_t d = p.head_dim, group = p.heads_q / p.heads_kv;
  const In* q = static_cast<const In*>(p.q);
  for (int64_t r = 0; r < R; ++r) {
    if (r >= t.rows) {
      for (int64_t e = 0; e < d; ++e) dst[e * R + r] = 0.f;
      continue;
    }
    const int64_t row = t.row0 + r, hg = row / p.q_len, l = row - hg * p.q_len;
    const In* src = q + t.b * p.q_sb + l * p.q_sl + ((t.hkv0 + hh) * group + hg) * p.q_sh;
    for (int64_t e = 0; e < d; ++e) dst[e * R + r] = load_scalar(src + e) * mul;
  }
}

DK_INLINE void widen_row(const float* src, float* dst, int64_t d) { std::memcpy(dst, src, sizeof(float) * d); }
template <typename In>
DK_INLINE void widen_row(const In* src, float* dst, int64_t d) {
  int64_t e = 0;
  for (; e + kVecWidth <= d; e += kVecWidth) store16(dst + e, load16(src + e));
  for (; e < d; ++e) dst[e] = load_scalar(src + e);
}

// The chunk's K and V rows of every head of the group ([head][C][d] each, float32), read key row
// by key row: a cache row holds the group's heads side by side, one contiguous run that the
// hardware prefetchers stream, where one head's rows alone are a page-crossing stride.
template <typename In>
void stage_chunk(const In* kc, int64_t ksl, int64_t ksh, const In* vc, int64_t vsl, int64_t vsh, const int64_t* keys,
                 int64_t n, int64_t nheads, int64_t d, float* kst, float* vst) {
  for (int64_t j = 0; j < n; ++j) {
    const In* k0 = kc + keys[j] * ksl;
    const In* v0 = vc + keys[j] * vsl;
    for (int64_t hh = 0; hh < nheads; ++hh) {
      widen_row(k0 + hh * ksh, kst + (hh * C + j) * d, d);
      widen_row(v0 + hh * vsh, vst + (hh * C + j) * d, d);
    }
  }
}

// Online softmax down the n rows of S^T (scores already in the log2 domain) for the tile's 32
// query rows: leaves P^T in s, updates m and l, and returns the factor for the old output in
// alpha. With bias (a chunk only some rows see), hidden scores become -inf by a select first,
// so a NaN score of a hidden key stays out.
DK_INLINE void softmax_columns(float* s, int64_t n, const float* bias, float* m, float* l, float* alpha) {
  const vfloat ninf = splat(kNegInf), zero = splat(0.f);
  vfloat hi[RV];
  for (int h = 0; h < RV; ++h) hi[h] = ninf;
  for (int64_t j = 0; j < n; ++j) {
    for (int h = 0; h < RV; ++h) {
      vfloat x = load16(s + j * R + h * kVecWidth);
      if (bias != nullptr) {
        x = load16(bias + j * R + h * kVecWidth) == zero ? x : ninf;
        store16(s + j * R + h * kVecWidth, x);
      }
      hi[h] = vmax(hi[h], x);
    }
  }
  vfloat u[RV], sum[RV];
  for (int h = 0; h < RV; ++h) {
    const vfloat m_old = load16(m + h * kVecWidth);
    const vfloat m_new = vmax(m_old, hi[h]);
    // A row whose scores are all -inf so far (infinite inputs) has no mass: subtracting 0
    // instead of -inf keeps 2^(-inf) = 0 there (vexp2 clamps it to 2^-126, times l = 0).
    u[h] = m_new == ninf ? zero : m_new;
    store16(alpha + h * kVecWidth, vexp2(m_old - u[h]));
    store16(m + h * kVecWidth, m_new);
    sum[h] = zero;
  }
  for (int64_t j = 0; j < n; ++j) {
    for (int h = 0; h < RV; ++h) {
      const vfloat x = load16(s + j * R + h * kVecWidth);
      // vexp2 clamps at 2^-126: a key hidden by a block rule (-inf) must give exactly 0.
      const vfloat e = x == ninf ? zero : vexp2(x - u[h]);
      store16(s + j * R + h * kVecWidth, e);
      sum[h] += e;
    }
  }
  for (int h = 0; h < RV; ++h)
    store16(l + h * kVecWidth, load16(l + h * kVecWidth) * load16(alpha + h * kVecWidth) + sum[h]);
}

template <typename In>
void run_task(const AttentionParams& p, const GemmTask& t, const GemmScratch& w, const GemmOptions& opts) {
  constexpr bool kF32 = std::is_same_v<In, float>;
  const int64_t d = p.head_dim, group = p.heads_q / p.heads_kv;
  float* qp = static_cast<float*>(w.q);
  float* ks = static_cast<float*>(w.k);
  float* vs = static_cast<float*>(w.v);
  const int64_t qstride = d * R;
  for (int64_t hh = 0; hh < t.nheads; ++hh) {
    pack_q<In>(p, t, hh, p.scale * kLog2e, qp + hh * qstride);
    std::fill(w.m + hh * R, w.m + (hh + 1) * R, kNegInf);
    std::fill(w.l + hh * R, w.l + (hh + 1) * R, 0.f);
    std::fill(w.o + hh * R * d, w.o + (hh + 1) * R * d, 0.f);
  }

  const In* kc = static_cast<const In*>(p.k_cache) + t.b * p.kc_sb + t.hkv0 * p.kc_sh;
  const In* vc = static_cast<const In*>(p.v_cache) + t.b * p.vc_sb + t.hkv0 * p.vc_sh;
  alignas(32) float alpha[R];
  for (int64_t c0 = 0; c0 < t.nkeys; c0 += C) {
    const int64_t n = std::min(C, t.nkeys - c0);
    const int64_t* keys = t.keys + c0;
    const ChunkMask cm = classify_gemm_chunk(p, t, keys, n, w.bias);
    if (cm == ChunkMask::None) continue;  // no row sees these keys: never read
    // float32 chunks of consecutive keys: the GEMMs read K and V in place (leading dimension
    // the cache row), no staging copy.
    const bool in_place = kF32 && !opts.stage_always && keys[n - 1] - keys[0] == n - 1;
    if (!in_place) stage_chunk(kc, p.kc_sl, p.kc_sh, vc, p.vc_sl, p.vc_sh, keys, n, t.nheads, d, ks, vs);
    for (int64_t hh = 0; hh < t.nheads; ++hh) {
      float* o = w.o + hh * R * d;
      const float* kh = ks + hh * C * d;
      const float* vh = vs + hh * C * d;
      int64_t ldk = d, ldv = d;
      if constexpr (kF32) {
        if (in_place) {
          kh = kc + keys[0] * p.kc_sl + hh * p.kc_sh;
          vh = vc + keys[0] * p.vc_sl + hh * p.vc_sh;
          ldk = p.kc_sl;
          ldv = p.vc_sl;
        }
      }
      gemm<3, 4>(n, R, d, kh, ldk, 1, qp + hh * qstride, R, w.s, R, false);
      softmax_columns(w.s, n, cm == ChunkMask::Partial ? w.bias : nullptr, w.m + hh * R, w.l + hh * R, alpha);
      for (int64_t r = 0; r < R; ++r) {
        if (alpha[r] == 1.f) continue;
        const vfloat av = splat(alpha[r]);
        float* orow = o + r * d;
        int64_t e = 0;
        for (; e + kVecWidth <= d; e += kVecWidth) store16(orow + e, load16(orow + e) * av);
        for (; e < d; ++e) orow[e] *= alpha[r];
      }
      gemm<4, 3>(R, d, n, w.s, 1, R, vh, ldv, o, d, true);  // A = P, read from P^T
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

void attend_gemm_task_v3(const AttentionParams& p, const GemmTask& t, const GemmScratch& w, const GemmOptions& o) {
  switch (p.kind) {
    case ScalarKind::Float32: return run_task<float>(p, t, w, o);
    case ScalarKind::BFloat16: return run_task<uint16_t>(p, t, w, o);
    case ScalarKind::Float16: return run_task<_Float16>(p, t, w, o);
    default: return;  // gemm_attention_usable refuses the rest
  }
}

}  // namespace dk::cpu
