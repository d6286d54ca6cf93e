// CUDA kernels of attention_with_kv_cache, flash-attention-2 style (design: DESIGN.md).
//
//   attention_cache_write_kernel: copies k_new/v_new into the caches at each batch row's start.
//   A per-row write_starts tensor stays on the device (no host sync): every block of every kernel
//   checks all batch rows (write_starts_ok) before it writes. One bad row and the call writes no
//   cache row, its outputs are NaN and write_status (if given) is set; the process stays usable.
//   attention_kernel: one block = 64 query rows of one (batch, kv head) and one slice of the keys.
//       With params.new_rows != kInCache it is the whole step in one launch: it reads key rows
//       [start, start + new_len) from k_new/v_new rather than from the caches and (kReadWrite) its
//       blocks also write those rows into the caches, each block a share of them. No block reads
//       a cache row that any block writes, so blocks need no ordering among them.
//       The rows of a block are the (query head of the GQA group, query position) pairs of that kv
//       head, so a group of query heads shares every K/V tile it loads. 4 warps x 16 rows; each
//       warp keeps its Q fragments in registers for the whole loop. K/V tiles of 64 keys go through
//       shared memory with cp.async, double buffered (tile t+1 is in flight while tile t is used),
//       swizzled so ldmatrix reads are free of bank conflicts. S = Q K^T and O += P V run on
//       mma.sync m16n8k16 with fp32 accumulators; the softmax is online, in the log2 domain.
//   attention_merge_kernel: with split-KV, combines the per-split outputs by their lse in split
//       order (fixed, hence deterministic).
// Invalid keys (mask, key_lengths, past the cache) are zero-filled in shared memory (so a NaN in a
// padded row never reaches the mma, where 0 * NaN would be NaN) and get a -inf score.
#pragma once
#include "simt/simt.h"
#include "simt/ptx.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/attention_mask.h"
#include "kernels/attention_params.h"

// Full unrolling keeps the fragment arrays in registers (a dynamic index would put them in local
// memory); g++ (the emulator) does not know the pragma.
#if defined(__CUDACC__)
#define DK_UNROLL _Pragma("unroll")
#else
#define DK_UNROLL
#endif

