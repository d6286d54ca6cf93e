// Test kernels for csrc/simt/ptx.h, run by ptx_test.cpp (g++ on the SIMT emulator; the same file
// also builds with nvcc, so a GPU job can compare the tensor-core path with FORCE_EMU=true).
#pragma once
#include "simt/simt.h"
#include "simt/ptx.h"

#include <cstdint>

namespace ptxtest {

using namespace simt::ptx;

// ---------------------------------------------------------------------------------------------
// Fragment layouts, compact form (the same formulas as the ptx.h header comment). Used by the
// "direct" loaders below. The host checker in ptx_test.cpp carries a second, literal
// transcription of the PTX ISA text and checks these loaders and ldmatrix against it.
// g = lane >> 2, t = lane & 3; register r holds elements 2r (low half) and 2r+1 (high half).
// ---------------------------------------------------------------------------------------------
__host__ __device__ inline int fragA_row(int lane, int r) { return (lane >> 2) + 8 * (r & 1); }
__host__ __device__ inline int fragA_col(int lane, int r) { return 2 * (lane & 3) + 8 * (r >> 1); }
__host__ __device__ inline int fragB_row(int lane, int r) { return 2 * (lane & 3) + 8 * r; }
__host__ __device__ inline int fragB_col(int lane) { return lane >> 2; }

// Direct fragment loads from a row-major 16-bit matrix (leading dimension `ld` elements).
__device__ inline void load_frag_a_direct(uint32_t a[4], const uint16_t* A, int ld, int lane) {
SIMT_PTX_UNROLL
  for (int r = 0; r < 4; ++r) {
    const uint16_t* p = A + fragA_row(lane, r) * ld + fragA_col(lane, r);
    a[r] = pack_b16x2(p[0], p[1]);
  }
}
// B is K x N row-major ("B[k][n]" at B[k*ld + n]); the fragment holds two consecutive k.
__device__ inline void load_frag_b_direct(uint32_t b[2], const uint16_t* B, int ld, int lane) {
SIMT_PTX_UNROLL
  for (int r = 0; r < 2; ++r) {
    const int k = fragB_row(lane, r), n = fragB_col(lane);
    b[r] = pack_b16x2(B[k * ld + n], B[(k + 1) * ld + n]);
  }
}

// ---------------------------------------------------------------------------------------------
// Layout kernel (one warp). A: 16x16 row-major, B: 16x8 row-major (B[k][n]), Bt: 8x16 row-major
// (Bt[n][k] = B[k][n]). Each lane writes 20 words:
//   [0..3]  A fragment, direct loads            [4..5]  B fragment, direct loads
//   [6..9]  ldmatrix_x4(A)                      [10..13] ldmatrix_x4_trans(A)
//   [14..15] ldmatrix_x2_trans(B)               [16..17] ldmatrix_x2(Bt)
//   [18]    ldmatrix_x1(A rows 0-7, cols 0-7)   [19]    ldmatrix_x1_trans(same)
// Lanes whose address the instruction ignores pass nullptr.
// ---------------------------------------------------------------------------------------------
constexpr int kLayoutWords = 20;

template <bool EMU>
__global__ void k_layout(const uint16_t* gA, const uint16_t* gB, const uint16_t* gBt, uint32_t* out) {
  SIMT_SHARED(uint4, sA4, [32]);   // 16 x 16 x 2 bytes
  SIMT_SHARED(uint4, sB4, [16]);   // 16 x 8
  SIMT_SHARED(uint4, sBt4, [16]);  // 8 x 16
  const int lane = threadIdx.x;
  uint16_t* sA = reinterpret_cast<uint16_t*>(sA4);
  uint16_t* sB = reinterpret_cast<uint16_t*>(sB4);
  uint16_t* sBt = reinterpret_cast<uint16_t*>(sBt4);
  for (int i = lane; i < 256; i += 32) sA[i] = gA[i];
  for (int i = lane; i < 128; i += 32) {
    sB[i] = gB[i];
    sBt[i] = gBt[i];
  }
  __syncthreads();
  uint32_t* o = out + lane * kLayoutWords;
  uint32_t r[4];
  load_frag_a_direct(r, sA, 16, lane);
  for (int i = 0; i < 4; ++i) o[i] = r[i];
  load_frag_b_direct(r, sB, 8, lane);
  for (int i = 0; i < 2; ++i) o[4 + i] = r[i];

  const uint16_t* a_row = sA + (lane & 15) * 16 + 8 * (lane >> 4);  // matrices: rows 0-7/8-15 x cols 0-7/8-15
  ldmatrix_x4<EMU>(r, a_row);
  for (int i = 0; i < 4; ++i) o[6 + i] = r[i];
  ldmatrix_x4_trans<EMU>(r, a_row);
  for (int i = 0; i < 4; ++i) o[10 + i] = r[i];

  const uint16_t* b_row = lane < 16 ? sB + lane * 8 : nullptr;  // matrix 0: k 0-7, matrix 1: k 8-15
  ldmatrix_x2_trans<EMU>(r, b_row);
  for (int i = 0; i < 2; ++i) o[14 + i] = r[i];
  const uint16_t* bt_row = lane < 16 ? sBt + (lane & 7) * 16 + 8 * (lane >> 3) : nullptr;
  ldmatrix_x2<EMU>(r, bt_row);
  for (int i = 0; i < 2; ++i) o[16 + i] = r[i];

  const uint16_t* a8_row = lane < 8 ? sA + lane * 16 : nullptr;
  ldmatrix_x1<EMU>(r, a8_row);
  o[18] = r[0];
  ldmatrix_x1_trans<EMU>(r, a8_row);
  o[19] = r[0];
}

// ---------------------------------------------------------------------------------------------
// One mma on fragments built by the host from the documented layouts: frags[lane*10 + ...] =
// a[4], b[2], c[4] as raw bits. d[lane*4 + i] = D fragment.
// ---------------------------------------------------------------------------------------------
template <bool BF16, bool EMU>
__global__ void k_mma_frag(const uint32_t* frags, float* d) {
  const int lane = threadIdx.x;
  const uint32_t* f = frags + lane * 10;
  uint32_t a[4] = {f[0], f[1], f[2], f[3]};
  uint32_t b[2] = {f[4], f[5]};
  float c[4];
  for (int i = 0; i < 4; ++i) memcpy(&c[i], &f[6 + i], 4);
  float r[4];
  if (BF16)
    mma_m16n8k16_bf16<EMU>(r, a, b, c);
  else
    mma_m16n8k16_f16<EMU>(r, a, b, c);
  for (int i = 0; i < 4; ++i) d[lane * 4 + i] = r[i];
}

// ---------------------------------------------------------------------------------------------
// Tiled GEMM C[M][N] = A[M][K] * B[K][N] (16-bit inputs, row-major, leading dimensions multiples
// of 8 elements; f32 output). Block tile 32x32, k step 16, 4 warps in 2x2, each warp 16x16 = two
// m16n8k16. Two shared stages filled by cp.async (zero-filled at the edges) or by plain loads.
// LDM selects the fragment loads: 0 direct, 1 ldmatrix x1 pieces, 2 x2 pieces, 4 x4. With LDM != 0
// the kernel also loads every fragment directly and counts differences in *mismatch.
// ---------------------------------------------------------------------------------------------
struct GemmArgs {
  const uint16_t* A;
  const uint16_t* B;
  float* C;
  int M, N, K, lda, ldb, ldc;
  unsigned* mismatch;
};

template <bool EMU, bool CPASYNC>
__device__ inline void gemm_load_stage(const GemmArgs& g, uint4* sA4, uint4* sB4, int m0, int n0, int k0,
                                       int tid) {
  const uint16_t* src;
  uint4* dst;
  int valid;
  if (tid < 64) {  // A tile: 32 rows x 2 chunks of 8
    const int r = tid >> 1, c = tid & 1;
    const int gr = m0 + r, gk = k0 + 8 * c;
    valid = gr < g.M ? min(max(g.K - gk, 0), 8) : 0;
    src = valid > 0 ? g.A + (size_t)gr * g.lda + gk : g.A;
    dst = sA4 + r * 2 + c;
  } else {  // B tile: 16 rows x 4 chunks of 8
    const int j = tid - 64, r = j >> 2, c = j & 3;
    const int gk = k0 + r, gn = n0 + 8 * c;
    valid = gk < g.K ? min(max(g.N - gn, 0), 8) : 0;
    src = valid > 0 ? g.B + (size_t)gk * g.ldb + gn : g.B;
    dst = sB4 + r * 4 + c;
  }
  if (CPASYNC) {
    if (valid == 8)
      cp_async_16<EMU>(dst, src);
    else
      cp_async_16_zfill<EMU>(dst, src, 2 * valid);
  } else {
    uint16_t* d = reinterpret_cast<uint16_t*>(dst);
    for (int i = 0; i < 8; ++i) d[i] = i < valid ? src[i] : uint16_t(0);
  }
}

template <bool BF16, bool EMU, int LDM, bool CPASYNC>
__global__ void k_gemm(GemmArgs g) {
  SIMT_SHARED(uint4, sA4, [2][64]);  // 2 stages x 32 x 16
  SIMT_SHARED(uint4, sB4, [2][64]);  // 2 stages x 16 x 32
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = warp >> 1, wn = warp & 1;
  const int m0 = blockIdx.y * 32, n0 = blockIdx.x * 32;
  const int nk = (g.K + 15) / 16;
  float acc[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
  unsigned bad = 0;

  gemm_load_stage<EMU, CPASYNC>(g, sA4[0], sB4[0], m0, n0, 0, tid);
  if (CPASYNC) cp_async_commit<EMU>();
  for (int kt = 0; kt < nk; ++kt) {
    const int s = kt & 1;
    if (kt + 1 < nk) gemm_load_stage<EMU, CPASYNC>(g, sA4[s ^ 1], sB4[s ^ 1], m0, n0, (kt + 1) * 16, tid);
    if (CPASYNC) {
      cp_async_commit<EMU>();  // possibly empty: keeps "newest group = next stage" uniform
      cp_async_wait<1, EMU>();
    }
    __syncthreads();
    const uint16_t* sA = reinterpret_cast<const uint16_t*>(sA4[s]) + 16 * wm * 16;  // warp rows
    const uint16_t* sB = reinterpret_cast<const uint16_t*>(sB4[s]) + 16 * wn;       // warp cols
    uint32_t a[4], b[2][2];
    if (LDM == 0) {
      load_frag_a_direct(a, sA, 16, lane);
      load_frag_b_direct(b[0], sB, 32, lane);
      load_frag_b_direct(b[1], sB + 8, 32, lane);
    } else {
      if (LDM == 4) {
        ldmatrix_x4<EMU>(a, sA + (lane & 15) * 16 + 8 * (lane >> 4));
        const int m = lane >> 3;  // (k 0-7, n 0-7), (k 8-15, n 0-7), (k 0-7, n 8-15), (k 8-15, n 8-15)
        uint32_t bb[4];
        ldmatrix_x4_trans<EMU>(bb, sB + (8 * (m & 1) + (lane & 7)) * 32 + 8 * (m >> 1));
        b[0][0] = bb[0];
        b[0][1] = bb[1];
        b[1][0] = bb[2];
        b[1][1] = bb[3];
      } else if (LDM == 2) {
        const bool used = lane < 16;
        ldmatrix_x2<EMU>(a, used ? sA + lane * 16 : nullptr);
        ldmatrix_x2<EMU>(a + 2, used ? sA + lane * 16 + 8 : nullptr);
        ldmatrix_x2_trans<EMU>(b[0], used ? sB + lane * 32 : nullptr);
        ldmatrix_x2_trans<EMU>(b[1], used ? sB + lane * 32 + 8 : nullptr);
      } else {  // LDM == 1
        const bool used = lane < 8;
        for (int r = 0; r < 4; ++r)
          ldmatrix_x1<EMU>(a + r, used ? sA + (lane + 8 * (r & 1)) * 16 + 8 * (r >> 1) : nullptr);
        for (int nt = 0; nt < 2; ++nt)
          for (int r = 0; r < 2; ++r)
            ldmatrix_x1_trans<EMU>(b[nt] + r, used ? sB + (lane + 8 * r) * 32 + 8 * nt : nullptr);
      }
      uint32_t da[4], db[2][2];
      load_frag_a_direct(da, sA, 16, lane);
      load_frag_b_direct(db[0], sB, 32, lane);
      load_frag_b_direct(db[1], sB + 8, 32, lane);
      for (int i = 0; i < 4; ++i) bad += da[i] != a[i];
      for (int nt = 0; nt < 2; ++nt)
        for (int i = 0; i < 2; ++i) bad += db[nt][i] != b[nt][i];
    }
    for (int nt = 0; nt < 2; ++nt) {
      if (BF16)
        mma_m16n8k16_bf16<EMU>(acc[nt], a, b[nt], acc[nt]);
      else
        mma_m16n8k16_f16<EMU>(acc[nt], a, b[nt], acc[nt]);
    }
    __syncthreads();  // the stage is refilled by the next iteration's prefetch
  }
  if (CPASYNC) cp_async_wait<0, EMU>();
  if (bad) atomicAdd(g.mismatch, bad);
  // C/D fragment: c[i] = C[g + 8*(i>>1)][2t + (i&1)]
  for (int nt = 0; nt < 2; ++nt)
    for (int i = 0; i < 4; ++i) {
      const int row = m0 + 16 * wm + (lane >> 2) + 8 * (i >> 1);
      const int col = n0 + 16 * wn + 8 * nt + 2 * (lane & 3) + (i & 1);
      if (row < g.M && col < g.N) g.C[(size_t)row * g.ldc + col] = acc[nt][i];
    }
}

// ---------------------------------------------------------------------------------------------
// cp.async group semantics, one warp; each thread owns chunk `lane` of every stage.
// obs[lane*kObsWords + j]: 4 words per observation j:
//   0 stage0 read before any wait (emulator: poison)   1 stage0 after wait<1> (landed)
//   2 stage1 after wait<1> (emulator: poison)           3 stage1 after wait<0> (landed)
//   4 stage2 (uncommitted) after wait<0> (emulator: poison)  5 stage2 after commit + wait<0>
//   6 zfill 6 bytes (6 source bytes, 10 zero)           7 zfill 0 bytes (all zero)
//   8 wait_all on an uncommitted copy (landed)
// pend[lane*4 + j]: emulator-only queue sizes after issue, after wait<1>, after wait<0>, at end.
// Destinations are set to zero before each copy, so poison can only come from the cp.async.
// ---------------------------------------------------------------------------------------------
constexpr int kObs = 9;

template <bool EMU>
__global__ void k_cp_async_groups(const uint4* src, uint4* obs, int* pend) {
  SIMT_SHARED(uint4, st, [4][32]);
  const int lane = threadIdx.x;
  uint4* o = obs + lane * kObs;
  int* p = pend + lane * 4;
  const uint4 zero = make_uint4(0u, 0u, 0u, 0u);
  for (int s = 0; s < 4; ++s) st[s][lane] = zero;
#if SIMT_EMULATED
#define PTXTEST_PENDING(j) p[j] = simt::ptx::detail::cp_async_pending()
#else
#define PTXTEST_PENDING(j) p[j] = -1
#endif
  cp_async_16<EMU>(&st[0][lane], &src[0 * 32 + lane]);
  cp_async_commit<EMU>();
  cp_async_16<EMU>(&st[1][lane], &src[1 * 32 + lane]);
  cp_async_commit<EMU>();
  cp_async_16<EMU>(&st[2][lane], &src[2 * 32 + lane]);  // not committed yet
  PTXTEST_PENDING(0);
  o[0] = st[0][lane];  // deliberately early: the emulator shows poison here
  cp_async_wait<1, EMU>();
  PTXTEST_PENDING(1);
  o[1] = st[0][lane];
  o[2] = st[1][lane];  // still in flight
  cp_async_wait<0, EMU>();
  PTXTEST_PENDING(2);
  o[3] = st[1][lane];
  o[4] = st[2][lane];  // never committed, so wait_group does not cover it
  cp_async_commit<EMU>();
  cp_async_wait<0, EMU>();
  o[5] = st[2][lane];

  const char* bytes = reinterpret_cast<const char*>(&src[3 * 32 + lane]);
  cp_async_16_zfill<EMU>(&st[3][lane], bytes, 6);
  cp_async_commit<EMU>();
  cp_async_wait<0, EMU>();
  o[6] = st[3][lane];
  st[0][lane] = make_uint4(1u, 2u, 3u, 4u);
  cp_async_16_zfill<EMU>(&st[0][lane], &src[lane], 0);
  cp_async_commit<EMU>();
  cp_async_wait<0, EMU>();
  o[7] = st[0][lane];
  st[1][lane] = zero;
  cp_async_16<EMU>(&st[1][lane], &src[4 * 32 + lane]);
  cp_async_wait_all<EMU>();
  o[8] = st[1][lane];
  PTXTEST_PENDING(3);
#undef PTXTEST_PENDING
}

// ---------------------------------------------------------------------------------------------
// A double-buffered cp.async pipeline over `stages` x 32 chunks of 4 floats; thread `lane` sums
// chunk (lane+1)%32 of every stage (so copies issued by one thread are read by another, after the
// wait and a __syncthreads). BUGGY reads its own chunk of each stage before waiting for it: on a
// GPU this often works by luck; on the emulator it reads poison and every sum is NaN.
// ---------------------------------------------------------------------------------------------
template <bool BUGGY>
__global__ void k_pipeline(const float4* src, int stages, float* out) {
  SIMT_SHARED(float4, buf, [2][32]);
  const int lane = threadIdx.x;
  float sum = 0.f;
  cp_async_16(&buf[0][lane], &src[lane]);
  cp_async_commit();
  for (int s = 0; s < stages; ++s) {
    if (s + 1 < stages) cp_async_16(&buf[(s + 1) & 1][lane], &src[(s + 1) * 32 + lane]);
    cp_async_commit();
    if (!BUGGY) cp_async_wait<1>();
    __syncthreads();
    // Correct: another thread's chunk, after the wait and the barrier. Buggy: the thread's own
    // chunk, before its wait (order-independent, so every lane must see poison on the emulator).
    const float4 v = buf[s & 1][BUGGY ? lane : (lane + 1) & 31];
    sum += v.x + v.y + v.z + v.w;
    if (BUGGY) cp_async_wait<1>();
    __syncthreads();
  }
  cp_async_wait<0>();
  out[lane] = sum;
}

// ---------------------------------------------------------------------------------------------
// Packing helpers in device code.
// ---------------------------------------------------------------------------------------------
__global__ void k_pack(const float* in, int n, uint32_t* out) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float x = in[i], y = in[(i + 1) % n];
  out[2 * i] = pack_bf16x2(x, y);
  out[2 * i + 1] = pack_f16x2(x, y);
}

// ---------------------------------------------------------------------------------------------
// Misuse that the emulator must report (each throws simt::KernelError from the launch).
//   0: ldmatrix_x4 with a row address that is not 16-byte aligned
//   1: cp_async_16 to a destination that is not 16-byte aligned
//   2: a second cp.async to a buffer whose first copy was never waited for
//   3: ldmatrix_x1 with a misaligned address on a lane the instruction reads (lane 3)
//   4: (not misuse) ldmatrix_x1 with a misaligned address on lane 20, whose address .x1 ignores
//   5: mma called by a partial warp (launched with 16 threads; mma.sync needs all 32 lanes)
// ---------------------------------------------------------------------------------------------
__global__ void k_misuse(int what, const uint4* src) {
  SIMT_SHARED(uint4, sm, [64]);
  const int lane = threadIdx.x;
  sm[lane] = src[lane];
  sm[32 + lane] = src[lane];
  __syncthreads();
  uint32_t r[4] = {1u, 2u, 3u, 4u};
  const char* base = reinterpret_cast<const char*>(sm);
  if (what == 0) ldmatrix_x4(r, base + 16 * lane + 2);
  if (what == 1) cp_async_16(reinterpret_cast<char*>(&sm[lane]) + 8, &src[lane]);
  if (what == 2) {
    cp_async_16(&sm[lane], &src[lane]);
    cp_async_commit();
    cp_async_16(&sm[lane], &src[lane]);
  }
  if (what == 3) ldmatrix_x1(r, base + 16 * lane + (lane == 3 ? 4 : 0));
  if (what == 4) ldmatrix_x1(r, base + 16 * lane + (lane == 20 ? 4 : 0));
  if (what == 5) {
    const uint32_t a[4] = {r[0], r[1], r[2], r[3]}, b[2] = {r[0], r[1]};
    float d[4] = {0.f, 0.f, 0.f, 0.f};
    mma_m16n8k16_bf16(d, a, b, d);
    r[0] = __float_as_uint(d[0]);
  }
  if (what == 0 || what >= 3) sm[lane].x = r[0];
}

}  // namespace ptxtest
