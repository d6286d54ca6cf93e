// CPU greedy masked confidence. Each masked row is read once in L1-sized chunks:
// convert to float, chunk max, rescale the running sum when the max grows, add
// exp(v - max). Rows containing NaN or +-inf take an exact scalar path that applies
// the same policy as the CUDA kernel (kernels/softmax_stats.cuh).
#include "cpu/masked_confidence.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "cpu/vec_math.h"

namespace dk::cpu {
namespace {

constexpr int64_t kChunk = 2048;  // floats: the staging buffer stays in L1
static_assert(kChunk % (2 * kVecWidth) == 0);

struct RowResult {
  int64_t token;
  float prob;
};

using bf16_bits = uint16_t;

inline float load(const float* p, int64_t i) { return load_scalar(p + i); }
inline float load(const _Float16* p, int64_t i) { return load_scalar(p + i); }
inline float load(const bf16_bits* p, int64_t i) { return load_scalar(p + i); }

// The reference policy for rows that are not all finite: mirrors torch.argmax + softmax.
template <typename T>
RowResult nonfinite_row(const T* row, int64_t vocab) {
  float best = -std::numeric_limits<float>::infinity();
  int64_t best_index = -1;
  for (int64_t j = 0; j < vocab; ++j) {
    const float v = load(row, j);
    if (std::isnan(v)) return {j, std::numeric_limits<float>::quiet_NaN()};
    if (v > best) best = v, best_index = j;
  }
  if (best_index < 0) return {0, std::numeric_limits<float>::quiet_NaN()};
  if (std::isinf(best)) return {best_index, std::numeric_limits<float>::quiet_NaN()};
  // Finite max with some -inf entries: exact two-pass softmax.
  double sum = 0;
  for (int64_t j = 0; j < vocab; ++j) sum += std::exp(static_cast<double>(load(row, j)) - best);
  return {best_index, static_cast<float>(1.0 / sum)};
}

// Returns token -1 when the row is not all finite; the caller then takes the exact path.
template <typename T>
inline __attribute__((always_inline)) RowResult finite_row(const T* row, int64_t vocab) {
  vfloat buf[kChunk / kVecWidth];
  float run_max = -std::numeric_limits<float>::infinity();
  double run_sum = 0.0;  // across chunks in double: float32 here cost ~1e-6 relative at V = 126464
  int64_t run_arg = 0;
  for (int64_t c0 = 0; c0 < vocab; c0 += kChunk) {
    const int64_t n = std::min(kChunk, vocab - c0);
    const int64_t pairs = n / (2 * kVecWidth);
    vfloat m0 = splat(-std::numeric_limits<float>::infinity()), m1 = m0;
    for (int64_t q = 0; q < pairs; ++q) {
      load_pair(row + c0 + q * 2 * kVecWidth, buf[2 * q], buf[2 * q + 1]);
      m0 = vmax(buf[2 * q], m0);
      m1 = vmax(buf[2 * q + 1], m1);
    }
    // Ragged tail: up to two vectors padded with -inf (each pad lane adds 2^-126 to the sum).
    int64_t nvec = 2 * pairs;
    for (int64_t i = nvec * kVecWidth; i < n; i += kVecWidth, ++nvec) {
      vfloat t = splat(-std::numeric_limits<float>::infinity());
      for (int64_t k = 0; k < kVecWidth && i + k < n; ++k) t[k] = load(row, c0 + i + k);
      buf[nvec] = t;
      m0 = vmax(t, m0);
    }
    const float chunk_max = hmax(vmax(m0, m1));
    if (chunk_max > run_max) {  // strict: an equal max in a later chunk keeps the earlier index
      int64_t at = 0;
      while (load(row, c0 + at) != chunk_max) ++at;
      run_arg = c0 + at;
      run_sum *= std::exp(static_cast<double>(run_max) - chunk_max);
      run_max = chunk_max;
    }
    // exp(v - max) = 2^(v log2e - max log2e): one fused multiply-add feeds the exponential.
    const vfloat mx = splat(run_max * kLog2e);
    vfloat s0 = splat(0.f), s1 = s0, s2 = s0, s3 = s0;
    int64_t v = 0;
    for (; v + 3 < nvec; v += 4) {
      s0 += vexp2(buf[v] * kLog2e - mx);
      s1 += vexp2(buf[v + 1] * kLog2e - mx);
      s2 += vexp2(buf[v + 2] * kLog2e - mx);
      s3 += vexp2(buf[v + 3] * kLog2e - mx);
    }
    for (; v < nvec; ++v) s0 += vexp2(buf[v] * kLog2e - mx);
    run_sum += hsum((s0 + s1) + (s2 + s3));
  }
  // A NaN anywhere makes the sum NaN; an infinite max shows directly. Both go to the exact path.
  if (!std::isfinite(run_sum) || !std::isfinite(run_max)) return {-1, 0.f};
  return {run_arg, static_cast<float>(1.0 / run_sum)};
}

// One clone per x86 level; the loader picks the best at run time (GNU ifunc).
#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define DK_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define DK_CPU_CLONES
#endif

DK_CPU_CLONES RowResult finite_row_f32(const float* row, int64_t vocab) { return finite_row(row, vocab); }
DK_CPU_CLONES RowResult finite_row_f16(const _Float16* row, int64_t vocab) { return finite_row(row, vocab); }
DK_CPU_CLONES RowResult finite_row_bf16(const bf16_bits* row, int64_t vocab) { return finite_row(row, vocab); }

inline RowResult finite_row_any(const float* row, int64_t vocab) { return finite_row_f32(row, vocab); }
inline RowResult finite_row_any(const _Float16* row, int64_t vocab) { return finite_row_f16(row, vocab); }
inline RowResult finite_row_any(const bf16_bits* row, int64_t vocab) { return finite_row_bf16(row, vocab); }

template <typename T>
void run(const MaskedConfidenceParams& p) {
  const int64_t rows = p.batch * p.seq;
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(p.vocab, 1));
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / p.seq;
      const int64_t l = r - b * p.seq;
      const int64_t token = p.x[b * p.x_stride_b + l * p.x_stride_l];
      if (token != p.mask_id) {
        p.x0[r] = token;
        p.confidence[r] = -std::numeric_limits<float>::infinity();
        continue;
      }
      const T* row = static_cast<const T*>(p.logits) + b * p.logits_stride_b + l * p.logits_stride_l;
      RowResult res = finite_row_any(row, p.vocab);
      if (res.token < 0) res = nonfinite_row(row, p.vocab);
      p.x0[r] = res.token;
      p.confidence[r] = res.prob;
    }
  });
}

}  // namespace

void masked_confidence(const MaskedConfidenceParams& params) {
  switch (params.logits_kind) {
    case ScalarKind::Float32: return run<float>(params);
    case ScalarKind::Float16: return run<_Float16>(params);
    case ScalarKind::BFloat16: return run<bf16_bits>(params);
  }
}

}  // namespace dk::cpu
