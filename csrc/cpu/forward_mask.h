#pragma once
#include "kernels/forward_mask_params.h"

namespace dk::cpu {

// Native CPU forward_mask: the same per-position arithmetic as the CUDA kernel
// (kernels/forward_mask_math.cuh), so both give identical draws.
void forward_mask(const ForwardMaskParams& params);

}  // namespace dk::cpu
