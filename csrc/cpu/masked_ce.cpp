// CPU masked cross-entropy. Forward: per masked row, online max and sum of exponentials over
// L1-sized chunks -> lse, ce = lse - logit[target]. Backward: per masked row,
// grad = a * exp(x - lse) - b * onehot. Unmasked rows give zeros. Rows with NaN or infinities
// take an exact scalar path with torch's policy (logsumexp is NaN for a row holding a NaN, +inf
// for one holding a +inf, -inf for only -inf; the CE and the gradient are NaN wherever the lse is
// not finite). float64 (for gradcheck) always takes the scalar path in double.
#include "cpu/masked_ce.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "cpu/isa_level.h"
#include "cpu/masked_ce_rows.h"

namespace dk::cpu {

// The portable builds; the v3 and v4 ones live in masked_ce_avx2.cpp and masked_ce_avx512.cpp.
CeRowStats ce_stats_base(const float* row, int64_t vocab) { return ce_stats(row, vocab); }
CeRowStats ce_stats_base(const _Float16* row, int64_t vocab) { return ce_stats(row, vocab); }
CeRowStats ce_stats_base(const bf16_bits* row, int64_t vocab) { return ce_stats(row, vocab); }
void ce_softmax_scaled_base(const float* row, float* out, int64_t vocab, float lse, float a) {
  ce_softmax_scaled(row, out, vocab, lse, a);
}
void ce_softmax_scaled_base(const _Float16* row, _Float16* out, int64_t vocab, float lse, float a) {
  ce_softmax_scaled(row, out, vocab, lse, a);
}
void ce_softmax_scaled_base(const bf16_bits* row, bf16_bits* out, int64_t vocab, float lse, float a) {
  ce_softmax_scaled(row, out, vocab, lse, a);
}

namespace {

template <typename T>
CeRowStats fast_stats(const T* row, int64_t vocab, Level level) {
  switch (level) {
    case Level::V4: return ce_stats_v4(row, vocab);
    case Level::V3: return ce_stats_v3(row, vocab);
    default: return ce_stats_base(row, vocab);
  }
}

template <typename T>
void fast_softmax_scaled(const T* row, T* out, int64_t vocab, float lse, float a, Level level) {
  switch (level) {
    case Level::V4: return ce_softmax_scaled_v4(row, out, vocab, lse, a);
    case Level::V3: return ce_softmax_scaled_v3(row, out, vocab, lse, a);
    default: return ce_softmax_scaled_base(row, out, vocab, lse, a);
  }
}

template <typename T>
struct Acc { using type = float; };
template <>
struct Acc<double> { using type = double; };

// Exact log-sum-exp with torch's non-finite policy.
template <typename T>
double exact_lse(const T* row, int64_t vocab) {
  double mx = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < vocab; ++j) {
    const double v = ce_scalar_load(row + j);
    if (std::isnan(v)) return std::numeric_limits<double>::quiet_NaN();
    mx = std::max(mx, v);
  }
  if (!std::isfinite(mx)) return mx;  // +inf, or -inf for a row of only -inf
  double sum = 0.0;
  for (int64_t j = 0; j < vocab; ++j) sum += std::exp(static_cast<double>(ce_scalar_load(row + j)) - mx);
  return mx + std::log(sum);
}

template <typename T>
typename Acc<T>::type row_lse(const T* row, int64_t vocab, Level level) {
  if constexpr (!std::is_same_v<T, double>) {
    const CeRowStats st = fast_stats(row, vocab, level);
    if (st.finite) return static_cast<float>(st.max + std::log(st.sum));
  }
  return static_cast<typename Acc<T>::type>(exact_lse(row, vocab));
}

template <typename T, typename A>
void softmax_scaled(const T* row, T* out, int64_t vocab, A lse, A a, Level level) {
  if constexpr (std::is_same_v<T, double>) {
    for (int64_t j = 0; j < vocab; ++j) out[j] = a * std::exp(row[j] - lse);
  } else {
    fast_softmax_scaled(row, out, vocab, lse, a, level);
  }
}

template <typename T>
void fill_row(T* out, int64_t vocab, double value) {
  if (value == 0.0) {
    std::memset(static_cast<void*>(out), 0, sizeof(T) * vocab);  // +0 is all-zero bits in every dtype
    return;
  }
  for (int64_t j = 0; j < vocab; ++j) ce_scalar_store(out + j, static_cast<typename Acc<T>::type>(value));
}

int64_t row_grain(int64_t vocab) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(vocab, 1)); }

