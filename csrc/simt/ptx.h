// Inline-PTX wrappers (mma.sync m16n8k16, ldmatrix, cp.async) that also run on the SIMT emulator.
//
// Include after "simt/simt.h". Every wrapper has up to three branches (research/simt_emulation.md §5):
//   1. `__CUDA_ARCH__ >= 800` and !FORCE_EMU: the real `asm volatile` instruction;
//   2. `SIMT_EMULATED` (g++ build) and !FORCE_EMU, where useful: an emulator-only version that also
//      checks what the hardware would fault on (alignment) and models asynchrony (cp.async);
//   3. otherwise: a portable emulation made only of CUDA intrinsics (shuffles). It runs on the
//      emulator and on a real GPU, so a GPU job can compare FORCE_EMU=true against the tensor cores.
// nvcc's host pass sees neither `__CUDA_ARCH__` nor a true `SIMT_EMULATED`, so branch 3 is what
// it parses there.
//
// API (namespace simt::ptx; FORCE_EMU defaults to false; all warp-wide calls need the full warp):
//   uint32_t pack_bf16x2(float lo, float hi), pack_f16x2(float lo, float hi)     (RNE, host+device)
//   uint32_t pack_b16x2(uint16_t lo, uint16_t hi); void unpack_bf16x2/unpack_f16x2(uint32_t, float&, float&)
//   float bf16_bits_to_float(uint16_t), f16_bits_to_float(uint16_t)
//   mma_m16n8k16_bf16<FORCE_EMU>(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4])
//   mma_m16n8k16_f16 <FORCE_EMU>(same)                      row.col, f32 accumulate, d may alias c
//   ldmatrix_x1/_x2/_x4<FORCE_EMU>(uint32_t r[N], const void* smem_row)      .m8n8.shared.b16
//   ldmatrix_x1_trans/_x2_trans/_x4_trans<FORCE_EMU>(uint32_t r[N], const void* smem_row)
//   cp_async_16<FORCE_EMU>(void* smem_dst, const void* gmem_src)             cp.async.cg, 16 bytes
//   cp_async_16_zfill<FORCE_EMU>(void* smem_dst, const void* gmem_src, int src_bytes)   0..16 read
//   cp_async_commit<FORCE_EMU>(); cp_async_wait<N, FORCE_EMU>(); cp_async_wait_all<FORCE_EMU>()
// Emulator builds add a trailing defaulted std::source_location parameter to the warp-wide and
// cp.async wrappers (do not pass it); misuse throws simt::KernelError naming the calling line.
//
// Fragment layouts (PTX ISA "Matrix Fragments for mma.m16n8k16 with floating point type":
// §9.7.14.5.8 of the ISA 9.2 manual, §9.7.15.5.8 in some editions; anchor
// docs.nvidia.com/cuda/parallel-thread-execution/#warp-level-matrix-fragment-mma-16816-float;
// figures 79 (A), 81 (B), 83 (C/D)), with
// groupID g = lane >> 2 and threadID_in_group t = lane % 4, two 16-bit elements per 32-bit
// register, the lower-indexed element in the low half:
//   A (16x16, row-major):  a[0] = A[g  ][2t..2t+1]    a[1] = A[g+8][2t..2t+1]
//                          a[2] = A[g  ][2t+8..2t+9]  a[3] = A[g+8][2t+8..2t+9]
//   B (16x8,  "col"):      b[0] = B[2t..2t+1][g]      b[1] = B[2t+8..2t+9][g]
//   C/D (16x8, f32):       c[0] = C[g][2t]  c[1] = C[g][2t+1]  c[2] = C[g+8][2t]  c[3] = C[g+8][2t+1]
// ldmatrix .m8n8 .b16 (PTX ISA "Warp-level matrix load instruction: ldmatrix", §9.7.14.5.15 of
// ISA 9.2, anchor #warp-level-matrix-instructions-ldmatrix, figure 104 and the address table):
// lanes 8m..8m+7 give the row addresses of matrix m (16 bytes per row, 16-byte aligned); lane l
// receives row l>>2, elements 2(l%4) and 2(l%4)+1 of matrix m in r[m]. With .trans the matrix is
// read column-major: r[m] = { M[2(l%4)][l>>2], M[2(l%4)+1][l>>2] } where M[row] is at row address row.
#pragma once

