#pragma once
#include "kernels/masked_confidence_params.h"

namespace dk::cpu {

// Native CPU implementation: one pass over each masked row, rows in parallel.
void masked_confidence(const MaskedConfidenceParams& params);

}  // namespace dk::cpu
