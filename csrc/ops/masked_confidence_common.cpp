#include "ops/masked_confidence_common.h"

#include <ATen/ops/empty.h>

#include <cmath>
#include <limits>
#include <string>

#include "ops/checks.h"
#include "ops/poison.h"
#include "ops/scalar_kind.h"

namespace dk {
namespace {

// A [batch] tensor of per-row values (the Python wrapper turns a scalar tensor into one).
template <typename T>
const T* per_row(const std::optional<at::Tensor>& t, const char* name, at::ScalarType want, int64_t batch,
                 const at::Tensor& logits) {
  if (!t.has_value()) return nullptr;
  check_same_device(*t, name, logits, "logits");
  DK_CHECK_ARG(t->scalar_type() == want, name, "must be a ", want, " tensor, got ", t->scalar_type());
  DK_CHECK_ARG(t->dim() == 1 && t->size(0) == batch, name, "must be a number or a [batch] = [", batch,
               "] tensor, got shape ", t->sizes());
  DK_CHECK_ARG(t->is_contiguous(), name, "must be contiguous, got strides ", t->strides());
  return t->data_ptr<T>();
}

ConfidenceKind confidence_kind(c10::string_view s) {
  if (s == "prob") return ConfidenceKind::Prob;
  if (s == "margin") return ConfidenceKind::Margin;
  if (s == "neg_entropy") return ConfidenceKind::NegEntropy;
  if (s == "random") return ConfidenceKind::Random;
  DK_CHECK_ARG(false, "confidence", "must be one of 'prob', 'margin', 'neg_entropy', 'random', got '",
               std::string(s), "'");
  return ConfidenceKind::Prob;
}

}  // namespace

MaskedConfidenceParams prepare_masked_confidence(const at::Tensor& logits, const at::Tensor& x, int64_t mask_id,
                                                 DK_MASKED_CONFIDENCE_OPTION_PARAMS,
                                                 MaskedConfidenceOutputs& out) {
  check_dim(logits, "logits", 3, "[batch, seq, vocab]");
  check_dim(x, "x", 2, "[batch, seq]");
  check_same_device(x, "x", logits, "logits");
  DK_CHECK_ARG(x.scalar_type() == at::kLong, "x", "must be int64 token ids, got ", x.scalar_type());
  DK_CHECK_ARG(x.size(0) == logits.size(0) && x.size(1) == logits.size(1), "x",
               "must have shape [batch, seq] = ", logits.sizes().slice(0, 2), " to match 'logits', got ",
               x.sizes());
  DK_CHECK_ARG(logits.size(2) >= 1, "logits", "must have a non-empty vocabulary dimension, got shape ",
               logits.sizes());
  check_last_dim_contiguous(logits, "logits");
  const int64_t batch = logits.size(0), vocab = logits.size(2);

  MaskedConfidenceParams p{};
  p.temperature = per_row<float>(temperature, "temperature", at::kFloat, batch, logits);
  p.top_p = per_row<float>(top_p, "top_p", at::kFloat, batch, logits);
  p.top_k = per_row<int64_t>(top_k, "top_k", at::kLong, batch, logits);
  p.block_start = per_row<int64_t>(block_start, "block_start", at::kLong, batch, logits);
  p.block_end = per_row<int64_t>(block_end, "block_end", at::kLong, batch, logits);
  DK_CHECK_ARG(std::isfinite(temperature_value) && temperature_value >= 0, "temperature",
               "must be >= 0 and finite, got ", temperature_value);
  DK_CHECK_ARG(top_p_value >= 0 && top_p_value <= 1, "top_p", "must be in [0, 1], got ", top_p_value);
  DK_CHECK_ARG(top_k_value >= 0, "top_k", "must be >= 0 (0: no top-k filter), got ", top_k_value);
  p.temperature_value = static_cast<float>(temperature_value);
  p.top_p_value = static_cast<float>(top_p_value);
  p.top_k_value = top_k_value;
  p.block_start_value = block_start_value;
  p.block_end_value = block_end_value;
  p.kind = confidence_kind(confidence);
  p.confidence_from_logits = confidence_from_logits;

  if (suppress_ids.has_value() && suppress_ids->numel() > 0) {
    const at::Tensor& ids = *suppress_ids;
    check_same_device(ids, "suppress_ids", logits, "logits");
    DK_CHECK_ARG(ids.scalar_type() == at::kLong && ids.dim() == 1 && ids.is_contiguous(), "suppress_ids",
                 "must be a contiguous 1-D int64 tensor of vocabulary ids, got a ", ids.scalar_type(),
                 " tensor of shape ", ids.sizes());
    // Values are checked where that needs no device synchronisation; the CUDA kernel ignores ids
    // outside [0, vocab).
    if (ids.device().is_cpu()) {
      const int64_t* v = ids.data_ptr<int64_t>();
      for (int64_t i = 0; i < ids.numel(); ++i)
        DK_CHECK_ARG(v[i] >= 0 && v[i] < vocab, "suppress_ids", "must hold ids in [0, ", vocab, "), got ", v[i]);
    }
    p.suppress_ids = ids.data_ptr<int64_t>();
    p.num_suppress = ids.numel();
  }
  p.seed = one_int64_element(seed, "seed", logits, "logits");
  p.offset = one_int64_element(offset, "offset", logits, "logits");
  p.seed_value = static_cast<uint64_t>(seed_value);
  p.offset_value = static_cast<uint64_t>(offset_value);

  p.vocab = vocab;
  if (p.general()) {
    DK_CHECK_ARG(vocab < (int64_t{1} << 31), "logits", "vocabulary must be below 2^31 for sampling, got ", vocab);
  }
  const bool draws = p.temperature != nullptr || p.temperature_value > 0.f || p.kind == ConfidenceKind::Random;
  DK_CHECK_ARG(!draws || batch * logits.size(1) <= (int64_t{1} << 32), "logits",
               "batch * seq must be at most 2^32 when drawing random numbers (one Philox stream per row), got ",
               batch * logits.size(1));

  const auto opts = x.options();
  out.x0 = at::empty({x.size(0), x.size(1)}, opts);
  out.confidence = at::empty({x.size(0), x.size(1)}, opts.dtype(at::kFloat));
  out.lse = return_lse ? at::empty({x.size(0), x.size(1)}, opts.dtype(at::kFloat)) : at::empty({0}, opts.dtype(at::kFloat));
  poison(out.x0);
  poison(out.confidence);
  poison(out.lse);

  p.logits = logits.data_ptr();
  p.logits_kind = scalar_kind_of(logits, "logits");
  p.batch = batch;
  p.seq = logits.size(1);
  p.logits_stride_b = logits.stride(0);
  p.logits_stride_l = logits.stride(1);
  p.x = x.data_ptr<int64_t>();
  p.x_stride_b = x.stride(0);
  p.x_stride_l = x.stride(1);
  p.mask_id = mask_id;
  p.x0 = out.x0.data_ptr<int64_t>();
  p.confidence = out.confidence.data_ptr<float>();
  p.lse = return_lse ? out.lse.data_ptr<float>() : nullptr;
  return p;
}

}  // namespace dk
