// Every op's schema, written once: the real library (diffusion_kernels) and the emulated
// one (dk_emulated) declare the same strings.
#pragma once

#define DK_SCHEMA_MASKED_CONFIDENCE \
  "masked_confidence(Tensor logits, Tensor x, int mask_id) -> (Tensor x0, Tensor confidence)"
