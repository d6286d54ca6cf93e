// Standalone driver that runs the package's CUDA launchers under the SIMT emulator, without
// Python or torch, so the kernels can be built with ASan+UBSan or TSan (.ci/kernels_sanitize.sh).
// Each case checks the kernel against a plain double-precision loop, and the output is hashed so
// runs under different SIMT_ORDER/SIMT_SEED can be compared bitwise by the caller.
//   kernels_driver            run every case, print "<case> <hash>" lines and a summary
#include "simt/simt.h"  // first: the emulator's keywords

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels/launchers.h"

namespace {

uint64_t fnv1a(const void* data, size_t bytes, uint64_t h = 1469598103934665603ull) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

int failures = 0;

void expect(bool ok, const char* what, int64_t row) {
  if (!ok) {
    std::printf("FAIL %s at row %lld\n", what, static_cast<long long>(row));
    ++failures;
  }
}

// masked_confidence on [batch, seq, vocab] logits in bf16 or fp32, odd sizes, ties, non-finite rows.
uint64_t masked_confidence_case(int64_t batch, int64_t seq, int64_t vocab, bool bf16, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 3.f);
  const int64_t rows = batch * seq, mask_id = 3;
  std::vector<float> logits(rows * vocab);
  for (float& v : logits) v = normal(rng);
  if (vocab > 10) {
    logits[5] = logits[vocab - 1] = 40.f;                                            // tie in row 0
    if (rows > 1) logits[vocab + 7] = std::numeric_limits<float>::quiet_NaN();        // NaN row
    if (rows > 2)
      for (int64_t j = 0; j < vocab; ++j) logits[2 * vocab + j] = -INFINITY;         // all -inf
  }
  std::vector<uint16_t> logits_bf16(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) {
    logits_bf16[i] = dk::float_to_bf16_bits(logits[i]);
    if (bf16) logits[i] = dk::bf16_bits_to_float(logits_bf16[i]);
  }
  std::vector<int64_t> x(rows);
  for (int64_t r = 0; r < rows; ++r) x[r] = (r % 4 == 3) ? 10 + r : mask_id;
  std::vector<int64_t> x0(rows, -7);
  std::vector<float> conf(rows, -1.2345e38f);

  dk::MaskedConfidenceParams p{};
  p.logits = bf16 ? static_cast<const void*>(logits_bf16.data()) : logits.data();
  p.logits_kind = bf16 ? dk::ScalarKind::BFloat16 : dk::ScalarKind::Float32;
  p.batch = batch, p.seq = seq, p.vocab = vocab;
  p.logits_stride_b = seq * vocab, p.logits_stride_l = vocab;
  p.x = x.data(), p.x_stride_b = seq, p.x_stride_l = 1;
  p.mask_id = mask_id;
  p.x0 = x0.data(), p.confidence = conf.data();
  std::vector<uint64_t> scratch((dk::masked_confidence_scratch_bytes(p) + 7) / 8);  // split-vocabulary path
  p.scratch = scratch.data(), p.scratch_bytes = static_cast<int64_t>(scratch.size() * 8);
  dk::launch_masked_confidence(p, nullptr);

  for (int64_t r = 0; r < rows; ++r) {
    if (x[r] != mask_id) {
      expect(x0[r] == x[r] && std::isinf(conf[r]) && conf[r] < 0, "masked_confidence: unmasked row", r);
      continue;
    }
    const float* row = &logits[r * vocab];
    int64_t first_nan = -1, arg = -1;
    double best = -INFINITY;
    for (int64_t j = 0; j < vocab; ++j) {
      if (std::isnan(row[j])) { first_nan = j; break; }
      if (row[j] > best) best = row[j], arg = j;
    }
    if (first_nan >= 0) {
      expect(x0[r] == first_nan && std::isnan(conf[r]), "masked_confidence: NaN row", r);
    } else if (arg < 0) {
      expect(x0[r] == 0 && std::isnan(conf[r]), "masked_confidence: all -inf row", r);
    } else {
      double sum = 0;
      for (int64_t j = 0; j < vocab; ++j) sum += std::exp(row[j] - best);
      expect(x0[r] == arg, "masked_confidence: argmax", r);
      expect(std::fabs(conf[r] - 1.0 / sum) <= 1e-5 / sum + 1e-7, "masked_confidence: probability", r);
    }
  }
  return fnv1a(conf.data(), conf.size() * 4, fnv1a(x0.data(), x0.size() * 8));
}

