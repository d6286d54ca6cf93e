// The general CPU row of masked_confidence (temperature, top-p/top-k, confidence kinds,
// suppressed ids), shared by the translation units built for each x86 level like
// masked_confidence_rows.h. Internal linkage only.
//
// One row: convert it once into a float buffer (suppressed ids -inf), apply the greedy non-finite
// policy, temper, find the filter threshold by a radix select over the float bits (never a sort),
// then one pass for the kept set's statistics and one for the Gumbel argmax. The buffers are
// per-thread scratch of a few times the vocabulary, so every pass after the first stays in L2.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "cpu/masked_confidence_rows.h"
#include "cpu/sample_math.h"
#include "kernels/sampling_row.cuh"

namespace dk::cpu {

struct SampleRowArgs {
  int64_t vocab;
  RowSettings settings;
  ConfidenceKind kind;
  bool from_logits;
  bool want_lse;
  const int64_t* suppress;
  int64_t num_suppress;
  PhiloxKey key;
  uint32_t row;         // Philox stream: b * seq + l
  float* raw;           // vocab floats of scratch each
  float* tempered;
  float* mass;
  int32_t* cand;
  RowPenalty penalty;   // the one lowered logit (index -1: none)
};

struct SampleRowResult {
  int64_t token;
  float conf;
  float lse;
};

#define DK_DECLARE_SAMPLE_FNS(level)                                                      \
  SampleRowResult sample_row_##level(const float* row, const SampleRowArgs& a);          \
  SampleRowResult sample_row_##level(const _Float16* row, const SampleRowArgs& a);       \
  SampleRowResult sample_row_##level(const uint16_t* row, const SampleRowArgs& a);
DK_DECLARE_SAMPLE_FNS(base)
DK_DECLARE_SAMPLE_FNS(v3)
DK_DECLARE_SAMPLE_FNS(v4)

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// In-order conversion to float32 (the greedy loop's bf16 lane permutation is not wanted here).
DK_AI void to_float_buffer(const float* row, int64_t n, float* out) { std::memcpy(out, row, n * sizeof(float)); }
DK_AI void to_float_buffer(const _Float16* row, int64_t n, float* out) {
  for (int64_t j = 0; j < n; ++j) out[j] = static_cast<float>(row[j]);
}
DK_AI void to_float_buffer(const uint16_t* row, int64_t n, float* out) {
  uint32_t* o = reinterpret_cast<uint32_t*>(out);
  for (int64_t j = 0; j < n; ++j) o[j] = static_cast<uint32_t>(row[j]) << 16;
}

// Largest non-NaN value of the row (as float) and whether a NaN is present. With `out`, the row
// converted to float is written there in the same pass (rows without suppressed ids: read once,
// written once, instead of a conversion pass and then a scan of the buffer).
template <typename T>
DK_AI float scan_max(const T* row, int64_t n, bool& has_nan, float* out = nullptr) {
  vfloat m = splat(-kInf);
  vint nan = vint{} + 0;
  int64_t j = 0;
  for (; j + kVecWidth <= n; j += kVecWidth) {
    const vfloat v = load16(row + j);
    if (out) store16(out + j, v);
    m = vmax(v, m);  // NaN lanes keep m
    nan |= (v != v);
  }
  float best = hmax(m);
  bool any = any_lane(nan);
  for (; j < n; ++j) {
    const float v = load_scalar(row + j);
    if (out) out[j] = v;
    any |= std::isnan(v);
    if (v > best) best = v;
  }
  has_nan = any;
  return best;
}

// Statistics of exp(z - m) over the kept set {z >= tau}: sum, sum of e * (z - m) (for the
// entropy) and the two largest kept values with multiplicity (for the margin). `mass`, when
// given, receives every e (0 outside the kept set).
struct DistStats {
  double sum = 0, zsum = 0;
  float top1 = -kInf, top2 = -kInf;
  double mass_scale = 1;  // `mass` holds e times this (the FMA bias below)
};

// The sums run over groups of kSumLanes elements, each lane of a group into its own float32
// accumulator, whatever the vector width (kSumSub vectors per group): the 8-lane AVX2 build adds
// in the 16-lane order, so the row's results do not depend on the vector width.
constexpr int kSumLanes = 16;
constexpr int kSumSub = kSumLanes / kVecWidth;
static_assert(kSumLanes % kVecWidth == 0 && kChunk % kSumLanes == 0);

// The lanes of v[0], v[1], ... summed in order in double.
DK_AI double hsum_lanes(const vfloat (&v)[kSumSub]) {
  double s = 0.0;
  for (int u = 0; u < kSumSub; ++u)
    for (int i = 0; i < kVecWidth; ++i) s += v[u][i];
  return s;
}

template <typename Exp2, bool kTop2, bool kZsum>
DK_AI DistStats dist_stats(const float* z, int64_t n, float m, float tau, float* mass) {
  const vfloat mx = splat(m * kLog2e), vm = splat(m), vtau = splat(tau), zero = splat(0.f);
  // Where v log2e - mx compiles to one FMA (v3, v4), every term carries the factor 2^bias, bias =
  // m log2e - mx, the rounding of mx: up to 2^-24 |m log2e|, 1e-5 relative at a tempered max of
  // 200 (T = 0.2), 190x PyTorch's float32 error. Divided out of the sums, as the greedy loop does.
  const float bias = exp2_arg(vm, mx)[0];
  const double unbias = std::exp2(-static_cast<double>(bias));
  vfloat t1[kSumSub], t2[kSumSub];
  for (int u = 0; u < kSumSub; ++u) t1[u] = t2[u] = splat(-kInf);
  DistStats st;
  st.mass_scale = 1.0 / unbias;
  int64_t j = 0;
  // float32 lanes over one L1 chunk, then double across chunks (float32 all the way costs ~1e-5
  // relative at V = 126464, 30x PyTorch's error).
  while (j + kSumLanes <= n) {
    vfloat s0[kSumSub], s1[kSumSub], h[kSumSub];
    for (int u = 0; u < kSumSub; ++u) s0[u] = s1[u] = h[u] = zero;
    const int64_t stop = std::min(n, j + kChunk);
    for (; j + kSumLanes <= stop; j += kSumLanes) {
      for (int u = 0; u < kSumSub; ++u) {
        const int64_t i = j + u * kVecWidth;
        vfloat v;
        std::memcpy(&v, z + i, sizeof v);
        const vint keep = v >= vtau;
        const vfloat e = keep ? Exp2::nonpositive(exp2_arg(v, mx)) : zero;
        if (mass) std::memcpy(mass + i, &e, sizeof e);
        if ((j / kSumLanes) & 1) s1[u] += e; else s0[u] += e;
        if constexpr (kZsum) h[u] += e * ((keep & (v > splat(-kInf))) ? v - vm : zero);
        if constexpr (kTop2) {
          const vfloat kv = keep ? v : splat(-kInf);
          t2[u] = kv > t1[u] ? t1[u] : (kv > t2[u] ? kv : t2[u]);
          t1[u] = kv > t1[u] ? kv : t1[u];
        }
      }
    }
    st.sum += (hsum_lanes(s0) + hsum_lanes(s1)) * unbias;
    st.zsum += hsum_lanes(h) * unbias;
  }
  float c[2 * kSumLanes];
  int nc = 0;
  if constexpr (kTop2) {
    for (int u = 0; u < kSumSub; ++u)
      for (int i = 0; i < kVecWidth; ++i) c[nc++] = t1[u][i], c[nc++] = t2[u][i];
  }
  for (; j < n; ++j) {
    const float v = z[j];
    const float e = v >= tau ? std::exp(v - m) : 0.f;
    if (mass) mass[j] = e;
    st.sum += e;
    if (kZsum && v >= tau && v > -kInf) st.zsum += static_cast<double>(e) * (v - m);
    if (kTop2 && v >= tau) {
      if (v > st.top1) st.top2 = st.top1, st.top1 = v;
      else if (v > st.top2) st.top2 = v;
    }
  }
  for (int i = 0; i < nc; ++i) {
    const float v = c[i];
    if (v > st.top1) st.top2 = st.top1, st.top1 = v;
    else if (v > st.top2) st.top2 = v;
  }
  return st;
}

// Radix keys: larger float, larger key (no NaN here; -0 is folded into +0).
DK_AI uint32_t order_key(float f) {
  f += 0.f;
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
DK_AI float from_order_key(uint32_t k) {
  const uint32_t u = (k & 0x80000000u) ? (k & 0x7fffffffu) : ~k;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// The filter threshold by a three-level radix select over the keys (11 + 11 + 10 bits), no sort.
//   kByMass = false: the k-th largest value (with multiplicity), k in [1, n].
//   kByMass = true:  the first value, descending, at which the cumulative mass exceeds `target`
//                    (top-p); -inf when the total never does.
template <bool kByMass>
float radix_threshold(const float* z, const float* mass, int64_t n, int64_t k, double target, int32_t* cand) {
  constexpr int kShift[3] = {21, 10, 0};
  constexpr uint32_t kBins[3] = {2048, 2048, 1024};
  int64_t count[2048];
  double weight[2048];
  uint32_t prefix = 0;  // the key bits decided so far
  int64_t ncand = n;
  for (int level = 0; level < 3; ++level) {
    const int shift = kShift[level];
    const uint32_t bins = kBins[level];
    std::fill(count, count + bins, 0);
    if (kByMass) std::fill(weight, weight + bins, 0.0);
    for (int64_t c = 0; c < ncand; ++c) {
      const int64_t j = level == 0 ? c : cand[c];
      const uint32_t bin = (order_key(z[j]) >> shift) & (bins - 1);
      ++count[bin];
      if (kByMass) weight[bin] += mass[j];
    }
    int64_t chosen = -1;
    double acc = 0;
    int64_t last_nonempty = -1;
    for (int64_t b = bins - 1; b >= 0; --b) {
      if (count[b] == 0) continue;
      last_nonempty = b;
      const double w = kByMass ? weight[b] : static_cast<double>(count[b]);
      if (kByMass ? acc + w > target : acc + w >= static_cast<double>(k)) {
        chosen = b;
        break;
      }
      acc += w;
    }
    if (chosen < 0) {
      if (level == 0 && kByMass) return -kInf;  // the whole row does not exceed p: keep all
      chosen = last_nonempty;  // rounding between levels: take the lowest candidate bin
    }
    if (kByMass) target -= acc; else k -= static_cast<int64_t>(acc);
    prefix |= static_cast<uint32_t>(chosen) << shift;
    if (level == 2) break;
    // Keep the candidates whose decided bits match.
    const uint32_t hi_mask = ~((uint32_t{1} << shift) - 1);
    int64_t kept = 0;
    for (int64_t c = 0; c < ncand; ++c) {
      const int64_t j = level == 0 ? c : cand[c];
      if ((order_key(z[j]) & hi_mask) == prefix) cand[kept++] = static_cast<int32_t>(j);
    }
    ncand = kept;
  }
  return from_order_key(prefix);
}

// The largest 23-bit uniform code (u = (code + 1/2) 2^-23) whose Gumbel noise -log(-log u) is at
// most `c` - 0.01 in exact arithmetic: a code at or below it cannot lift z <= zmax to zmax + c.
// The 0.01 margin covers the float rounding of this bound and of the logs (~1e-6). -1: none.
DK_AI int64_t gumbel_code_bound(float c) {
  const double u = std::exp(-std::exp(-(static_cast<double>(c) - 0.01)));
  return static_cast<int64_t>(std::floor(u * 8388608.0 - 0.5));
}

// argmax over {z >= tau} of z + Gumbel(row, j), lowest index on ties. Blocks of 4 kVecWidth ids whose
// largest z cannot beat the best score even with the largest possible noise skip the Philox work;
// otherwise the block skips the two logarithms when no id's uniform code is high enough for its
// noise to lift the block's largest z up to the best score (the usual case once a good score is
// found: at T = 0.7 on randn * 3 logits, V = 126464, 2.8 % of the blocks need them). Skipped
// ids score strictly below the best, so the result is unchanged. The scores are of z = raw * inv
// (inv = 1 when raw already holds z): tempering here saves a pass that writes a tempered copy.
DK_AI int64_t gumbel_argmax(const float* raw, float inv, int64_t n, float tau, PhiloxKey key, uint32_t row) {
  vfloat bv = splat(-kInf);
  vint bi = vint{} + 0;
  vint lane;
  for (int i = 0; i < kVecWidth; ++i) lane[i] = i;
  float best = -kInf;
  const vfloat vtau = splat(tau);
  constexpr int64_t kUnset = -2;
  int64_t bounds[253];
  std::fill(bounds, bounds + 253, kUnset);
  for (int64_t c0 = 0; c0 < n; c0 += 4 * kVecWidth) {
    vfloat zv[4];
    if (c0 + 4 * kVecWidth <= n) {
      std::memcpy(zv, raw + c0, sizeof zv);
    } else {
      for (int q = 0; q < 4; ++q)
        for (int i = 0; i < kVecWidth; ++i) {
          const int64_t j = c0 + q * kVecWidth + i;
          zv[q][i] = j < n ? raw[j] : -kInf;
        }
    }
    // z is rounded before the noise is added, never fused into an FMA with + g: g++ fuses only a
    // product whose every use is an addition (here also a compare and a max), and the AVX-512
    // build pins it in a register to be sure.
    for (int q = 0; q < 4; ++q) {
      zv[q] *= inv;
#if defined(DK_VEC_AVX512)
      asm("" : "+v"(zv[q]));
#endif
    }
    const float zmax = hmax(vmax(vmax(zv[0], zv[1]), vmax(zv[2], zv[3])));
    if (zmax + kGumbelMax < best) continue;
    vuint w[4];
    philox_block_words(key, row, static_cast<uint64_t>(c0), w);
    // c rounded down to a quarter (a smaller c is a safe bound), so the bound is computed a few
    // dozen times per row rather than per block. |best| < 4096 keeps every float rounding of the
    // scores (ulp 2^-11 there) far below the 0.01 margin.
    const float c = best - zmax;
    if (c >= 0.25f && std::fabs(best) < 4096.f) {
      const int q = c < 63.f ? static_cast<int>(c * 4.f) : 252;
      if (bounds[q] == kUnset) bounds[q] = gumbel_code_bound(0.25f * static_cast<float>(q));
      const int64_t bound = bounds[q];
      if (bound >= 0) {
        const vuint vb = vuint{} + static_cast<uint32_t>(std::min<int64_t>(bound, 0x7fffff));
        const vint hot = (vint)(((w[0] >> 9) > vb) | ((w[1] >> 9) > vb) | ((w[2] >> 9) > vb) | ((w[3] >> 9) > vb));
        if (!any_lane(hot)) continue;
      }
    }
    vfloat g[4];
    gumbel_block(w, g);
    vfloat blockmax = splat(-kInf);
    for (int q = 0; q < 4; ++q) {
      const vfloat s = zv[q] >= vtau ? zv[q] + g[q] : splat(-kInf);
      const vint up = s > bv;
      bv = up ? s : bv;
      bi = up ? lane + static_cast<int32_t>(c0 + q * kVecWidth) : bi;
      blockmax = vmax(s, blockmax);
    }
    best = std::max(best, hmax(blockmax));
  }
  float v = -kInf;
  int64_t idx = INT64_MAX;
  for (int i = 0; i < kVecWidth; ++i) {
    if (bv[i] > v || (bv[i] == v && bi[i] < idx)) v = bv[i], idx = bi[i];
  }
  return idx;
}

template <typename Exp2, typename T>
DK_AI SampleRowResult sample_row(const T* row, const SampleRowArgs& a) {
  const int64_t n = a.vocab;
  float* raw = a.raw;
  bool has_nan = false;
  float lmax;
  if (a.num_suppress == 0 && a.penalty.index < 0) {
    lmax = scan_max(row, n, has_nan, raw);
  } else {
    to_float_buffer(row, n, raw);
    if (a.penalty.index >= 0) raw[a.penalty.index] -= a.penalty.amount;
    for (int64_t i = 0; i < a.num_suppress; ++i) raw[a.suppress[i]] = -kInf;
    lmax = scan_max(raw, n, has_nan);
  }
  // The greedy policy for rows that are not all finite (kernels/softmax_stats.cuh).
  if (has_nan) {
    int64_t j = 0;
    while (!std::isnan(raw[j])) ++j;
    return {j, kNaN, kNaN};
  }
  if (lmax == -kInf) return {0, kNaN, -kInf};
  const int64_t argmax = first_index_of(raw, n, lmax);
  if (lmax == kInf) return {argmax, kNaN, kInf};

  const RowSettings& s = a.settings;
  const bool random = a.kind == ConfidenceKind::Random;
  const bool margin = a.kind == ConfidenceKind::Margin;
  const bool entropy = a.kind == ConfidenceKind::NegEntropy;
  SampleRowResult out{argmax, 0.f, kNaN};

  DistStats rs;
  if (a.want_lse || (a.from_logits && !random)) {
    rs = margin ? dist_stats<Exp2, true, false>(raw, n, lmax, -kInf, nullptr)
         : entropy ? dist_stats<Exp2, false, true>(raw, n, lmax, -kInf, nullptr)
                   : dist_stats<Exp2, false, false>(raw, n, lmax, -kInf, nullptr);
    out.lse = static_cast<float>(lmax + std::log(rs.sum));
  }
  const bool need_dist = s.sampled() || (!a.from_logits && !random);
  if (need_dist) {
    const float* z = raw;
    float m = lmax;
    // The filters and a confidence of the sampling distribution read z many times: a tempered
    // copy then. LLaDA's case (confidence from the logits, no filter) only draws: tempered on the fly.
    const bool z_copy = s.filtered(n) || (!a.from_logits && !random);
    if (s.sampled() && z_copy) {
      const float inv = s.inv_temperature;
      for (int64_t j = 0; j < n; ++j) a.tempered[j] = raw[j] * inv;
      z = a.tempered;
      m = lmax * inv;  // rounding is monotone: the max of the products
    }
    float tau = -kInf;
    if (s.filtered(n)) {
      if (s.top_p < 1.f) {
        const DistStats all = dist_stats<Exp2, false, false>(z, n, m, -kInf, a.mass);
        tau = radix_threshold<true>(z, a.mass, n, 0, static_cast<double>(s.top_p) * all.sum * all.mass_scale, a.cand);
      }
      if (s.top_k > 0 && s.top_k < n) tau = std::max(tau, radix_threshold<false>(z, nullptr, n, s.top_k, 0, a.cand));
    }
    if (s.sampled()) out.token = z_copy ? gumbel_argmax(z, 1.f, n, tau, a.key, a.row)
                                        : gumbel_argmax(raw, s.inv_temperature, n, tau, a.key, a.row);
    if (!a.from_logits && !random) {
      const DistStats st = margin ? dist_stats<Exp2, true, false>(z, n, m, tau, nullptr)
                           : entropy ? dist_stats<Exp2, false, true>(z, n, m, tau, nullptr)
                                     : dist_stats<Exp2, false, false>(z, n, m, tau, nullptr);
      if (margin) out.conf = static_cast<float>((1.0 - std::exp(static_cast<double>(st.top2) - m)) / st.sum);
      else if (entropy) out.conf = static_cast<float>(st.zsum / st.sum - std::log(st.sum));
      else out.conf = static_cast<float>(std::exp(static_cast<double>(z[out.token]) - m) / st.sum);
    }
  }
  if (random) {
    out.conf = philox_uniform(a.key, a.row, kRandomConfidenceColumn);
  } else if (a.from_logits) {
    if (margin) out.conf = static_cast<float>((1.0 - std::exp(static_cast<double>(rs.top2) - lmax)) / rs.sum);
    else if (entropy) out.conf = static_cast<float>(rs.zsum / rs.sum - std::log(rs.sum));
    else out.conf = static_cast<float>(std::exp(static_cast<double>(raw[out.token]) - lmax) / rs.sum);
  }
  return out;
}

}  // namespace
}  // namespace dk::cpu
