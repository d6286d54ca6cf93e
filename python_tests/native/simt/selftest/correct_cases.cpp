// Correct kernels: each must pass under every resume order with bitwise-identical outputs.
#include "selftest.h"
#include "correct_kernels.cuh"
#include "api_coverage.cuh"

#include <cfenv>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

namespace selftest {
namespace {

uint32_t lcg_state = 1;
float lcg_uniform() {  // in [-1, 1)
  lcg_state = lcg_state * 1664525u + 1013904223u;
  return static_cast<float>(lcg_state >> 8) / 8388608.f - 1.f;
}

bool close(double got, double want, double rel, double abs_tol) {
  return std::fabs(got - want) <= abs_tol + rel * std::fabs(want);
}

// ------------------------------------------------------------------------------ block sum ----
Outcome block_sum() {
  constexpr int kThreads = 256, kBlocks = 64;
  const long long n = 196615;  // not a multiple of 4 or of the block
  lcg_state = 7;
  std::vector<float> x(n);
  for (float& v : x) v = lcg_uniform();
  std::vector<float> partial(kBlocks, 0.f);
  float total = 0.f;
  run(block_sum_kernel<kThreads>, dim3(kBlocks), dim3(kThreads), 0, x.data(), n, partial.data(), &total);

  Checker c;
  std::vector<double> want(kBlocks, 0.0);
  const long long stride = 1ll * kThreads * kBlocks;
  for (int b = 0; b < kBlocks; ++b)
    for (int t = 0; t < kThreads; ++t) {
      const long long first = 1ll * b * kThreads + t;
      for (long long i = first; i < n / 4; i += stride)
        for (int k = 0; k < 4; ++k) want[b] += x[4 * i + k];
      for (long long i = (n / 4) * 4 + first; i < n; i += stride) want[b] += x[i];
    }
  double want_total = 0;
  for (int b = 0; b < kBlocks; ++b) {
    want_total += want[b];
    if (!close(partial[b], want[b], 1e-5, 1e-3)) c.fail("partial[" + std::to_string(b) + "]");
  }
  if (!close(total, want_total, 1e-5, 1e-2)) c.fail("total " + std::to_string(total) + " vs " + std::to_string(want_total));
  Hasher h;
  h.add(partial);
  h.bytes(&total, sizeof total);
  return c.outcome(h);
}

// ------------------------------------------------------------------------- softmax stats ----
Outcome softmax_stats() {
  constexpr int kThreads = 128, kRows = 16, kVocab = 1000;  // vocab not a multiple of 128
  lcg_state = 11;
  std::vector<float> logits(1ll * kRows * kVocab);
  for (float& v : logits) v = 4.f * lcg_uniform();
  auto at = [&](int r, int j) -> float& { return logits[1ll * r * kVocab + j]; };
  at(1, 900) = at(1, 37) = 10.f;                 // tie: lowest index wins
  at(2, 5) = at(2, 6) = 9.f;                     // tie inside one warp
  at(5, 300) = at(5, 172) = at(5, 44) = 20.f;    // tie across passes of the same thread
  for (int j = 0; j < kVocab; ++j) at(3, j) = at(4, j) = -INFINITY;
  at(3, kVocab - 1) = 1.f;                       // only the last element is finite
  std::vector<float> mx(kRows), lse(kRows);
  std::vector<int> arg(kRows);
  const size_t smem = 3 * (kThreads / 32) * sizeof(float);
  run(softmax_stats_kernel<kThreads>, dim3(kRows), dim3(kThreads), smem, logits.data(), kVocab, mx.data(),
      lse.data(), arg.data());

  Checker c;
  for (int r = 0; r < kRows; ++r) {
    float m = -INFINITY;
    int a = INT_MAX;
    for (int j = 0; j < kVocab; ++j)
      if (at(r, j) > m) m = at(r, j), a = j;
    double s = 0;
    for (int j = 0; j < kVocab; ++j)
      if (at(r, j) != -INFINITY) s += std::exp(double(at(r, j)) - m);
    const double want_lse = m == -INFINITY ? -INFINITY : m + std::log(s);
    const std::string row = "row " + std::to_string(r);
    if (!(mx[r] == m)) c.fail(row + " max");
    c.eq(arg[r], a, row + " argmax");
    if (!(lse[r] == want_lse || close(lse[r], want_lse, 1e-5, 1e-5))) c.fail(row + " lse");
  }
  Hasher h;
  h.add(mx), h.add(lse), h.add(arg);
  return c.outcome(h);
}

// ---------------------------------------------------------------------------------- matmul ----
Outcome matmul() {
  Checker c;
  Hasher h;
  const int shapes[2][3] = {{64, 64, 64}, {70, 50, 130}};
  lcg_state = 3;
  for (const auto& s : shapes) {
    const int M = s[0], N = s[1], K = s[2];
    std::vector<float> A(1ll * M * K), B(1ll * K * N), C(1ll * M * N, -1.f);
    for (float& v : A) v = lcg_uniform();
    for (float& v : B) v = lcg_uniform();
    run(matmul_kernel<true>, dim3((N + 15) / 16, (M + 15) / 16), dim3(16, 16), 0, A.data(), B.data(),
        C.data(), M, N, K);
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < N; ++j) {
        double want = 0;
        for (int k = 0; k < K; ++k) want += double(A[i * K + k]) * B[k * N + j];
        if (!close(C[i * N + j], want, 1e-5, 1e-4))
          c.fail("C[" + std::to_string(i) + "][" + std::to_string(j) + "] of " + std::to_string(M) + "x" +
                 std::to_string(N) + "x" + std::to_string(K));
      }
    h.add(C);
  }
  return c.outcome(h);
}

// -------------------------------------------------------------------------------- shuffles ----
// The CUDA rules written out independently of the emulator: a lane reads `src` of its own
// width-segment; up/down fall back to the own value outside the segment; xor may read an earlier
// segment but falls back for a later one.
Outcome shuffles() {
  std::vector<unsigned long long> out(1ll * kShflVariants * kShflThreads, 0);
  run(shuffle_kernel, dim3(1), dim3(kShflThreads), 0, out.data());
  auto input = [](int tid, int variant) {
    return 0x9E3779B97F4A7C15ull * static_cast<unsigned long long>(tid + 1) + static_cast<unsigned long long>(variant);
  };
  Checker c;
  const int widths[3] = {8, 16, 32};
  int variant = 0;
  for (int op = 0; op < 4; ++op)
    for (int wi = 0; wi < 3; ++wi)
      for (int is64 = 0; is64 < 2; ++is64, ++variant) {
        const int w = widths[wi];
        for (int tid = 0; tid < kShflThreads; ++tid) {
          const int lane = tid % 32, warp_base = tid - lane, seg = lane / w * w;
          int src = lane;
          if (op == 0) src = seg + (lane * 7 + 3) % w;
          if (op == 1 && lane - seg >= 3) src = lane - 3;
          if (op == 2 && lane - seg + 3 < w) src = lane + 3;
          if (op == 3) {
            const int j = lane ^ (wi == 0 ? 9 : 5);
            if (j < seg + w) src = j;
          }
          unsigned long long want = input(warp_base + src, variant);
          if (!is64) want &= 0xffffffffull;
          if (out[variant * kShflThreads + tid] != want)
            c.fail("op " + std::to_string(op) + " width " + std::to_string(w) + (is64 ? " double" : " int") +
                   " thread " + std::to_string(tid));
        }
      }
  for (int op = 0; op < 4; ++op, ++variant)
    for (int tid = 0; tid < kShflThreads; ++tid) {
      const int lane = tid % 32, warp_base = tid - lane;
      unsigned long long want = ~0ull;
      if (lane < 16) {
        int src = lane;
        if (op == 0) src = 15 - lane;
        if (op == 1 && lane >= 1) src = lane - 1;
        if (op == 2 && lane + 2 < 16) src = lane + 2;
        if (op == 3) src = lane ^ 3;
        want = input(warp_base + src, variant);
      }
      if (out[variant * kShflThreads + tid] != want)
        c.fail("partial-mask op " + std::to_string(op) + " thread " + std::to_string(tid));
    }
  Hasher h;
  h.add(out);
  return c.outcome(h);
}

// ------------------------------------------------------------------------------------ votes ----
Outcome votes() {
  std::vector<unsigned> out(kVoteThreads * kVoteFields, 0);
  run(vote_kernel, dim3(1), dim3(kVoteThreads), 0, out.data());
  auto pred = [](int t) { return (t * 5 + 1) % 7 < 3; };
  int count = 0;
  for (int t = 0; t < kVoteThreads; ++t) count += pred(t);
  Checker c;
  for (int t = 0; t < kVoteThreads; ++t) {
    const int base = t / 32 * 32, lanes = std::min(32, kVoteThreads - base), lane = t % 32;
    const unsigned mask = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1;
    unsigned ballot = 0, sum = 0, match = 0;
    int mx = INT_MIN;
    for (int l = 0; l < lanes; ++l) {
      ballot |= unsigned(pred(base + l)) << l;
      sum += base + l;
      mx = std::max(mx, l * 13 % 17 - 8);
      if (l % 3 == lane % 3) match |= 1u << l;
    }
    const unsigned want[kVoteFields] = {ballot, ballot != 0, ballot == mask, 1u, unsigned(count),
                                        count == kVoteThreads, count != 0, 1u, mask, sum, unsigned(mx), match};
    for (int k = 0; k < kVoteFields; ++k)
      c.eq(out[t * kVoteFields + k], want[k], "thread " + std::to_string(t) + " field " + std::to_string(k));
  }
  Hasher h;
  h.add(out);
  return c.outcome(h);
}

// ------------------------------------------------------------------- dynamic shared memory ----
Outcome dynamic_smem() {
  constexpr int kWords = 16384, kBlocks = 2;  // 64 KiB: needs the opt-in
  simt::set_max_dynamic_smem(dynsmem_kernel, kWords * sizeof(int));
  std::vector<int> out(kBlocks * kWords, 0);
  int poisoned = 0;
  run(dynsmem_kernel, dim3(kBlocks), dim3(256), kWords * sizeof(int), kWords, out.data(), &poisoned);
  Checker c;
  c.eq(poisoned, 0, "blocks that did not start with 0xFF-filled shared memory");
  for (int b = 0; b < kBlocks; ++b)
    for (int i = 0; i < kWords; ++i) c.eq(out[b * kWords + i], (kWords - 1 - i) * 3 + b, "out");
  Hasher h;
  h.add(out);
  return c.outcome(h);
}

// ------------------------------------------------------------------------ fp16 / bf16 ----------
// Reference conversions written from the IEEE definitions (round to nearest, ties to even).
uint16_t ref_float_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

uint16_t ref_float_to_half(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return sign | 0x7e00;   // NaN
  if (a >= 0x477ff000u) return sign | 0x7c00;  // >= 65520 rounds to infinity
  if (a <= 0x33000000u) return sign;           // <= 2^-25 rounds to zero
  const uint32_t e = a >> 23, m = a & 0x7fffffu;
  uint32_t h, rem, halfway;
  if (e >= 113) {  // normal half
    h = ((e - 112) << 10) | (m >> 13);
    rem = m & 0x1fffu;
    halfway = 0x1000u;
  } else {  // subnormal half: units of 2^-24
    const uint32_t full = m | 0x800000u, shift = 126 - e;
    h = full >> shift;
    rem = full & ((1u << shift) - 1);
    halfway = 1u << (shift - 1);
  }
  if (rem > halfway || (rem == halfway && (h & 1u))) ++h;
  return sign | static_cast<uint16_t>(h);
}

float ref_half_to_float(uint16_t h) {
  const int e = (h >> 10) & 0x1f, m = h & 0x3ff;
  const float s = (h & 0x8000) ? -1.f : 1.f;
  if (e == 31) return m ? NAN : s * INFINITY;
  return s * (e ? std::ldexp(1024.f + m, e - 25) : std::ldexp(float(m), -24));
}

float ref_bf16_to_float(uint16_t b) {
  const uint32_t u = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

bool same_float(float a, float b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

Outcome half_precision() {
  constexpr int n = 32;
  std::vector<float> in = {1.f, 1.f / 3.f, -2.5f, 65504.f, 70000.f, 65519.f, 65520.f, 1e-8f,
                           6e-8f, 2.98023224e-8f, 3e-5f, NAN, -INFINITY, 1.00390625f, 1.01171875f,
                           3.14159265f, -0.f, 1e30f};
  lcg_state = 5;
  while (in.size() < n) in.push_back(100.f * lcg_uniform());
  std::vector<unsigned short> hb(n), bb(n);
  std::vector<float> back(2 * n), shuffled(4 * n);
  run(half_kernel, dim3(1), dim3(n), 0, in.data(), n, hb.data(), bb.data(), back.data(), shuffled.data());

  Checker c;
  // Hand-checked anchors, then the reference converters for every input.
  c.eq(int(hb[0]), 0x3c00, "half(1)");
  c.eq(int(bb[0]), 0x3f80, "bf16(1)");
  c.eq(int(hb[1]), 0x3555, "half(1/3)");
  c.eq(int(bb[1]), 0x3eab, "bf16(1/3)");
  c.eq(int(hb[3]), 0x7bff, "half(65504)");
  c.eq(int(hb[4]), 0x7c00, "half(70000) = inf");
  c.eq(int(bb[13]), 0x3f80, "bf16(1.00390625): tie to even, down");
  c.eq(int(bb[14]), 0x3f82, "bf16(1.01171875): tie to even, up");
  for (int i = 0; i < n; ++i) {
    const std::string at = " of input " + std::to_string(i);
    if (std::isnan(in[i])) {
      if ((hb[i] & 0x7c00) != 0x7c00 || !(hb[i] & 0x3ff)) c.fail("half NaN" + at);
      if ((bb[i] & 0x7f80) != 0x7f80 || !(bb[i] & 0x7f)) c.fail("bf16 NaN" + at);
    } else {
      c.eq(int(hb[i]), int(ref_float_to_half(in[i])), "half bits" + at);
      c.eq(int(bb[i]), int(ref_float_to_bf16(in[i])), "bf16 bits" + at);
    }
    if (!same_float(back[2 * i], ref_half_to_float(hb[i]))) c.fail("__half2float" + at);
    if (!same_float(back[2 * i + 1], ref_bf16_to_float(bb[i]))) c.fail("__bfloat162float" + at);
    const int x = i ^ 1, d = i + 1 < n ? i + 1 : i;
    if (!same_float(shuffled[4 * i], ref_half_to_float(hb[x]))) c.fail("__half shuffle" + at);
    if (!same_float(shuffled[4 * i + 1], ref_bf16_to_float(bb[x]))) c.fail("bf16 shuffle" + at);
    if (!same_float(shuffled[4 * i + 2], ref_half_to_float(ref_float_to_half(in[d])))) c.fail("__half2 low" + at);
    if (!same_float(shuffled[4 * i + 3], ref_half_to_float(ref_float_to_half(-in[d])))) c.fail("__half2 high" + at);
  }
  // The same conversions called from host code of the emulator build.
  c.eq(int(__half_as_ushort(__float2half(1.f / 3.f))), 0x3555, "host half(1/3)");
  c.eq(int(__bfloat16_as_ushort(__float2bfloat16(1.01171875f))), 0x3f82, "host bf16 tie");
  if (__bfloat162float(__float2bfloat16(-2.5f)) != -2.5f) c.fail("host bf16 round trip");
  Hasher h;
  h.add(hb), h.add(bb), h.add(back), h.add(shuffled);
  return c.outcome(h);
}

// ---------------------------------------------------------------------------------- atomics ----
Outcome atomics() {
  constexpr int kBlocks = 4, kThreads = 96, kT = kBlocks * kThreads;
  // memset first: the struct has padding, and the hash reads every byte.
  auto fresh = [](AtomicCounters& a) {
    std::memset(static_cast<void*>(&a), 0, sizeof a);
    a.i_min = INT_MAX, a.i_max = INT_MIN, a.i_and = -1;
    a.u_min = UINT_MAX, a.ull_min = ULLONG_MAX, a.ll_min = LLONG_MAX, a.ll_max = LLONG_MIN, a.ll_and = -1;
  };
  AtomicCounters got, w;
  fresh(got), fresh(w);
  run(atomics_kernel, dim3(kBlocks), dim3(kThreads), 0, &got);
  for (int t = 0; t < kT; ++t) {
    w.i_add += t, w.i_sub -= t, w.i_min = std::min(w.i_min, 1000 - t), w.i_max = std::max(w.i_max, t * 3 - 50);
    w.i_and &= ~(1 << (t % 31)), w.i_or |= 1 << (t % 13), w.i_xor ^= t, w.i_exch = 7, w.i_cas += 2;
    w.u_add += 3, w.u_inc = w.u_inc >= 9 ? 0 : w.u_inc + 1, w.u_dec = (w.u_dec == 0 || w.u_dec > 5) ? 5 : w.u_dec - 1;
    w.u_min = std::min(w.u_min, unsigned(t + 17)), w.u_max = std::max(w.u_max, unsigned(t));
    w.ull_add += 1ull << 33, w.ull_or |= 1ull << (t % 64), w.ull_min = std::min(w.ull_min, 5ull + t);
    w.ull_max = std::max(w.ull_max, (unsigned long long)t << 20);
    w.ll_min = std::min(w.ll_min, -(long long)t * 1000000007ll), w.ll_max = std::max(w.ll_max, t - 100ll);
    w.ll_and &= ~(1ll << (t % 63)), w.ll_xor ^= (long long)t << 7;
    w.f_add += 0.5f, w.d_add += 0.25;
  }
  Checker c;
  c.eq(got.i_add, w.i_add, "i_add"), c.eq(got.i_sub, w.i_sub, "i_sub"), c.eq(got.i_min, w.i_min, "i_min");
  c.eq(got.i_max, w.i_max, "i_max"), c.eq(got.i_and, w.i_and, "i_and"), c.eq(got.i_or, w.i_or, "i_or");
  c.eq(got.i_xor, w.i_xor, "i_xor"), c.eq(got.i_exch, w.i_exch, "i_exch"), c.eq(got.i_cas, w.i_cas, "i_cas");
  c.eq(got.u_add, w.u_add, "u_add"), c.eq(got.u_inc, w.u_inc, "u_inc"), c.eq(got.u_dec, w.u_dec, "u_dec");
  c.eq(got.u_min, w.u_min, "u_min"), c.eq(got.u_max, w.u_max, "u_max"), c.eq(got.ull_add, w.ull_add, "ull_add");
  c.eq(got.ull_or, w.ull_or, "ull_or"), c.eq(got.ull_min, w.ull_min, "ull_min"), c.eq(got.ull_max, w.ull_max, "ull_max");
  c.eq(got.ll_min, w.ll_min, "ll_min"), c.eq(got.ll_max, w.ll_max, "ll_max"), c.eq(got.ll_and, w.ll_and, "ll_and");
  c.eq(got.ll_xor, w.ll_xor, "ll_xor"), c.eq(got.f_add, w.f_add, "f_add"), c.eq(got.d_add, w.d_add, "d_add");
  Hasher h;
  h.bytes(&got, sizeof got);
  return c.outcome(h);
}

// ------------------------------------------------------------------------------- intrinsics ----
Outcome intrinsics() {
  std::vector<float> f(kIntrinsicResults, -1.f);
  std::vector<long long> i(kIntrinsicResults, -1);
  run(intrinsics_kernel, dim3(1), dim3(32), 0, f.data(), i.data());
  const double want_f[] = {2.718281828, 2.079441542, 8, 5, 1024, 0.25, 0.25, 1.25, 7, 1, 2, 5, 0, 1, 4, 1};
  const long long want_i[] = {0x3f800000, 0x80000000ll, 8, 40, 31, 32, 63, 4, 41, 0x80000000ll,
                              0x55114400, 3, 47, 13, 24, 1, 2, 8};
  Checker c;
  for (size_t k = 0; k < sizeof want_f / sizeof want_f[0]; ++k)
    if (!close(f[k], want_f[k], 1e-6, 0)) c.fail("float result " + std::to_string(k) + " = " + std::to_string(f[k]));
  for (size_t k = 0; k < sizeof want_i / sizeof want_i[0]; ++k) c.eq(i[k], want_i[k], "integer result " + std::to_string(k));
  // std::min / std::max still resolve next to the global CUDA-style overloads.
  c.eq(std::min(3, 4) + std::max<long>(5, 6), 9L, "std::min/std::max");
  Hasher h;
  h.add(f), h.add(i);
  return c.outcome(h);
}

// ------------------------------------------------------------------------------ indexing -----
Outcome indexing() {
  const dim3 grid(3, 2, 2), block(8, 3, 2);  // 48 threads: the second warp has 16 lanes
  const unsigned nb = 12, nt = 48;
  std::vector<unsigned> out(2 * nb * nt, 0);
  int bad_mask = 0;
  run(indexing_kernel, grid, block, 0, out.data(), &bad_mask);
  Checker c;
  c.eq(bad_mask, 0, "threads whose __activemask was wrong");
  for (unsigned b = 0; b < nb; ++b)
    for (unsigned t = 0; t < nt; ++t) {
      const unsigned base = t / 32 * 32, lanes = std::min(32u, nt - base);
      const unsigned nb_tid = base + (t % 32 + 1) % lanes;
      c.eq(out[b * nt + t], (b << 20) | (t << 8) | (nb_tid & 0xff), "id of block " + std::to_string(b));
      c.eq(out[nb * nt + b * nt + t], 16 * (t & 0xff), "stack scratch");
    }
  Hasher h;
  h.add(out);
  return c.outcome(h);
}

// --------------------------------------------------------------------------- lenient mode ----
Outcome lenient_exit() {
  auto saved = simt::options().strict;
  simt::options().strict = false;
  std::vector<int> out(2, 0);
  try {
    run(early_exit_kernel, dim3(2), dim3(64), 0, out.data());
  } catch (...) {
    simt::options().strict = saved;
    throw;
  }
  simt::options().strict = saved;
  Checker c;
  c.eq(out[0], 40, "block 0 count"), c.eq(out[1], 40, "block 1 count");
  Hasher h;
  h.add(out);
  return c.outcome(h);
}

// ---------------------------------------------------------------------- error recovery -------
int destroyed = 0, constructed = 0;
struct Tracker {
  Tracker() { atomicAdd(&constructed, 1); }
  ~Tracker() { atomicAdd(&destroyed, 1); }
};

__global__ void throwing_kernel() {
  Tracker t;
  __syncthreads();
  if (threadIdx.x == 5) throw std::runtime_error("boom from thread 5");
  __syncthreads();
}

__global__ void divergent_kernel() {
  if (threadIdx.x & 1) {
    __syncthreads();
  } else {
    __syncthreads();
  }
}

Outcome recovery() {
  Checker c;
  try {
    run(divergent_kernel, dim3(2), dim3(64), 0);
    c.fail("divergent barrier not reported");
  } catch (const simt::KernelError& e) {
    if (!e.located() || e.block().x != 0) c.fail(std::string("KernelError without location: ") + e.what());
  }
  constructed = destroyed = 0;
  try {
    run(throwing_kernel, dim3(3), dim3(64), 0);
    c.fail("exception from the kernel was lost");
  } catch (const std::runtime_error& e) {
    if (std::string(e.what()) != "boom from thread 5") c.fail(std::string("wrong exception: ") + e.what());
  }
  c.eq(constructed, 64, "threads that started the aborted block");
  c.eq(destroyed, constructed, "destructors run while unwinding the aborted block");
  const char* old = std::getenv("SIMT_ORDER");
  const std::string saved = old ? old : "";
  auto order = simt::options().order;
  simt::options().order.reset();
  setenv("SIMT_ORDER", "sideways", 1);
  try {
    run(divergent_kernel, dim3(1), dim3(1), 0);
    c.fail("SIMT_ORDER=sideways accepted");
  } catch (const std::invalid_argument&) {
  }
  if (old) setenv("SIMT_ORDER", saved.c_str(), 1); else unsetenv("SIMT_ORDER");
  simt::options().order = order;
  Outcome after = block_sum();  // the emulator is usable again
  if (!after.ok) c.fail("block_sum after errors: " + after.detail);
  Hasher h;
  h.bytes(&after.hash, sizeof after.hash);
  return c.outcome(h);
}

// Every emulated API once (the same file must build with nvcc: nvcc_check.cu).
Outcome api_coverage() {
  ApiBuffers buf;
  std::memset(static_cast<void*>(&buf), 0, sizeof buf);
  run(api_coverage_kernel, dim3(1), dim3(32), 0, &buf);
  Checker c;
  c.eq(buf.i[0], 32, "atomicAdd count");
  Hasher h;
  h.bytes(&buf, sizeof buf);
  return c.outcome(h);
}

// Emulator only (device code cannot change the rounding mode): the context switch keeps MXCSR
// and the x87 control word per fiber, restoring them only when they differ.
__global__ void fp_env_kernel(float* out, int* modes) {
  const int t = threadIdx.x;
  if (t % 2) std::fesetround(FE_DOWNWARD);
  __syncthreads();
  volatile float a = 1.f, b = 3.f;  // 1/3 rounds up to nearest, so FE_DOWNWARD differs
  volatile long double la = 1.0L, lb = 3.0L;  // x87
  out[t] = a / b;
  modes[t] = std::fegetround();
  __syncthreads();
  out[64 + t] = static_cast<float>(la / lb - 1.0L / 3.0L);  // 0, or one long-double ulp
  std::fesetround(FE_TONEAREST);
}

Outcome fp_env() {
  std::vector<float> out(128);
  std::vector<int> modes(64);
  run(fp_env_kernel, dim3(2), dim3(64), 0, out.data(), modes.data());
  Checker c;
  volatile float a = 1.f, b = 3.f;
  volatile long double la = 1.0L, lb = 3.0L;
  const float nearest = a / b;
  const float near_x87 = static_cast<float>(la / lb - 1.0L / 3.0L);
  std::fesetround(FE_DOWNWARD);
  const float down = a / b;
  const float down_x87 = static_cast<float>(la / lb - 1.0L / 3.0L);
  std::fesetround(FE_TONEAREST);
  if (nearest == down || near_x87 == down_x87) c.fail("rounding modes give the same quotient; the test proves nothing");
  for (int t = 0; t < 64; ++t) {
    c.eq(modes[t], t % 2 ? FE_DOWNWARD : FE_TONEAREST, "rounding mode of thread " + std::to_string(t));
    if (out[t] != (t % 2 ? down : nearest)) c.fail("SSE quotient of thread " + std::to_string(t));
    if (out[64 + t] != (t % 2 ? down_x87 : near_x87)) c.fail("x87 quotient of thread " + std::to_string(t));
  }
  c.eq(std::fegetround(), FE_TONEAREST, "the launching thread's rounding mode");
  Hasher h;
  h.add(out), h.add(modes);
  return c.outcome(h);
}

}  // namespace

int bench() {
  constexpr int kBlocks = 4096, kThreads = 256;
  int out = 0;
  const auto t0 = std::chrono::steady_clock::now();
  run(barrier_bench_kernel, dim3(kBlocks), dim3(kThreads), 0, &out);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  const bool ok = out == kBlocks * (kThreads - 8 + 1);
  std::printf("%s bench %d blocks x %d threads, 3 barriers each: %.1f ms (%.3f us per thread)\n",
              ok ? "PASS" : "FAIL", kBlocks, kThreads, ms, ms * 1e3 / (1.0 * kBlocks * kThreads));
  return ok ? 0 : 1;
}

std::vector<Case> correct_cases() {
  return {
      {"block_sum", Kind::Correct, "float4 loads, shuffles, SIMT_SHARED, atomicAdd", block_sum},
      {"softmax_stats", Kind::Correct, "online softmax max/lse/argmax, lowest-index ties, dynamic smem", softmax_stats},
      {"matmul", Kind::Correct, "16x16 tiled matmul, barriers in the k loop, odd shapes", matmul},
      {"shuffles", Kind::Correct, "shfl idx/up/down/xor x width 8/16/32 x int/double, partial mask", shuffles},
      {"votes", Kind::Correct, "ballot/any/all, syncthreads_count/and/or, reduce, match, partial warp", votes},
      {"dynamic_smem", Kind::Correct, "64 KiB dynamic smem with opt-in, 0xFF poison per block", dynamic_smem},
      {"half_precision", Kind::Correct, "fp16/bf16 conversions (RNE) and shuffles vs reference", half_precision},
      {"atomics", Kind::Correct, "every atomic overload", atomics},
      {"intrinsics", Kind::Correct, "math/bit intrinsics, min/max, CUDART_INF_F, isnan", intrinsics},
      {"indexing", Kind::Correct, "3-D grid/block, 48-thread block, __activemask, 64 KiB locals", indexing},
      {"lenient_exit", Kind::Correct, "strict=false: exited threads count as arrived", lenient_exit},
      {"fp_env", Kind::Correct, "per-fiber MXCSR / x87 control word survive context switches", fp_env},
      {"api_coverage", Kind::Correct, "every emulated device API once (nvcc builds the same file)", api_coverage},
      {"recovery", Kind::Correct, "errors and kernel exceptions are rethrown; the emulator recovers", recovery},
  };
}

}  // namespace selftest