#include <cstdint>
#include <cstring>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#ifndef SIMT_EMULATED
#error "include simt/simt.h before simt/ptx.h"
#endif

#if SIMT_EMULATED
#include <cstdio>
#include <source_location>
#include <string>
#include <vector>
#endif

// Emulator builds pass the caller's location down so failures name the kernel line.
#if SIMT_EMULATED
#define SIMT_PTX_LOC_PARAM , std::source_location simt_ptx_loc = std::source_location::current()
#define SIMT_PTX_LOC_ARG , simt_ptx_loc
#define SIMT_PTX_LOC_DECL , std::source_location simt_ptx_loc
#else
#define SIMT_PTX_LOC_PARAM
#define SIMT_PTX_LOC_ARG
#define SIMT_PTX_LOC_DECL
#endif

#if defined(__CUDACC__)
#define SIMT_PTX_UNROLL _Pragma("unroll")
#else
#define SIMT_PTX_UNROLL
#endif

namespace simt {
namespace ptx {

// ------------------------------------------------------------------------------------------------
// Packing helpers: two floats -> one bf16x2 / f16x2 register, round to nearest even.
// `lo` goes to bits 0..15 (the lower-indexed fragment element), `hi` to bits 16..31.
// ------------------------------------------------------------------------------------------------
__host__ __device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  const __nv_bfloat162_raw raw = v;
  return uint32_t(raw.x) | (uint32_t(raw.y) << 16);
}

__host__ __device__ __forceinline__ uint32_t pack_f16x2(float lo, float hi) {
  const __half2 v = __floats2half2_rn(lo, hi);
  const __half2_raw raw = v;
  return uint32_t(raw.x) | (uint32_t(raw.y) << 16);
}

// Two raw 16-bit values -> one register (no conversion).
__host__ __device__ __forceinline__ uint32_t pack_b16x2(uint16_t lo, uint16_t hi) {
  return uint32_t(lo) | (uint32_t(hi) << 16);
}

__host__ __device__ __forceinline__ float bf16_bits_to_float(uint16_t bits) {
  const uint32_t u = uint32_t(bits) << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

__host__ __device__ __forceinline__ float f16_bits_to_float(uint16_t bits) {
  __half_raw raw;
  raw.x = bits;
  return __half2float(__half(raw));
}

__host__ __device__ __forceinline__ void unpack_bf16x2(uint32_t v, float& lo, float& hi) {
  lo = bf16_bits_to_float(uint16_t(v & 0xffffu));
  hi = bf16_bits_to_float(uint16_t(v >> 16));
}

__host__ __device__ __forceinline__ void unpack_f16x2(uint32_t v, float& lo, float& hi) {
  lo = f16_bits_to_float(uint16_t(v & 0xffffu));
  hi = f16_bits_to_float(uint16_t(v >> 16));
}

namespace detail {

constexpr unsigned kFullMask = 0xffffffffu;

// Raw loads/stores of shared/global bytes. On the emulator they go through memcpy, so g++'s
// strict-aliasing rules cannot reorder them against the typed accesses of the kernel.
__device__ __forceinline__ uint32_t load_u32(const void* p) {
#if SIMT_EMULATED
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
#else
  return *static_cast<const uint32_t*>(p);
#endif
}
__device__ __forceinline__ uint16_t load_u16(const void* p) {
#if SIMT_EMULATED
  uint16_t v;
  memcpy(&v, p, 2);
  return v;
#else
  return *static_cast<const uint16_t*>(p);
#endif
}
__device__ __forceinline__ void copy_16(void* dst, const void* src) {
#if SIMT_EMULATED
  memcpy(dst, src, 16);
#else
  *static_cast<uint4*>(dst) = *static_cast<const uint4*>(src);
#endif
}

// Lane of the calling thread: the linear thread index in the block, modulo 32.
__device__ __forceinline__ unsigned lane_id() {
  return (threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)) & 31u;
}

template <bool kBf16>
__device__ __forceinline__ float elem(uint32_t reg, int half) {
  const uint16_t bits = uint16_t(half ? (reg >> 16) : (reg & 0xffffu));
  return kBf16 ? bf16_bits_to_float(bits) : f16_bits_to_float(bits);
}

// The arithmetic of the mma emulations: arow0/arow1 hold rows g and g+8 of A, bcol0/bcol1 columns
// 2t and 2t+1 of B, as 8 registers each ([p] covers k = 2p, 2p+1). Every bf16/f16 product is exact
// in fp32; the sum runs c, then k = 0..15 in order, rounding after each add, so the result equals a
// plain float loop. The hardware's internal order and precision are unspecified: compare with
// tolerances against it.
template <bool kBf16>
__device__ __forceinline__ void mma_m16n8k16_accumulate(float d[4], const uint32_t arow0[8],
                                                        const uint32_t arow1[8], const uint32_t bcol0[8],
                                                        const uint32_t bcol1[8], const float c[4]) {
  float acc0 = c[0], acc1 = c[1], acc2 = c[2], acc3 = c[3];
  SIMT_PTX_UNROLL
  for (int p = 0; p < 8; ++p) {
    SIMT_PTX_UNROLL
    for (int h = 0; h < 2; ++h) {
      const float x0 = elem<kBf16>(arow0[p], h), x1 = elem<kBf16>(arow1[p], h);
      const float y0 = elem<kBf16>(bcol0[p], h), y1 = elem<kBf16>(bcol1[p], h);
      acc0 += x0 * y0;  // C[g  ][2t  ]
      acc1 += x0 * y1;  // C[g  ][2t+1]
      acc2 += x1 * y0;  // C[g+8][2t  ]
      acc3 += x1 * y1;  // C[g+8][2t+1]
    }
  }
  d[0] = acc0;
  d[1] = acc1;
  d[2] = acc2;
  d[3] = acc3;
}

// D = A*B + C for one m16n8k16 tile from 32 full-warp __shfl_sync (portable: emulator and GPU).
// Each lane gathers rows g and g+8 of A (from lanes 4g..4g+3) and columns 2t, 2t+1 of B (from
// lanes 8t..8t+3 and 8t+4..8t+7); the register index is the same on every lane for each shuffle.
template <bool kBf16>
__device__ __forceinline__ void mma_m16n8k16_shfl(float d[4], const uint32_t a[4], const uint32_t b[2],
                                                  const float c[4]) {
  const unsigned lane = lane_id();
  const int g = int(lane >> 2), t = int(lane & 3u);
  uint32_t arow0[8], arow1[8], bcol0[8], bcol1[8];
  SIMT_PTX_UNROLL
  for (int q = 0; q < 4; ++q) {
    const int src_a = 4 * g + q;
    const int src_b0 = 4 * (2 * t) + q;
    const int src_b1 = 4 * (2 * t + 1) + q;
    arow0[q] = __shfl_sync(kFullMask, a[0], src_a);       // A[g  ][2q..2q+1]
    arow1[q] = __shfl_sync(kFullMask, a[1], src_a);       // A[g+8][2q..2q+1]
    arow0[q + 4] = __shfl_sync(kFullMask, a[2], src_a);   // A[g  ][2q+8..2q+9]
    arow1[q + 4] = __shfl_sync(kFullMask, a[3], src_a);   // A[g+8][2q+8..2q+9]
    bcol0[q] = __shfl_sync(kFullMask, b[0], src_b0);      // B[2q..2q+1][2t]
    bcol0[q + 4] = __shfl_sync(kFullMask, b[1], src_b0);  // B[2q+8..2q+9][2t]
    bcol1[q] = __shfl_sync(kFullMask, b[0], src_b1);      // B[2q..2q+1][2t+1]
    bcol1[q + 4] = __shfl_sync(kFullMask, b[1], src_b1);  // B[2q+8..2q+9][2t+1]
  }
  mma_m16n8k16_accumulate<kBf16>(d, arow0, arow1, bcol0, bcol1, c);
}

// Portable ldmatrix: shuffle the needed row pointers (two 32-bit halves each), read, then
// __syncwarp so that no lane runs ahead and overwrites shared memory another lane still reads
// (the real instruction reads for the whole warp at once).
template <int kNum, bool kTrans>
__device__ __forceinline__ void ldmatrix_shfl(uint32_t* r, const void* row_ptr) {
  const unsigned lane = lane_id();
  const int g = int(lane >> 2), t = int(lane & 3u);
  const unsigned long long mine = (unsigned long long)(uintptr_t)row_ptr;
  const unsigned mine_lo = unsigned(mine & 0xffffffffull), mine_hi = unsigned(mine >> 32);
  SIMT_PTX_UNROLL
  for (int m = 0; m < kNum; ++m) {
    if (!kTrans) {
      const int src = 8 * m + g;
      const unsigned long long p = (unsigned long long)__shfl_sync(kFullMask, mine_lo, src) |
                                   ((unsigned long long)__shfl_sync(kFullMask, mine_hi, src) << 32);
      r[m] = load_u32((const unsigned char*)(uintptr_t)p + 4 * t);
    } else {
      const int src0 = 8 * m + 2 * t, src1 = src0 + 1;
      const unsigned long long p0 = (unsigned long long)__shfl_sync(kFullMask, mine_lo, src0) |
                                    ((unsigned long long)__shfl_sync(kFullMask, mine_hi, src0) << 32);
      const unsigned long long p1 = (unsigned long long)__shfl_sync(kFullMask, mine_lo, src1) |
                                    ((unsigned long long)__shfl_sync(kFullMask, mine_hi, src1) << 32);
      const uint16_t lo = load_u16((const unsigned char*)(uintptr_t)p0 + 2 * g);
      const uint16_t hi = load_u16((const unsigned char*)(uintptr_t)p1 + 2 * g);
      r[m] = pack_b16x2(lo, hi);
    }
  }
  __syncwarp(kFullMask);
}

#if SIMT_EMULATED
// ---------------------------------------------- emulator only ------------------------------------

// Misuse is reported through simt::fail: a simt::KernelError naming the block, the thread and
// the kernel line that called the wrapper.
[[noreturn]] inline void fail(const std::string& what, std::source_location loc) {
  simt::fail("ptx.h: " + what, loc);
}

// mma on the emulator: three warp all-gathers (A as two 64-bit halves, B as one) instead of 32
// shuffles, then the same arithmetic as the portable version, so both give the same bits.
// FORCE_EMU=true selects the shuffle version, which is what a GPU runs with FORCE_EMU.
template <bool kBf16>
inline void mma_m16n8k16_allgather(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4],
                                   std::source_location loc) {
  uint64_t ga01[32], ga23[32], gb[32];
  simt::warp_allgather(kFullMask, uint64_t(a[0]) | uint64_t(a[1]) << 32, ga01, loc);
  simt::warp_allgather(kFullMask, uint64_t(a[2]) | uint64_t(a[3]) << 32, ga23, loc);
  simt::warp_allgather(kFullMask, uint64_t(b[0]) | uint64_t(b[1]) << 32, gb, loc);
  const unsigned lane = lane_id();
  const int g = int(lane >> 2), t = int(lane & 3u);
  uint32_t arow0[8], arow1[8], bcol0[8], bcol1[8];
  for (int q = 0; q < 4; ++q) {
    const int src_a = 4 * g + q, src_b0 = 4 * (2 * t) + q, src_b1 = 4 * (2 * t + 1) + q;
    arow0[q] = uint32_t(ga01[src_a]);
    arow1[q] = uint32_t(ga01[src_a] >> 32);
    arow0[q + 4] = uint32_t(ga23[src_a]);
    arow1[q + 4] = uint32_t(ga23[src_a] >> 32);
    bcol0[q] = uint32_t(gb[src_b0]);
    bcol0[q + 4] = uint32_t(gb[src_b0] >> 32);
    bcol1[q] = uint32_t(gb[src_b1]);
    bcol1[q + 4] = uint32_t(gb[src_b1] >> 32);
  }
  mma_m16n8k16_accumulate<kBf16>(d, arow0, arow1, bcol0, bcol1, c);
}

// ldmatrix on the emulator: every address-providing lane reads its own 16-byte row (checking the
// alignment the hardware requires), then two warp all-gathers hand the rows to the lanes that
// need them. All reads happen before any lane leaves the first all-gather, as on the hardware.
template <int kNum, bool kTrans>
inline void ldmatrix_allgather(uint32_t* r, const void* row_ptr SIMT_PTX_LOC_DECL) {
  const unsigned lane = lane_id();
  uint64_t row[2] = {0, 0};
  if (lane < 8u * kNum) {
    if (reinterpret_cast<uintptr_t>(row_ptr) & 15u) {
      char msg[160];
      std::snprintf(msg, sizeof msg, "ldmatrix: lane %u row address %p is not 16-byte aligned", lane,
                    row_ptr);
      fail(msg, simt_ptx_loc);
    }
    std::memcpy(row, row_ptr, 16);
  }
  uint64_t rows_lo[32], rows_hi[32];
  simt::warp_allgather(kFullMask, row[0], rows_lo, simt_ptx_loc);
  simt::warp_allgather(kFullMask, row[1], rows_hi, simt_ptx_loc);
  const int g = int(lane >> 2), t = int(lane & 3u);
  auto element = [&](int src_lane, int col) -> uint16_t {  // 16-bit element `col` of a row
    const uint64_t half = col < 4 ? rows_lo[src_lane] : rows_hi[src_lane];
    return uint16_t(half >> (16 * (col & 3)));
  };
  for (int m = 0; m < kNum; ++m) {
    if (!kTrans)
      r[m] = pack_b16x2(element(8 * m + g, 2 * t), element(8 * m + g, 2 * t + 1));
    else
      r[m] = pack_b16x2(element(8 * m + 2 * t, g), element(8 * m + 2 * t + 1, g));
  }
}

// cp.async on the emulator: copies are queued at issue and the destination is filled with 0xFF
// (NaN for f32/bf16/f16), so a read before the matching wait sees poison. commit_group closes the
// pending copies into a group; wait_group<N> performs every committed group but the newest N.
struct CpAsyncCopy {
  void* dst;
  const void* src;
  unsigned src_bytes;  // bytes read from src; the rest of the 16 is zero-filled
};

struct CpAsyncThreadState {
  uint64_t epoch = 0;  // the block the queue belongs to
  std::vector<CpAsyncCopy> uncommitted;
  std::vector<std::vector<CpAsyncCopy>> groups;  // oldest first
};

// Queue bookkeeping is shared by the fibers of a block; TSan must not see it as racing. The
// copies themselves run outside the ignore region so TSan checks them like any other access.
#if SIMT_TSAN
struct TsanIgnore {
  TsanIgnore() { __tsan_ignore_thread_begin(); }
  ~TsanIgnore() { __tsan_ignore_thread_end(); }
};
#else
struct TsanIgnore {};
#endif

// The queue of the calling CUDA thread. The fibers of a block share one OS thread, so the
// table is per OS thread and indexed by the linear thread index. A queue left by an earlier block
// (a thread that exited with copies in flight) is dropped: its destinations no longer exist.
// The block is identified by the emulator's process-wide block epoch (simt/detail/emu_runtime.h).
inline CpAsyncThreadState& cp_async_state() {
  thread_local std::vector<CpAsyncThreadState> table;
  const simt::detail::Fiber& f = simt::detail::current_fiber("simt::ptx cp.async");
  const uint64_t epoch = f.launch->epoch;
  const unsigned nthreads = blockDim.x * blockDim.y * blockDim.z;
  const unsigned tid = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  if (table.size() < nthreads) table.resize(nthreads);
  CpAsyncThreadState& s = table[tid];
  if (s.epoch != epoch) {
    s.uncommitted.clear();
    s.groups.clear();
    s.epoch = epoch;
  }
  return s;
}

inline void cp_async_issue(void* dst, const void* src, unsigned src_bytes, const char* what
                           SIMT_PTX_LOC_DECL) {
  if (reinterpret_cast<uintptr_t>(dst) & 15u || (src_bytes > 0 && (reinterpret_cast<uintptr_t>(src) & 15u))) {
    char msg[200];
    std::snprintf(msg, sizeof msg, "%s: addresses must be 16-byte aligned (dst %p, src %p)", what, dst, src);
    fail(msg, simt_ptx_loc);
  }
  if (src_bytes > 16) {
    char msg[120];
    std::snprintf(msg, sizeof msg, "%s: src_size %u is larger than the copy size 16", what, src_bytes);
    fail(msg, simt_ptx_loc);
  }
  if (src_bytes > 0) {  // touch the source now, so ASan names the issuing line for a bad read
    unsigned char probe[16];
    std::memcpy(probe, src, src_bytes);
    (void)probe;
  }
  {
    // Two copies in flight to the same bytes complete in an unspecified order: a reused stage
    // that was never waited for. (Only this thread's copies are known here.)
    [[maybe_unused]] TsanIgnore ignore;
    CpAsyncThreadState& s = cp_async_state();
    const uintptr_t d = reinterpret_cast<uintptr_t>(dst);
    auto overlaps = [d](const CpAsyncCopy& c) {
      const uintptr_t o = reinterpret_cast<uintptr_t>(c.dst);
      return o < d + 16 && d < o + 16;
    };
    bool clash = false;
    for (const CpAsyncCopy& c : s.uncommitted) clash = clash || overlaps(c);
    for (const auto& grp : s.groups)
      for (const CpAsyncCopy& c : grp) clash = clash || overlaps(c);
    if (clash) {
      char msg[200];
      std::snprintf(msg, sizeof msg,
                    "%s: destination %p already has a cp.async in flight from this thread "
                    "(missing cp_async_wait before reusing the buffer)", what, dst);
      fail(msg, simt_ptx_loc);
    }
    s.uncommitted.push_back(CpAsyncCopy{dst, src, src_bytes});
  }
  std::memset(dst, 0xFF, 16);  // poison until the group completes
}

inline void cp_async_commit_emulated() {
  [[maybe_unused]] TsanIgnore ignore;
  CpAsyncThreadState& s = cp_async_state();
  s.groups.push_back(std::move(s.uncommitted));
  s.uncommitted.clear();
}

inline void cp_async_wait_emulated(int n) {
  std::vector<CpAsyncCopy> done;
  {
    [[maybe_unused]] TsanIgnore ignore;
    CpAsyncThreadState& s = cp_async_state();
    const size_t keep = size_t(n < 0 ? 0 : n);
    size_t ncomplete = s.groups.size() > keep ? s.groups.size() - keep : 0;
    for (size_t i = 0; i < ncomplete; ++i)
      done.insert(done.end(), s.groups[i].begin(), s.groups[i].end());
    s.groups.erase(s.groups.begin(), s.groups.begin() + ptrdiff_t(ncomplete));
  }
  for (const CpAsyncCopy& c : done) {  // outside the ignore region: TSan sees the real accesses
    unsigned char buf[16] = {};
    if (c.src_bytes) std::memcpy(buf, c.src, c.src_bytes);
    std::memcpy(c.dst, buf, 16);
  }
}

// Copies still queued by the calling thread (committed or not); for tests and assertions.
inline int cp_async_pending() {
  [[maybe_unused]] TsanIgnore ignore;
  CpAsyncThreadState& s = cp_async_state();
  size_t n = s.uncommitted.size();
  for (const auto& grp : s.groups) n += grp.size();
  return int(n);
}
#endif  // SIMT_EMULATED

}  // namespace detail

