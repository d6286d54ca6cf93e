// Standalone test driver for csrc/simt/ptx.h.
//
// Emulator build (what python_tests/test_ptx_wrappers.py runs):
//   g++ -std=c++20 -O2 -pthread -I csrc -I $CUDA_HOME/include python_tests/native/simt/ptx_test/ptx_test.cpp
// GPU build (a GPU job; compares the tensor-core path against FORCE_EMU=true and the references):
//   nvcc -std=c++17 -arch=sm_80 -x cu -I csrc python_tests/native/simt/ptx_test/ptx_test.cpp
//
// Usage: ptx_test [all | layout | mma | gemm | cp_async | pipeline | pack]...
//        ptx_test misuse N      (emulator: must report simt::KernelError, exit 3; see k_misuse)
// Prints one "PASS/FAIL <test> (<ms> ms)" line per test, then "HASH <hex>" over every output
// buffer (the same under every SIMT_ORDER / SIMT_SEED), and exits non-zero on any failure.
#include "simt/simt.h"
#include "simt/ptx.h"
#include "ptx_test_kernels.cuh"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <random>
#include <string>
#include <vector>

namespace {

using namespace ptxtest;

int g_failures = 0;
int g_checks = 0;
uint64_t g_hash = 1469598103934665603ull;  // FNV-1a 64

void hash_bytes(const void* p, size_t n) {
  const unsigned char* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) {
    g_hash ^= b[i];
    g_hash *= 1099511628211ull;
  }
}
template <class T>
void hash_vec(const std::vector<T>& v) {
  hash_bytes(v.data(), v.size() * sizeof(T));
}

#define CHECK(cond, ...)                                        \
  do {                                                          \
    ++g_checks;                                                 \
    if (!(cond)) {                                              \
      ++g_failures;                                             \
      if (g_failures <= 40) {                                   \
        std::fprintf(stderr, "  check failed at line %d: ", __LINE__); \
        std::fprintf(stderr, __VA_ARGS__);                      \
        std::fprintf(stderr, "\n");                             \
      }                                                         \
    }                                                           \
  } while (0)

// ------------------------------------------------------------------------------------------------
// Device memory, the same API in both builds.
// ------------------------------------------------------------------------------------------------
template <class T>
struct DevBuf {
  T* p = nullptr;
  size_t n = 0;
  explicit DevBuf(size_t count) : n(count) {
#if SIMT_EMULATED
    p = static_cast<T*>(std::malloc(count > 0 ? count * sizeof(T) : 1));
    std::memset(p, 0, count * sizeof(T));
#else
    if (cudaMalloc(&p, count * sizeof(T)) != cudaSuccess) {
      std::fprintf(stderr, "cudaMalloc failed\n");
      std::exit(2);
    }
    cudaMemset(p, 0, count * sizeof(T));
#endif
  }
  DevBuf(const std::vector<T>& host) : DevBuf(host.size()) { upload(host); }
  ~DevBuf() {
#if SIMT_EMULATED
    std::free(p);
#else
    cudaFree(p);
#endif
  }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  void upload(const std::vector<T>& host) {
#if SIMT_EMULATED
    std::memcpy(p, host.data(), n * sizeof(T));
#else
    cudaMemcpy(p, host.data(), n * sizeof(T), cudaMemcpyHostToDevice);
#endif
  }
  std::vector<T> download() const {
    std::vector<T> h(n);
#if SIMT_EMULATED
    std::memcpy(h.data(), p, n * sizeof(T));
#else
    cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost);
#endif
    return h;
  }
};

template <class Kernel, class... Args>
void run(Kernel kernel, dim3 grid, dim3 block, Args... args) {
  simt::launch(kernel, grid, block, 0, (cudaStream_t)0, args...);
#if !SIMT_EMULATED
  const cudaError_t e = cudaDeviceSynchronize();
  if (e != cudaSuccess) {
    std::fprintf(stderr, "kernel failed: %s\n", cudaGetErrorString(e));
    std::exit(2);
  }
#endif
}

constexpr bool kEmulated = SIMT_EMULATED != 0;

