// CPU attention for few query rows per kv head (the dual/prefix-cache step) on ATen's brgemm
// micro-kernels: AMX for bfloat16, AVX-512 FMA for float32 (float32 stays float32 throughout).
//
// Per task (batch row, group of kv heads, tile of up to kGemmRows stacked query rows), per chunk
// of kGemmChunk valid keys, per head:
//   S^T = K Q^T   K rows straight from the cache (their natural [keys, head_dim] layout is the
//                 A operand, so the cache is never repacked); Q^T packed once per task;
//   online softmax down the columns of S^T (one vector lane per query row), float32;
//   O  += P V     P transposed (and rounded to bfloat16 for bfloat16 inputs, as flash-attn does);
//                 for bfloat16 each V chunk is interleaved into the VNNI layout in a small buffer.
// Heads are the inner loop so that one chunk's cache rows (all heads of a key are adjacent) are
// fetched once for the whole group.
#pragma once
#include <cstdint>

#include "kernels/attention_params.h"

namespace dk::cpu {

constexpr int64_t kGemmRows = 32;   // query rows per tile: the N of S^T = K Q^T
// Keys per chunk: bfloat16 amortises each brgemm call and AMX tile configuration over more
// keys; float32 keeps S^T and P (float32) within L1. Measured with bench/attention_ratio.py.
constexpr int64_t kGemmChunkBf16 = 256;
constexpr int64_t kGemmChunkF32 = 64;
constexpr int64_t kGemmChunk = kGemmChunkBf16 > kGemmChunkF32 ? kGemmChunkBf16 : kGemmChunkF32;
constexpr int64_t kGemmHeads = 8;   // most kv heads per task

struct GemmTask {
  int64_t b, hkv0, nheads;  // kv heads [hkv0, hkv0 + nheads)
  int64_t row0, rows;       // stacked query rows [row0, row0 + rows) of heads_q / heads_kv * q_len
  const int64_t* keys;      // the batch row's valid key indices, increasing
  int64_t nkeys;
};

// Per-thread buffers, 64-byte aligned, sized by gemm_scratch_bytes.
struct GemmScratch {
  void* q;     // [nheads] Q^T packed: bf16 VNNI [d/2][kGemmRows][2], f32 [d][kGemmRows]
  float* s;    // [kGemmChunk][kGemmRows] S^T, then P^T
  void* p;     // [kGemmRows][kGemmChunk] P in the input type
  void* v;     // [kGemmChunk][d] V chunk: bf16 VNNI, or gathered f32 rows
  void* k;     // [kGemmChunk][d] K rows gathered when the chunk's keys are not consecutive
  float* o;    // [nheads][kGemmRows][d] unnormalised output
  float* m;    // [nheads][kGemmRows] running max (log2 domain)
  float* l;    // [nheads][kGemmRows] running sum
};

int64_t gemm_scratch_bytes(int64_t head_dim, int64_t nheads);
void gemm_scratch_layout(void* base, int64_t head_dim, int64_t nheads, GemmScratch& w);

// Whether attend_gemm can run this call here (AVX-512 and, for bfloat16, AMX; not float16) and,
// unless even_with_idle_threads, has at least one task per thread (it does not split the keys).
bool gemm_attention_usable(const AttentionParams& p, bool even_with_idle_threads = false);

// Attention over the valid keys of the (already written) caches; writes out and lse.
void attend_gemm(const AttentionParams& p);

// ATen's brgemm (defined in attention_gemm.cpp, which includes torch): C (+)= A B with A [m, k]
// row-major (lda), B [k, n] (ldb; bf16 in VNNI pairs of k), C [m, n] float32 (ldc).
void gemm_bf16(int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb, int64_t ldc, bool add,
               const uint16_t* a, const uint16_t* b_vnni, float* c);
void gemm_f32(int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb, int64_t ldc, bool add,
              const float* a, const float* b, float* c);

// One task, everything from packing Q to storing out/lse (attention_gemm_avx512.cpp).
void attend_gemm_task_v4(const AttentionParams& p, const GemmTask& t, const GemmScratch& w);

}  // namespace dk::cpu