// ------------------------------------------------------------------------------------------------
// mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.{bf16,f16}.f32: D = A*B + C for the warp.
// All 32 lanes of the warp must call it together (the emulations use full-mask warp collectives,
// so the emulator reports a partial warp). d may alias c. On the emulator the default path uses
// warp all-gathers and FORCE_EMU=true the portable shuffle version; both give the same bits.
// ------------------------------------------------------------------------------------------------
template <bool FORCE_EMU = false>
__device__ __forceinline__ void mma_m16n8k16_bf16(float d[4], const uint32_t a[4], const uint32_t b[2],
                                                  const float c[4] SIMT_PTX_LOC_PARAM) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (!FORCE_EMU) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};\n"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]),
          "f"(c[2]), "f"(c[3]));
    return;
  }
#elif SIMT_EMULATED
  if constexpr (!FORCE_EMU) {
    detail::mma_m16n8k16_allgather<true>(d, a, b, c, simt_ptx_loc);
    return;
  }
#endif
  detail::mma_m16n8k16_shfl<true>(d, a, b, c);
}

template <bool FORCE_EMU = false>
__device__ __forceinline__ void mma_m16n8k16_f16(float d[4], const uint32_t a[4], const uint32_t b[2],
                                                 const float c[4] SIMT_PTX_LOC_PARAM) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (!FORCE_EMU) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};\n"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]),
          "f"(c[2]), "f"(c[3]));
    return;
  }
