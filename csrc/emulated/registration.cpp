// torch.ops.dk_emulated: the same schemas as diffusion_kernels, registered for CPU tensors and
// backed by the CUDA launchers running under the SIMT emulator. Tests only.
#include <Python.h>
#include <torch/library.h>

#include "ops/attention.h"
#include "ops/masked_confidence.h"
#include "ops/select_transfer.h"
#include "schemas.h"

namespace {

dk::MaskedConfidenceResult masked_confidence_emulated(const at::Tensor& logits, const at::Tensor& x,
                                                      int64_t mask_id, DK_MASKED_CONFIDENCE_OPTION_PARAMS) {
  return dk::masked_confidence_launcher(logits, x, mask_id, DK_MASKED_CONFIDENCE_OPTION_ARGS, nullptr);
}

at::Tensor select_transfer_emulated(const at::Tensor& confidence, c10::string_view rule,
                                    const std::optional<at::Tensor>& k, int64_t k_value, double threshold,
                                    double eps, double factor, double alg_temp, int64_t seed, int64_t offset,
                                    const std::optional<at::Tensor>& x, const std::optional<at::Tensor>& x0) {
  return dk::select_transfer_launcher({confidence, std::string_view(rule.data(), rule.size()), k, k_value,
                                       threshold, eps, factor, alg_temp, seed, offset, x, x0},
                                      nullptr);
}

std::tuple<at::Tensor, at::Tensor> attention_with_kv_cache_emulated(DK_ATTENTION_ARGS) {
  return dk::attention_with_kv_cache_launcher(DK_ATTENTION_ARG_NAMES, nullptr);
}

}  // namespace

TORCH_LIBRARY(dk_emulated, m) {
  m.def(DK_SCHEMA_MASKED_CONFIDENCE);
  m.def(DK_SCHEMA_SELECT_TRANSFER);
  m.def(DK_SCHEMA_ATTENTION_WITH_KV_CACHE);
}

TORCH_LIBRARY_IMPL(dk_emulated, CPU, m) {
  m.impl("masked_confidence", &masked_confidence_emulated);
  m.impl("select_transfer", &select_transfer_emulated);
  m.impl("attention_with_kv_cache", &attention_with_kv_cache_emulated);
}

// Importing the module is what runs the registrations above.
extern "C" PyObject* PyInit__simt() {
  static PyModuleDef def = {PyModuleDef_HEAD_INIT, "_simt", "SIMT-emulated CUDA kernels", -1, nullptr};
  return PyModule_Create(&def);
}
