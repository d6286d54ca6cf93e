// Declares every op of torch.ops.diffusion_kernels and registers the CPU kernels.
// CUDA kernels register in registration_cuda.cpp (CUDA build only).
#include <torch/library.h>

#include "ops/attention.h"
#include "ops/masked_confidence.h"
#include "ops/select_transfer.h"
#include "ops/masked_ce.h"
#include "ops/forward_mask.h"
#include "schemas.h"

TORCH_LIBRARY(diffusion_kernels, m) {
  m.def(DK_SCHEMA_MASKED_CONFIDENCE);
  m.def(DK_SCHEMA_SELECT_TRANSFER);
  m.def(DK_SCHEMA_ATTENTION_WITH_KV_CACHE);
  m.def(DK_SCHEMA_MASKED_CE_FORWARD);
  m.def(DK_SCHEMA_MASKED_CE_BACKWARD);
  m.def(DK_SCHEMA_MASKED_CE_FORWARD_BACKWARD);
  m.def(DK_SCHEMA_FORWARD_MASK);
}

TORCH_LIBRARY_IMPL(diffusion_kernels, CPU, m) {
  m.impl("masked_confidence", &dk::masked_confidence_cpu);
  m.impl("select_transfer", &dk::select_transfer_cpu);
  m.impl("attention_with_kv_cache", &dk::attention_with_kv_cache_cpu);
  m.impl("masked_ce_forward", &dk::masked_ce_forward_cpu);
  m.impl("masked_ce_backward", &dk::masked_ce_backward_cpu);
  m.impl("masked_ce_forward_backward_", &dk::masked_ce_forward_backward_cpu);
  m.impl("forward_mask", &dk::forward_mask_cpu);
}
