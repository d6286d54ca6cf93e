// The pybind11 module diffusion_kernels._C. Importing it runs the static op registrations of
// csrc/ops/*.cpp; build_info() reports how this binary was built (values come from setup.py).
#include <torch/extension.h>

#ifndef DK_VERSION
#define DK_VERSION "unknown"
#endif
#ifndef DK_TORCH_VERSION
#define DK_TORCH_VERSION "unknown"
#endif
#ifndef DK_CUDA_ARCHS
#define DK_CUDA_ARCHS ""
#endif

PYBIND11_MODULE(_C, m) {
  m.doc() = "diffusion_kernels native ops (registered under torch.ops.diffusion_kernels)";
  m.def("build_info", [] {
    pybind11::dict info;
    info["version"] = DK_VERSION;
    info["torch_version"] = DK_TORCH_VERSION;
#ifdef DK_WITH_CUDA
    info["cuda"] = true;
    info["cuda_version"] = DK_CUDA_VERSION;
#else
    info["cuda"] = false;
    info["cuda_version"] = pybind11::none();
#endif
    info["cuda_archs"] = DK_CUDA_ARCHS;
    return info;
  });
}