// ------------------------------------------------------------------------------------------------
// Independent host conversions (not the ones in ptx.h): round to nearest even.
// ------------------------------------------------------------------------------------------------
uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint16_t ref_bf16(float f) {
  const uint32_t u = float_bits(f);
  if (std::isnan(f)) return 0x7fff;
  return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
float ref_bf16_value(uint16_t b) { return bits_float(uint32_t(b) << 16); }

#if SIMT_EMULATED && defined(__FLT16_MAX__)
#define PTXTEST_HAVE_FLOAT16 1
uint16_t ref_f16(float f) {
  const _Float16 h = static_cast<_Float16>(f);  // the compiler's conversion, round to nearest even
  uint16_t b;
  std::memcpy(&b, &h, 2);
  return b;
}
float ref_f16_value(uint16_t b) {
  _Float16 h;
  std::memcpy(&h, &b, 2);
  return static_cast<float>(h);
}
#else
#define PTXTEST_HAVE_FLOAT16 0
// Fallback when the host compiler has no _Float16: exact decode, round by search.
float ref_f16_value(uint16_t b) {
  const int sign = b >> 15, e = (b >> 10) & 31, m = b & 1023;
  float v;
  if (e == 0)
    v = std::ldexp(float(m), -24);
  else if (e == 31)
    v = m ? NAN : INFINITY;
  else
    v = std::ldexp(float(1024 + m), e - 25);
  return sign ? -v : v;
}
uint16_t ref_f16(float f) {
  if (std::isnan(f)) return 0x7fff;
  const uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  const float a = std::fabs(f);
  if (a >= 65520.f) return sign | 0x7c00;
  uint16_t best = 0;
  for (uint16_t c = 0; c < 0x7c00; ++c) {
    const double dc = std::fabs(double(ref_f16_value(c)) - a), db = std::fabs(double(ref_f16_value(best)) - a);
    if (dc < db || (dc == db && (c & 1) == 0 && (best & 1) == 1)) best = c;
  }
  return sign | best;
}
#endif

uint16_t ref_round(bool bf16, float f) { return bf16 ? ref_bf16(f) : ref_f16(f); }
float ref_value(bool bf16, uint16_t b) { return bf16 ? ref_bf16_value(b) : ref_f16_value(b); }

// ------------------------------------------------------------------------------------------------
// The layouts as the PTX ISA writes them (literal transcription; compare ptx_test_kernels.cuh,
// which uses the compact form). Sources:
//  * PTX ISA 9.0 §9.7.15.5.8 "Matrix Fragments for mma.m16n8k16 with floating point type"
//    (§9.7.14.5.8 in ISA 9.2), figures 79 (A), 81 (B), 83 (C/D). Elements "low to high":
//    register j of a .f16x2 vector holds elements 2j (bits 0-15) and 2j+1 (bits 16-31).
//  * PTX ISA §9.7.15.5.15 (9.7.14.5.15 in 9.2) "Warp-level matrix load instruction: ldmatrix",
//    figure 104 and text: "Each thread in a warp loads fragments of a row, with thread 0
//    receiving the first fragment in its register r, and so on. A group of four threads loads an
//    entire row of the matrix"; addresses addr0-addr7 (threads 0-7) are the rows of the first
//    matrix, addr8-addr15 (threads 8-15) of the second, ...; ".x2 ... elements of the second
//    matrix are loaded in the next destination register"; ".trans indicates that the matrix is
//    loaded in column-major format".
// ------------------------------------------------------------------------------------------------
struct RC {
  int row, col;
};

// Figure 79, multiplicand A, .f16/.bf16, a0..a7:
//   row = groupID for ai where 0 <= i < 2 || 4 <= i < 6, groupID + 8 otherwise
//   col = (threadID_in_group * 2) + (i & 0x1) for ai where i < 4, ... + 8 for ai where i >= 4
RC doc_a(int laneid, int i) {
  const int groupID = laneid >> 2, threadID_in_group = laneid % 4;
  RC e;
  e.row = ((0 <= i && i < 2) || (4 <= i && i < 6)) ? groupID : groupID + 8;
  e.col = i < 4 ? (threadID_in_group * 2) + (i & 0x1) : (threadID_in_group * 2) + (i & 0x1) + 8;
  return e;
}
// Figure 81, multiplicand B, .f16/.bf16, b0..b3:
//   row = (threadID_in_group * 2) + (i & 0x1) for bi where i < 2, ... + 8 for bi where i >= 2
//   col = groupID
RC doc_b(int laneid, int i) {
  const int groupID = laneid >> 2, threadID_in_group = laneid % 4;
  RC e;
  e.row = i < 2 ? (threadID_in_group * 2) + (i & 0x1) : (threadID_in_group * 2) + (i & 0x1) + 8;
  e.col = groupID;
  return e;
}
// Figure 83, accumulators C/D (.f32), c0..c3:
//   row = groupID for ci where i < 2, groupID + 8 for ci where i >= 2
//   col = (threadID_in_group * 2) + (i & 0x1) for ci where i = {0,..,3}
RC doc_c(int laneid, int i) {
  const int groupID = laneid >> 2, threadID_in_group = laneid % 4;
  RC e;
  e.row = i < 2 ? groupID : groupID + 8;
  e.col = (threadID_in_group * 2) + (i & 0x1);
  return e;
}
// Figure 104, one 8x8 matrix of 16-bit elements: thread t holds two consecutive elements of row
// t/4 (four threads per row of 8), i = 0 in the low half.
RC doc_ldmatrix(int laneid, int i) { return RC{laneid / 4, (laneid % 4) * 2 + i}; }

uint16_t half_of(uint32_t w, int i) { return uint16_t(i ? w >> 16 : w & 0xffffu); }

// Element codes: A[r][c] = 0x1000 + 256 r + c, B[k][n] = 0x2000 + 256 k + n (never 0xffff).
uint16_t code_a(int r, int c) { return uint16_t(0x1000 + 256 * r + c); }
uint16_t code_b(int k, int n) { return uint16_t(0x2000 + 256 * k + n); }

// ------------------------------------------------------------------------------------------------
// 1. Element-index layout test.
// ------------------------------------------------------------------------------------------------
template <bool EMU>
void layout_once() {
  std::vector<uint16_t> A(256), B(128), Bt(128);
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c) A[r * 16 + c] = code_a(r, c);
  for (int k = 0; k < 16; ++k)
    for (int n = 0; n < 8; ++n) {
      B[k * 8 + n] = code_b(k, n);
      Bt[n * 16 + k] = code_b(k, n);
    }
  DevBuf<uint16_t> dA(A), dB(B), dBt(Bt);
  DevBuf<uint32_t> dOut(32 * kLayoutWords);
  run(k_layout<EMU>, dim3(1), dim3(32), (const uint16_t*)dA.p, (const uint16_t*)dB.p, (const uint16_t*)dBt.p,
      dOut.p);
  const std::vector<uint32_t> out = dOut.download();
  hash_vec(out);
  const char* tag = EMU ? "FORCE_EMU" : "default";
  for (int lane = 0; lane < 32; ++lane) {
    const uint32_t* o = &out[lane * kLayoutWords];
    for (int i = 0; i < 8; ++i) {  // A fragment: direct loads and ldmatrix_x4
      const RC e = doc_a(lane, i);
      const uint16_t want = code_a(e.row, e.col);
      CHECK(half_of(o[i / 2], i % 2) == want, "%s lane %d a%d direct: got %04x want %04x (A[%d][%d])", tag, lane, i,
            half_of(o[i / 2], i % 2), want, e.row, e.col);
      CHECK(half_of(o[6 + i / 2], i % 2) == want, "%s lane %d a%d ldmatrix_x4: got %04x want %04x", tag, lane, i,
            half_of(o[6 + i / 2], i % 2), want);
    }
    for (int i = 0; i < 4; ++i) {  // B fragment: direct, x2.trans on B[k][n], x2 on Bt[n][k]
      const RC e = doc_b(lane, i);
      const uint16_t want = code_b(e.row, e.col);
      CHECK(half_of(o[4 + i / 2], i % 2) == want, "%s lane %d b%d direct: got %04x want %04x (B[%d][%d])", tag, lane, i,
            half_of(o[4 + i / 2], i % 2), want, e.row, e.col);
      CHECK(half_of(o[14 + i / 2], i % 2) == want, "%s lane %d b%d ldmatrix_x2_trans: got %04x want %04x", tag, lane,
            i, half_of(o[14 + i / 2], i % 2), want);
      CHECK(half_of(o[16 + i / 2], i % 2) == want, "%s lane %d b%d ldmatrix_x2(Bt): got %04x want %04x", tag, lane, i,
            half_of(o[16 + i / 2], i % 2), want);
    }
    for (int m = 0; m < 4; ++m)  // x4.trans on A: matrix m = rows 8(m&1).., cols 8(m>>1)..
      for (int i = 0; i < 2; ++i) {
        const RC e = doc_ldmatrix(lane, i);  // fragment (row, col) -> memory (col, row)
        const uint16_t want = code_a(8 * (m & 1) + e.col, 8 * (m >> 1) + e.row);
        CHECK(half_of(o[10 + m], i) == want, "%s lane %d ldmatrix_x4_trans r%d.%d: got %04x want %04x", tag, lane, m,
              i, half_of(o[10 + m], i), want);
      }
    for (int i = 0; i < 2; ++i) {  // x1 on A rows 0-7, cols 0-7
      const RC e = doc_ldmatrix(lane, i);
      CHECK(half_of(o[18], i) == code_a(e.row, e.col), "%s lane %d ldmatrix_x1.%d: got %04x want %04x", tag, lane, i,
            half_of(o[18], i), code_a(e.row, e.col));
      CHECK(half_of(o[19], i) == code_a(e.col, e.row), "%s lane %d ldmatrix_x1_trans.%d: got %04x want %04x", tag,
            lane, i, half_of(o[19], i), code_a(e.col, e.row));
    }
  }
}

