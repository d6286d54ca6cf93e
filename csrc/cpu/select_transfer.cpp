// CPU select_transfer. Each row is independent: the threshold rules are two passes (best key,
// then compare); top-k keeps the candidates' sort keys in a per-thread buffer and partitions them
// with nth_element (O(L)); the factor rule orders a growing prefix until the rule fails. The keys and the
// arithmetic come from kernels/select_transfer_keys.h, shared with the CUDA kernel.
#include "cpu/select_transfer.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <vector>

#include "kernels/select_transfer_keys.h"

namespace dk::cpu {
namespace {

struct Row {
  const SelectTransferParams& p;
  int64_t b;
  float conf(int64_t i) const { return p.confidence[b * p.conf_stride_b + i * p.conf_stride_l]; }
  void transfer(int64_t i) const {
    p.mask[b * p.seq + i] = true;
    if (p.x != nullptr) p.x[b * p.x_stride_b + i * p.x_stride_l] = p.x0[b * p.x0_stride_b + i * p.x0_stride_l];
  }
};

void threshold_row(const Row& row) {
  const auto& p = row.p;
  // The first maximal candidate is the best key's position (strict > keeps the first of a tie,
  // and -0.0 == +0.0), without forming keys.
  int64_t best = -1;
  float best_value = 0.0f;
  for (int64_t i = 0; i < p.seq; ++i) {
    const float c = row.conf(i);
    if (is_candidate(c) && (best < 0 || c > best_value)) {
      best = i;
      best_value = c;
    }
  }
  if (best < 0) return;  // no candidate
  if (p.rule == TransferRule::Threshold) {
    row.transfer(best);
    for (int64_t i = 0; i < p.seq; ++i) {
      const float c = row.conf(i);
      if (is_candidate(c) && c >= p.threshold) row.transfer(i);
    }
  } else {
    const float bound = std::min(p.threshold, best_value - p.eps);
    for (int64_t i = 0; i < p.seq; ++i) {
      const float c = row.conf(i);
      if (is_candidate(c) && c >= bound) row.transfer(i);
    }
  }
}

void sorted_row(const Row& row, std::vector<uint64_t>& keys) {
  const auto& p = row.p;
  keys.clear();
  keys.reserve(static_cast<size_t>(p.seq));
  const PhiloxKey philox{p.seed, p.offset};
  const bool gumbel = p.rule == TransferRule::TopK && p.alg_temp > 0;
  for (int64_t i = 0; i < p.seq; ++i) {
    const float c = row.conf(i);
    if (!is_candidate(c)) continue;
    const float v = gumbel ? gumbel_key(c, p.alg_temp, philox, static_cast<uint32_t>(row.b), i) : c;
    keys.push_back(transfer_key(v, i));
  }
  const int64_t ncand = static_cast<int64_t>(keys.size());
  int64_t n = 0;
  if (p.rule == TransferRule::TopK) {
    const int64_t k = p.k != nullptr ? p.k[row.b * p.k_stride] : p.k_value;
    n = std::clamp<int64_t>(k, 0, ncand);
    if (n > 0 && n < ncand) std::nth_element(keys.begin(), keys.begin() + (n - 1), keys.end(), std::greater<>());
  } else {
    // Factor: the first failing rank ends the transfer, and it is usually small, so the row is
    // ordered a growing prefix at a time (partition the rest, sort the new slice) instead of fully.
    n = std::min<int64_t>(ncand, 1);
    int64_t ordered = 0;
    bool failed = false;
    while (!failed && ordered < ncand) {
      const int64_t upto = std::min(ncand, std::max<int64_t>(16, 4 * ordered));
      if (upto < ncand) std::nth_element(keys.begin() + ordered, keys.begin() + (upto - 1), keys.end(), std::greater<>());
      std::sort(keys.begin() + ordered, keys.begin() + upto, std::greater<>());
      for (; n < upto; ++n) {
        if (!factor_passes(n, key_value(keys[n]), p.factor)) {
          failed = true;
          break;
        }
      }
      ordered = upto;
    }
  }
  for (int64_t r = 0; r < n; ++r) row.transfer(key_index(keys[r]));
}

}  // namespace

void select_transfer(const SelectTransferParams& p) {
  if (p.batch == 0 || p.seq == 0) return;
  // Small calls stay on the calling thread: waking the pool costs more than the work.
  const int64_t grain = std::max<int64_t>(1, 16384 / p.seq);
  at::parallel_for(0, p.batch, grain, [&](int64_t begin, int64_t end) {
    std::vector<uint64_t> keys;
    std::memset(p.mask + begin * p.seq, 0, static_cast<size_t>((end - begin) * p.seq));
    for (int64_t b = begin; b < end; ++b) {
      const Row row{p, b};
      if (p.rule == TransferRule::Threshold || p.rule == TransferRule::ThresholdRowMax) {
        threshold_row(row);
      } else {
        sorted_row(row, keys);
      }
    }
  });
}

}  // namespace dk::cpu
