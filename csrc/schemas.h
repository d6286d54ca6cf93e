// Every op's schema, written once: the real library (diffusion_kernels) and the emulated
// one (dk_emulated) declare the same strings.
#pragma once

#define DK_SCHEMA_MASKED_CONFIDENCE \
  "masked_confidence(Tensor logits, Tensor x, int mask_id) -> (Tensor x0, Tensor confidence)"

// k_cache / v_cache are written in place (rows [write_start, write_start + new_len) of each
// batch row); lse is empty ([0, heads_q, q_len]) unless return_lse.
#define DK_SCHEMA_ATTENTION_WITH_KV_CACHE                                                     \
  "attention_with_kv_cache(Tensor q, Tensor(a!) k_cache, Tensor(b!) v_cache, Tensor? k_new, " \
  "Tensor? v_new, int write_start, Tensor? write_starts, Tensor? key_padding_mask, "          \
  "Tensor? key_lengths, float? scale, bool return_lse) -> (Tensor out, Tensor lse)"