void test_layout() {
  layout_once<false>();
  layout_once<true>();
}

// ------------------------------------------------------------------------------------------------
// 1b. The mma consumes and produces the documented layouts: fragments built on the host from
// figures 79/81/83 with small integers (all sums exact), D read back through figure 83.
// ------------------------------------------------------------------------------------------------
template <bool BF16, bool EMU>
void mma_frag_once(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> small(-8, 8);
  float A[16][16], B[16][8], C[16][8];
  for (auto& row : A)
    for (float& v : row) v = float(small(rng));
  for (auto& row : B)
    for (float& v : row) v = float(small(rng));
  for (auto& row : C)
    for (float& v : row) v = float(small(rng) * 16);
  std::vector<uint32_t> frags(32 * 10);
  for (int lane = 0; lane < 32; ++lane) {
    uint16_t ae[8], be[4];
    for (int i = 0; i < 8; ++i) {
      const RC e = doc_a(lane, i);
      ae[i] = ref_round(BF16, A[e.row][e.col]);
    }
    for (int i = 0; i < 4; ++i) {
      const RC e = doc_b(lane, i);
      be[i] = ref_round(BF16, B[e.row][e.col]);
    }
    uint32_t* f = &frags[lane * 10];
    for (int j = 0; j < 4; ++j) f[j] = uint32_t(ae[2 * j]) | uint32_t(ae[2 * j + 1]) << 16;
    for (int j = 0; j < 2; ++j) f[4 + j] = uint32_t(be[2 * j]) | uint32_t(be[2 * j + 1]) << 16;
    for (int i = 0; i < 4; ++i) {
      const RC e = doc_c(lane, i);
      f[6 + i] = float_bits(C[e.row][e.col]);
    }
  }
  DevBuf<uint32_t> dF(frags);
  DevBuf<float> dD(32 * 4);
  run(k_mma_frag<BF16, EMU>, dim3(1), dim3(32), (const uint32_t*)dF.p, dD.p);
  const std::vector<float> d = dD.download();
  hash_vec(d);
  for (int lane = 0; lane < 32; ++lane)
    for (int i = 0; i < 4; ++i) {
      const RC e = doc_c(lane, i);
      double want = C[e.row][e.col];
      for (int k = 0; k < 16; ++k) want += double(A[e.row][k]) * double(B[k][e.col]);
      CHECK(d[lane * 4 + i] == float(want), "%s %s lane %d d%d (D[%d][%d]): got %g want %g", BF16 ? "bf16" : "f16",
            EMU ? "FORCE_EMU" : "default", lane, i, e.row, e.col, d[lane * 4 + i], want);
    }
}

