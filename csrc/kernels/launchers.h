// Torch-free entry points of the CUDA launchers. The same declarations are
// implemented by nvcc (real GPU) and by g++ against the SIMT emulator.
#pragma once
#include "kernels/masked_confidence_params.h"

namespace dk {

// `stream` is a cudaStream_t (nullptr under the emulator). Throws std::runtime_error on launch failure.
void launch_masked_confidence(const MaskedConfidenceParams& params, void* stream);

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
