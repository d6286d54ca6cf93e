// torch.ops.diffusion_kernels.select_transfer: argument checks, the Params fill and the dispatch
// to the CPU kernel or the CUDA launcher (ops/registration.h).
#include <ATen/MemoryOverlap.h>
#include <ATen/ops/empty.h>

#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

#include "cpu/select_transfer.h"
#include "kernels/launchers.h"
#include "ops/checks.h"
#include "ops/direct.h"
#include "ops/fast_path.h"
#include "ops/poison.h"
#include "ops/registration.h"

namespace dk {
namespace {

TransferRule parse_rule(std::string_view rule) {
  if (rule == "topk") return TransferRule::TopK;
  if (rule == "threshold") return TransferRule::Threshold;
  if (rule == "threshold_rowmax") return TransferRule::ThresholdRowMax;
  if (rule == "factor") return TransferRule::Factor;
  DK_CHECK_ARG(false, "rule", "must be one of 'topk', 'threshold', 'threshold_rowmax', 'factor', got '",
               std::string(rule), "'");
  return TransferRule::TopK;  // unreachable
}

void check_tokens(const at::Tensor& t, const char* name, const at::Tensor& conf) {
  check_dim(t, name, 2, "[batch, seq]");
  check_same_device(t, name, conf, "confidence");
  DK_CHECK_ARG(t.scalar_type() == at::kLong, name, "must be int64 token ids, got ", t.scalar_type());
  DK_CHECK_ARG(t.sizes() == conf.sizes(), name, "must have the shape of 'confidence' ", conf.sizes(),
               ", got ", t.sizes());
}

template <Backend B>
at::Tensor select_transfer(const at::Tensor& conf, c10::string_view rule, const std::optional<at::Tensor>& k,
                           int64_t k_value, double threshold, double eps, double factor, double alg_temp,
                           int64_t seed, int64_t offset, const std::optional<at::Tensor>& x,
                           const std::optional<at::Tensor>& x0, const std::optional<at::Tensor>& seed_tensor,
                           const std::optional<at::Tensor>& offset_tensor,
                           const std::optional<at::Tensor>& threshold_tensor, bool strict) {
  const DeviceScope<B> scope(conf);
  check_dim(conf, "confidence", 2, "[batch, seq]");
  DK_CHECK_ARG(conf.scalar_type() == at::kFloat, "confidence", "must be float32, got ", conf.scalar_type());
  DK_CHECK_ARG(conf.size(1) < (int64_t{1} << 31), "confidence", "rows longer than 2^31 - 1 are not supported, got ",
               conf.size(1));
  SelectTransferParams p{};
  p.rule = parse_rule(std::string_view(rule.data(), rule.size()));

  if (p.rule == TransferRule::TopK) {
    if (k.has_value()) {
      check_dim(*k, "k", 1, "[batch]");
      check_same_device(*k, "k", conf, "confidence");
      DK_CHECK_ARG(k->scalar_type() == at::kLong, "k", "must be int64, got ", k->scalar_type());
      DK_CHECK_ARG(k->size(0) == conf.size(0), "k", "must have one count per row (", conf.size(0), "), got shape ",
                   k->sizes());
      p.k = k->data_ptr<int64_t>();
      p.k_stride = k->stride(0);
    } else {
      DK_CHECK_ARG(k_value >= 0, "k", "must be >= 0, got ", k_value);
    }
    p.k_value = k_value;
    DK_CHECK_ARG(std::isfinite(alg_temp) && alg_temp >= 0, "alg_temp", "must be finite and >= 0, got ", alg_temp);
    p.alg_temp = alg_temp;
  } else {
    DK_CHECK_ARG(!k.has_value(), "k", "is only used by rule 'topk'");
    DK_CHECK_ARG(alg_temp == 0, "alg_temp", "is only used by rule 'topk', got ", alg_temp);
  }
  if (p.rule == TransferRule::Threshold || p.rule == TransferRule::ThresholdRowMax) {
    if (threshold_tensor.has_value()) {
      // Entries are not checked (that would synchronise on CUDA): a NaN compares false.
      check_batch_float32(*threshold_tensor, "threshold", conf.size(0), conf, "confidence");
      p.threshold_tensor = threshold_tensor->data_ptr<float>();
    } else {
      DK_CHECK_ARG(!std::isnan(threshold), "threshold", "must not be NaN");
      p.threshold = static_cast<float>(threshold);  // as torch compares a float32 tensor to a float
    }
  } else {
    DK_CHECK_ARG(!threshold_tensor.has_value(), "threshold", "is only used by rules 'threshold' and 'threshold_rowmax'");
  }
  DK_CHECK_ARG(!strict || p.rule == TransferRule::Threshold, "strict", "is only used by rule 'threshold' (without 'eps')");
  p.strict = strict;
  if (p.rule == TransferRule::ThresholdRowMax) {
    DK_CHECK_ARG(std::isfinite(eps) && eps >= 0, "eps", "must be finite and >= 0, got ", eps);
    p.eps = static_cast<float>(eps);
  }
  if (p.rule == TransferRule::Factor) {
    DK_CHECK_ARG(std::isfinite(factor) && factor > 0, "factor", "must be finite and > 0, got ", factor);
    p.factor = factor;
  }
  p.seed = static_cast<uint64_t>(seed);
  p.offset = static_cast<uint64_t>(offset);
  p.seed_tensor = one_int64_element(seed_tensor, "seed", conf, "confidence");
  p.offset_tensor = one_int64_element(offset_tensor, "offset", conf, "confidence");

  DK_CHECK_ARG(x.has_value() == x0.has_value(), x.has_value() ? "x0" : "x", "must be given together with '",
               x.has_value() ? "x" : "x0", "' (x is written from x0)");
  if (x.has_value()) {
    check_tokens(*x, "x", conf);
    check_tokens(*x0, "x0", conf);
    // Dense tensors are checked here exactly (the Python wrapper leaves them to this cheaper test).
    if (x->is_non_overlapping_and_dense() && x0->is_non_overlapping_and_dense()) {
      DK_CHECK_ARG(at::get_overlap_status(*x, *x0) != at::MemOverlapStatus::Partial, "x0",
                   "must not partially overlap 'x', which is written in place");
    }
    p.x = x->data_ptr<int64_t>();
    p.x_stride_b = x->stride(0);
    p.x_stride_l = x->stride(1);
    p.x0 = x0->data_ptr<int64_t>();
    p.x0_stride_b = x0->stride(0);
    p.x0_stride_l = x0->stride(1);
  }

  at::Tensor mask = at::empty(conf.sizes(), conf.options().dtype(at::kBool));
  poison(mask);
  p.confidence = conf.data_ptr<float>();
  p.batch = conf.size(0);
  p.seq = conf.size(1);
  p.conf_stride_b = conf.stride(0);
  p.conf_stride_l = conf.stride(1);
  p.mask = mask.data_ptr<bool>();

  if constexpr (B == Backend::Cpu) {
    // Host memory: per-row counts can be checked here for free (the CUDA path clamps them to 0
    // instead of synchronising).
    for (int64_t b = 0; p.k != nullptr && b < p.batch; ++b) {
      DK_CHECK_ARG(p.k[b * p.k_stride] >= 0, "k", "must be >= 0, got ", p.k[b * p.k_stride], " for row ", b);
    }
    cpu::select_transfer(p);
  } else {
    at::Tensor scratch;
    if (const int64_t len = select_transfer_scratch_len(p); len > 0) {
      scratch = at::empty({p.batch, len}, conf.options().dtype(at::kLong));
      p.scratch = reinterpret_cast<uint64_t*>(scratch.data_ptr<int64_t>());
      p.scratch_len = len;
    }
    launch_select_transfer(p, scope.stream());
  }
  return mask;
}

}  // namespace
}  // namespace dk

