// Plain description of one masked_confidence call: no torch, no CUDA, so the
// torch-facing code, the CPU kernel, the CUDA launcher and the emulator all share it.
#pragma once
#include <cstdint>

#include "kernels/dtype.h"

namespace dk {

// What `confidence` holds at a computed row (diffusion_kernels.masked_confidence documents them).
enum class ConfidenceKind : int32_t { Prob = 0, Margin = 1, NegEntropy = 2, Random = 3 };

struct MaskedConfidenceParams {
  const void* logits;        // [batch, seq, vocab], last dim contiguous
  ScalarKind logits_kind;
  int64_t batch, seq, vocab;
  int64_t logits_stride_b, logits_stride_l;  // in elements
  const int64_t* x;          // [batch, seq]
  int64_t x_stride_b, x_stride_l;
  int64_t mask_id;
  int64_t* x0;               // [batch, seq], contiguous
  float* confidence;         // [batch, seq], contiguous

  // Per-batch-row arguments: a [batch] tensor (pointer non-null, read on the device) or a value.
  const float* temperature = nullptr;  // > 0 samples; anything else (0, < 0, NaN) is argmax
  float temperature_value = 0.f;
  const float* top_p = nullptr;        // filters when < 1
  float top_p_value = 1.f;
  const int64_t* top_k = nullptr;      // filters when 0 < k < vocab
  int64_t top_k_value = 0;
  const int64_t* block_start = nullptr;  // rows l outside [start, end) are not computed
  int64_t block_start_value = 0;
  const int64_t* block_end = nullptr;
  int64_t block_end_value = INT64_MAX;

  const int64_t* suppress_ids = nullptr;  // vocabulary ids treated as -inf logits (checked in range)
  int64_t num_suppress = 0;

  // Philox key: one-element int64 tensors (CUDA-graph safe) or values.
  const int64_t* seed = nullptr;
  uint64_t seed_value = 0;
  const int64_t* offset = nullptr;
  uint64_t offset_value = 0;

  // Previous-token penalty (SGLang's penalty_lambda): at a computed position l >= 1 the logit of
  // token x[b, l - 1] is lowered by lambda before anything reads it (a [batch] tensor or a value).
  // A lambda that is not > 0 (0, negative, NaN), or a previous token outside [0, vocab),
  // penalises nothing.
  const float* prev_token_penalty = nullptr;
  float prev_token_penalty_value = 0.f;

  bool all_positions = false;  // every position of the block is computed, not only masked ones

  ConfidenceKind kind = ConfidenceKind::Prob;
  bool confidence_from_logits = false;  // LLaDA: plain softmax of the logits, not the sampled one
  float* lse = nullptr;                 // [batch, seq] contiguous, or nullptr

  // CUDA only, set by the launcher (DK_MC_SAMPLE=v2): the Gumbel draw's skip test starts from the
  // perturbed score of the row's (or slice's) argmax instead of each thread's own running best.
  bool gumbel_floor = false;

  // CUDA only: the split-vocabulary path's partial statistics (masked_confidence_scratch_bytes).
  void* scratch = nullptr;
  int64_t scratch_bytes = 0;

  // Some row may be penalised (uniform per call: the kernels' common path never looks further).
  bool penalized() const { return prev_token_penalty != nullptr || prev_token_penalty_value > 0.f; }

  // Any of the above differs from the greedy defaults (temperature tensor, filters, kinds, ...).
  bool general() const {
    return temperature != nullptr || temperature_value > 0.f || top_p != nullptr || top_p_value < 1.f ||
           top_k != nullptr || (top_k_value > 0 && top_k_value < vocab) || num_suppress > 0 ||
           kind != ConfidenceKind::Prob;
  }
};

}  // namespace dk