void test_mma() {
  for (uint64_t seed = 1; seed <= 3; ++seed) {
    mma_frag_once<true, false>(seed);
    mma_frag_once<true, true>(seed);
    mma_frag_once<false, false>(seed);
    mma_frag_once<false, true>(seed);
  }
}

// ------------------------------------------------------------------------------------------------
// 2 + 3. GEMMs: emulated mma against a double reference (tolerance) and against plain float math
// in the same k order (bitwise, for the emulation); ldmatrix x1/x2/x4(.trans) against the direct
// loads (bitwise, counted in the kernel) and the results of all fragment-load modes bitwise equal.
// ------------------------------------------------------------------------------------------------
struct Shape {
  int M, N, K;
};

template <bool BF16, bool EMU, int LDM, bool CPASYNC>
std::vector<float> gemm_run(const Shape& s, const std::vector<uint16_t>& A, const std::vector<uint16_t>& B, int lda,
                            int ldb, unsigned* mismatches) {
  DevBuf<uint16_t> dA(A), dB(B);
  DevBuf<float> dC(size_t(s.M) * s.N);
  DevBuf<unsigned> dMis(1);
  GemmArgs g{dA.p, dB.p, dC.p, s.M, s.N, s.K, lda, ldb, s.N, dMis.p};
  run(k_gemm<BF16, EMU, LDM, CPASYNC>, dim3((s.N + 31) / 32, (s.M + 31) / 32), dim3(128), g);
  *mismatches = dMis.download()[0];
  return dC.download();
}

