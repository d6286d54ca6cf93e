// The pybind11 module diffusion_kernels._C. Importing it runs the static op registrations of
// csrc/ops/*.cpp; build_info() reports how this binary was built (values come from setup.py);
// *_direct() are the per-step ops without the dispatcher (ops/fast_path.h), None when they decline.
#include <torch/extension.h>

#include <string_view>
#include <tuple>
#include <type_traits>

#include "ops/direct.h"

namespace {

namespace py = pybind11;

// Arguments taken as Python objects, in the forms a direct entry accepts: exact tensors (a Tensor
// subclass may define __torch_function__), Python ints, floats, bools and strs, None. Anything else
// declines the call (ok() turns false): the Python wrapper then normalises the arguments itself,
// with its own errors naming them, and calls the registered op.
class Args {
 public:
  at::Tensor tensor(py::handle h) {
    if (!THPVariable_CheckExact(h.ptr())) {
      ok_ = false;
      return {};
    }
    return THPVariable_Unpack(h.ptr());
  }
  std::optional<at::Tensor> opt(py::handle h) {
    if (h.is_none()) return std::nullopt;
    return tensor(h);
  }
  // An int (not a bool) in the int64 range.
  int64_t int64(py::handle h) {
    if (PyLong_CheckExact(h.ptr())) {
      int overflow = 0;
      const long long v = PyLong_AsLongLongAndOverflow(h.ptr(), &overflow);
      if (overflow == 0 && !(v == -1 && PyErr_Occurred())) return v;
      PyErr_Clear();
    }
    ok_ = false;
    return 0;
  }
  // A float, or an int in the int64 range.
  double real(py::handle h) {
    if (PyFloat_CheckExact(h.ptr())) return PyFloat_AS_DOUBLE(h.ptr());
    return static_cast<double>(int64(h));
  }
  bool boolean(py::handle h) {
    if (h.ptr() == Py_True || h.ptr() == Py_False) return h.ptr() == Py_True;
    ok_ = false;
    return false;
  }
  std::string_view str(py::handle h) {
    Py_ssize_t n = 0;
    const char* s = PyUnicode_CheckExact(h.ptr()) ? PyUnicode_AsUTF8AndSize(h.ptr(), &n) : nullptr;
    if (s == nullptr) {
      PyErr_Clear();
      ok_ = false;
      return {};
    }
    return {s, static_cast<size_t>(n)};
  }
  // A per-row option as the op takes it: a number (into `value`), or a contiguous [batch] tensor
  // of `dtype` (the wrapper converts any other tensor).
  template <typename T>
  void number_or_rows(py::handle h, at::ScalarType dtype, int64_t batch, std::optional<at::Tensor>& rows, T& value) {
    if (!THPVariable_Check(h.ptr())) {
      if constexpr (std::is_floating_point_v<T>) {
        value = real(h);
      } else {
        value = int64(h);
      }
      return;
    }
    rows = tensor(h);
    if (ok_ && !(rows->scalar_type() == dtype && rows->dim() == 1 && rows->size(0) == batch && rows->is_contiguous()))
      ok_ = false;
  }
  // A Philox key: an int in the int64 range (the wrapper maps [2^63, 2^64) to it), or a
  // one-element int64 tensor the kernel reads where it runs.
  void key(py::handle h, std::optional<at::Tensor>& t, int64_t& value) {
    if (!THPVariable_Check(h.ptr())) {
      value = int64(h);
      return;
    }
    t = tensor(h);
    if (ok_ && !(t->scalar_type() == at::kLong && t->numel() == 1)) ok_ = false;
  }
  // None or a positive int, as a value where 0 means "off".
  int64_t positive_or_none(py::handle h) {
    if (h.is_none()) return 0;
    const int64_t v = int64(h);
    if (v < 1) ok_ = false;
    return v;
  }
  bool ok() const { return ok_; }
  void require(bool cond) { ok_ = ok_ && cond; }

