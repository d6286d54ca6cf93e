#include "ops/forward_mask_common.h"

#include <ATen/ops/empty.h>
#include <cmath>

#include "ops/checks.h"
#include "ops/poison.h"

namespace dk {

ForwardMaskParams prepare_forward_mask(const at::Tensor& x0, int64_t mask_id, double eps,
                                       const std::optional<at::Tensor>& t,
                                       const std::optional<at::Tensor>& prompt_lengths, int64_t seed,
                                       int64_t offset, bool antithetic, ForwardMaskTensors& out) {
  check_dim(x0, "x0", 2, "[batch, seq]");
  DK_CHECK_ARG(x0.scalar_type() == at::kLong, "x0", "must be int64 token ids, got ", x0.scalar_type());
  const int64_t batch = x0.size(0), seq = x0.size(1);
  // Philox indexes rows with 32 bits and positions below kForwardMaskTimeColumn.
  DK_CHECK_ARG(batch <= int64_t{0xffffffff}, "x0", "must have fewer than 2^32 rows, got ", batch);
  DK_CHECK_ARG(std::isfinite(eps) && eps >= 0.0 && eps <= 1.0, "eps", "must lie in [0, 1], got ", eps);
  ForwardMaskParams p{};
  if (t.has_value()) {
    check_dim(*t, "t", 1, "[batch]");
    check_same_device(*t, "t", x0, "x0");
    DK_CHECK_ARG(t->scalar_type() == at::kFloat, "t", "must be float32, got ", t->scalar_type());
    DK_CHECK_ARG(t->size(0) == batch, "t", "must have one entry per row of 'x0' (", batch, "), got ", t->size(0));
    DK_CHECK_ARG(!antithetic, "antithetic", "must be False when 't' is given");
    out.t = t->contiguous();
    p.t = out.t.data_ptr<float>();
  }
  if (prompt_lengths.has_value()) {
    check_dim(*prompt_lengths, "prompt_lengths", 1, "[batch]");
    check_same_device(*prompt_lengths, "prompt_lengths", x0, "x0");
    DK_CHECK_ARG(prompt_lengths->scalar_type() == at::kLong, "prompt_lengths", "must be int64, got ",
                 prompt_lengths->scalar_type());
    DK_CHECK_ARG(prompt_lengths->size(0) == batch, "prompt_lengths", "must have one entry per row of 'x0' (",
                 batch, "), got ", prompt_lengths->size(0));
    out.prompt_lengths = prompt_lengths->contiguous();
    p.prompt_lengths = out.prompt_lengths.data_ptr<int64_t>();
  }
  out.x_t = at::empty({batch, seq}, x0.options());
  out.masked = at::empty({batch, seq}, x0.options().dtype(at::kBool));
  out.p_mask = at::empty({batch, seq}, x0.options().dtype(at::kFloat));
  poison(out.x_t);
  poison(out.masked);
  poison(out.p_mask);

  p.x0 = x0.data_ptr<int64_t>();
  p.x0_stride_b = x0.stride(0);
  p.x0_stride_l = x0.stride(1);
  p.batch = batch;
  p.seq = seq;
  p.mask_id = mask_id;
  p.one_minus_eps = static_cast<float>(1.0 - eps);  // as torch: (1 - eps) in double, then the tensor's float32
  p.eps = static_cast<float>(eps);
  p.antithetic = antithetic;
  p.seed = static_cast<uint64_t>(seed);
  p.offset = static_cast<uint64_t>(offset);
  p.x_t = out.x_t.data_ptr<int64_t>();
  p.masked = out.masked.data_ptr<bool>();
  p.p_mask = out.p_mask.data_ptr<float>();
  return p;
}

}  // namespace dk
