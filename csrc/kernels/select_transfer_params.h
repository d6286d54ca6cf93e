// Plain description of one select_transfer call: no torch, no CUDA, so the torch-facing code,
// the CPU kernel, the CUDA launcher and the emulator all share it.
#pragma once
#include <cstdint>

namespace dk {

enum class TransferRule : int32_t {
  TopK = 0,             // the k best candidates (k per row); Gumbel-perturbed when alg_temp > 0
  Threshold = 1,        // Fast-dLLM: the row's best candidate plus every candidate >= threshold
                        // (> threshold when strict: SGLang)
  ThresholdRowMax = 2,  // dInfer: every candidate >= min(threshold, rowmax - eps)
  Factor = 3,           // Fast-dLLM factor rule over the sorted candidates
};

struct SelectTransferParams {
  const float* confidence;  // [batch, seq], any strides; candidates are the finite entries
  int64_t batch, seq;
  int64_t conf_stride_b, conf_stride_l;
  TransferRule rule;
  const int64_t* k;  // [batch] per-row counts (TopK), or nullptr to use k_value for every row
  int64_t k_stride;
  int64_t k_value;
  float threshold;  // Threshold / ThresholdRowMax, already rounded to float32
  // [batch] contiguous float32 per-row thresholds replacing `threshold`, or nullptr. Entries are
  // not checked: a NaN compares false (Threshold: only the row's best; ThresholdRowMax: nothing).
  const float* threshold_tensor;
  bool strict;      // Threshold: commit c > threshold instead of c >= threshold
  float eps;        // ThresholdRowMax
  double factor;    // Factor
  double alg_temp;  // TopK: > 0 draws without replacement from softmax(confidence / alg_temp)
  uint64_t seed, offset;  // Philox key of the alg_temp draws
  const int64_t* seed_tensor;    // one element, or nullptr to use seed (read where the kernel runs)
  const int64_t* offset_tensor;  // one element, or nullptr to use offset
  bool* mask;             // [batch, seq] out, contiguous
  int64_t* x;             // [batch, seq] in/out or nullptr: x[b, i] = x0[b, i] where transferred
  int64_t x_stride_b, x_stride_l;
  const int64_t* x0;  // [batch, seq] when x is given
  int64_t x0_stride_b, x0_stride_l;
  // CUDA only: [batch, scratch_len] sort keys for rows too long for shared memory (else nullptr).
  uint64_t* scratch;
  int64_t scratch_len;
};

}  // namespace dk
