// Every op's schema, written once: the real library (diffusion_kernels) and the emulated
// one (dk_emulated) declare the same strings.
#pragma once

// x is written in place (x[b, i] = x0[b, i] where transferred) when given. seed_tensor /
// offset_tensor, when given, replace seed / offset (read on the device: CUDA-graph safe).
#define DK_SCHEMA_SELECT_TRANSFER                                                                  \
  "select_transfer(Tensor confidence, str rule, Tensor? k, int k_value, float threshold, float eps, " \
  "float factor, float alg_temp, int seed, int offset, Tensor(a!)? x, Tensor? x0, "                 \
  "Tensor? seed_tensor=None, Tensor? offset_tensor=None) -> Tensor"
#define DK_SCHEMA_MASKED_CONFIDENCE                                                                   \
  "masked_confidence(Tensor logits, Tensor x, int mask_id, *, Tensor? temperature=None, "            \
  "float temperature_value=0., Tensor? top_p=None, float top_p_value=1., Tensor? top_k=None, "        \
  "int top_k_value=0, str confidence=\"prob\", bool confidence_from_logits=False, "                  \
  "Tensor? block_start=None, int block_start_value=0, Tensor? block_end=None, "                      \
  "int block_end_value=9223372036854775807, Tensor? suppress_ids=None, Tensor? seed=None, "         \
  "int seed_value=0, Tensor? offset=None, int offset_value=0, bool return_lse=False) "               \
  "-> (Tensor x0, Tensor confidence, Tensor lse)"

// k_cache / v_cache are written in place (rows [write_start, write_start + new_len) of each
// batch row); lse is empty ([0, heads_q, q_len]) unless return_lse. write_status ([1] int32) is
// set to 1 when write_starts is out of range on the device (nothing is written then).
#define DK_SCHEMA_ATTENTION_WITH_KV_CACHE                                                     \
  "attention_with_kv_cache(Tensor q, Tensor(a!) k_cache, Tensor(b!) v_cache, Tensor? k_new, " \
  "Tensor? v_new, int write_start, Tensor? write_starts, Tensor? key_padding_mask, "          \
  "Tensor? key_lengths, float? scale, bool return_lse, Tensor(c!)? write_status=None) "       \
  "-> (Tensor out, Tensor lse)"

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