template <bool BF16>
void gemm_case(const Shape& s, uint64_t seed) {
  const int lda = (s.K + 7) / 8 * 8, ldb = (s.N + 7) / 8 * 8;
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> uni(-1.f, 1.f);
  std::vector<uint16_t> A(size_t(s.M) * lda, 0x7fff), B(size_t(s.K) * ldb, 0x7fff);  // NaN in the padding
  std::vector<float> Av(size_t(s.M) * s.K), Bv(size_t(s.K) * s.N);
  for (int m = 0; m < s.M; ++m)
    for (int k = 0; k < s.K; ++k) {
      const float v = uni(rng) * (1 + (m * 7 + k * 3) % 5) / 3.f;  // "odd" values of several scales
      A[size_t(m) * lda + k] = ref_round(BF16, v);
      Av[size_t(m) * s.K + k] = ref_value(BF16, A[size_t(m) * lda + k]);
    }
  for (int k = 0; k < s.K; ++k)
    for (int n = 0; n < s.N; ++n) {
      const float v = uni(rng) * (1 + (k * 5 + n) % 3);
      B[size_t(k) * ldb + n] = ref_round(BF16, v);
      Bv[size_t(k) * s.N + n] = ref_value(BF16, B[size_t(k) * ldb + n]);
    }
  // References: double (with sum |a b| for the bound) and plain float in the emulation's k order.
  std::vector<double> ref(size_t(s.M) * s.N), mag(size_t(s.M) * s.N);
  std::vector<float> ref32(size_t(s.M) * s.N);
  for (int m = 0; m < s.M; ++m)
    for (int n = 0; n < s.N; ++n) {
      double acc = 0, am = 0;
      float acc32 = 0.f;
      for (int k = 0; k < s.K; ++k) {
        const float a = Av[size_t(m) * s.K + k], b = Bv[size_t(k) * s.N + n];
        acc += double(a) * b;
        am += std::fabs(double(a) * b);
        acc32 += a * b;
      }
      ref[size_t(m) * s.N + n] = acc;
      mag[size_t(m) * s.N + n] = am;
      ref32[size_t(m) * s.N + n] = acc32;
    }

  struct Variant {
    const char* name;
    bool emulated_math;  // the mma runs the shuffle emulation (always true on the emulator)
    std::vector<float> C;
    unsigned mismatches;
  };
  std::vector<Variant> vs;
  auto add = [&](const char* name, bool emu, std::vector<float> C, unsigned mis) {
    vs.push_back(Variant{name, emu || kEmulated, std::move(C), mis});
  };
  unsigned mis = 0;
  add("direct/cp.async", false, gemm_run<BF16, false, 0, true>(s, A, B, lda, ldb, &mis), mis);
  add("direct/plain-loads", false, gemm_run<BF16, false, 0, false>(s, A, B, lda, ldb, &mis), mis);
  add("x4/cp.async", false, gemm_run<BF16, false, 4, true>(s, A, B, lda, ldb, &mis), mis);
  add("x2/cp.async", false, gemm_run<BF16, false, 2, true>(s, A, B, lda, ldb, &mis), mis);
  add("x1/cp.async", false, gemm_run<BF16, false, 1, true>(s, A, B, lda, ldb, &mis), mis);
  add("FORCE_EMU direct/cp.async", true, gemm_run<BF16, true, 0, true>(s, A, B, lda, ldb, &mis), mis);
  add("FORCE_EMU x4/cp.async", true, gemm_run<BF16, true, 4, true>(s, A, B, lda, ldb, &mis), mis);
  add("FORCE_EMU x2/plain-loads", true, gemm_run<BF16, true, 2, false>(s, A, B, lda, ldb, &mis), mis);
  add("FORCE_EMU x1/cp.async", true, gemm_run<BF16, true, 1, true>(s, A, B, lda, ldb, &mis), mis);

  double worst = 0;
  for (const Variant& v : vs) {
    hash_vec(v.C);
    CHECK(v.mismatches == 0, "%s %dx%dx%d %s: %u ldmatrix fragments differ from the direct loads",
          BF16 ? "bf16" : "f16", s.M, s.N, s.K, v.name, v.mismatches);
    int bad_tol = 0, bad_bits = 0;
    for (size_t i = 0; i < v.C.size(); ++i) {
      const double err = std::fabs(double(v.C[i]) - ref[i]);
      const double bound = 1e-5 * mag[i] + 1e-30;
      if (mag[i] > 0) worst = std::max(worst, err / mag[i]);
      if (!(err <= bound)) {
        if (++bad_tol <= 3)
          std::fprintf(stderr, "    %s [%zu]: got %.9g want %.9g (bound %.3g)\n", v.name, i, v.C[i], ref[i], bound);
      }
      if (v.emulated_math && float_bits(v.C[i]) != float_bits(ref32[i])) ++bad_bits;
    }
    CHECK(bad_tol == 0, "%s %dx%dx%d %s: %d elements off the double reference by more than 1e-5 sum|ab|",
          BF16 ? "bf16" : "f16", s.M, s.N, s.K, v.name, bad_tol);
    CHECK(bad_bits == 0, "%s %dx%dx%d %s: %d elements differ bitwise from plain float math in k order",
          BF16 ? "bf16" : "f16", s.M, s.N, s.K, v.name, bad_bits);
    // Every fragment-load mode feeds the same fragments, so the same mma path gives the same bits.
    for (const Variant& w : vs)
      if (&w != &v && w.emulated_math == v.emulated_math)
        CHECK(std::memcmp(w.C.data(), v.C.data(), v.C.size() * sizeof(float)) == 0,
              "%s %dx%dx%d: %s and %s differ bitwise", BF16 ? "bf16" : "f16", s.M, s.N, s.K, v.name, w.name);
  }
  std::printf("    gemm %s %3dx%3dx%3d: %zu variants, worst |err|/sum|ab| = %.2e\n", BF16 ? "bf16" : "f16 ", s.M, s.N,
              s.K, vs.size(), worst);
}

