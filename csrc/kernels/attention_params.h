// Plain description of one attention_with_kv_cache call: no torch, no CUDA, shared by the
// torch-facing code, the CPU kernel, the CUDA launcher and the emulator.
#pragma once
#include <cstdint>

#include "kernels/dtype.h"

namespace dk {

struct AttentionParams {
  ScalarKind kind;  // of q, the caches and the new rows (all the same)
  int64_t batch, q_len, heads_q, heads_kv, head_dim;
  int64_t cache_len;  // Lc: rows of k_cache / v_cache
  int64_t new_len;    // rows of k_new / v_new (0: no write)
  float scale;        // softmax scale applied to q.k

  // [batch, len, heads, head_dim] tensors, strides in elements, head_dim contiguous.
  const void* q;
  int64_t q_sb, q_sl, q_sh;
  void* k_cache;
  void* v_cache;
  int64_t kc_sb, kc_sl, kc_sh, vc_sb, vc_sl, vc_sh;
  const void* k_new;
  const void* v_new;
  int64_t kn_sb, kn_sl, kn_sh, vn_sb, vn_sl, vn_sh;

  // Where the new rows go: write_starts[b] if non-null, else write_start for every row.
  int64_t write_start;
  const int64_t* write_starts;  // [batch] (device memory on CUDA: every kernel range-checks all rows)

  // Valid keys: mask[b, j] != 0 (if non-null) and j < key_lengths[b] (if non-null).
  const bool* key_mask;
  int64_t km_sb, km_sl;
  const int64_t* key_lengths;  // [batch]

  // Block rules (kernels/attention_mask.h): 0 = off. causal_block > 0: query i of row b, at
  // position min(start_b, cache_len) + i, sees key j iff j / causal_block <= position /
  // causal_block; with noisy_length > 0 too, the BD3-LM training layout x_t (+) x_0.
  int64_t causal_block = 0;
  int64_t noisy_length = 0;

  void* out;   // [batch, q_len, heads_q, head_dim], contiguous, dtype of q
  float* lse;  // [batch, heads_q, q_len], contiguous float32, or null (not requested)

  // CUDA split-KV (set by the launcher's caller): with num_splits > 1 each split writes its
  // normalised partial output [split, batch, heads_q, q_len, head_dim] and its lse
  // [split, batch, heads_q, q_len] (float32 workspace), merged by a second launch.
  int64_t num_splits = 1;
  float* o_partial = nullptr;
  float* lse_partial = nullptr;

  // Where the attention kernel finds the new rows (kernels/attention.cuh). kInCache: in the
  // caches, written there by an earlier launch (launch_attention_cache_write / swap). kRead: it
  // reads key rows [start_b, start_b + new_len) from k_new / v_new instead of the caches
  // (store_kv=False, one launch). kReadWrite: it also writes them into the caches (one launch for
  // the whole step; no block reads a cache row that a block writes, so no ordering is needed).
  // kRead/kReadWrite need 16-byte aligned rows of k_new and v_new, like the caches, and their row
  // stride (kn_sl == kc_sl, vn_sl == vc_sl).
  enum class NewRows : int32_t { kInCache = 0, kRead = 1, kReadWrite = 2 };
  NewRows new_rows = NewRows::kInCache;

  // Set to 1 by the kernels when write_starts puts a row's write range outside the cache (the
  // call then writes nothing and its outputs are NaN); never cleared, so one flag can collect
  // many calls. Optional ([1] int32 on the device).
  int32_t* write_status = nullptr;
};

}  // namespace dk
