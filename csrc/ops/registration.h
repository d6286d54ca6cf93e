// How an op file (csrc/ops/<op>.cpp) registers itself. Each op file is compiled twice:
//   into _C:    library diffusion_kernels; op<Backend::Cpu> for CPU tensors and, in a CUDA build,
//               op<Backend::Launcher> (the nvcc-built launcher) for CUDA tensors;
//   into _simt: with DK_EMULATED, library dk_emulated; op<Backend::Launcher> (the same launcher
//               built by g++ against the SIMT emulator) for CPU tensors.
// So the schema, the checks and the dispatch of an op are written once.
#pragma once
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#if !defined(DK_EMULATED) && defined(DK_WITH_CUDA)
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace dk {

// Cpu: the native CPU implementation (csrc/cpu). Launcher: the CUDA launcher (csrc/kernels).
enum class Backend { Cpu, Launcher };

// What a launch needs around it: on CUDA, a device guard on the tensors' device and the current
// stream; under the emulator and on the CPU, nothing (stream() is null).
template <Backend B>
class DeviceScope;

template <>
class DeviceScope<Backend::Cpu> {
 public:
  explicit DeviceScope(const at::Tensor&) {}
};

#if defined(DK_EMULATED)
template <>
class DeviceScope<Backend::Launcher> {
 public:
  explicit DeviceScope(const at::Tensor&) {}
  void* stream() const { return nullptr; }
};
#elif defined(DK_WITH_CUDA)
template <>
class DeviceScope<Backend::Launcher> {
 public:
  explicit DeviceScope(const at::Tensor& t) : guard_(t.device()) {}
  void* stream() const { return c10::cuda::getCurrentCUDAStream().stream(); }

 private:
  c10::cuda::CUDAGuard guard_;
};
#endif  // a CPU-only _C never instantiates the launcher path

}  // namespace dk

#if defined(DK_EMULATED)
#define DK_LIBRARY dk_emulated
#define DK_REGISTER_IMPLS(name, fn)                                      \
  TORCH_LIBRARY_IMPL(dk_emulated, CPU, m) { m.impl(name, &fn<::dk::Backend::Launcher>); }
#elif defined(DK_WITH_CUDA)
#define DK_LIBRARY diffusion_kernels
#define DK_REGISTER_IMPLS(name, fn)                                                             \
  TORCH_LIBRARY_IMPL(diffusion_kernels, CPU, m) { m.impl(name, &fn<::dk::Backend::Cpu>); }      \
  TORCH_LIBRARY_IMPL(diffusion_kernels, CUDA, m) { m.impl(name, &fn<::dk::Backend::Launcher>); }
#else
#define DK_LIBRARY diffusion_kernels
#define DK_REGISTER_IMPLS(name, fn) \
  TORCH_LIBRARY_IMPL(diffusion_kernels, CPU, m) { m.impl(name, &fn<::dk::Backend::Cpu>); }
#endif

// Declares the op `name` with `schema` in this build's library and registers `fn`, a function
// template over Backend, for this build's dispatch keys.
#define DK_REGISTER_OP(name, schema, fn)                   \
  TORCH_LIBRARY_FRAGMENT(DK_LIBRARY, m) { m.def(schema); } \
  DK_REGISTER_IMPLS(name, fn)
