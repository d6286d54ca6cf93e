// Block-level pieces of the general masked_confidence kernels: a row's values, distribution
// statistics over a kept set, the Gumbel argmax and the radix threshold search. Every reduction is
// either a fixed shuffle tree or integer atomics, so results are bitwise identical in any thread
// order; the arithmetic follows csrc/cpu/masked_confidence_sample.h step for step.
#pragma once
#include "simt/simt.h"  // first: under g++ it defines the CUDA keywords
#include <cmath>
#include <cstdint>
#include "kernels/dtype.cuh"
#include "kernels/philox.cuh"
#include "kernels/sampling_row.cuh"

namespace dk {

// z_j = logit_j * inv (inv = 1 for an untempered row: the product is then exact), the penalised
// id lowered first (row_penalty), suppressed ids -inf. The suppression list is scanned per
// element: meant for a handful of ids (EOS, EOT); the list is uniform across the warp, so its
// loads are broadcasts. Ids outside [0, vocab) never match.
template <typename T>
struct RowValues {
  const T* logits;
  const int64_t* suppress;
  int64_t num_suppress;
  float inv;
  RowPenalty penalty;
  __device__ __forceinline__ float operator()(int64_t j) const {
    float v = to_float(logits[j]);
    if (j == penalty.index) v -= penalty.amount;
    for (int64_t i = 0; i < num_suppress; ++i)
      if (suppress[i] == j) v = -INFINITY;
    return v * inv;
  }
};

// ---------------------------------------------------------------------------------- distribution --
// Statistics of e_j = exp(z_j - m) over the kept set {z >= tau}: sum, sum of e (z - m) (entropy)
// and the two largest kept values with multiplicity (margin). Per-thread float sums, merged in
// double by a fixed tree.
struct DistStats {
  double sum, zsum;
  float top1, top2;
};

__device__ __forceinline__ DistStats dist_merge(const DistStats& a, const DistStats& b) {
  DistStats r;
  r.sum = a.sum + b.sum;
  r.zsum = a.zsum + b.zsum;
  r.top1 = fmaxf(a.top1, b.top1);
  r.top2 = fmaxf(fminf(a.top1, b.top1), fmaxf(a.top2, b.top2));
  return r;
}

// Symmetric merges through a butterfly leave every lane with bitwise the same value; the block
// result is valid in every thread (broadcast through `scratch`, one entry per warp + 1).
template <int kThreads, typename S, typename Shfl, typename Merge>
__device__ __forceinline__ S block_allreduce(S v, S* scratch, Shfl shfl, Merge merge) {
  constexpr int kWarps = kThreads / 32;
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v = merge(v, shfl(v, off));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = scratch[lane < kWarps ? lane : 0];
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
      const S o = shfl(v, off);
      // Lanes past the warp count hold copies of entry 0: merge only real partners' values.
      if (off < kWarps) v = merge(v, o);
    }
    if (lane == 0) scratch[kWarps] = v;
  }
  __syncthreads();
  v = scratch[kWarps];
  __syncthreads();  // scratch is rewritten by the next reduction
  return v;
}

struct DistShfl {
  __device__ __forceinline__ DistStats operator()(const DistStats& s, int off) const {
    return DistStats{__shfl_xor_sync(0xffffffffu, s.sum, off), __shfl_xor_sync(0xffffffffu, s.zsum, off),
                     __shfl_xor_sync(0xffffffffu, s.top1, off), __shfl_xor_sync(0xffffffffu, s.top2, off)};
  }
};
struct DistMerge {
  __device__ __forceinline__ DistStats operator()(const DistStats& a, const DistStats& b) const {
    return dist_merge(a, b);
  }
};