namespace dk {
namespace attn {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kBlockM = 16 * kWarps;  // query rows per block
constexpr int kBlockN = 64;           // keys per tile
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

template <int D>
constexpr int kTileBytes = kBlockN * D * 2;
// K[2 stages], V[2 stages], then the per-key score bias of each stage (0 or -inf).
template <int D>
constexpr int kSmemBytes = 4 * kTileBytes<D> + 2 * kBlockN * int(sizeof(float));

// Byte offset of 16-byte chunk `c` of tile row `r`. The chunk index is XORed with r % 8: the 8 rows
// one ldmatrix matrix reads then sit in 8 different bank groups (rows are 128 or 256 bytes apart,
// which would otherwise put them all on the same banks).
template <int D>
__device__ __forceinline__ int tile_offset(int r, int c) {
  return (r * (D / 8) + (c ^ (r & 7))) * 16;
}

__device__ __forceinline__ uint32_t load_b32(const void* p) {
#if SIMT_EMULATED
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
#else
  return *static_cast<const uint32_t*>(p);
#endif
}

__device__ __forceinline__ void store_b32(void* p, uint32_t v) {
#if SIMT_EMULATED
  std::memcpy(p, &v, 4);
#else
  *static_cast<uint32_t*>(p) = v;
#endif
}

template <class T>
__device__ __forceinline__ void mma(float d[4], const uint32_t a[4], const uint32_t b0, const uint32_t b1) {
  const uint32_t b[2] = {b0, b1};
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    simt::ptx::mma_m16n8k16_bf16(d, a, b, d);
  else
    simt::ptx::mma_m16n8k16_f16(d, a, b, d);
}

template <class T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return simt::ptx::pack_bf16x2(lo, hi);
  else
    return simt::ptx::pack_f16x2(lo, hi);
}

// Whether every batch row's write range lies inside the cache. All rows, not just the block's
// own: a bad later row must stop the write of the earlier ones too, and a trap would take the
// whole CUDA context down. Reads `batch` int64 per block, so it is cheap next to the work. Every
// thread of the block must call it (it contains a barrier).
__device__ __forceinline__ bool write_starts_ok(const AttentionParams& p) {
  if (p.write_starts == nullptr || p.new_len == 0) return true;  // an int start is host-checked
  int bad = 0;
  for (int64_t b = threadIdx.x; b < p.batch; b += blockDim.x) {
    const int64_t s = p.write_starts[b];
    bad |= s < 0 || s > p.cache_len - p.new_len;
  }
  return __syncthreads_or(bad) == 0;
}

// Fresh reads of the thread and block indices (volatile: not merged with earlier reads), so an
// index needed again after the main loop is recomputed there instead of held across it.
__device__ __forceinline__ int reread_tid() {
#if SIMT_EMULATED
  return int(threadIdx.x);
#else
  unsigned v;
  asm volatile("mov.u32 %0, %%tid.x;" : "=r"(v));
  return int(v);
#endif
}

__device__ __forceinline__ int reread_block_x() {
#if SIMT_EMULATED
  return int(blockIdx.x);
#else
  unsigned v;
  asm volatile("mov.u32 %0, %%ctaid.x;" : "=r"(v));
  return int(v);
#endif
}

__device__ __forceinline__ int reread_block_y() {
#if SIMT_EMULATED
  return int(blockIdx.y);
#else
  unsigned v;
  asm volatile("mov.u32 %0, %%ctaid.y;" : "=r"(v));
  return int(v);
#endif
}

// 16 bytes from and to 16-byte aligned addresses (the emulator checks what a GPU would fault on).
__device__ __forceinline__ uint4 load_16(const void* p) {
#if SIMT_EMULATED
  if (reinterpret_cast<uintptr_t>(p) % 16 != 0) std::abort();
#endif
  return __ldg(static_cast<const uint4*>(p));
}

__device__ __forceinline__ void store_16(void* p, const uint4& v) {
#if SIMT_EMULATED
  if (reinterpret_cast<uintptr_t>(p) % 16 != 0) std::abort();
#endif
  *static_cast<uint4*>(p) = v;
}

// The fused step's cache write: this block's share of the new K and V rows of its (batch row b,
// kv head hk), 16 bytes per thread and unit; the blocks (x, z) of one (b, hk) take interleaved
// units, lanes adjacent 16-byte chunks of a row. Four loads are issued before their stores (the
// compiler cannot reorder them itself: a cache row might alias k_new for all it knows).
template <class T, int D>
__device__ __forceinline__ void write_new_rows(const AttentionParams& p, int64_t b, int64_t hk, int64_t start) {
  constexpr int kChunks = D / 8;
  constexpr int kBatch = 4;
  const int64_t units = p.new_len * 2 * kChunks;  // (row, K or V, chunk)
  const int64_t stride = int64_t(gridDim.x) * gridDim.z * kThreads;
  auto address = [&](int64_t u, bool cache) {
    const int64_t i = u / (2 * kChunks);
    const int rest = int(u % (2 * kChunks)), c = rest % kChunks;
    if (rest < kChunks)
      return cache ? static_cast<T*>(p.k_cache) + b * p.kc_sb + (start + i) * p.kc_sl + hk * p.kc_sh + c * 8
                   : static_cast<T*>(const_cast<void*>(p.k_new)) + b * p.kn_sb + i * p.kn_sl + hk * p.kn_sh + c * 8;
    return cache ? static_cast<T*>(p.v_cache) + b * p.vc_sb + (start + i) * p.vc_sl + hk * p.vc_sh + c * 8
                 : static_cast<T*>(const_cast<void*>(p.v_new)) + b * p.vn_sb + i * p.vn_sl + hk * p.vn_sh + c * 8;
  };
  for (int64_t u0 = (int64_t(blockIdx.z) * gridDim.x + blockIdx.x) * kThreads + threadIdx.x; u0 < units;
       u0 += kBatch * stride) {
    uint4 v[kBatch];
    DK_UNROLL
    for (int k = 0; k < kBatch; ++k)
      if (u0 + k * stride < units) v[k] = load_16(address(u0 + k * stride, false));
    DK_UNROLL
    for (int k = 0; k < kBatch; ++k)
      if (u0 + k * stride < units) store_16(address(u0 + k * stride, true), v[k]);
  }
}

__device__ __forceinline__ int64_t key_end(const AttentionParams& p, int64_t b) {
  int64_t end = p.cache_len;
  if (p.key_lengths != nullptr) {
    const int64_t len = p.key_lengths[b];
    end = len < 0 ? 0 : (len < end ? len : end);
  }
  return end;
}

}  // namespace attn