void test_gemm() {
  const Shape shapes[] = {{16, 8, 16}, {64, 64, 64}, {48, 40, 80}, {50, 30, 44}};
  uint64_t seed = 11;
  for (const Shape& s : shapes) {
    gemm_case<true>(s, seed++);
    gemm_case<false>(s, seed++);
  }
}

// ------------------------------------------------------------------------------------------------
// 4. cp.async: group semantics, zero fill, poison before the wait (emulator), and a pipeline that
// reads a stage before waiting for it.
// ------------------------------------------------------------------------------------------------
bool is_poison(const uint4& v) { return v.x == ~0u && v.y == ~0u && v.z == ~0u && v.w == ~0u; }
bool same(const uint4& a, const uint4& b) { return a.x == b.x && a.y == b.y && a.z == b.z && a.w == b.w; }

template <bool EMU>
void cp_async_once() {
  std::vector<uint4> src(5 * 32);
  for (size_t i = 0; i < src.size(); ++i) {
    const unsigned b = unsigned(i) * 4u;
    src[i] = make_uint4(0x01000000u + b, 0x02000000u + b, 0x03000000u + b, 0x04000000u + b);
  }
  DevBuf<uint4> dSrc(src), dObs(32 * kObs);
  DevBuf<int> dPend(32 * 4);
  run(k_cp_async_groups<EMU>, dim3(1), dim3(32), (const uint4*)dSrc.p, dObs.p, dPend.p);
  const std::vector<uint4> obs = dObs.download();
  const std::vector<int> pend = dPend.download();
  hash_vec(obs);
  hash_vec(pend);
  const bool deferred = kEmulated && !EMU;  // the emulator's deferred copies
  const char* tag = EMU ? "FORCE_EMU" : "default";
  for (int lane = 0; lane < 32; ++lane) {
    const uint4* o = &obs[lane * kObs];
    const uint4 s0 = src[lane], s1 = src[32 + lane], s2 = src[64 + lane], s3 = src[96 + lane], s4 = src[128 + lane];
    if (deferred) {
      CHECK(is_poison(o[0]), "%s lane %d: stage 0 read before any wait is not poison", tag, lane);
      CHECK(is_poison(o[2]), "%s lane %d: stage 1 after wait<1> is not poison", tag, lane);
      CHECK(is_poison(o[4]), "%s lane %d: uncommitted stage 2 after wait<0> is not poison", tag, lane);
      const int* p = &pend[lane * 4];
      CHECK(p[0] == 3 && p[1] == 2 && p[2] == 1 && p[3] == 0, "%s lane %d: pending counts %d %d %d %d, want 3 2 1 0",
            tag, lane, p[0], p[1], p[2], p[3]);
    } else if (kEmulated) {  // FORCE_EMU on the emulator: synchronous copies
      CHECK(same(o[0], s0) && same(o[2], s1) && same(o[4], s2), "%s lane %d: synchronous copies not visible", tag,
            lane);
    }
    CHECK(same(o[1], s0), "%s lane %d: stage 0 after wait<1> did not land", tag, lane);
    CHECK(same(o[3], s1), "%s lane %d: stage 1 after wait<0> did not land", tag, lane);
    CHECK(same(o[5], s2), "%s lane %d: stage 2 after commit+wait<0> did not land", tag, lane);
    unsigned char want6[16] = {};
    std::memcpy(want6, &s3, 6);
    CHECK(std::memcmp(&o[6], want6, 16) == 0, "%s lane %d: zfill with 6 source bytes wrong", tag, lane);
    CHECK(same(o[7], make_uint4(0, 0, 0, 0)), "%s lane %d: zfill with 0 source bytes is not all zero", tag, lane);
    CHECK(same(o[8], s4), "%s lane %d: wait_all did not complete an uncommitted copy", tag, lane);
  }
}