// Over ids [begin, end): the whole row, or a slice of it (masked_confidence_split.cuh).
template <int kThreads, bool kTop2, bool kZsum, typename Values>
__device__ __forceinline__ DistStats block_dist_stats(const Values& z, int64_t begin, int64_t end, float m, float tau,
                                                      DistStats* scratch) {
  float s = 0.f, h = 0.f, t1 = -INFINITY, t2 = -INFINITY;
  for (int64_t j = begin + threadIdx.x; j < end; j += kThreads) {
    const float v = z(j);
    if (!(v >= tau)) continue;
    const float e = expf(v - m);
    s += e;
    if (kZsum && v > -INFINITY) h += e * (v - m);
    if (kTop2) {
      if (v > t1) t2 = t1, t1 = v;
      else if (v > t2) t2 = v;
    }
  }
  return block_allreduce<kThreads>(DistStats{s, h, t1, t2}, scratch, DistShfl{}, DistMerge{});
}

// The statistics `kind` needs: top-2 for margin, the entropy sum for neg_entropy.
template <int kThreads, typename Values>
__device__ __forceinline__ DistStats block_dist_for(ConfidenceKind kind, const Values& z, int64_t begin, int64_t end,
                                                    float m, float tau, DistStats* scratch) {
  if (kind == ConfidenceKind::Margin) return block_dist_stats<kThreads, true, false>(z, begin, end, m, tau, scratch);
  if (kind == ConfidenceKind::NegEntropy) return block_dist_stats<kThreads, false, true>(z, begin, end, m, tau, scratch);
  return block_dist_stats<kThreads, false, false>(z, begin, end, m, tau, scratch);
}

// The confidence of `kind` (prob, margin, neg_entropy) from the kept set's statistics; `z_token`
// is the chosen token's value. Same formulas as the CPU row.
__device__ __forceinline__ float confidence_from_stats(ConfidenceKind kind, const DistStats& st, float m,
                                                       float z_token) {
  if (kind == ConfidenceKind::Margin) return static_cast<float>((1.0 - exp(static_cast<double>(st.top2) - m)) / st.sum);
  if (kind == ConfidenceKind::NegEntropy) return static_cast<float>(st.zsum / st.sum - log(st.sum));
  return static_cast<float>(exp(static_cast<double>(z_token) - m) / st.sum);
}

// -------------------------------------------------------------------------------- Gumbel argmax --
struct Best {
  float score;
  int64_t index;
};

__device__ __forceinline__ Best best_merge(const Best& a, const Best& b) {
  if (a.score > b.score) return a;
  if (b.score > a.score) return b;
  return a.index < b.index ? a : b;  // equal scores (or both -inf): lowest index
}

struct BestShfl {
  __device__ __forceinline__ Best operator()(const Best& s, int off) const {
    return Best{__shfl_xor_sync(0xffffffffu, s.score, off),
                static_cast<int64_t>(__shfl_xor_sync(0xffffffffu, static_cast<long long>(s.index), off))};
  }
};
struct BestMerge {
  __device__ __forceinline__ Best operator()(const Best& a, const Best& b) const { return best_merge(a, b); }
};

__device__ __forceinline__ float gumbel_from_bits(uint32_t bits) { return -logf(-logf(uniform_from_bits(bits))); }

// The perturbed score z_a + G(row, a) of id `a`, by the very operations thread_gumbel_best uses
// (same value, same Philox word, same additions), or -inf when `a` is outside [begin, end) or not
// kept (z_a < tau, NaN). Any kept id's score is a lower bound of the best one over [begin, end):
// the floor DK_MC_SAMPLE=v2 seeds the skip test with.
template <typename Values>
__device__ __forceinline__ float gumbel_score_of(const Values& z, int64_t a, int64_t begin, int64_t end, float tau,
                                                 PhiloxKey key, uint32_t row) {
  if (a < begin || a >= end) return -INFINITY;
  const float v = z(a);
  if (!(v >= tau)) return -INFINITY;
  return v + gumbel_from_bits(philox_bits(key, row, static_cast<uint64_t>(a)));  // word a & 3 of block a / 4
}