#elif SIMT_EMULATED
  if constexpr (!FORCE_EMU) {
    detail::mma_m16n8k16_allgather<false>(d, a, b, c, simt_ptx_loc);
    return;
  }
#endif
  detail::mma_m16n8k16_shfl<false>(d, a, b, c);
}

// ------------------------------------------------------------------------------------------------
// ldmatrix.sync.aligned.m8n8.{x1,x2,x4}{,.trans}.shared.b16. `smem_row` is this lane's row address
// (lanes 0-7: matrix 0, 8-15: matrix 1, ...; other lanes' values are ignored), in shared memory,
// 16-byte aligned. All 32 lanes must call it together. On the emulator FORCE_EMU=true selects the
// portable shuffle version instead of the checked all-gather one.
// ------------------------------------------------------------------------------------------------
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#define SIMT_PTX_LDMATRIX_ASM(NUM, TRANS_SUFFIX, ...)                                                    \
  if constexpr (!FORCE_EMU) {                                                                         \
    const unsigned simt_ptx_addr = static_cast<unsigned>(__cvta_generic_to_shared(smem_row));         \
    asm volatile("ldmatrix.sync.aligned.m8n8.x" #NUM TRANS_SUFFIX ".shared.b16 " __VA_ARGS__);        \
    return;                                                                                           \
  }
#endif

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#define SIMT_PTX_LDMATRIX_BODY(NUM, TRANS, TRANS_SUFFIX, ...)                                            \
  SIMT_PTX_LDMATRIX_ASM(NUM, TRANS_SUFFIX, __VA_ARGS__)                                               \
  detail::ldmatrix_shfl<NUM, TRANS>(r, smem_row);
#elif SIMT_EMULATED
#define SIMT_PTX_LDMATRIX_BODY(NUM, TRANS, TRANS_SUFFIX, ...)                                            \
  if constexpr (!FORCE_EMU) {                                                                         \
    detail::ldmatrix_allgather<NUM, TRANS>(r, smem_row SIMT_PTX_LOC_ARG);                             \
    return;                                                                                           \
  }                                                                                                   \
  detail::ldmatrix_shfl<NUM, TRANS>(r, smem_row);
#else
#define SIMT_PTX_LDMATRIX_BODY(NUM, TRANS, TRANS_SUFFIX, ...) detail::ldmatrix_shfl<NUM, TRANS>(r, smem_row);
#endif

template <bool FORCE_EMU = false>
__device__ __forceinline__ void ldmatrix_x1(uint32_t r[1], const void* smem_row SIMT_PTX_LOC_PARAM) {
  SIMT_PTX_LDMATRIX_BODY(1, false, "", "{%0}, [%1];\n" : "=r"(r[0]) : "r"(simt_ptx_addr) : "memory")
}
template <bool FORCE_EMU = false>
__device__ __forceinline__ void ldmatrix_x2(uint32_t r[2], const void* smem_row SIMT_PTX_LOC_PARAM) {
  SIMT_PTX_LDMATRIX_BODY(2, false, "", "{%0,%1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(simt_ptx_addr) : "memory")
}
template <bool FORCE_EMU = false>
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void* smem_row SIMT_PTX_LOC_PARAM) {
  SIMT_PTX_LDMATRIX_BODY(4, false, "", "{%0,%1,%2,%3}, [%4];\n"
                         : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(simt_ptx_addr) : "memory")
}
template <bool FORCE_EMU = false>
__device__ __forceinline__ void ldmatrix_x1_trans(uint32_t r[1], const void* smem_row SIMT_PTX_LOC_PARAM) {
  SIMT_PTX_LDMATRIX_BODY(1, true, ".trans", "{%0}, [%1];\n" : "=r"(r[0]) : "r"(simt_ptx_addr) : "memory")
}
template <bool FORCE_EMU = false>
__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t r[2], const void* smem_row SIMT_PTX_LOC_PARAM) {
  SIMT_PTX_LDMATRIX_BODY(2, true, ".trans", "{%0,%1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(simt_ptx_addr) : "memory")
}
template <bool FORCE_EMU = false>
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void* smem_row SIMT_PTX_LOC_PARAM) {
  SIMT_PTX_LDMATRIX_BODY(4, true, ".trans", "{%0,%1,%2,%3}, [%4];\n"
                         : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(simt_ptx_addr) : "memory")
}