 private:
  bool ok_ = true;
};

// Runs a direct entry without the GIL (another Python thread may run meanwhile).
template <typename F>
auto without_gil(F&& f) {
  py::gil_scoped_release no_gil;
  return f();
}

// The public select_transfer's arguments as the user gave them (ops/transfer.py); None returned
// where the wrapper must normalise them (another dtype, a [batch, 1] count, strided x...).
py::object select_transfer_direct(py::handle confidence, py::handle k, py::handle threshold, py::handle eps,
                                  py::handle factor, py::handle alg_temp, py::handle seed, py::handle offset,
                                  py::handle x, py::handle x0, py::handle strict) {
  Args a;
  const at::Tensor conf = a.tensor(confidence);
  if (!a.ok() || conf.scalar_type() != at::kFloat || conf.dim() != 2) return py::none();
  const int64_t batch = conf.size(0);
  std::optional<at::Tensor> k_t, th_t, seed_t, offset_t;
  int64_t k_value = 0, seed_value = 0, offset_value = 0;
  double threshold_value = 0.0, eps_value = 0.0, factor_value = 0.0, alg_temp_value = 0.0;
  std::string_view rule;
  const bool strict_value = a.boolean(strict);
  a.require(k.is_none() + threshold.is_none() + factor.is_none() == 2);  // exactly one rule
  if (!k.is_none()) {
    rule = "topk";
    a.number_or_rows(k, at::kLong, batch, k_t, k_value);
    if (!alg_temp.is_none()) alg_temp_value = a.real(alg_temp);
    a.require(eps.is_none() && !strict_value);
  } else if (!threshold.is_none()) {
    rule = eps.is_none() ? "threshold" : "threshold_rowmax";
    a.number_or_rows(threshold, at::kFloat, batch, th_t, threshold_value);
    if (!eps.is_none()) eps_value = a.real(eps);
    a.require(alg_temp.is_none() && (eps.is_none() || !strict_value));
  } else {
    rule = "factor";
    factor_value = a.real(factor);
    a.require(alg_temp.is_none() && eps.is_none() && !strict_value);
  }
  a.key(seed, seed_t, seed_value);
  a.key(offset, offset_t, offset_value);
  const auto x_t = a.opt(x), x0_t = a.opt(x0);
  // The wrapper checks strided x / x0 for overlap itself; the op checks dense ones.
  a.require(x_t.has_value() == x0_t.has_value() &&
            (!x_t || (x_t->scalar_type() == at::kLong && x0_t->scalar_type() == at::kLong && x_t->is_contiguous() &&
                      x0_t->is_contiguous())));
  if (!a.ok()) return py::none();
  const auto out = without_gil([&] {
    return dk::select_transfer_direct(conf, c10::string_view(rule.data(), rule.size()), k_t, k_value,
                                      threshold_value, eps_value, factor_value, alg_temp_value, seed_value,
                                      offset_value, x_t, x0_t, seed_t, offset_t, th_t, strict_value);
  });
  return out ? py::cast(*out) : py::none();
}

// The public masked_confidence's arguments as the user gave them (ops/confidence.py); None
// returned where the wrapper must normalise them (lists, other dtypes, ints past int64...).
py::object masked_confidence_direct(py::handle logits, py::handle x, py::handle mask_id, py::handle temperature,
                                    py::handle top_p, py::handle top_k, py::handle confidence,
                                    py::handle confidence_from, py::handle block_start, py::handle block_end,
                                    py::handle suppress_ids, py::handle seed, py::handle offset,
                                    py::handle return_lse, py::handle positions, py::handle prev_token_penalty) {
  Args a;
  dk::MaskedConfidenceArgs m;
  m.logits = a.tensor(logits);
  m.x = a.tensor(x);
  if (!a.ok() || m.x.scalar_type() != at::kLong) return py::none();
  const int64_t batch = m.x.dim() == 2 ? m.x.size(0) : -1;
  m.mask_id = a.int64(mask_id);
  a.number_or_rows(temperature, at::kFloat, batch, m.temperature, m.temperature_value);
  if (!top_p.is_none()) a.number_or_rows(top_p, at::kFloat, batch, m.top_p, m.top_p_value);
  if (!top_k.is_none()) a.number_or_rows(top_k, at::kLong, batch, m.top_k, m.top_k_value);
  const std::string_view kind = a.str(confidence), from = a.str(confidence_from), where = a.str(positions);
  a.require(kind == "prob" || kind == "margin" || kind == "neg_entropy" || kind == "random");
  a.require(from == "sampling" || from == "logits");
  a.require(where == "masked" || where == "all");
  m.confidence = c10::string_view(kind.data(), kind.size());
  m.confidence_from_logits = from == "logits";
  m.all_positions = where == "all";
  a.number_or_rows(block_start, at::kLong, batch, m.block_start, m.block_start_value);
  if (!block_end.is_none()) a.number_or_rows(block_end, at::kLong, batch, m.block_end, m.block_end_value);
  m.suppress_ids = a.opt(suppress_ids);
  a.require(!m.suppress_ids || (m.suppress_ids->scalar_type() == at::kLong && m.suppress_ids->dim() == 1));
  a.key(seed, m.seed, m.seed_value);
  a.key(offset, m.offset, m.offset_value);
  m.return_lse = a.boolean(return_lse);
  a.number_or_rows(prev_token_penalty, at::kFloat, batch, m.prev_token_penalty, m.prev_token_penalty_value);
  if (!a.ok()) return py::none();
  const auto out = without_gil([&] { return dk::masked_confidence_direct(m); });
  if (!out) return py::none();
  auto& [x0, conf, lse] = *out;
  if (m.return_lse) return py::make_tuple(x0, conf, lse);
  return py::make_tuple(x0, conf);
}

// The public attention_with_kv_cache's arguments as the user gave them (ops/attention.py); None
// returned where the wrapper must normalise them.
py::object attention_direct(py::handle q, py::handle k_cache, py::handle v_cache, py::handle k, py::handle v,
                            py::handle cache_seqlens, py::handle key_padding_mask, py::handle key_lengths,
                            py::handle softmax_scale, py::handle return_softmax_lse, py::handle write_status,
                            py::handle causal_block_size, py::handle noisy_length, py::handle store_kv) {
  Args a;
  dk::AttentionArgs m;
  m.q = a.tensor(q);
  m.k_cache = a.tensor(k_cache);
  m.v_cache = a.tensor(v_cache);
  m.k_new = a.opt(k);
  m.v_new = a.opt(v);
  if (!a.ok()) return py::none();
  if (THPVariable_Check(cache_seqlens.ptr())) {
    m.write_starts = a.tensor(cache_seqlens);
    const at::Tensor& s = *m.write_starts;
    a.require(a.ok() && s.scalar_type() == at::kLong && s.dim() == 1 && m.q.dim() == 4 && s.size(0) == m.q.size(0) &&
              s.is_contiguous() && s.device() == m.q.device());
  } else if (!cache_seqlens.is_none()) {
    m.write_start = a.int64(cache_seqlens);
  }
  m.key_padding_mask = a.opt(key_padding_mask);
  m.key_lengths = a.opt(key_lengths);
  a.require(!m.key_lengths || m.key_lengths->scalar_type() == at::kLong);
  if (!softmax_scale.is_none()) m.scale = a.real(softmax_scale);
  m.return_lse = a.boolean(return_softmax_lse);
  m.write_status = a.opt(write_status);
  m.causal_block_size = a.positive_or_none(causal_block_size);
  m.noisy_length = a.positive_or_none(noisy_length);
  m.store_kv = a.boolean(store_kv);
  if (!a.ok()) return py::none();
  const auto out = without_gil([&] { return dk::attention_direct(m); });
  if (!out) return py::none();
  if (m.return_lse) return py::make_tuple(std::get<0>(*out), std::get<1>(*out));
  return py::cast(std::get<0>(*out));
}

// The public forward_mask's arguments as the user gave them (ops/forward_mask.py); None returned
// where the wrapper must normalise or range-check them (times, prompt lengths).
py::object forward_mask_direct(py::handle x0, py::handle mask_id, py::handle eps, py::handle t, py::handle seed,
                               py::handle offset, py::handle prompt_lengths, py::handle antithetic) {
  Args a;
  const at::Tensor x = a.tensor(x0);
  const int64_t mask = a.int64(mask_id), seed_value = a.int64(seed), offset_value = a.int64(offset);
  const double eps_value = PyFloat_CheckExact(eps.ptr()) ? PyFloat_AS_DOUBLE(eps.ptr()) : -1.0;
  const bool antithetic_value = a.boolean(antithetic);
  a.require(eps_value > 0.0 && eps_value < 1.0 && t.is_none() && prompt_lengths.is_none());
  if (!a.ok()) return py::none();
  const auto out = without_gil([&] {
    return dk::forward_mask_direct(x, mask, eps_value, std::nullopt, std::nullopt, seed_value, offset_value,
                                   antithetic_value);
  });
  return out ? py::cast(*out) : py::none();
}

py::object masked_ce_forward_direct(py::handle logits, py::handle targets, py::handle masked) {
  Args a;
  const at::Tensor l = a.tensor(logits), t = a.tensor(targets), m = a.tensor(masked);
  if (!a.ok()) return py::none();
  const auto out = without_gil([&] { return dk::masked_ce_forward_direct(l, t, m); });
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
  m.def("attention_direct", &attention_direct);
  m.def("forward_mask_direct", &forward_mask_direct);
  m.def("masked_ce_forward_direct", &masked_ce_forward_direct);
}