template <typename T>
void forward(const MaskedCeParams& p) {
  using A = typename Acc<T>::type;
  const Level level = cpu_level();
  A* ce = static_cast<A*>(p.ce);
  A* lse = static_cast<A*>(p.lse);
  at::parallel_for(0, p.rows, row_grain(p.vocab), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      if (!p.masked[r]) {
        ce[r] = 0, lse[r] = 0;
        continue;
      }
      const T* row = static_cast<const T*>(p.logits) + r * p.logits_stride;
      const A l = row_lse(row, p.vocab, level);
      const int64_t t = p.targets[r];
      lse[r] = l;
      ce[r] = (t >= 0 && t < p.vocab && std::isfinite(l)) ? l - static_cast<A>(ce_scalar_load(row + t))
                                                          : std::numeric_limits<A>::quiet_NaN();
    }
  });
}

template <typename T>
void backward(const MaskedCeParams& p) {
  using A = typename Acc<T>::type;
  const Level level = cpu_level();
  const A* lse = static_cast<const A*>(p.lse_in);
  const A* gce = static_cast<const A*>(p.grad_ce);
  const A* glse = static_cast<const A*>(p.grad_lse);
  at::parallel_for(0, p.rows, row_grain(p.vocab), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      T* out = static_cast<T*>(p.grad_logits) + r * p.grad_stride;
      if (!p.masked[r]) {
        fill_row(out, p.vocab, 0.0);
        continue;
      }
      const int64_t t = p.targets[r];
      if (t < 0 || t >= p.vocab || !std::isfinite(lse[r])) {
        fill_row(out, p.vocab, std::numeric_limits<double>::quiet_NaN());
        continue;
      }
      const T* row = static_cast<const T*>(p.logits) + r * p.logits_stride;
      const A a = gce[r] + glse[r];
      softmax_scaled(row, out, p.vocab, lse[r], a, level);
      const A pt = std::exp(static_cast<A>(ce_scalar_load(row + t)) - lse[r]);
      ce_scalar_store(out + t, a * pt - gce[r]);
    }
  });
}

template <typename T>
void forward_backward(const MaskedCeParams& p) {
  using A = typename Acc<T>::type;
  const Level level = cpu_level();
  A* ce = static_cast<A*>(p.ce);
  A* lse = static_cast<A*>(p.lse);
  const A* scale = static_cast<const A*>(p.scale);
  at::parallel_for(0, p.rows, row_grain(p.vocab), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      T* row = static_cast<T*>(p.logits) + r * p.logits_stride;
      if (!p.masked[r]) {
        ce[r] = 0, lse[r] = 0;
        fill_row(row, p.vocab, 0.0);
        continue;
      }
      const A l = row_lse(row, p.vocab, level);
      const int64_t t = p.targets[r];
      lse[r] = l;
      if (t < 0 || t >= p.vocab || !std::isfinite(l)) {
        ce[r] = std::numeric_limits<A>::quiet_NaN();
        fill_row(row, p.vocab, std::numeric_limits<double>::quiet_NaN());
        continue;
      }
      const A xt = ce_scalar_load(row + t);  // read before the row is overwritten
      ce[r] = l - xt;
      softmax_scaled(row, row, p.vocab, l, scale[r], level);
      ce_scalar_store(row + t, scale[r] * (std::exp(xt - l) - A(1)));
    }
  });
}

template <template <typename> class Fn>
void dispatch(const MaskedCeParams& p) {
  switch (p.kind) {
    case ScalarKind::Float32: return Fn<float>::run(p);
    case ScalarKind::Float16: return Fn<_Float16>::run(p);
    case ScalarKind::BFloat16: return Fn<bf16_bits>::run(p);
    case ScalarKind::Float64: return Fn<double>::run(p);
  }
}

template <typename T> struct Forward { static void run(const MaskedCeParams& p) { forward<T>(p); } };
template <typename T> struct Backward { static void run(const MaskedCeParams& p) { backward<T>(p); } };
template <typename T> struct ForwardBackward { static void run(const MaskedCeParams& p) { forward_backward<T>(p); } };

}  // namespace

void masked_ce_forward(const MaskedCeParams& params) { dispatch<Forward>(params); }
void masked_ce_backward(const MaskedCeParams& params) { dispatch<Backward>(params); }
void masked_ce_forward_backward(const MaskedCeParams& params) { dispatch<ForwardBackward>(params); }

}  // namespace dk::cpu
