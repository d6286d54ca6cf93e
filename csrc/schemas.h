// Every op's schema, written once: the real library (diffusion_kernels) and the emulated
// one (dk_emulated) declare the same strings.
#pragma once

#define DK_SCHEMA_MASKED_CONFIDENCE \
  "masked_confidence(Tensor logits, Tensor x, int mask_id) -> (Tensor x0, Tensor confidence)"

#define DK_SCHEMA_MASKED_CE_FORWARD \
  "masked_ce_forward(Tensor logits, Tensor targets, Tensor masked) -> (Tensor ce, Tensor lse)"
#define DK_SCHEMA_MASKED_CE_BACKWARD                                                              \
  "masked_ce_backward(Tensor grad_ce, Tensor grad_lse, Tensor logits, Tensor targets, Tensor masked, " \
  "Tensor lse) -> Tensor"
#define DK_SCHEMA_MASKED_CE_FORWARD_BACKWARD \
  "masked_ce_forward_backward_(Tensor(a!) logits, Tensor targets, Tensor masked, Tensor scale) -> (Tensor ce, Tensor lse)"
#define DK_SCHEMA_FORWARD_MASK                                                                  \
  "forward_mask(Tensor x0, int mask_id, float eps, Tensor? t, Tensor? prompt_lengths, int seed, int offset, " \
  "bool antithetic) -> (Tensor x_t, Tensor masked, Tensor p_mask)"
