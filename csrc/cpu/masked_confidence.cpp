// CPU greedy masked confidence. Each masked row is read once in L1-sized chunks:
// convert to float, chunk max, rescale the running sum when the max grows, add
// exp(v - max). Rows containing NaN or +-inf take an exact scalar path that applies
// the same policy as the CUDA kernel (kernels/softmax_stats.cuh).
#include "cpu/masked_confidence.h"

#include <stdexcept>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "cpu/masked_confidence_rows.h"
#include "cpu/masked_confidence_sample.h"
#include "cpu/isa_level.h"

namespace dk::cpu {
namespace {

template <typename T>
RowResult finite_row_any(const T* row, int64_t vocab, Level level) {
  switch (level) {
    case Level::V4: return finite_row_v4(row, vocab);
    case Level::V3: return finite_row_v3(row, vocab);
    default: return finite_row_base(row, vocab);
  }
}

template <typename T>
SampleRowResult sample_row_any(const T* row, const SampleRowArgs& a, Level level) {
  switch (level) {
    case Level::V4: return sample_row_v4(row, a);
    case Level::V3: return sample_row_v3(row, a);
    default: return sample_row_base(row, a);
  }
}

// Runs the rows in parallel: an inactive row (not masked, or outside the block) gets its token
// and -inf; an active one the {token, conf, lse} of row_fn(row, b, r). The threads split the
// active rows, not the index range: masked positions are rarely spread evenly over a batch, and
// each active row costs a full read of the vocabulary. make_row_fn is called once per parallel
// chunk, so a row_fn may own scratch memory without sharing it between threads.
template <typename T, typename MakeRowFn>
void for_each_row(const MaskedConfidenceParams& p, MakeRowFn make_row_fn) {
  const int64_t rows = p.batch * p.seq;
  std::vector<int64_t> active;
  active.reserve(rows);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t b = r / p.seq;
    const int64_t l = r - b * p.seq;
    const int64_t token = p.x[b * p.x_stride_b + l * p.x_stride_l];
    if (row_active(p, b, l, token)) {
      active.push_back(r);
      continue;
    }
    p.x0[r] = token;
    p.confidence[r] = -std::numeric_limits<float>::infinity();
    if (p.lse) p.lse[r] = -std::numeric_limits<float>::infinity();
  }
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(p.vocab, 1));
  at::parallel_for(0, static_cast<int64_t>(active.size()), grain, [&](int64_t begin, int64_t end) {
    auto row_fn = make_row_fn();
    for (int64_t i = begin; i < end; ++i) {
      const int64_t r = active[i];
      const int64_t b = r / p.seq;
      const int64_t l = r - b * p.seq;
      const T* row = static_cast<const T*>(p.logits) + b * p.logits_stride_b + l * p.logits_stride_l;
      const SampleRowResult res = row_fn(row, b, r);
      p.x0[r] = res.token;
      p.confidence[r] = res.conf;
      if (p.lse) p.lse[r] = res.lse;
    }
  });
}

template <typename T>
void run(const MaskedConfidenceParams& p) {
  const Level level = cpu_level();
  if (!p.general() && !p.penalized()) {  // the greedy default: argmax, max probability
    return for_each_row<T>(p, [&] {
      return [&](const T* row, int64_t, int64_t) {
        RowResult res = finite_row_any(row, p.vocab, level);
        if (res.token < 0) res = nonfinite_row(row, p.vocab);
        return SampleRowResult{res.token, res.prob, res.lse};
      };
    });
  }
  if (!p.general()) {  // greedy with a previous-token penalty: a penalised row is read as a float
                       // copy with its one logit lowered, then takes the same greedy row
    return for_each_row<T>(p, [&] {
      return [&, scratch = std::unique_ptr<float[]>()](const T* row, int64_t b, int64_t r) mutable {
        const RowPenalty pen = row_penalty(p, b, r - b * p.seq);
        RowResult res;
        if (pen.index < 0) {
          res = finite_row_any(row, p.vocab, level);
          if (res.token < 0) res = nonfinite_row(row, p.vocab);
        } else {
          if (!scratch) scratch.reset(new float[p.vocab]);
          float* copy = scratch.get();
          to_float_buffer(row, p.vocab, copy);
          copy[pen.index] -= pen.amount;
          res = finite_row_any(static_cast<const float*>(copy), p.vocab, level);
          if (res.token < 0) res = nonfinite_row(static_cast<const float*>(copy), p.vocab);
        }
        return SampleRowResult{res.token, res.prob, res.lse};
      };
    });
  }
  // Any other setting (masked_confidence_sample.h).
  const PhiloxKey key = philox_key(p);
  for_each_row<T>(p, [&] {
    return [&, scratch = std::unique_ptr<float[]>()](const T* row, int64_t b, int64_t r) mutable {
      if (!scratch) scratch.reset(new float[4 * p.vocab]);  // only once the chunk meets an active row
      const SampleRowArgs a{p.vocab, row_settings(p, b), p.kind, p.confidence_from_logits, p.lse != nullptr,
                            p.suppress_ids, p.num_suppress, key, static_cast<uint32_t>(r),
                            scratch.get(), scratch.get() + p.vocab, scratch.get() + 2 * p.vocab,
                            reinterpret_cast<int32_t*>(scratch.get() + 3 * p.vocab),
                            row_penalty(p, b, r - b * p.seq)};
      return sample_row_any(row, a, level);
    };
  });
}

}  // namespace

// The portable builds; v3: masked_confidence_avx2.cpp (greedy) and
// masked_confidence_sample_avx2.cpp; v4: masked_confidence_avx512.cpp.
RowResult finite_row_base(const float* row, int64_t vocab) { return finite_row<Exp2Generic>(row, vocab); }
RowResult finite_row_base(const _Float16* row, int64_t vocab) { return finite_row<Exp2Generic>(row, vocab); }
RowResult finite_row_base(const uint16_t* row, int64_t vocab) { return finite_row<Exp2Generic>(row, vocab); }

SampleRowResult sample_row_base(const float* row, const SampleRowArgs& a) { return sample_row<Exp2Generic>(row, a); }
SampleRowResult sample_row_base(const _Float16* row, const SampleRowArgs& a) { return sample_row<Exp2Generic>(row, a); }
SampleRowResult sample_row_base(const uint16_t* row, const SampleRowArgs& a) { return sample_row<Exp2Generic>(row, a); }

void masked_confidence(const MaskedConfidenceParams& params) {
  switch (params.logits_kind) {
    case ScalarKind::Float32: return run<float>(params);
    case ScalarKind::Float16: return run<_Float16>(params);
    case ScalarKind::BFloat16: return run<bf16_bits>(params);
    case ScalarKind::Float64: throw std::invalid_argument("masked_confidence: float64 logits are not supported");
  }
}

}  // namespace dk::cpu
