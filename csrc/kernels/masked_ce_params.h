// Plain description of one masked cross-entropy call (forward, backward, or the fused in-place
// forward+backward of the chunked linear loss): no torch, no CUDA.
#pragma once
#include <cstdint>

#include "kernels/dtype.h"

namespace dk {

// Per-row vectors (targets, masked, ce, lse, grad_ce, grad_lse, scale) are contiguous [rows].
// Float vectors hold float, or double when kind == Float64.
struct MaskedCeParams {
  void* logits;            // [rows, vocab], last dim contiguous; written only by forward_backward
  ScalarKind kind;          // Float64 on CPU only (gradcheck); the CUDA launchers reject it
  int64_t rows, vocab;
  int64_t logits_stride;   // elements between rows
  const int64_t* targets;  // read only at masked rows; out of [0, vocab) gives NaN, never a wild read
  const bool* masked;

  // forward and forward_backward outputs: ce = lse - logit[target] and lse at masked rows, 0 elsewhere
  void* ce;
  void* lse;

  // backward: grad = (grad_ce + grad_lse) * softmax - grad_ce * onehot(target) at masked rows
  const void* grad_ce;
  const void* grad_lse;
  const void* lse_in;
  void* grad_logits;       // [rows, vocab], rows grad_stride apart, same dtype as logits
  int64_t grad_stride;

  // forward_backward: the logits are overwritten by scale * (softmax - onehot(target)) at masked
  // rows and by zeros elsewhere
  const void* scale;
};

}  // namespace dk