#undef SIMT_PTX_LDMATRIX_BODY
#ifdef SIMT_PTX_LDMATRIX_ASM
#undef SIMT_PTX_LDMATRIX_ASM
#endif

// ------------------------------------------------------------------------------------------------
// cp.async.cg.shared.global, 16 bytes, plus commit_group / wait_group<N>.
// `smem_dst` and `gmem_src` must be 16-byte aligned. The _zfill variant reads only `src_bytes`
// (0..16) bytes and zero-fills the rest of the 16 (src is not read when src_bytes == 0), for
// bounds handling at tile edges. A thread must wait for a group before reading its destination
// and then __syncthreads before other threads read it.
// Emulator: copies are deferred to the wait and the destination holds 0xFF bytes until then.
// FORCE_EMU=true on a GPU: plain synchronous copies; commit/wait do nothing (use the same
// FORCE_EMU value for all cp.async calls of a kernel).
// ------------------------------------------------------------------------------------------------
template <bool FORCE_EMU = false>
__device__ __forceinline__ void cp_async_16(void* smem_dst, const void* gmem_src SIMT_PTX_LOC_PARAM) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (!FORCE_EMU) {
    const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem_dst));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(gmem_src) : "memory");
    return;
  }
#elif SIMT_EMULATED
  if constexpr (!FORCE_EMU) {
    detail::cp_async_issue(smem_dst, gmem_src, 16u, "cp_async_16" SIMT_PTX_LOC_ARG);
    return;
  }
