// Every op's schema, written once: the real library (diffusion_kernels) and the emulated
// one (dk_emulated) declare the same strings.
#pragma once

#define DK_SCHEMA_MASKED_CONFIDENCE \
  "masked_confidence(Tensor logits, Tensor x, int mask_id) -> (Tensor x0, Tensor confidence)"

// x is written in place (x[b, i] = x0[b, i] where transferred) when given.
#define DK_SCHEMA_SELECT_TRANSFER                                                                  \
  "select_transfer(Tensor confidence, str rule, Tensor? k, int k_value, float threshold, float eps, " \
  "float factor, float alg_temp, int seed, int offset, Tensor(a!)? x, Tensor? x0) -> Tensor"
