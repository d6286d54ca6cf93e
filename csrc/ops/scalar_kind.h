#pragma once
#include <ATen/core/Tensor.h>

#include "kernels/masked_confidence_params.h"
#include "ops/checks.h"

namespace dk {

// The floating dtypes the kernels accept, as the torch-free enum the kernels switch on.
inline ScalarKind scalar_kind_of(const at::Tensor& t, const char* name) {
  switch (t.scalar_type()) {
    case at::kFloat: return ScalarKind::Float32;
    case at::kHalf: return ScalarKind::Float16;
    case at::kBFloat16: return ScalarKind::BFloat16;
    default:
      DK_CHECK_ARG(false, name, "must be float32, float16 or bfloat16, got ", t.scalar_type());
  }
  return ScalarKind::Float32;  // unreachable
}

}  // namespace dk