// One thread per element of the new rows (16-bit copies: any strides, any alignment; the write
// is Lq rows, small next to the attention that follows). Swap: cache rows and new rows (then a
// writable scratch copy) trade places, so a second launch restores the cache (store_kv=False).
template <bool Swap>
__global__ void attention_cache_write_kernel(const AttentionParams p) {
  if (!attn::write_starts_ok(p)) {
    if (blockIdx.x == 0 && threadIdx.x == 0 && p.write_status != nullptr) *p.write_status = 1;
    return;
  }
  const int64_t per_batch = p.new_len * p.heads_kv * p.head_dim;
  const int64_t total = p.batch * per_batch;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = e / per_batch;
    int64_t rest = e - b * per_batch;
    const int64_t i = rest / (p.heads_kv * p.head_dim);
    rest -= i * (p.heads_kv * p.head_dim);
    const int64_t h = rest / p.head_dim, d = rest - h * p.head_dim;
    const int64_t row = (p.write_starts != nullptr ? p.write_starts[b] : p.write_start) + i;
    uint16_t* kc = static_cast<uint16_t*>(p.k_cache);
    uint16_t* vc = static_cast<uint16_t*>(p.v_cache);
    uint16_t* kn = static_cast<uint16_t*>(const_cast<void*>(p.k_new));
    uint16_t* vn = static_cast<uint16_t*>(const_cast<void*>(p.v_new));
    uint16_t& kd = kc[b * p.kc_sb + row * p.kc_sl + h * p.kc_sh + d];
    uint16_t& vd = vc[b * p.vc_sb + row * p.vc_sl + h * p.vc_sh + d];
    uint16_t& ks = kn[b * p.kn_sb + i * p.kn_sl + h * p.kn_sh + d];
    uint16_t& vs = vn[b * p.vn_sb + i * p.vn_sl + h * p.vn_sh + d];
    const uint16_t k_old = kd, v_old = vd;
    kd = ks;
    vd = vs;
    if constexpr (Swap) {
      ks = k_old;
      vs = v_old;
    }
  }
}

