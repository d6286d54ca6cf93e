// torch.ops.dk_emulated: the same schemas as diffusion_kernels, registered for CPU tensors and
// backed by the CUDA launchers running under the SIMT emulator. Tests only.
#include <Python.h>
#include <torch/library.h>

#include "ops/attention.h"
#include "ops/masked_confidence.h"
#include "ops/select_transfer.h"
#include "ops/masked_ce.h"
#include "ops/forward_mask.h"
#include "schemas.h"

namespace {

dk::MaskedConfidenceResult masked_confidence_emulated(const at::Tensor& logits, const at::Tensor& x,
                                                      int64_t mask_id, DK_MASKED_CONFIDENCE_OPTION_PARAMS) {
  return dk::masked_confidence_launcher(logits, x, mask_id, DK_MASKED_CONFIDENCE_OPTION_ARGS, nullptr);
}

at::Tensor select_transfer_emulated(const at::Tensor& confidence, c10::string_view rule,
                                    const std::optional<at::Tensor>& k, int64_t k_value, double threshold,
                                    double eps, double factor, double alg_temp, int64_t seed, int64_t offset,
                                    const std::optional<at::Tensor>& x, const std::optional<at::Tensor>& x0,
                                    const std::optional<at::Tensor>& seed_tensor,
                                    const std::optional<at::Tensor>& offset_tensor) {
  return dk::select_transfer_launcher({confidence, std::string_view(rule.data(), rule.size()), k, k_value,
                                       threshold, eps, factor, alg_temp, seed, offset, x, x0, seed_tensor, offset_tensor},
                                      nullptr);
}

std::tuple<at::Tensor, at::Tensor> attention_with_kv_cache_emulated(DK_ATTENTION_ARGS) {
  return dk::attention_with_kv_cache_launcher(DK_ATTENTION_ARG_NAMES, nullptr);
}

std::tuple<at::Tensor, at::Tensor> masked_ce_forward_emulated(const at::Tensor& logits, const at::Tensor& targets,
                                                              const at::Tensor& masked) {
  return dk::masked_ce_forward_launcher(logits, targets, masked, nullptr);
}

at::Tensor masked_ce_backward_emulated(const at::Tensor& grad_ce, const at::Tensor& grad_lse,
                                       const at::Tensor& logits, const at::Tensor& targets,
                                       const at::Tensor& masked, const at::Tensor& lse) {
  return dk::masked_ce_backward_launcher(grad_ce, grad_lse, logits, targets, masked, lse, nullptr);
}

std::tuple<at::Tensor, at::Tensor> masked_ce_forward_backward_emulated(at::Tensor& logits, const at::Tensor& targets,
                                                                       const at::Tensor& masked,
                                                                       const at::Tensor& scale) {
  return dk::masked_ce_forward_backward_launcher(logits, targets, masked, scale, nullptr);
}

dk::ForwardMaskResult forward_mask_emulated(const at::Tensor& x0, int64_t mask_id, double eps,
                                            const std::optional<at::Tensor>& t,
                                            const std::optional<at::Tensor>& prompt_lengths, int64_t seed,
                                            int64_t offset, bool antithetic) {
  return dk::forward_mask_launcher(x0, mask_id, eps, t, prompt_lengths, seed, offset, antithetic, nullptr);
}

}  // namespace

TORCH_LIBRARY(dk_emulated, m) {
  m.def(DK_SCHEMA_MASKED_CONFIDENCE);
  m.def(DK_SCHEMA_SELECT_TRANSFER);
  m.def(DK_SCHEMA_ATTENTION_WITH_KV_CACHE);
  m.def(DK_SCHEMA_MASKED_CE_FORWARD);
  m.def(DK_SCHEMA_MASKED_CE_BACKWARD);
  m.def(DK_SCHEMA_MASKED_CE_FORWARD_BACKWARD);
  m.def(DK_SCHEMA_FORWARD_MASK);
}

TORCH_LIBRARY_IMPL(dk_emulated, CPU, m) {
  m.impl("masked_confidence", &masked_confidence_emulated);
  m.impl("select_transfer", &select_transfer_emulated);
  m.impl("attention_with_kv_cache", &attention_with_kv_cache_emulated);
  m.impl("masked_ce_forward", &masked_ce_forward_emulated);
  m.impl("masked_ce_backward", &masked_ce_backward_emulated);
  m.impl("masked_ce_forward_backward_", &masked_ce_forward_backward_emulated);
  m.impl("forward_mask", &forward_mask_emulated);
}

// Importing the module is what runs the registrations above.
extern "C" PyObject* PyInit__simt() {
  static PyModuleDef def = {PyModuleDef_HEAD_INIT, "_simt", "SIMT-emulated CUDA kernels", -1, nullptr};
  return PyModule_Create(&def);
}
