// CPU attention for few query rows per kv head (the dual/prefix-cache step) and for masked and
// block-rule calls, structured as GEMMs. AVX-512 (attention_gemm_avx512.cpp): ATen's brgemm
// micro-kernels, AMX for bfloat16, AVX-512 FMA for float32 (float32 stays float32 throughout),
// and for bfloat16 on AVX-512 CPUs without AMX, float32 GEMMs on K/V widened while staged.
// AVX2 (attention_gemm_avx2.cpp): the same tasks and chunks on register-blocked AVX2 GEMMs of
// its own, float32 throughout (bfloat16 and float16 widened while staged).
//
// Per task (batch row, group of kv heads, tile of up to kGemmRows stacked query rows), per chunk
// of valid keys:
//   staging       (bfloat16, and float32 chunks of non-consecutive keys; other float32 chunks
//                 are read in place by the GEMMs, the cache row as leading dimension)
//                 the chunk's K and V rows of every head of the group, key row by key row
//                 (each cache row holds the group's heads side by side: one contiguous run per
//                 row, which the hardware prefetchers stream), into per-head buffers in L2; V in
//                 the VNNI layout (pairs of keys interleaved) for bfloat16;
//   then per head:
//   S^T = K Q^T   K rows in their natural [keys, head_dim] layout as the A operand, so only the
//                 32 x head_dim Q needs packing (once per task);
//   online softmax down the columns of S^T (one vector lane per query row), float32, fused with
//                 the transpose to P (rounded to bfloat16 for bfloat16 inputs, as flash-attn does);
//   O  += P V.
#pragma once
#include <cstdint>

#include "cpu/attention.h"
#include "kernels/attention_params.h"

namespace dk::cpu {

constexpr int64_t kGemmRows = 32;   // query rows per tile: the N of S^T = K Q^T
// Keys per chunk (measured, 32 heads x 128, 1 thread): bfloat16 amortises each brgemm call and
// AMX tile configuration over more keys; float32 keeps S^T and P (float32) closer to L1.
constexpr int64_t kGemmChunkBf16 = 128;
constexpr int64_t kGemmChunkF32 = 128;
// AVX2: staged float32 K and V of the task's heads stay within a 512 KiB L2.
constexpr int64_t kGemmChunkAvx2 = 64;
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
  void* v;     // [nheads][kGemmChunk][d] staged V rows (bf16: VNNI row pairs)
  void* k;     // [nheads][kGemmChunk][d] staged K rows
  float* o;    // [nheads][kGemmRows][d] unnormalised output
  float* m;    // [nheads][kGemmRows] running max (log2 domain)
  float* l;    // [nheads][kGemmRows] running sum
  float* bias; // [kGemmChunk][kGemmRows] 0 or -inf (hidden by a block rule), S^T layout
};

int64_t gemm_scratch_bytes(int64_t head_dim, int64_t nheads);
void gemm_scratch_layout(void* base, int64_t head_dim, int64_t nheads, GemmScratch& w);

// Whether attend_gemm can run this call here (AVX-512: float32, and bfloat16 on AMX or widened
// to float32 without it; AVX2: every dtype, widened to float32) and,
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

struct GemmOptions {
  bool widen_bf16;    // bfloat16 tensors, float32 GEMMs (no AMX, or DK_CPU_ATTENTION_WIDEN=1)
  bool stage_always;  // stage float32 chunks of consecutive keys too (DK_CPU_ATTENTION_STAGE=1)
};

// Under a block rule, which of the chunk's n keys each of the task's rows sees: fills bias
// ([n][kGemmRows], 0 or -inf) for a partly visible chunk; padding rows see everything (they are
// never stored).
ChunkMask classify_gemm_chunk(const AttentionParams& p, const GemmTask& t, const int64_t* keys, int64_t n,
                              float* bias);

// One task, everything from packing Q to storing out/lse (attention_gemm_avx512.cpp,
// attention_gemm_avx2.cpp).
void attend_gemm_task_v4(const AttentionParams& p, const GemmTask& t, const GemmScratch& w, const GemmOptions& o);
void attend_gemm_task_v3(const AttentionParams& p, const GemmTask& t, const GemmScratch& w, const GemmOptions& o);

}  // namespace dk::cpu