// grid (row tiles, batch * heads_kv, num_splits), kThreads threads, kSmemBytes<D> dynamic shared
// memory. q, k_cache and v_cache rows must be 16-byte aligned (base and strides; the caller copies
// otherwise).
// kRule: the instance for calls with a block rule (p.causal_block > 0); the plain instance keeps
// none of its registers (head_dim 128 uses all 255).
template <class T, int D, bool kRule>
__global__ void __launch_bounds__(attn::kThreads) attention_kernel(const AttentionParams p) {
  using namespace attn;
  static_assert(D == 64 || D == 128, "head_dim 64 or 128");
  constexpr int kChunks = D / 8;          // 16-byte chunks per K/V row
  constexpr int kKSteps = D / 16;         // k-steps of Q K^T
  constexpr int kSTiles = kBlockN / 8;    // n-tiles of S
  constexpr int kOTiles = D / 8;          // n-tiles of O
  SIMT_DYNAMIC_SHARED(unsigned char, smem);
  unsigned char* const k_tiles = smem;
  unsigned char* const v_tiles = smem + 2 * kTileBytes<D>;
  float* const bias = reinterpret_cast<float*>(smem + 4 * kTileBytes<D>);

  const int tid = int(threadIdx.x), warp = tid / 32, lane = tid % 32, g = lane >> 2, t = lane & 3;
  // Divisions in 32 bits (a 64-bit one is a subroutine call with a stack frame): the launcher
  // guarantees group * q_len and the key-tile count fit in int32. Addresses stay 64-bit.
  const int group = int(p.heads_q / p.heads_kv), q_len = int(p.q_len), heads_kv = int(p.heads_kv);
  const int64_t rows = int64_t(group) * q_len;
  const int64_t b = int(blockIdx.y) / heads_kv, hk = int(blockIdx.y) % heads_kv;
  const int64_t warp_row0 = int64_t(blockIdx.x) * kBlockM + warp * 16;
  const bool warp_active = warp_row0 < rows;  // warp-uniform: idle warps still copy and sync

  // This block's key tiles: those of the valid prefix of the row that a row of the block can see
  // (at most two intervals under a block rule, kernels/attention_mask.h), cut into the splits.
  // With two intervals (the training layout) the splits are shared out between them, so each
  // block walks one contiguous run of tiles (a map from loop index to tile would cost registers
  // that head_dim 128 does not have); with a single split the run spans both and the per-key
  // masks hide the keys between them. Keys fit in int32 (the launcher checks cache_len).
  // row_spans: the visible keys [lo0, hi0) U [lo1, hi1) of each row of the block; vis: per stage,
  // one 32-bit word per thread with exactly the score bits that thread masks (written and read by
  // the same thread: the loop holds one word, not two 64-bit row masks and their shifts, which
  // head_dim 128 has no registers for).
  SIMT_SHARED(int, row_spans, [kBlockM][4]);
  SIMT_SHARED(uint32_t, vis, [2][kThreads]);
  const int64_t n_end = key_end(p, b);
  int win_lo = 0, win_hi = int(n_end);  // keys from win_hi on are never read
  int tile_begin, tile_end;
  {
    int w0 = 0, w1 = int(n_end), w2 = 0, w3 = 0;  // visible window [w0, w1) U [w2, w3)
    if constexpr (kRule) {
      const int64_t block_row0 = int64_t(blockIdx.x) * kBlockM;
      const int64_t block_rows = rows - block_row0 < kBlockM ? rows - block_row0 : kBlockM;
      if (tid < kBlockM) {
        const int64_t r = block_row0 + tid < rows ? block_row0 + tid : block_row0;
        const attn_mask::KeySpans span =
            attn_mask::visible(p, attn_mask::query_position(p, attn_mask::row_start(p, b), r % q_len));
        row_spans[tid][0] = int(span.lo0);  // every end is at most cache_len
        row_spans[tid][1] = int(span.hi0);
        row_spans[tid][2] = int(span.lo1);
        row_spans[tid][3] = int(span.hi1);
      }
      int64_t pmin, pmax;
      attn_mask::row_positions(p, b, block_row0, block_rows, &pmin, &pmax);
      const attn_mask::KeySpans any = attn_mask::visible_range(p, pmin, pmax);
      w0 = int(any.lo0 < n_end ? any.lo0 : n_end);
      w1 = int(any.hi0 < n_end ? any.hi0 : n_end);
      w2 = int(any.lo1 < n_end ? any.lo1 : n_end);
      w3 = int(any.hi1 < n_end ? any.hi1 : n_end);
      __syncthreads();  // row_spans complete: each thread reads the spans of its two rows
    }
    const bool has_a = w1 > w0, has_b = w3 > w2;
    const int a0 = w0 / kBlockN, a1 = (w1 + kBlockN - 1) / kBlockN;
    const int b0 = w2 / kBlockN, b1 = (w3 + kBlockN - 1) / kBlockN;
    const int splits = int(p.num_splits), z = int(blockIdx.z);
    int first = a0, count = has_a ? a1 - a0 : 0, my_splits = splits, my_z = z;
    win_lo = w0, win_hi = w1;
    if (has_b && !has_a) {
      first = b0, count = b1 - b0, win_lo = w2, win_hi = w3;
    } else if (has_b && (b0 < a1 || splits == 1)) {  // one run over both (and the keys between)
      count = b1 - a0, win_hi = w3;
    } else if (has_b) {  // the splits shared out in proportion to the tiles, at least one each
      const int na = a1 - a0, nb = b1 - b0;
      int za = int(int64_t(splits) * na / (na + nb));
      za = za < 1 ? 1 : (za > splits - 1 ? splits - 1 : za);
      if (z >= za) {
        first = b0, count = nb, my_splits = splits - za, my_z = z - za, win_lo = w2, win_hi = w3;
      } else {
        my_splits = za;
      }
    }
    const int per_split = (count + my_splits - 1) / my_splits;
    tile_begin = first + my_z * per_split;
    tile_end = first + count < tile_begin + per_split ? first + count : tile_begin + per_split;
  }

  // Q fragments of rows g and g+8 of the warp's 16, as (query head, position): held in registers
  // for the whole loop. Rows past the end are zero.
  uint32_t qf[kKSteps][4];
  DK_UNROLL
  for (int h = 0; h < 2; ++h) {
    const int64_t r = warp_row0 + g + 8 * h;
    const bool ok = r < rows;
    const int rr = ok ? int(r) : 0;
    const T* const qrow = static_cast<const T*>(p.q) + b * p.q_sb + int64_t(rr % q_len) * p.q_sl +
                          (hk * group + rr / q_len) * p.q_sh + 2 * t;
    DK_UNROLL
    for (int kk = 0; kk < kKSteps; ++kk) {
      qf[kk][h] = ok ? load_b32(qrow + kk * 16) : 0u;
      qf[kk][h + 2] = ok ? load_b32(qrow + kk * 16 + 8) : 0u;
    }
  }

  // Each thread copies one fixed 16-byte column chunk of rows my_row, my_row + kRowStep, ...
  constexpr int kRowStep = kThreads / kChunks;
  static_assert(kThreads % kChunks == 0 && kBlockN % kRowStep == 0, "copy layout");
  const int my_chunk = tid % kChunks, my_row = tid / kChunks;
  const T* const k_col = static_cast<const T*>(p.k_cache) + b * p.kc_sb + hk * p.kc_sh + my_chunk * 8;
  const T* const v_col = static_cast<const T*>(p.v_cache) + b * p.vc_sb + hk * p.vc_sh + my_chunk * 8;
  const bool* const mask_row = p.key_mask != nullptr ? p.key_mask + b * p.km_sb : nullptr;
  // Past the window a key is treated as invalid: zero-filled, its memory never read. Keys before
  // it in the run's first tile are read (valid rows written earlier) and hidden by the row masks;
  // testing win_lo too costs registers that make head_dim 128 spill.
  auto key_valid = [&](int64_t key) {
    return key < win_hi && (mask_row == nullptr || mask_row[key * p.km_sl]);
  };

  // Fused step: key rows [new_lo, new_lo + new_len) come from k_new / v_new. Their row stride is
  // the caches' (the launcher checks), so a new row's address is the cache row's plus a fixed byte
  // offset per block (new_delta, K and V). Kept in shared memory, not in registers across the loop
  // (head_dim 128 spills otherwise); a start outside the cache is clamped: such a call is
  // poisoned, and every read stays in bounds.
  SIMT_SHARED(int, new_window, [1]);
  SIMT_SHARED(int64_t, new_delta, [2]);
  const bool has_new = p.new_rows != AttentionParams::NewRows::kInCache;  // uniform
  if (has_new) {
    if (tid == 0) {
      const int64_t s = attn_mask::row_start(p, b);
      const int lo = int(s < 0 ? 0 : (s < p.cache_len ? s : p.cache_len));
      new_window[0] = lo;
      auto bytes = [](const void* a, const void* c) {
        return int64_t(reinterpret_cast<uintptr_t>(a) - reinterpret_cast<uintptr_t>(c));
      };
      new_delta[0] = bytes(static_cast<const T*>(p.k_new) + b * p.kn_sb + hk * p.kn_sh,
                           static_cast<const T*>(p.k_cache) + b * p.kc_sb + hk * p.kc_sh + lo * p.kc_sl);
      new_delta[1] = bytes(static_cast<const T*>(p.v_new) + b * p.vn_sb + hk * p.vn_sh,
                           static_cast<const T*>(p.v_cache) + b * p.vc_sb + hk * p.vc_sh + lo * p.vc_sl);
    }
    __syncthreads();
  }

  // Pointers walk down the rows (rather than one address per row kept live across the loop: at
  // head_dim 128 that costs the registers the accumulators need).
  auto load_tile = [&](int tile, int stage) {
    unsigned char* const ks = k_tiles + stage * kTileBytes<D>;
    unsigned char* const vs = v_tiles + stage * kTileBytes<D>;
    const int new_lo = has_new ? new_window[0] : 0;
    const unsigned new_n = has_new ? unsigned(p.new_len) : 0u;
    auto moved = [](const T* ptr, int64_t delta) {
      return reinterpret_cast<const T*>(reinterpret_cast<uintptr_t>(ptr) + uint64_t(delta));
    };
    int64_t key = int64_t(tile) * kBlockN + my_row;
    const T* kp = k_col + key * p.kc_sl;
    const T* vp = v_col + key * p.vc_sl;
    DK_UNROLL
    for (int r = my_row; r < kBlockN; r += kRowStep) {
      const bool ok = key_valid(key);  // a masked row is zero-filled and its source never read
      const T* ksrc = ok ? kp : k_col;
      const T* vsrc = ok ? vp : v_col;
      if (ok && unsigned(int(key) - new_lo) < new_n) {  // a new row: from k_new / v_new
        ksrc = moved(kp, new_delta[0]);
        vsrc = moved(vp, new_delta[1]);
      }
      simt::ptx::cp_async_16_zfill(ks + tile_offset<D>(r, my_chunk), ksrc, ok ? 16 : 0);
      simt::ptx::cp_async_16_zfill(vs + tile_offset<D>(r, my_chunk), vsrc, ok ? 16 : 0);
      key += kRowStep;
      kp += kRowStep * p.kc_sl;
      vp += kRowStep * p.vc_sl;
    }
    if (tid < kBlockN) bias[stage * kBlockN + tid] = key_valid(int64_t(tile) * kBlockN + tid) ? 0.f : -INFINITY;
    if constexpr (kRule) {
      // Bit 16h + 2j + e: whether row g + 8h of this thread's warp sees key 8j + 2t + e of the tile.
      const int key0 = tile * kBlockN;
      auto ones_below = [](int n) { return n <= 0 ? uint64_t{0} : n >= 64 ? ~uint64_t{0} : (uint64_t{1} << n) - 1; };
      uint32_t word = 0;
      DK_UNROLL
      for (int h = 0; h < 2; ++h) {
        const int* const sp = row_spans[warp * 16 + g + 8 * h];
        const uint64_t row = (ones_below(sp[1] - key0) & ~ones_below(sp[0] - key0)) |
                             (ones_below(sp[3] - key0) & ~ones_below(sp[2] - key0));
        const uint64_t mine = row >> (2 * t);
        DK_UNROLL
        for (int j = 0; j < kSTiles; ++j) word |= uint32_t((mine >> (8 * j)) & 3u) << (16 * h + 2 * j);
      }
      vis[stage][tid] = word;
    }
  };

  float o[kOTiles][4];
  DK_UNROLL
  for (int j = 0; j < kOTiles; ++j)
    DK_UNROLL
    for (int e = 0; e < 4; ++e) o[j][e] = 0.f;
  float m[2] = {-INFINITY, -INFINITY};  // running max of the log2-domain scores, per row half
  float l[2] = {0.f, 0.f};              // this thread's part of the running sum
  const float scale_log2 = p.scale * kLog2e;

  if (tile_begin < tile_end) {
    load_tile(tile_begin, 0);
    simt::ptx::cp_async_commit();
  }
  // The fused step's checks and cache write, while the first tile is in flight. A bad start
  // (every block sees it) skips the write and sets write_status; the outputs become NaN below.
  if (p.new_rows != AttentionParams::NewRows::kInCache) {
    if (!write_starts_ok(p)) {
      if (blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0 && tid == 0 && p.write_status != nullptr)
        *p.write_status = 1;
    } else if (p.new_rows == AttentionParams::NewRows::kReadWrite) {
      write_new_rows<T, D>(p, b, hk, attn_mask::row_start(p, b));
    }
  }
  for (int tile = tile_begin; tile < tile_end; ++tile) {
    const int stage = (tile - tile_begin) & 1;
    if (tile + 1 < tile_end) {
      load_tile(tile + 1, stage ^ 1);  // the other stage was released by the last barrier
      simt::ptx::cp_async_commit();
      simt::ptx::cp_async_wait<1>();
    } else {
      simt::ptx::cp_async_wait<0>();
    }
    __syncthreads();
    if (warp_active) {
      const unsigned char* const ks = k_tiles + stage * kTileBytes<D>;
      const unsigned char* const vs = v_tiles + stage * kTileBytes<D>;
      const float* const bs = bias + stage * kBlockN;

      float s[kSTiles][4];
      DK_UNROLL
      for (int j = 0; j < kSTiles; ++j)
        DK_UNROLL
        for (int e = 0; e < 4; ++e) s[j][e] = 0.f;
      // ldmatrix x4 over keys [16jp, 16jp+16) x dims [16kk, 16kk+16): matrices (keys lo, dims lo),
      // (keys lo, dims hi), (keys hi, dims lo), (keys hi, dims hi) = B fragments of n-tiles 2jp, 2jp+1.
      DK_UNROLL
      for (int kk = 0; kk < kKSteps; ++kk) {
        DK_UNROLL
        for (int jp = 0; jp < kSTiles / 2; ++jp) {
          uint32_t kb[4];
          const int r = jp * 16 + (lane & 7) + ((lane >> 4) & 1) * 8;
          const int ch = kk * 2 + ((lane >> 3) & 1);
          simt::ptx::ldmatrix_x4(kb, ks + tile_offset<D>(r, ch));
          mma<T>(s[2 * jp], qf[kk], kb[0], kb[1]);
          mma<T>(s[2 * jp + 1], qf[kk], kb[2], kb[3]);
        }
      }

      // Online softmax. s[j][e] holds row g (e < 2) or g+8 (e >= 2), key 8j + 2t + (e & 1); the
      // four lanes of a quad share a row, so row reductions are two xor shuffles (symmetric:
      // every lane gets the same bits).
      float mx[2] = {m[0], m[1]};
      DK_UNROLL
      for (int j = 0; j < kSTiles; ++j)
        DK_UNROLL
        for (int e = 0; e < 4; ++e) s[j][e] = fmaf(s[j][e], scale_log2, bs[8 * j + 2 * t + (e & 1)]);
      if constexpr (kRule) {
        // Keys this thread's rows do not see get -inf (a select: even a NaN score is hidden).
        const uint32_t bits = vis[stage][tid];
        DK_UNROLL
        for (int j = 0; j < kSTiles; ++j)
          DK_UNROLL
          for (int e = 0; e < 4; ++e)
            if (((bits >> (16 * (e >> 1) + 2 * j + (e & 1))) & 1u) == 0) s[j][e] = -INFINITY;
      }
      DK_UNROLL
      for (int j = 0; j < kSTiles; ++j)
        DK_UNROLL
        for (int e = 0; e < 4; ++e) mx[e >> 1] = fmaxf(mx[e >> 1], s[j][e]);
      float m_use[2];
      DK_UNROLL
      for (int h = 0; h < 2; ++h) {
        mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 1));
        mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 2));
        m_use[h] = mx[h] == -INFINITY ? 0.f : mx[h];  // no valid key yet: keep every exp at 0
        const float alpha = exp2f(m[h] - m_use[h]);
        m[h] = mx[h];
        l[h] *= alpha;
        DK_UNROLL
        for (int j = 0; j < kOTiles; ++j) {
          o[j][2 * h] *= alpha;
          o[j][2 * h + 1] *= alpha;
        }
      }
      DK_UNROLL
      for (int j = 0; j < kSTiles; ++j)
        DK_UNROLL
        for (int e = 0; e < 4; ++e) {
          s[j][e] = exp2f(s[j][e] - m_use[e >> 1]);
          l[e >> 1] += s[j][e];
        }

      // O += P V. P's A fragment for keys [16kk, 16kk+16) is the C fragments of n-tiles 2kk and
      // 2kk+1; V^T's B fragments come from ldmatrix.trans of the V rows: matrices (keys lo, dims lo),
      // (keys hi, dims lo), (keys lo, dims hi), (keys hi, dims hi) = n-tiles 2dp, 2dp+1.
      DK_UNROLL
      for (int kk = 0; kk < kBlockN / 16; ++kk) {
        const uint32_t a[4] = {pack2<T>(s[2 * kk][0], s[2 * kk][1]), pack2<T>(s[2 * kk][2], s[2 * kk][3]),
                               pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                               pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
        DK_UNROLL
        for (int dp = 0; dp < kOTiles / 2; ++dp) {
          uint32_t vb[4];
          const int r = kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
          const int ch = dp * 2 + (lane >> 4);
          simt::ptx::ldmatrix_x4_trans(vb, vs + tile_offset<D>(r, ch));
          mma<T>(o[2 * dp], a, vb[0], vb[1]);
          mma<T>(o[2 * dp + 1], a, vb[2], vb[3]);
        }
      }
    }
    __syncthreads();  // every warp is done with this stage before the next iteration refills it
  }

  // A bad write start makes the outputs NaN (the cache write was skipped). Checked after the loop,
  // not before: a flag or barrier ahead of it makes ptxas spill at head_dim 128.
  const bool poisoned = !write_starts_ok(p);
  if (!warp_active) return;
  float inv[2], lse[2];
  DK_UNROLL
  for (int h = 0; h < 2; ++h) {
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 1);
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 2);
    // A row with no valid key (l == 0) outputs 0 and lse -inf.
    inv[h] = l[h] > 0.f ? 1.f / l[h] : 0.f;
    lse[h] = l[h] > 0.f ? (m[h] + log2f(l[h])) * kLn2 : -INFINITY;
    if (poisoned) inv[h] = lse[h] = NAN;  // any o times NaN is NaN
  }
  // The output's indices: under a block rule recomputed from fresh reads (the rule's loop leaves
  // no registers at head_dim 128 to hold them across it; holding them spilled).
  const int e_tid = kRule ? reread_tid() : tid, e_lane = e_tid % 32;
  const int e_g = kRule ? e_lane >> 2 : g, e_t = kRule ? e_lane & 3 : t;
  const int e_group = kRule ? int(p.heads_q) / int(p.heads_kv) : group, e_q_len = kRule ? int(p.q_len) : q_len;
  const int e_by = kRule ? reread_block_y() : int(blockIdx.y);
  const int64_t e_rows = kRule ? int64_t(e_group) * e_q_len : rows;
  const int64_t e_b = kRule ? e_by / int(p.heads_kv) : b, e_hk = kRule ? e_by % int(p.heads_kv) : hk;
  const int64_t e_row0 = kRule ? int64_t(reread_block_x()) * kBlockM + (e_tid / 32) * 16 : warp_row0;
  DK_UNROLL
  for (int h = 0; h < 2; ++h) {
    const int64_t r = e_row0 + e_g + 8 * h;
    if (r >= e_rows) continue;
    const int64_t head = e_hk * e_group + int(r) / e_q_len, pos = int(r) % e_q_len;
    const int64_t lse_row = (e_b * p.heads_q + head) * p.q_len + pos;  // [batch, heads_q, q_len]
    if (p.num_splits > 1) {
      const int64_t split_row = int64_t(blockIdx.z) * p.batch * p.heads_q * p.q_len + lse_row;
      float* const dst = p.o_partial + split_row * D;
      DK_UNROLL
      for (int j = 0; j < kOTiles; ++j) {
        dst[8 * j + 2 * e_t] = o[j][2 * h] * inv[h];
        dst[8 * j + 2 * e_t + 1] = o[j][2 * h + 1] * inv[h];
      }
      if (e_t == 0) p.lse_partial[split_row] = lse[h];
    } else {
      T* const dst = static_cast<T*>(p.out) + ((e_b * p.q_len + pos) * p.heads_q + head) * D;
      DK_UNROLL
      for (int j = 0; j < kOTiles; ++j)
        store_b32(dst + 8 * j + 2 * e_t, pack2<T>(o[j][2 * h] * inv[h], o[j][2 * h + 1] * inv[h]));
      if (e_t == 0 && p.lse != nullptr) p.lse[lse_row] = lse[h];
    }
  }
}

