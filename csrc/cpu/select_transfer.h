#pragma once
#include "kernels/select_transfer_params.h"

namespace dk::cpu {

// Native CPU implementation: rows in parallel, each row selected on its own.
void select_transfer(const SelectTransferParams& params);

}  // namespace dk::cpu
