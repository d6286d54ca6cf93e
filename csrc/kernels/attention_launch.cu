// Host launchers of attention_with_kv_cache. nvcc builds them for the GPU; setup.py has g++
// compile this same file against the SIMT emulator.
#include "simt/simt.h"
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include "kernels/attention.cuh"
#include "kernels/attention_launchers.h"
#include "kernels/launchers.h"

namespace dk {
namespace {

constexpr int64_t kMaxGridX = (int64_t{1} << 31) - 1;
constexpr int64_t kMaxGridYZ = 65535;
constexpr int64_t kMaxSplits = 64;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

constexpr int kMaxCachedDevices = 64;

#if !SIMT_EMULATED
int current_device() {
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) throw std::runtime_error("attention_with_kv_cache: cannot query the current device");
  return dev;
}
#endif

int sm_count() {
#if SIMT_EMULATED
  return 132;  // an H100, so the emulator takes the split-KV path on the shapes that would
#else
  // Cached per device: the attribute query is host time on every decoding step otherwise.
  static std::atomic<int> cached[kMaxCachedDevices] = {};
  const int dev = current_device();
  if (dev < kMaxCachedDevices) {
    if (const int n = cached[dev].load(std::memory_order_relaxed); n > 0) return n;
  }
  int n = 0;
  if (cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
    throw std::runtime_error("attention_with_kv_cache: cannot query the multiprocessor count");
  if (dev < kMaxCachedDevices) cached[dev].store(n, std::memory_order_relaxed);
  return n;
#endif
}

// The kernel's dynamic shared memory limit is raised once per device and instance (the attribute
// call is host time on every step otherwise). Kernel: one instance of attention_kernel.
template <class T, int D, bool kRule>
void raise_smem_limit_once() {
  const auto kernel = attention_kernel<T, D, kRule>;
#if SIMT_EMULATED
  simt::set_max_dynamic_smem(kernel, attn::kSmemBytes<D>);
#else
  static std::atomic<uint64_t> done{0};  // bit d: device d is set
  const int dev = current_device();
  const uint64_t bit = dev < kMaxCachedDevices ? uint64_t{1} << dev : 0;
  if (bit != 0 && (done.load(std::memory_order_acquire) & bit) != 0) return;
  simt::set_max_dynamic_smem(kernel, attn::kSmemBytes<D>);
  done.fetch_or(bit, std::memory_order_release);
#endif
}

int64_t row_tiles(const AttentionParams& p) {
  return ceil_div(p.heads_q / p.heads_kv * p.q_len, attn::kBlockM);
}

template <class T, int D>
void launch_typed(const AttentionParams& p, cudaStream_t s) {
  const dim3 grid(static_cast<unsigned>(row_tiles(p)), static_cast<unsigned>(p.batch * p.heads_kv),
                  static_cast<unsigned>(p.num_splits));
  constexpr int smem = attn::kSmemBytes<D>;
  const bool rule = p.causal_block > 0;
  rule ? raise_smem_limit_once<T, D, true>() : raise_smem_limit_once<T, D, false>();
  const auto kernel = rule ? attention_kernel<T, D, true> : attention_kernel<T, D, false>;
  simt::launch(kernel, grid, dim3(attn::kThreads), smem, s, p);
  simt::check_launch("attention_with_kv_cache");
  if (p.num_splits > 1) {
    const int64_t rows = p.batch * p.heads_q * p.q_len;
    simt::launch(attention_merge_kernel<T, D>, dim3(static_cast<unsigned>(std::min(rows, kMaxGridX))), dim3(D), 0, s, p);
    simt::check_launch("attention_with_kv_cache (split merge)");
  }
}

}  // namespace

bool attention_cuda_supports(const AttentionParams& p) {
  return (p.kind == ScalarKind::BFloat16 || p.kind == ScalarKind::Float16) && (p.head_dim == 64 || p.head_dim == 128);
}

bool attention_rows_aligned(const void* base, int64_t sb, int64_t sl, int64_t sh) {
  constexpr int64_t kElems = 8;  // 16 bytes of a 16-bit dtype
  return reinterpret_cast<uintptr_t>(base) % 16 == 0 && sb % kElems == 0 && sl % kElems == 0 && sh % kElems == 0;
}

namespace {
// What the fused kernel needs of the new rows: 16-byte aligned like the caches, and the caches'
// row stride (it addresses a new row as the cache row plus a fixed offset).
bool new_rows_fusable(const AttentionParams& p) {
  return p.kn_sl == p.kc_sl && p.vn_sl == p.vc_sl && attention_rows_aligned(p.k_cache, p.kc_sb, p.kc_sl, p.kc_sh) &&
         attention_rows_aligned(p.v_cache, p.vc_sb, p.vc_sl, p.vc_sh) &&
         attention_rows_aligned(p.k_new, p.kn_sb, p.kn_sl, p.kn_sh) &&
         attention_rows_aligned(p.v_new, p.vn_sb, p.vn_sl, p.vn_sh);
}
}  // namespace

// DK_ATTENTION_LAUNCH=fused (the default) or separate (the cache write, or store_kv=False's swaps,
// as launches of their own around the attention): read per call, so one process can time both.
bool attention_fused_step(const AttentionParams& p) {
  const char* env = std::getenv("DK_ATTENTION_LAUNCH");
  if (env != nullptr && *env != '\0' && std::strcmp(env, "fused") != 0) {
    if (std::strcmp(env, "separate") == 0) return false;
    throw std::invalid_argument(std::string("attention_with_kv_cache: environment variable DK_ATTENTION_LAUNCH must be "
                                            "fused or separate, got '") + env + "'");
  }
  // Without a query the attention launch is skipped, so it could not write the rows.
  return p.new_len > 0 && p.batch > 0 && p.q_len > 0 && p.heads_q > 0 && attention_cuda_supports(p) &&
         new_rows_fusable(p);
}

// Enough splits of the keys that the blocks fill the machine about once, none of them empty.
// DK_ATTENTION_SPLITS=<n> overrides (tests compare the two paths); it is read per call.
int64_t attention_num_splits(const AttentionParams& p) {
  const int64_t blocks = row_tiles(p) * p.batch * p.heads_kv;
  const int64_t key_tiles = ceil_div(p.cache_len, attn::kBlockN);
  if (blocks == 0 || key_tiles <= 1) return 1;
  int64_t want = ceil_div(sm_count(), blocks);
  // The training layout's blocks see two runs of keys; a split each keeps them apart (attention.cuh).
  if (p.causal_block > 0 && p.noisy_length > 0) want = std::max<int64_t>(want, 2);
  if (const char* env = std::getenv("DK_ATTENTION_SPLITS"); env != nullptr && *env != '\0')
    want = std::max<int64_t>(1, std::atoll(env));
  want = std::min({want, key_tiles, kMaxSplits});
  if (want <= 1) return 1;
  return ceil_div(key_tiles, ceil_div(key_tiles, want));  // drop splits that would get no tile
}

namespace {
template <bool Swap>
void launch_cache_rows(const AttentionParams& p, void* stream) {
  const int64_t total = p.batch * p.new_len * p.heads_kv * p.head_dim;
  if (total == 0) return;
  constexpr int kThreads = 256;
  const dim3 grid(static_cast<unsigned>(std::min(ceil_div(total, kThreads), int64_t{1} << 20)));
  simt::launch(attention_cache_write_kernel<Swap>, grid, dim3(kThreads), 0, static_cast<cudaStream_t>(stream), p);
  simt::check_launch(Swap ? "attention_with_kv_cache (cache swap)" : "attention_with_kv_cache (cache write)");
}
}  // namespace

void launch_attention_cache_write(const AttentionParams& p, void* stream) { launch_cache_rows<false>(p, stream); }

void launch_attention_cache_swap(const AttentionParams& p, void* stream) { launch_cache_rows<true>(p, stream); }

void launch_attention(const AttentionParams& p, void* stream) {
  if (!attention_cuda_supports(p))
    throw std::invalid_argument("attention_with_kv_cache: the CUDA kernel supports float16/bfloat16 and head_dim 64 or 128");
  if (p.batch == 0 || p.q_len == 0 || p.heads_q == 0) return;
  if (p.batch * p.heads_kv > kMaxGridYZ || p.num_splits > kMaxSplits)
    throw std::invalid_argument("attention_with_kv_cache: batch * heads_kv must be at most 65535 on CUDA");
  // The kernel divides in 32 bits (attention.cuh).
  constexpr int64_t kMax32 = (int64_t{1} << 31) - 1 - attn::kBlockM;
  if (p.heads_q / p.heads_kv * p.q_len > kMax32 || p.cache_len > kMax32)
    throw std::invalid_argument("attention_with_kv_cache: (heads_q / heads_kv) * q_len and cache_len must be below 2^31 on CUDA");
  if (p.num_splits > 1 && (p.o_partial == nullptr || p.lse_partial == nullptr))
    throw std::invalid_argument("attention_with_kv_cache: split-KV needs its workspace");
  if (p.new_rows != AttentionParams::NewRows::kInCache && (p.new_len <= 0 || !new_rows_fusable(p)))
    throw std::invalid_argument("attention_with_kv_cache: the fused step needs new rows, 16-byte aligned like the "
                                "caches and with their row stride");
  const auto s = static_cast<cudaStream_t>(stream);
  const bool bf16 = p.kind == ScalarKind::BFloat16;
  if (p.head_dim == 64) {
    bf16 ? launch_typed<__nv_bfloat16, 64>(p, s) : launch_typed<__half, 64>(p, s);
  } else {
    bf16 ? launch_typed<__nv_bfloat16, 128>(p, s) : launch_typed<__half, 128>(p, s);
  }
}

}  // namespace dk