// The general kernel (temperature, top-p, top-k, margin), or for a vocabulary of 4096 or more the
// split path with its filter launches: the token must lie among the row's
// top_k largest logits (a strict check of the kept set would need the reference; Python tests do
// that) and the margin in [0, 1]; the hash compares resume orders.
uint64_t masked_sampling_case(int64_t rows, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 2.f);
  std::vector<float> logits(rows * vocab);
  for (float& v : logits) v = normal(rng);
  const int64_t mask_id = 3, top_k = 40;
  std::vector<int64_t> x(rows, mask_id), x0(rows, -7), suppress{11};
  std::vector<float> conf(rows, -1.2345e38f), lse(rows, -1.2345e38f);
  dk::MaskedConfidenceParams p{};
  p.logits = logits.data();
  p.logits_kind = dk::ScalarKind::Float32;
  p.batch = 1, p.seq = rows, p.vocab = vocab;
  p.logits_stride_b = rows * vocab, p.logits_stride_l = vocab;
  p.x = x.data(), p.x_stride_b = rows, p.x_stride_l = 1;
  p.mask_id = mask_id;
  p.x0 = x0.data(), p.confidence = conf.data(), p.lse = lse.data();
  p.temperature_value = 0.8f, p.top_p_value = 0.9f, p.top_k_value = top_k;
  p.kind = dk::ConfidenceKind::Margin;
  p.suppress_ids = suppress.data(), p.num_suppress = 1;
  p.seed_value = 77, p.offset_value = 5;
  std::vector<uint64_t> scratch((dk::masked_confidence_scratch_bytes(p) + 7) / 8);  // split-vocabulary path
  p.scratch = scratch.data(), p.scratch_bytes = static_cast<int64_t>(scratch.size() * 8);
  dk::launch_masked_confidence(p, nullptr);
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = &logits[r * vocab];
    int64_t above = 0;
    for (int64_t j = 0; j < vocab; ++j) above += j != 11 && row[j] > row[x0[r]];
    expect(x0[r] >= 0 && x0[r] < vocab && x0[r] != 11 && above < top_k, "masked_sampling: token outside top-k", r);
    expect(conf[r] >= 0.f && conf[r] <= 1.f, "masked_sampling: margin", r);
  }
  return fnv1a(lse.data(), lse.size() * 4, fnv1a(conf.data(), conf.size() * 4, fnv1a(x0.data(), x0.size() * 8)));
}


// attention_with_kv_cache in bf16: per-row write starts, a padding mask and key lengths, GQA,
// head_dim 64, the cache write then the attention (split-KV with `splits` > 1, which adds the
// merge launch), or with `mode` kReadWrite / kRead the attention launch alone writing (or, as
// store_kv=False, only reading) the new rows. Checks the cache rows (written = new, others
// untouched; none written with kRead), out against a double loop over the bf16 inputs (bf16
// output rounding + fp32 accumulation), lse, rows with no key.
uint64_t attention_case(int64_t splits, uint32_t seed,
                        dk::AttentionParams::NewRows mode = dk::AttentionParams::NewRows::kInCache) {
  constexpr int64_t B = 2, Lq = 5, Hq = 4, Hkv = 2, D = 64, Lc = 70;
  const int64_t starts[B] = {3, 60};
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  auto fill = [&](std::vector<uint16_t>& v, size_t n) {
    v.resize(n);
    for (auto& e : v) e = dk::float_to_bf16_bits(normal(rng));
  };
  std::vector<uint16_t> q, kc, vc, kn, vn;
  fill(q, B * Lq * Hq * D), fill(kc, B * Lc * Hkv * D), fill(vc, B * Lc * Hkv * D);
  fill(kn, B * Lq * Hkv * D), fill(vn, B * Lq * Hkv * D);
  const std::vector<uint16_t> kc0 = kc, vc0 = vc;
  std::vector<uint8_t> mask(B * Lc, 1);
  for (int64_t j = 0; j < 7; ++j) mask[1 * Lc + j] = 0;  // row 1: left padding
  const int64_t lengths[B] = {Lc - 9, Lc};
  std::vector<uint16_t> out(B * Lq * Hq * D, 0xffff);
  std::vector<float> lse(B * Hq * Lq, -1.2345e38f);
  dk::AttentionParams p{};
  p.kind = dk::ScalarKind::BFloat16;
  p.batch = B, p.q_len = Lq, p.heads_q = Hq, p.heads_kv = Hkv, p.head_dim = D, p.cache_len = Lc, p.new_len = Lq;
  p.scale = 1.f / std::sqrt(static_cast<float>(D));
  p.q = q.data(), p.q_sb = Lq * Hq * D, p.q_sl = Hq * D, p.q_sh = D;
  p.k_cache = kc.data(), p.v_cache = vc.data();
  p.kc_sb = p.vc_sb = Lc * Hkv * D, p.kc_sl = p.vc_sl = Hkv * D, p.kc_sh = p.vc_sh = D;
  p.k_new = kn.data(), p.v_new = vn.data();
  p.kn_sb = p.vn_sb = Lq * Hkv * D, p.kn_sl = p.vn_sl = Hkv * D, p.kn_sh = p.vn_sh = D;
  p.write_starts = starts;
  p.key_mask = reinterpret_cast<const bool*>(mask.data()), p.km_sb = Lc, p.km_sl = 1;
  p.key_lengths = lengths;
  p.out = out.data(), p.lse = lse.data();
  std::vector<float> o_part, l_part;
  p.num_splits = splits;
  if (splits > 1) {
    o_part.assign(splits * B * Hq * Lq * D, 0.f), l_part.assign(splits * B * Hq * Lq, 0.f);
    p.o_partial = o_part.data(), p.lse_partial = l_part.data();
  }
  p.new_rows = mode;
  if (mode == dk::AttentionParams::NewRows::kInCache) dk::launch_attention_cache_write(p, nullptr);
  dk::launch_attention(p, nullptr);
  auto at = [](int64_t b, int64_t l, int64_t h, int64_t len, int64_t heads) { return ((b * len + l) * heads + h) * D; };
  const bool stored = mode != dk::AttentionParams::NewRows::kRead;
  std::vector<uint16_t> kw = kc0, vw = vc0;  // the keys attended: the caches with the new rows placed
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t j = 0; j < Lc; ++j) {
      const bool placed = j >= starts[b] && j < starts[b] + Lq;
      for (int64_t h = 0; h < Hkv; ++h) {
        const size_t o = at(b, j, h, Lc, Hkv);
        const size_t n = placed ? at(b, j - starts[b], h, Lq, Hkv) : 0;
        if (placed) std::memcpy(&kw[o], &kn[n], D * 2), std::memcpy(&vw[o], &vn[n], D * 2);
        expect(std::memcmp(&kc[o], stored ? &kw[o] : &kc0[o], D * 2) == 0, "attention: k_cache row", b);
        expect(std::memcmp(&vc[o], stored ? &vw[o] : &vc0[o], D * 2) == 0, "attention: v_cache row", b);
      }
    }
  }
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < Hq; ++h) {
      const int64_t hk = h / (Hq / Hkv);
      for (int64_t i = 0; i < Lq; ++i) {
        std::vector<double> s(Lc, -std::numeric_limits<double>::infinity());
        double m = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < Lc; ++j) {
          if (!mask[b * Lc + j] || j >= lengths[b]) continue;
          double dot = 0;
          for (int64_t d = 0; d < D; ++d)
            dot += double(dk::bf16_bits_to_float(q[at(b, i, h, Lq, Hq) + d])) * dk::bf16_bits_to_float(kw[at(b, j, hk, Lc, Hkv) + d]);
          s[j] = dot * p.scale;
          m = std::max(m, s[j]);
        }
        double sum = 0;
        for (int64_t j = 0; j < Lc; ++j) sum += std::exp(s[j] - m);
        expect(std::fabs(lse[(b * Hq + h) * Lq + i] - (m + std::log(sum))) < 1e-3, "attention: lse", b);
        for (int64_t d = 0; d < D; ++d) {
          double o = 0;
          for (int64_t j = 0; j < Lc; ++j) o += std::exp(s[j] - m) / sum * dk::bf16_bits_to_float(vw[at(b, j, hk, Lc, Hkv) + d]);
          const double got = dk::bf16_bits_to_float(out[at(b, i, h, Lq, Hq) + d]);
          expect(std::fabs(got - o) <= 1e-2 * std::fabs(o) + 1e-2, "attention: out", b);
        }
      }
    }
  }
  return fnv1a(lse.data(), lse.size() * 4, fnv1a(out.data(), out.size() * 2, fnv1a(kc.data(), kc.size() * 2)));
}
}  // namespace

