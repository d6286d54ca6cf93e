// CPU select_transfer. Each row is independent: the threshold rules are two passes (best key,
// then compare); top-k keeps the candidates' sort keys in a per-thread buffer and partitions them
// with nth_element (O(L)); the factor rule orders a growing prefix until the rule fails. The keys and the
// arithmetic come from kernels/select_transfer_keys.h, shared with the CUDA kernel.
#include "cpu/select_transfer.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <limits>
#include <vector>

#include "kernels/select_transfer_keys.h"

namespace dk::cpu {
namespace {

struct Row {
  const SelectTransferParams& p;
  int64_t b;
  // Hot loops read through a local copy of this view: stores to the int64 keys/indices may alias
  // the int64 fields of p, which would reload them at every element.
  struct Conf {
    const float* row;
    int64_t stride, seq;
    float operator()(int64_t i) const { return row[i * stride]; }
  };
  Conf conf() const { return {p.confidence + b * p.conf_stride_b, p.conf_stride_l, p.seq}; }
  void write_x(int64_t i) const { p.x[b * p.x_stride_b + i * p.x_stride_l] = p.x0[b * p.x0_stride_b + i * p.x0_stride_l]; }
};

// The per-element decisions below are selects, not branches: about half of a row's positions
// are candidates in an unpredictable pattern, and mispredicted branches cost more than the rest
// of the work (a 64 x 256 call went from ~220 us to a few us). Transferred positions are first
// collected as indices, so x is written only where a position is transferred.

// The best candidate's value (-inf when the row has none) and the first position holding it
// (-0.0 == +0.0, so the two zeros tie and the lowest index wins, as with the sort keys).
struct Best {
  float value;
  int64_t index;
};

// Finite without a float compare: g++ turns a float ?: into a branch, an integer one into cmov.
bool finite_bits(float c) { return (float_bits(c) & 0x7f800000u) != 0x7f800000u; }

Best best_candidate(const Row& row) {
  const auto& p = row.p;
  const Row::Conf conf = row.conf();
  // c + (c - c) is c when c is finite and NaN otherwise, and std::max(best, NaN) keeps best
  // (maxss): the maximum over candidates with no select at all. Four chains hide maxss latency.
  const float minus_inf = -std::numeric_limits<float>::infinity();
  float best[4] = {minus_inf, minus_inf, minus_inf, minus_inf};
  int64_t i = 0;
  for (; i + 4 <= conf.seq; i += 4) {
    for (int j = 0; j < 4; ++j) {
      const float c = conf(i + j);
      best[j] = std::max(best[j], c + (c - c));
    }
  }
  for (; i < conf.seq; ++i) {
    const float c = conf(i);
    best[0] = std::max(best[0], c + (c - c));
  }
  const float value = std::max(std::max(best[0], best[1]), std::max(best[2], best[3]));
  int64_t index = -1;
  if (value == minus_inf) return {value, index};  // no candidate: a candidate is never -inf
  for (int64_t k = 0; k < conf.seq; ++k) {
    if (conf(k) == value) {
      index = k;
      break;
    }
  }
  return {value, index};
}

// Writes the row's mask and collects the taken positions; `Strict` keeps the common inclusive
// loop free of the strict form's extra compare.
template <bool Strict>
int64_t threshold_scan(const Row& row, float bound, int64_t forced, std::vector<int64_t>& chosen) {
  const Row::Conf conf = row.conf();
  chosen.resize(static_cast<size_t>(conf.seq));
  int64_t n = 0;
  bool* mask = row.p.mask + row.b * conf.seq;
  for (int64_t i = 0; i < conf.seq; ++i) {
    const float c = conf(i);
    const bool pass = Strict ? c > bound : c >= bound;
    const bool take = (finite_bits(c) & pass) | (i == forced);
    mask[i] = take;
    chosen[static_cast<size_t>(n)] = i;
    n += take;
  }
  return n;
}

void threshold_row(const Row& row, std::vector<int64_t>& chosen) {
  const auto& p = row.p;
  const Best best = best_candidate(row);
  if (best.index < 0) return;  // no candidate
  // Threshold keeps the passing candidates and the best; the dInfer rule's bound is <= the row
  // maximum (unless its threshold is NaN), so it needs no forced position.
  const float bound = threshold_bound(p, row.b, best.value);
  const int64_t forced = p.rule == TransferRule::ThresholdRowMax ? -1 : best.index;
  const int64_t n = p.strict ? threshold_scan<true>(row, bound, forced, chosen)
                             : threshold_scan<false>(row, bound, forced, chosen);
  if (p.x == nullptr) return;
  for (int64_t j = 0; j < n; ++j) row.write_x(chosen[static_cast<size_t>(j)]);
}

// The k-th largest of keys[0, n) (0 < k <= n; keys are distinct), by radix select from the most
// significant byte: each pass counts one byte of the keys still in play and keeps the bucket that
// holds the k-th, copying it to scratch with a select-free compaction. nth_element's comparisons
// are unpredictable branches and cost ~10x more on rows of a few hundred candidates.
uint64_t kth_largest_key(const uint64_t* keys, int64_t n, int64_t k, std::vector<uint64_t>& scratch) {
  scratch.resize(static_cast<size_t>(n));
  const uint64_t* in = keys;
  uint64_t* out = scratch.data();
  int64_t m = n;
  int shift = 56;
  while (true) {
    // Bytes every key in play shares select nothing: skip them (confidences in (0, 1] share
    // their top bits, and counting one hot bucket serialises on the increments).
    uint64_t any = 0, all = ~uint64_t{0};
    for (int64_t i = 0; i < m; ++i) {
      any |= in[i];
      all &= in[i];
    }
    const uint64_t differ = any ^ all;
    if (differ == 0) return in[0];  // one key left
    shift = std::min(shift, (63 - __builtin_clzll(differ)) & ~7);
    // Two histograms halve the chains of increments to the same bucket.
    uint32_t count[2][256] = {};
    int64_t i = 0;
    for (; i + 2 <= m; i += 2) {
      ++count[0][(in[i] >> shift) & 255u];
      ++count[1][(in[i + 1] >> shift) & 255u];
    }
    if (i < m) ++count[0][(in[i] >> shift) & 255u];
    uint32_t bucket = 255;
    int64_t in_bucket = 0;
    while ((in_bucket = count[0][bucket] + count[1][bucket]) < k) {  // the k-th: first bucket reaching k
      k -= in_bucket;
      --bucket;
    }
    int64_t w = 0;
    for (int64_t j = 0; j < m; ++j) {
      out[w] = in[j];
      w += ((in[j] >> shift) & 255u) == bucket;
    }
    in = out;
    m = w;
    if (k == m) return *std::min_element(in, in + m);  // the k-th largest of the rest: their minimum
    shift -= 8;
  }
}

void sorted_row(const Row& row, std::vector<uint64_t>& keys, std::vector<uint64_t>& scratch) {
  const auto& p = row.p;
  const Row::Conf conf = row.conf();
  keys.resize(static_cast<size_t>(conf.seq));
  int64_t ncand = 0;
  if (p.rule == TransferRule::TopK && p.alg_temp > 0) {
    const PhiloxKey philox = transfer_philox_key(p);
    for (int64_t i = 0; i < conf.seq; ++i) {
      const float c = conf(i);
      if (!is_candidate(c)) continue;  // the draw is only paid for candidates
      keys[static_cast<size_t>(ncand++)] =
          transfer_key(gumbel_key(c, p.alg_temp, philox, static_cast<uint32_t>(row.b), i), i);
    }
  } else {
    for (int64_t i = 0; i < conf.seq; ++i) {
      const float c = conf(i);
      keys[static_cast<size_t>(ncand)] = transfer_key(c, i);
      ncand += finite_bits(c);
    }
  }
  const auto first = keys.begin();
  const auto last = first + ncand;
  int64_t n = 0;
  if (p.rule == TransferRule::TopK) {
    const int64_t k = p.k != nullptr ? p.k[row.b * p.k_stride] : p.k_value;
    n = std::clamp<int64_t>(k, 0, ncand);
    if (n > 0 && n < ncand) {
      // Keep the keys >= the n-th largest in place at the front (distinct keys: exactly n).
      const uint64_t kth = kth_largest_key(keys.data(), ncand, n, scratch);
      int64_t w = 0;
      for (int64_t i = 0; i < ncand; ++i) {
        const uint64_t key = keys[static_cast<size_t>(i)];
        keys[static_cast<size_t>(w)] = key;
        w += key >= kth;
      }
    }
  } else {
    // Factor: the first failing rank ends the transfer, and it is usually small, so the row is
    // ordered a growing prefix at a time (partition the rest, sort the new slice) instead of fully.
    n = std::min<int64_t>(ncand, 1);
    int64_t ordered = 0;
    bool failed = false;
    while (!failed && ordered < ncand) {
      const int64_t upto = std::min(ncand, std::max<int64_t>(16, 4 * ordered));
      if (upto < ncand) std::nth_element(first + ordered, first + (upto - 1), last, std::greater<>());
      std::sort(first + ordered, first + upto, std::greater<>());
      for (; n < upto; ++n) {
        if (!factor_passes(n, key_value(keys[static_cast<size_t>(n)]), p.factor)) {
          failed = true;
          break;
        }
      }
      ordered = upto;
    }
  }
  bool* mask = p.mask + row.b * conf.seq;
  for (int64_t r = 0; r < n; ++r) mask[key_index(keys[static_cast<size_t>(r)])] = true;
  if (p.x == nullptr) return;
  for (int64_t r = 0; r < n; ++r) row.write_x(key_index(keys[static_cast<size_t>(r)]));
}

}  // namespace

void select_transfer(const SelectTransferParams& p) {
  if (p.batch == 0 || p.seq == 0) return;
  // Small calls stay on the calling thread: waking the pool costs more than the work.
  const int64_t grain = std::max<int64_t>(1, 16384 / p.seq);
  at::parallel_for(0, p.batch, grain, [&](int64_t begin, int64_t end) {
    std::vector<uint64_t> keys, scratch;
    std::vector<int64_t> chosen;
    std::memset(p.mask + begin * p.seq, 0, static_cast<size_t>((end - begin) * p.seq));
    for (int64_t b = begin; b < end; ++b) {
      const Row row{p, b};
      if (p.rule == TransferRule::Threshold || p.rule == TransferRule::ThresholdRowMax) {
        threshold_row(row, chosen);
      } else {
        sorted_row(row, keys, scratch);
      }
    }
  });
}

}  // namespace dk::cpu
