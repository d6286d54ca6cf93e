#include "ops/select_transfer_common.h"

#include <ATen/ops/empty.h>

#include <cmath>
#include <limits>

#include "ops/checks.h"
#include "ops/poison.h"

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

}  // namespace

SelectTransferParams prepare_select_transfer(const SelectTransferArgs& a, at::Tensor& mask) {
  const at::Tensor& conf = a.confidence;
  check_dim(conf, "confidence", 2, "[batch, seq]");
  DK_CHECK_ARG(conf.scalar_type() == at::kFloat, "confidence", "must be float32, got ", conf.scalar_type());
  DK_CHECK_ARG(conf.size(1) < (int64_t{1} << 31), "confidence", "rows longer than 2^31 - 1 are not supported, got ",
               conf.size(1));
  SelectTransferParams p{};
  p.rule = parse_rule(a.rule);

  if (p.rule == TransferRule::TopK) {
    if (a.k.has_value()) {
      const at::Tensor& k = *a.k;
      check_dim(k, "k", 1, "[batch]");
      check_same_device(k, "k", conf, "confidence");
      DK_CHECK_ARG(k.scalar_type() == at::kLong, "k", "must be int64, got ", k.scalar_type());
      DK_CHECK_ARG(k.size(0) == conf.size(0), "k", "must have one count per row (", conf.size(0), "), got shape ",
                   k.sizes());
      p.k = k.data_ptr<int64_t>();
      p.k_stride = k.stride(0);
    } else {
      DK_CHECK_ARG(a.k_value >= 0, "k", "must be >= 0, got ", a.k_value);
    }
    p.k_value = a.k_value;
    DK_CHECK_ARG(std::isfinite(a.alg_temp) && a.alg_temp >= 0, "alg_temp", "must be finite and >= 0, got ",
                 a.alg_temp);
    p.alg_temp = a.alg_temp;
  } else {
    DK_CHECK_ARG(!a.k.has_value(), "k", "is only used by rule 'topk'");
    DK_CHECK_ARG(a.alg_temp == 0, "alg_temp", "is only used by rule 'topk', got ", a.alg_temp);
  }
  if (p.rule == TransferRule::Threshold || p.rule == TransferRule::ThresholdRowMax) {
    DK_CHECK_ARG(!std::isnan(a.threshold), "threshold", "must not be NaN");
    p.threshold = static_cast<float>(a.threshold);  // as torch compares a float32 tensor to a float
  }
  if (p.rule == TransferRule::ThresholdRowMax) {
    DK_CHECK_ARG(std::isfinite(a.eps) && a.eps >= 0, "eps", "must be finite and >= 0, got ", a.eps);
    p.eps = static_cast<float>(a.eps);
  }
  if (p.rule == TransferRule::Factor) {
    DK_CHECK_ARG(std::isfinite(a.factor) && a.factor > 0, "factor", "must be finite and > 0, got ", a.factor);
    p.factor = a.factor;
  }
  p.seed = static_cast<uint64_t>(a.seed);
  p.offset = static_cast<uint64_t>(a.offset);
  p.seed_tensor = one_int64_element(a.seed_tensor, "seed", conf, "confidence");
  p.offset_tensor = one_int64_element(a.offset_tensor, "offset", conf, "confidence");

  DK_CHECK_ARG(a.x.has_value() == a.x0.has_value(), a.x.has_value() ? "x0" : "x",
               "must be given together with '", a.x.has_value() ? "x" : "x0", "' (x is written from x0)");
  if (a.x.has_value()) {
    check_tokens(*a.x, "x", conf);
    check_tokens(*a.x0, "x0", conf);
    p.x = a.x->data_ptr<int64_t>();
    p.x_stride_b = a.x->stride(0);
    p.x_stride_l = a.x->stride(1);
    p.x0 = a.x0->data_ptr<int64_t>();
    p.x0_stride_b = a.x0->stride(0);
    p.x0_stride_l = a.x0->stride(1);
  }

  mask = at::empty(conf.sizes(), conf.options().dtype(at::kBool));
  poison(mask);
  p.confidence = conf.data_ptr<float>();
  p.batch = conf.size(0);
  p.seq = conf.size(1);
  p.conf_stride_b = conf.stride(0);
  p.conf_stride_l = conf.stride(1);
  p.mask = mask.data_ptr<bool>();
  return p;
}

}  // namespace dk
