// The pybind11 module diffusion_kernels._C. Importing it runs the static op registrations of
// csrc/ops/*.cpp; build_info() reports how this binary was built (values come from setup.py);
// *_direct() are the per-step ops without the dispatcher (ops/fast_path.h), None when they decline.
#include <torch/extension.h>

#include <string_view>

#include "ops/direct.h"

namespace {

namespace py = pybind11;

// Tensor arguments taken as Python objects: a Tensor subclass (which may define __torch_function__)
// makes the direct entry decline, as do arguments that are not tensors at all.
class ExactTensors {
 public:
  at::Tensor get(py::handle h) {
    if (!THPVariable_CheckExact(h.ptr())) {
      ok_ = false;
      return {};
    }
    return THPVariable_Unpack(h.ptr());
  }
  std::optional<at::Tensor> opt(py::handle h) {
    if (h.is_none()) return std::nullopt;
    return get(h);
  }
  bool ok() const { return ok_; }

 private:
  bool ok_ = true;
};

py::object select_transfer_direct(py::handle conf, std::string_view rule, py::handle k, int64_t k_value,
                                  double threshold, double eps, double factor, double alg_temp, int64_t seed,
                                  int64_t offset, py::handle x, py::handle x0, py::handle seed_tensor,
                                  py::handle offset_tensor, py::handle threshold_tensor, bool strict) {
  ExactTensors a;
  const at::Tensor c = a.get(conf);
  const auto k_t = a.opt(k), x_t = a.opt(x), x0_t = a.opt(x0), s_t = a.opt(seed_tensor), o_t = a.opt(offset_tensor),
             th_t = a.opt(threshold_tensor);
  if (!a.ok()) return py::none();
  std::optional<at::Tensor> out;
  {
    py::gil_scoped_release no_gil;
    out = dk::select_transfer_direct(c, c10::string_view(rule.data(), rule.size()), k_t, k_value, threshold, eps,
                                     factor, alg_temp, seed, offset, x_t, x0_t, s_t, o_t, th_t, strict);
  }
  return out ? py::cast(*out) : py::none();
}

py::object masked_confidence_direct(py::handle logits, py::handle x, int64_t mask_id, py::handle temperature,
                                    double temperature_value, py::handle top_p, double top_p_value, py::handle top_k,
                                    int64_t top_k_value, std::string_view confidence, bool confidence_from_logits,
                                    py::handle block_start, int64_t block_start_value, py::handle block_end,
                                    int64_t block_end_value, py::handle suppress_ids, py::handle seed,
                                    int64_t seed_value, py::handle offset, int64_t offset_value, bool return_lse,
                                    bool all_positions, py::handle prev_token_penalty,
                                    double prev_token_penalty_value) {
  ExactTensors a;
  const at::Tensor l = a.get(logits), x_t = a.get(x);
  const auto t = a.opt(temperature), p = a.opt(top_p), k = a.opt(top_k), bs = a.opt(block_start),
             be = a.opt(block_end), ids = a.opt(suppress_ids), s = a.opt(seed), o = a.opt(offset),
             pen = a.opt(prev_token_penalty);
  if (!a.ok()) return py::none();
  std::optional<std::tuple<at::Tensor, at::Tensor, at::Tensor>> out;
  {
    py::gil_scoped_release no_gil;
    out = dk::masked_confidence_direct(l, x_t, mask_id, t, temperature_value, p, top_p_value, k, top_k_value,
                                       c10::string_view(confidence.data(), confidence.size()),
                                       confidence_from_logits, bs, block_start_value, be, block_end_value, ids, s,
                                       seed_value, o, offset_value, return_lse, all_positions, pen,
                                       prev_token_penalty_value);
  }
  return out ? py::cast(*out) : py::none();
}

py::object forward_mask_direct(py::handle x0, int64_t mask_id, double eps, py::handle t, py::handle prompt_lengths,
                               int64_t seed, int64_t offset, bool antithetic) {
  ExactTensors a;
  const at::Tensor x = a.get(x0);
  const auto t_t = a.opt(t), lengths = a.opt(prompt_lengths);
  if (!a.ok()) return py::none();
  std::optional<std::tuple<at::Tensor, at::Tensor, at::Tensor>> out;
  {
    py::gil_scoped_release no_gil;
    out = dk::forward_mask_direct(x, mask_id, eps, t_t, lengths, seed, offset, antithetic);
  }
  return out ? py::cast(*out) : py::none();
}

py::object masked_ce_forward_direct(py::handle logits, py::handle targets, py::handle masked) {
  ExactTensors a;
  const at::Tensor l = a.get(logits), t = a.get(targets), m = a.get(masked);
  if (!a.ok()) return py::none();
  std::optional<std::tuple<at::Tensor, at::Tensor>> out;
  {
    py::gil_scoped_release no_gil;
    out = dk::masked_ce_forward_direct(l, t, m);
  }
  return out ? py::cast(*out) : py::none();
}

}  // namespace

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
  m.def("select_transfer_direct", &select_transfer_direct);
  m.def("masked_confidence_direct", &masked_confidence_direct);
  m.def("forward_mask_direct", &forward_mask_direct);
  m.def("masked_ce_forward_direct", &masked_ce_forward_direct);
}
