// Torch-free entry points of the CUDA launchers. The same declarations are
// implemented by nvcc (real GPU) and by g++ against the SIMT emulator.
#pragma once
#include "kernels/masked_confidence_params.h"

namespace dk {

// `stream` is a cudaStream_t (nullptr under the emulator). Throws std::runtime_error on launch failure.
void launch_masked_confidence(const MaskedConfidenceParams& params, void* stream);

}  // namespace dk