void test_cp_async() {
  cp_async_once<false>();
  cp_async_once<true>();
}

template <bool BUGGY>
std::vector<float> pipeline_once(const std::vector<float>& src, int stages) {
  DevBuf<float> dSrc(src), dOut(32);
  run(k_pipeline<BUGGY>, dim3(1), dim3(32), (const float4*)dSrc.p, stages, dOut.p);
  return dOut.download();
}

void test_pipeline() {
  const int stages = 6;
  std::vector<float> src(size_t(stages) * 32 * 4);
  for (size_t i = 0; i < src.size(); ++i) src[i] = float(int(i % 97) - 48) * 0.25f;
  std::vector<float> want(32, 0.f);
  for (int s = 0; s < stages; ++s)
    for (int lane = 0; lane < 32; ++lane) {
      const float* v = &src[(size_t(s) * 32 + (lane + 1) % 32) * 4];
      want[lane] += v[0] + v[1] + v[2] + v[3];
    }
  const std::vector<float> good = pipeline_once<false>(src, stages);
  hash_vec(good);
  for (int lane = 0; lane < 32; ++lane)
    CHECK(good[lane] == want[lane], "pipeline lane %d: got %g want %g", lane, good[lane], want[lane]);
  if (kEmulated) {
    const std::vector<float> bad = pipeline_once<true>(src, stages);
    hash_vec(bad);
    int nan = 0;
    for (float v : bad) nan += std::isnan(v);
    CHECK(nan == 32, "buggy pipeline (read before wait): %d of 32 sums are NaN, want all (poison not seen)", nan);
    std::printf("    buggy pipeline (reads each stage before its wait): %d/32 sums NaN on the emulator\n", nan);
  }
}

