// Torch-free entry points of the CUDA launchers. The same declarations are
// implemented by nvcc (real GPU) and by g++ against the SIMT emulator.
#pragma once
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

}  // namespace dk
