// Torch-free entry points of the CUDA launchers. The same declarations are
// implemented by nvcc (real GPU) and by g++ against the SIMT emulator.
#pragma once
#include "kernels/attention_params.h"
#include "kernels/masked_confidence_params.h"
#include "kernels/select_transfer_params.h"

namespace dk {

// `stream` is a cudaStream_t (nullptr under the emulator). Throws std::runtime_error on launch failure.
void launch_masked_confidence(const MaskedConfidenceParams& params, void* stream);
// Bytes of scratch launch_masked_confidence needs for `params` (0: none); the caller allocates
// them (16-byte aligned) and sets params.scratch / params.scratch_bytes.
int64_t masked_confidence_scratch_bytes(const MaskedConfidenceParams& params);

// Length of the per-row scratch (uint64 sort keys) select_transfer needs for `params`: 0 when the
// rows fit in shared memory. The caller allocates [batch, len] and sets params.scratch.
int64_t select_transfer_scratch_len(const SelectTransferParams& params);
void launch_select_transfer(const SelectTransferParams& params, void* stream);

// attention_with_kv_cache. launch_attention_cache_write checks each row's start on the device and
// writes k_new/v_new into the caches; launch_attention then attends (float16/bfloat16, head_dim 64
// or 128: attention_cuda_supports). Before it, set params.num_splits = attention_num_splits(params)
// and, when that is > 1, the float32 workspaces o_partial [splits * batch * heads_q * q_len *
// head_dim] and lse_partial [splits * batch * heads_q * q_len]. Rows of q and the caches must be
// 16-byte aligned (base and strides), or copied first.
bool attention_cuda_supports(const AttentionParams& params);
int64_t attention_num_splits(const AttentionParams& params);
void launch_attention_cache_write(const AttentionParams& params, void* stream);
void launch_attention(const AttentionParams& params, void* stream);

}  // namespace dk

#include "kernels/masked_ce_params.h"
#include "kernels/forward_mask_params.h"

namespace dk {

// Masked cross-entropy (kernels/masked_ce.cuh). Float64 is rejected (std::invalid_argument).
void launch_masked_ce_forward(const MaskedCeParams& params, void* stream);
void launch_masked_ce_backward(const MaskedCeParams& params, void* stream);
void launch_masked_ce_forward_backward(const MaskedCeParams& params, void* stream);

void launch_forward_mask(const ForwardMaskParams& params, void* stream);

}  // namespace dk