// Runs one case: prints "<name> <hash>", or FAIL lines (a failed check or a kernel error).
template <typename Fn>
bool run_case(const char* name, Fn fn) {
  const int before = failures;
  try {
    const uint64_t h = fn();
    std::printf("%s %016llx\n", name, static_cast<unsigned long long>(h));
  } catch (const std::exception& e) {
    std::printf("FAIL %s: %s\n", name, e.what());
    ++failures;
  }
  return failures == before;
}

int main() {
  int passed = 0, total = 0;
  auto count = [&](bool ok) { passed += ok, ++total; };
  count(run_case("masked_confidence_f32_1x5x3001", [] { return masked_confidence_case(1, 5, 3001, false, 1234u); }));
  count(run_case("masked_confidence_bf16_2x3x50257", [] { return masked_confidence_case(2, 3, 50257, true, 1235u); }));
  count(run_case("masked_confidence_f32_3x1x1", [] { return masked_confidence_case(3, 1, 1, false, 1236u); }));
  count(run_case("masked_sampling_f32_3x2001", [] { return masked_sampling_case(3, 2001, 99u); }));
  count(run_case("masked_sampling_split_f32_3x9001", [] { return masked_sampling_case(3, 9001, 98u); }));
  count(run_case("attention_bf16_splits1", [] { return attention_case(1, 321u); }));
  count(run_case("attention_bf16_splits3", [] { return attention_case(3, 321u); }));
  using NewRows = dk::AttentionParams::NewRows;
  count(run_case("attention_bf16_fused_splits1", [] { return attention_case(1, 321u, NewRows::kReadWrite); }));
  count(run_case("attention_bf16_fused_splits3", [] { return attention_case(3, 321u, NewRows::kReadWrite); }));
  count(run_case("attention_bf16_fused_nostore_splits3", [] { return attention_case(3, 321u, NewRows::kRead); }));
  std::printf("%d passed, %d failed\n", passed, total - passed);
  return failures == 0 ? 0 : 1;
}