// This thread's best z_j + G(row, j) over its slice [begin, end) (begin a multiple of 4) among
// {z >= tau}: each thread takes groups of 4 consecutive ids, one Philox block per group. A group
// whose largest z cannot reach max(floor, the thread's best) even with the largest possible noise
// skips the Philox work. `floor` must be -inf or some kept id's score (gumbel_score_of): then the
// winner w (score S >= floor, S >= every score) is never skipped, so the block's result is the
// same for any such floor.
template <int kThreads, typename Values>
__device__ __forceinline__ Best thread_gumbel_best(const Values& z, int64_t begin, int64_t end, float tau,
                                                   PhiloxKey key, uint32_t row, float floor = -INFINITY) {
  Best best{-INFINITY, INT64_MAX};
  for (int64_t c0 = begin + 4 * static_cast<int64_t>(threadIdx.x); c0 < end; c0 += 4 * kThreads) {
    float v[4];
    float vmax = -INFINITY;
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      v[q] = c0 + q < end ? z(c0 + q) : -INFINITY;
      if (!(v[q] >= tau)) v[q] = -INFINITY;
      vmax = fmaxf(vmax, v[q]);
    }
    // Safe skip: G <= 16.64 < kGumbelMax and float addition rounds monotonically, so every score
    // here is fl(v_q + G_q) <= fl(vmax + kGumbelMax) < the bound <= S: no id here can be w.
    if (vmax == -INFINITY || vmax + kGumbelMax < fmaxf(floor, best.score)) continue;
    const Uint4x32 w = philox_block(key, row, static_cast<uint64_t>(c0));
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const float s = v[q] + gumbel_from_bits(w.v[q]);
      if (s > best.score) best = Best{s, c0 + q};
    }
  }
  return best;
}