// ------------------------------------------------------------------------------------------------
// Packing helpers against independent host roundings.
// ------------------------------------------------------------------------------------------------
void test_pack() {
  std::vector<float> in = {0.f, -0.f, 1.f, -1.f, 1.00390625f, 1.01171875f, 3.14159265f, -2.71828183f,
                           65504.f, 65519.f, 65520.f, 1e5f, -1e5f, 6.1e-5f, 5.96e-8f, 2.9e-8f,
                           1e-40f, 3.0e38f, 3.4e38f, INFINITY, -INFINITY, 0.333333343f, 1.0009765625f,
                           1.00048828125f, 1.00146484375f, 255.5f, -0.0001f, 7.0e-6f};
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<float> uni(-4.f, 4.f);
  for (int i = 0; i < 200; ++i) in.push_back(uni(rng) * std::ldexp(1.f, int(rng() % 40) - 20));
  for (int i = 0; i < 64; ++i) {  // exact bf16 / f16 ties
    const uint32_t u = (uint32_t(rng()) & 0xffff0000u) | 0x8000u;
    const float f = bits_float(u & 0x7f7fffffu);
    in.push_back(f);
    in.push_back(float(int(rng() % 2048) + 0.5f) * std::ldexp(1.f, -int(rng() % 10)));
  }
  const int n = int(in.size());
  DevBuf<float> dIn(in);
  DevBuf<uint32_t> dOut(2 * size_t(n));
  run(k_pack, dim3((n + 63) / 64), dim3(64), (const float*)dIn.p, n, dOut.p);
  const std::vector<uint32_t> out = dOut.download();
  hash_vec(out);
  for (int i = 0; i < n; ++i) {
    const float x = in[i], y = in[(i + 1) % n];
    const uint32_t wb = uint32_t(ref_bf16(x)) | uint32_t(ref_bf16(y)) << 16;
    const uint32_t wh = uint32_t(ref_f16(x)) | uint32_t(ref_f16(y)) << 16;
    CHECK(out[2 * i] == wb, "pack_bf16x2(%.9g, %.9g) = %08x, want %08x", x, y, out[2 * i], wb);
    CHECK(out[2 * i + 1] == wh, "pack_f16x2(%.9g, %.9g) = %08x, want %08x", x, y, out[2 * i + 1], wh);
    // And on the host (same function, host path).
    CHECK(simt::ptx::pack_bf16x2(x, y) == wb, "host pack_bf16x2(%.9g, %.9g)", x, y);
    CHECK(simt::ptx::pack_f16x2(x, y) == wh, "host pack_f16x2(%.9g, %.9g)", x, y);
    float lo, hi;
    simt::ptx::unpack_bf16x2(wb, lo, hi);
    CHECK(float_bits(lo) == float_bits(ref_bf16_value(ref_bf16(x))), "unpack_bf16x2 lo of %.9g", x);
    simt::ptx::unpack_f16x2(wh, lo, hi);
    CHECK(std::isnan(hi) ? std::isnan(ref_f16_value(ref_f16(y)))
                         : float_bits(hi) == float_bits(ref_f16_value(ref_f16(y))),
          "unpack_f16x2 hi of %.9g", y);
  }
}

// ------------------------------------------------------------------------------------------------

struct Test {
  const char* name;
  void (*fn)();
};
const Test kTests[] = {
    {"layout", test_layout},     {"mma", test_mma}, {"gemm", test_gemm}, {"cp_async", test_cp_async},
    {"pipeline", test_pipeline}, {"pack", test_pack},
};

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> names;
  for (int i = 1; i < argc; ++i) names.push_back(argv[i]);
  if (names.size() == 2 && names[0] == "misuse") {
    const int what = std::atoi(names[1].c_str());
    std::vector<uint4> src(32, make_uint4(1, 2, 3, 4));
    DevBuf<uint4> dSrc(src);
    try {
      run(k_misuse, dim3(1), dim3(what == 5 ? 16 : 32), what, (const uint4*)dSrc.p);
    } catch (const std::exception& e) {  // simt::KernelError on the emulator
      std::fprintf(stderr, "misuse %d reported: %s\n", what, e.what());
      return 3;
    }
    std::printf("misuse %d: kernel finished without an error\n", what);
    return 0;
  }
  if (names.empty() || (names.size() == 1 && names[0] == "all")) {
    names.clear();
    for (const Test& t : kTests) names.push_back(t.name);
  }
  std::printf("ptx_test (%s)\n", kEmulated ? "SIMT emulator" : "GPU");
  const auto t_all = std::chrono::steady_clock::now();
  int failed_tests = 0;
  for (const std::string& name : names) {
    const Test* test = nullptr;
    for (const Test& t : kTests)
      if (name == t.name) test = &t;
    if (!test) {
      std::fprintf(stderr, "unknown test '%s'\n", name.c_str());
      return 2;
    }
    const int before = g_failures;
    const auto t0 = std::chrono::steady_clock::now();
    try {
      test->fn();
    } catch (const std::exception& e) {
      ++g_failures;
      std::fprintf(stderr, "  exception: %s\n", e.what());
    }
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    const bool ok = g_failures == before;
    failed_tests += !ok;
    std::printf("%s %s (%.1f ms)\n", ok ? "PASS" : "FAIL", test->name, ms);
    std::fflush(stdout);
  }
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_all).count();
  std::printf("HASH %016llx\n", (unsigned long long)g_hash);
  std::printf("%s: %d checks, %d failed, %d of %zu tests failed (%.1f ms)\n", failed_tests ? "FAILED" : "OK", g_checks,
              g_failures, failed_tests, names.size(), ms);
  return failed_tests ? 1 : 0;
}
