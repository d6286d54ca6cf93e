// Checks and Params filling shared by the CPU and launcher entry points.
#pragma once
#include <ATen/core/Tensor.h>

#include "kernels/select_transfer_params.h"
#include "ops/select_transfer.h"

namespace dk {

// Validates the arguments, allocates the mask on the inputs' device and describes the call
// (scratch left empty: only the CUDA launcher needs it).
SelectTransferParams prepare_select_transfer(const SelectTransferArgs& args, at::Tensor& mask);

}  // namespace dk