// ---------------------------------------------------------------------------- radix threshold --
// Keys that order like the floats (no NaN here; -0 folded into +0).
__device__ __forceinline__ uint32_t order_key(float f) {
  const uint32_t u = __float_as_uint(f + 0.f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ float from_order_key(uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

// exp(z - m) in fixed point (2^-40 units): integer sums are exact, so the histogram's atomics
// give the same totals in any order. V * 2^40 < 2^64 for V < 2^24; an element below 2^-40 of the
// maximum weighs nothing (the CPU's double sums differ by at most V * 2^-40 of the total).
constexpr float kMassScale = 1099511627776.f;  // 2^40
__device__ __forceinline__ unsigned long long fixed_mass(float v, float m) {
  return static_cast<unsigned long long>(expf(v - m) * kMassScale);
}

constexpr int kRadixBins = 2048;

// Level `level` (0, 1, 2) of the three-level radix select (11 + 11 + 10 bits of the key): which
// bits it bins, how many bins, and which bits the levels before it decided.
struct RadixLevel {
  int shift;
  uint32_t bins, decided;
};
__device__ __forceinline__ RadixLevel radix_level(int level) {
  return RadixLevel{level == 0 ? 21 : (level == 1 ? 10 : 0), level == 2 ? 1024u : 2048u,
                    level == 0 ? 0u : ~((uint32_t{1} << (level == 1 ? 21 : 10)) - 1)};
}

// Adds the ids [begin, end) whose key matches `prefix` on the decided bits into `hist` (shared or
// global): a count each, or kByMass their fixed-point mass. Integer atomics: any order, same sums.
template <int kThreads, bool kByMass, typename Values>
__device__ __forceinline__ void radix_histogram(const Values& z, int64_t begin, int64_t end, float m,
                                                const RadixLevel& lv, uint32_t prefix, unsigned long long* hist) {
  for (int64_t j = begin + threadIdx.x; j < end; j += kThreads) {
    const float v = z(j);
    const uint32_t key = order_key(v);
    if ((key & lv.decided) != prefix) continue;
    const unsigned long long w = kByMass ? fixed_mass(v, m) : 1ull;
    if (w != 0) atomicAdd(&hist[(key >> lv.shift) & (lv.bins - 1)], w);
  }
}

// From the level's complete histogram: the bin where the running total (descending values) passes
// `want` (kByMass: at level 0 `want` is first set to top_p times the total), and what remains of
// `want` inside it. Returns ~0 when no bin does (only the first mass level can miss: keep
// everything). `scan` has 2 * kThreads entries, `pick` 2; every thread calls this and gets the
// same result.
template <int kThreads, bool kByMass>
__device__ unsigned long long radix_pick(const unsigned long long* hist, const RadixLevel& lv, int level, float top_p,
                                         unsigned long long& want, unsigned long long* scan,
                                         unsigned long long* pick) {
  static_assert(kRadixBins % kThreads == 0, "whole bins per thread");
  const int t = threadIdx.x;
  if (t == 0) pick[0] = ~0ull;
  // Thread t owns `per` consecutive bins, counted from the top (descending values).
  const int per = static_cast<int>(lv.bins) / kThreads;
  const int top = static_cast<int>(lv.bins) - 1 - per * t;
  unsigned long long seg = 0;
  for (int i = 0; i < per; ++i) seg += hist[top - i];
  // Inclusive scan of the segments (Hillis-Steele, double-buffered; integers: exact).
  int src = 0;
  scan[t] = seg;
  __syncthreads();
  for (int off = 1; off < kThreads; off <<= 1) {
    const unsigned long long v = scan[src * kThreads + t] + (t >= off ? scan[src * kThreads + t - off] : 0ull);
    scan[(1 - src) * kThreads + t] = v;
    src = 1 - src;
    __syncthreads();
  }
  const unsigned long long incl = scan[src * kThreads + t], excl = incl - seg;
  if (level == 0 && kByMass) {
    const unsigned long long total = scan[src * kThreads + kThreads - 1];
    want = static_cast<unsigned long long>(static_cast<double>(top_p) * static_cast<double>(total));
  }
  const bool mine = kByMass ? (excl <= want && want < incl) : (excl < want && want <= incl);
  if (mine) {  // exactly one thread: the cumulative sums are monotone
    unsigned long long acc = excl;
    for (int i = 0; i < per; ++i) {
      const unsigned long long h = hist[top - i];
      if (kByMass ? acc + h > want : acc + h >= want) {
        pick[0] = static_cast<unsigned long long>(top - i);
        pick[1] = want - acc;
        break;
      }
      acc += h;
    }
  }
  __syncthreads();
  const unsigned long long chosen = pick[0];
  if (chosen != ~0ull) want = pick[1];
  __syncthreads();  // pick and scan are rewritten by the next call
  return chosen;
}

// The filter threshold by a three-level radix select over the keys, one histogram pass over the
// row per level (the row stays in L2), never a sort:
//   kByMass = false: the k-th largest value (with multiplicity), k in [1, n];
//   kByMass = true:  the first value, descending, at which the cumulative mass exceeds top_p times
//                    the total; -inf when it never does (keep everything).
// `hist` has kRadixBins entries, `scan` 2 * kThreads, `pick` 2; every thread calls this.
// (masked_confidence_split.cuh runs the same levels with the histogram summed over slices.)
template <int kThreads, bool kByMass, typename Values>
__device__ float radix_threshold(const Values& z, int64_t n, float m, float top_p, int64_t k,
                                 unsigned long long* hist, unsigned long long* scan, unsigned long long* pick) {
  uint32_t prefix = 0;
  unsigned long long want = kByMass ? 0 : static_cast<unsigned long long>(k);  // remaining target
  for (int level = 0; level < 3; ++level) {
    const RadixLevel lv = radix_level(level);
    for (int i = threadIdx.x; i < kRadixBins; i += kThreads) hist[i] = 0;
    __syncthreads();
    radix_histogram<kThreads, kByMass>(z, 0, n, m, lv, prefix, hist);
    __syncthreads();
    const unsigned long long chosen = radix_pick<kThreads, kByMass>(hist, lv, level, top_p, want, scan, pick);
    if (chosen == ~0ull) return -INFINITY;
    prefix |= static_cast<uint32_t>(chosen) << lv.shift;
  }
  return from_order_key(prefix);
}

}  // namespace dk
