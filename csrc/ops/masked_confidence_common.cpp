#include "ops/masked_confidence_common.h"

#include <ATen/ops/empty.h>

#include "ops/checks.h"
#include "ops/poison.h"
#include "ops/scalar_kind.h"

namespace dk {

MaskedConfidenceParams prepare_masked_confidence(const at::Tensor& logits, const at::Tensor& x,
                                                 int64_t mask_id, MaskedConfidenceOutputs& out) {
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

  const auto opts = x.options();
  out.x0 = at::empty({x.size(0), x.size(1)}, opts);
  out.confidence = at::empty({x.size(0), x.size(1)}, opts.dtype(at::kFloat));
  poison(out.x0);
  poison(out.confidence);

  MaskedConfidenceParams p{};
  p.logits = logits.data_ptr();
  p.logits_kind = scalar_kind_of(logits, "logits");
  p.batch = logits.size(0);
  p.seq = logits.size(1);
  p.vocab = logits.size(2);
  p.logits_stride_b = logits.stride(0);
  p.logits_stride_l = logits.stride(1);
  p.x = x.data_ptr<int64_t>();
  p.x_stride_b = x.stride(0);
  p.x_stride_l = x.stride(1);
  p.mask_id = mask_id;
  p.x0 = out.x0.data_ptr<int64_t>();
  p.confidence = out.confidence.data_ptr<float>();
  return p;
}

}  // namespace dk
