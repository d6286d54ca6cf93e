// Argument checks whose messages name the argument, the expectation and what was given.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <optional>

#include "kernels/dtype.h"

#define DK_CHECK_ARG(cond, name, ...) \
  TORCH_CHECK_VALUE(cond, "diffusion_kernels: argument '", name, "' ", __VA_ARGS__)

namespace dk {

inline void check_dim(const at::Tensor& t, const char* name, int64_t dim, const char* layout) {
  DK_CHECK_ARG(t.dim() == dim, name, "must have ", dim, " dimensions ", layout, ", got shape ",
               t.sizes());
}

inline void check_same_device(const at::Tensor& t, const char* name, const at::Tensor& ref,
                              const char* ref_name) {
  DK_CHECK_ARG(t.device() == ref.device(), name, "must be on the same device as '", ref_name,
               "' (", ref.device(), "), got ", t.device());
}

// An optional one-element int64 tensor on ref's device (a Philox seed or offset the kernel reads
// where it runs): its data pointer, or nullptr when not given.
inline const int64_t* one_int64_element(const std::optional<at::Tensor>& t, const char* name, const at::Tensor& ref,
                                        const char* ref_name) {
  if (!t.has_value()) return nullptr;
  check_same_device(*t, name, ref, ref_name);
  DK_CHECK_ARG(t->scalar_type() == at::kLong && t->numel() == 1, name,
               "must be an int or a one-element int64 tensor, got a ", t->scalar_type(), " tensor of shape ",
               t->sizes());
  return t->data_ptr<int64_t>();
}

// A per-row int64 argument: one contiguous [batch] vector on ref's device.
inline void check_batch_int64(const at::Tensor& t, const char* name, int64_t batch, const at::Tensor& ref,
                              const char* ref_name) {
  check_same_device(t, name, ref, ref_name);
  DK_CHECK_ARG(t.scalar_type() == at::kLong, name, "must be int64, got ", t.scalar_type());
  DK_CHECK_ARG(t.dim() == 1 && t.size(0) == batch, name, "must have shape [batch] = [", batch, "], got ",
               t.sizes());
  DK_CHECK_ARG(t.is_contiguous(), name, "must be contiguous");
}

// A per-row float32 argument: one contiguous [batch] vector on ref's device.
inline void check_batch_float32(const at::Tensor& t, const char* name, int64_t batch, const at::Tensor& ref,
                                const char* ref_name) {
  check_same_device(t, name, ref, ref_name);
  DK_CHECK_ARG(t.scalar_type() == at::kFloat, name, "must be float32, got ", t.scalar_type());
  DK_CHECK_ARG(t.dim() == 1 && t.size(0) == batch, name, "must have shape [batch] = [", batch, "], got ",
               t.sizes());
  DK_CHECK_ARG(t.is_contiguous(), name, "must be contiguous");
}

inline void check_last_dim_contiguous(const at::Tensor& t, const char* name) {
  DK_CHECK_ARG(t.size(-1) <= 1 || t.stride(-1) == 1, name,
               "must have a contiguous last dimension (stride 1), got strides ", t.strides());
}

// The floating dtypes the kernels accept, as the torch-free enum the kernels switch on; float64
// only where `float64_on_cpu` (the masked CE's gradcheck dtype).
inline ScalarKind scalar_kind_of(const at::Tensor& t, const char* name, bool float64_on_cpu = false) {
  switch (t.scalar_type()) {
    case at::kFloat: return ScalarKind::Float32;
    case at::kHalf: return ScalarKind::Float16;
    case at::kBFloat16: return ScalarKind::BFloat16;
    case at::kDouble:
      if (float64_on_cpu) return ScalarKind::Float64;
      [[fallthrough]];
    default:
      DK_CHECK_ARG(false, name, "must be float32, float16", float64_on_cpu ? ", bfloat16 (or float64 on CPU)" : " or bfloat16",
                   ", got ", t.scalar_type());
  }
  return ScalarKind::Float32;  // unreachable
}

}  // namespace dk
