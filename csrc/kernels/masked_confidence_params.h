// Plain description of one masked_confidence call: no torch, no CUDA, so the
// torch-facing code, the CPU kernel, the CUDA launcher and the emulator all share it.
#pragma once
#include <cstdint>

namespace dk {

enum class ScalarKind : int32_t { Float32 = 0, Float16 = 1, BFloat16 = 2 };

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
};

}  // namespace dk
