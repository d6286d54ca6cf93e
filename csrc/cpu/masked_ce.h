#pragma once
#include "kernels/masked_ce_params.h"

namespace dk::cpu {

// Native CPU implementations; rows in parallel, each masked row read once per pass (see
// kernels/masked_ce_params.h for what each writes).
void masked_ce_forward(const MaskedCeParams& params);
void masked_ce_backward(const MaskedCeParams& params);
void masked_ce_forward_backward(const MaskedCeParams& params);

}  // namespace dk::cpu