// One block of D threads per output row (batch, head, position); thread d owns dimension d.
// The splits are combined in index order, so the result does not depend on scheduling.
template <class T, int D>
__global__ void __launch_bounds__(D) attention_merge_kernel(const AttentionParams p) {
  const int64_t n_rows = p.batch * p.heads_q * p.q_len;
  const int64_t split_stride = n_rows;
  const int d = int(threadIdx.x);
  const bool poisoned = !attn::write_starts_ok(p);
  for (int64_t row = blockIdx.x; row < n_rows; row += gridDim.x) {
    float mx = -INFINITY;
    for (int64_t s = 0; s < p.num_splits; ++s) mx = fmaxf(mx, p.lse_partial[s * split_stride + row]);
    float sum = 0.f, acc = 0.f;
    if (mx != -INFINITY) {
      for (int64_t s = 0; s < p.num_splits; ++s) {
        const float w = expf(p.lse_partial[s * split_stride + row] - mx);
        sum += w;
        acc += w * p.o_partial[(s * split_stride + row) * D + d];
      }
    }
    const int64_t bh = row / p.q_len, i = row - bh * p.q_len;
    const int64_t b = bh / p.heads_q, h = bh - b * p.heads_q;
    const float v = poisoned ? NAN : (mx != -INFINITY ? acc / sum : 0.f);
    T* const out = static_cast<T*>(p.out);
    if constexpr (std::is_same_v<T, __nv_bfloat16>)
      out[((b * p.q_len + i) * p.heads_q + h) * D + d] = __float2bfloat16_rn(v);
    else
      out[((b * p.q_len + i) * p.heads_q + h) * D + d] = __float2half_rn(v);
    if (d == 0 && p.lse != nullptr) p.lse[row] = poisoned ? NAN : (mx != -INFINITY ? mx + logf(sum) : -INFINITY);
  }
}

}  // namespace dk