#endif
  detail::copy_16(smem_dst, gmem_src);
}

template <bool FORCE_EMU = false>
__device__ __forceinline__ void cp_async_16_zfill(void* smem_dst, const void* gmem_src,
                                                  int src_bytes SIMT_PTX_LOC_PARAM) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (!FORCE_EMU) {
    const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem_dst));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem_src), "r"(src_bytes)
                 : "memory");
    return;
  }
#elif SIMT_EMULATED
  if constexpr (!FORCE_EMU) {
    if (src_bytes < 0) detail::fail("cp_async_16_zfill: negative src_bytes", simt_ptx_loc);
    detail::cp_async_issue(smem_dst, gmem_src, unsigned(src_bytes), "cp_async_16_zfill" SIMT_PTX_LOC_ARG);
    return;
  }
#endif
  if (src_bytes >= 16) {
    detail::copy_16(smem_dst, gmem_src);
  } else {
    unsigned char* d = static_cast<unsigned char*>(smem_dst);
    const unsigned char* s = static_cast<const unsigned char*>(gmem_src);
    for (int i = 0; i < 16; ++i) d[i] = i < src_bytes ? s[i] : (unsigned char)0;
  }
}

template <bool FORCE_EMU = false>
__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (!FORCE_EMU) {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
  }
#elif SIMT_EMULATED
  if constexpr (!FORCE_EMU) detail::cp_async_commit_emulated();
#endif
}

// Wait until at most N of this thread's most recent committed groups are still in flight.
template <int N, bool FORCE_EMU = false>
__device__ __forceinline__ void cp_async_wait() {
  static_assert(N >= 0 && N <= 7, "cp.async.wait_group takes an immediate 0..7");
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (!FORCE_EMU) {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
  }
#elif SIMT_EMULATED
  if constexpr (!FORCE_EMU) detail::cp_async_wait_emulated(N);
#endif
}

// cp.async.wait_all: commit the pending copies and wait for everything.
template <bool FORCE_EMU = false>
__device__ __forceinline__ void cp_async_wait_all() {
  cp_async_commit<FORCE_EMU>();
  cp_async_wait<0, FORCE_EMU>();
}

}  // namespace ptx
}  // namespace simt