// x is written in place (x[b, i] = x0[b, i] where transferred) when given. seed_tensor /
// offset_tensor, when given, replace seed / offset (read on the device: CUDA-graph safe);
// threshold_tensor, when given, replaces threshold with one float32 bound per row (likewise).
// strict: rule 'threshold' commits confidence > threshold instead of >= (the best still commits).
DK_REGISTER_OP("select_transfer",
               "select_transfer(Tensor confidence, str rule, Tensor? k, int k_value, float threshold, float eps, "
               "float factor, float alg_temp, int seed, int offset, Tensor(a!)? x, Tensor? x0, "
               "Tensor? seed_tensor=None, Tensor? offset_tensor=None, Tensor? threshold_tensor=None, "
               "bool strict=False) -> Tensor",
               dk::select_transfer)

#if !defined(DK_EMULATED)
namespace dk {

std::optional<at::Tensor> select_transfer_direct(
    const at::Tensor& conf, c10::string_view rule, const std::optional<at::Tensor>& k, int64_t k_value,
    double threshold, double eps, double factor, double alg_temp, int64_t seed, int64_t offset,
    const std::optional<at::Tensor>& x, const std::optional<at::Tensor>& x0,
    const std::optional<at::Tensor>& seed_tensor, const std::optional<at::Tensor>& offset_tensor,
    const std::optional<at::Tensor>& threshold_tensor, bool strict) {
  PlainCall call;
  for (const auto* t : {&k, &x, &x0, &seed_tensor, &offset_tensor, &threshold_tensor}) call.add(*t);
  call.add(conf);
  return run_direct<at::Tensor>(call, [&](auto b) {
    return select_transfer<decltype(b)::value>(conf, rule, k, k_value, threshold, eps, factor, alg_temp, seed,
                                               offset, x, x0, seed_tensor, offset_tensor, threshold_tensor, strict);
  });
}

}  // namespace dk
#endif
