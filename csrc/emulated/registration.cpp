// torch.ops.dk_emulated: the same schemas as diffusion_kernels, registered for CPU tensors and
// backed by the CUDA launchers running under the SIMT emulator. Tests only.
#include <Python.h>
#include <torch/library.h>

#include "ops/masked_confidence.h"
#include "schemas.h"

namespace {

dk::MaskedConfidenceResult masked_confidence_emulated(const at::Tensor& logits, const at::Tensor& x,
                                                      int64_t mask_id, DK_MASKED_CONFIDENCE_OPTION_PARAMS) {
  return dk::masked_confidence_launcher(logits, x, mask_id, DK_MASKED_CONFIDENCE_OPTION_ARGS, nullptr);
}

}  // namespace

TORCH_LIBRARY(dk_emulated, m) {
  m.def(DK_SCHEMA_MASKED_CONFIDENCE);
}

TORCH_LIBRARY_IMPL(dk_emulated, CPU, m) {
  m.impl("masked_confidence", &masked_confidence_emulated);
}

// Importing the module is what runs the registrations above.
extern "C" PyObject* PyInit__simt() {
  static PyModuleDef def = {PyModuleDef_HEAD_INIT, "_simt", "SIMT-emulated CUDA kernels", -1, nullptr};
  return PyModule_Create(&def);
}
