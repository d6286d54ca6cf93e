// torch.ops.diffusion_kernels.masked_confidence: argument checks, the Params fill and the
// dispatch to the CPU kernel or the CUDA launcher (ops/registration.h).
#include <ATen/ops/empty.h>

#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <tuple>

#include "cpu/masked_confidence.h"
#include "kernels/launchers.h"
#include "ops/checks.h"
#include "ops/direct.h"
#include "ops/fast_path.h"
#include "ops/poison.h"
#include "ops/registration.h"

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

template <Backend B>
std::tuple<at::Tensor, at::Tensor, at::Tensor> masked_confidence_impl(const MaskedConfidenceArgs& a) {
  const at::Tensor &logits = a.logits, &x = a.x;
  const std::optional<at::Tensor>&temperature = a.temperature, &top_p = a.top_p, &top_k = a.top_k,
                                 &block_start = a.block_start, &block_end = a.block_end,
                                 &suppress_ids = a.suppress_ids, &seed = a.seed, &offset = a.offset,
                                 &prev_token_penalty = a.prev_token_penalty;
  const double temperature_value = a.temperature_value, top_p_value = a.top_p_value,
               prev_token_penalty_value = a.prev_token_penalty_value;
  const int64_t top_k_value = a.top_k_value;
  const bool return_lse = a.return_lse;
  const DeviceScope<B> scope(logits);
  DK_CHECK_ARG(logits.dim() == 3 || logits.dim() == 2, "logits",
               "must have 3 dimensions [batch, seq, vocab] or 2 [batch * seq, vocab], got shape ", logits.sizes());
  check_dim(x, "x", 2, "[batch, seq]");
  check_same_device(x, "x", logits, "logits");
  DK_CHECK_ARG(x.scalar_type() == at::kLong, "x", "must be int64 token ids, got ", x.scalar_type());
  const bool flat = logits.dim() == 2;
  if (flat) {
    DK_CHECK_ARG(logits.size(0) == x.numel(), "logits", "in the flat layout [batch * seq, vocab] must have one row per ",
                 "element of 'x' (", x.sizes(), ": ", x.numel(), " rows), got shape ", logits.sizes());
  } else {
    DK_CHECK_ARG(x.size(0) == logits.size(0) && x.size(1) == logits.size(1), "x",
                 "must have shape [batch, seq] = ", logits.sizes().slice(0, 2), " to match 'logits', got ",
                 x.sizes());
  }
  DK_CHECK_ARG(logits.size(-1) >= 1, "logits", "must have a non-empty vocabulary dimension, got shape ",
               logits.sizes());
  check_last_dim_contiguous(logits, "logits");
  const int64_t batch = x.size(0), vocab = logits.size(-1);

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
  p.block_start_value = a.block_start_value;
  p.block_end_value = a.block_end_value;
  p.prev_token_penalty = per_row<float>(prev_token_penalty, "prev_token_penalty", at::kFloat, batch, logits);
  DK_CHECK_ARG(std::isfinite(prev_token_penalty_value) && prev_token_penalty_value >= 0, "prev_token_penalty",
               "must be finite and >= 0 (0: no penalty), got ", prev_token_penalty_value);
  p.prev_token_penalty_value = static_cast<float>(prev_token_penalty_value);
  p.all_positions = a.all_positions;
  p.kind = confidence_kind(a.confidence);
  p.confidence_from_logits = a.confidence_from_logits;

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
  p.seed_value = static_cast<uint64_t>(a.seed_value);
  p.offset_value = static_cast<uint64_t>(a.offset_value);

  p.vocab = vocab;
  if (p.general()) {
    DK_CHECK_ARG(vocab < (int64_t{1} << 31), "logits", "vocabulary must be below 2^31 for sampling, got ", vocab);
  }
  const bool draws = p.temperature != nullptr || p.temperature_value > 0.f || p.kind == ConfidenceKind::Random;
  DK_CHECK_ARG(!draws || x.numel() <= (int64_t{1} << 32), "logits",
               "batch * seq must be at most 2^32 when drawing random numbers (one Philox stream per row), got ",
               x.numel());

  const auto opts = x.options();
  at::Tensor x0 = at::empty({x.size(0), x.size(1)}, opts);
  at::Tensor conf = at::empty({x.size(0), x.size(1)}, opts.dtype(at::kFloat));
  at::Tensor lse = return_lse ? at::empty({x.size(0), x.size(1)}, opts.dtype(at::kFloat))
                              : at::empty({0}, opts.dtype(at::kFloat));
  poison(x0, conf, lse);

  p.logits = logits.data_ptr();
  p.logits_kind = scalar_kind_of(logits, "logits");
  p.batch = batch;
  p.seq = x.size(1);
  // The flat layout is the same rows seen through one stride: row (b, l) is row b * seq + l.
  p.logits_stride_b = flat ? logits.stride(0) * p.seq : logits.stride(0);
  p.logits_stride_l = logits.stride(0 + !flat);
  p.x = x.data_ptr<int64_t>();
  p.x_stride_b = x.stride(0);
  p.x_stride_l = x.stride(1);
  p.mask_id = a.mask_id;
  p.x0 = x0.data_ptr<int64_t>();
  p.confidence = conf.data_ptr<float>();
  p.lse = return_lse ? lse.data_ptr<float>() : nullptr;

  if constexpr (B == Backend::Cpu) {
    cpu::masked_confidence(p);
  } else {
    at::Tensor scratch;
    if (const int64_t bytes = masked_confidence_scratch_bytes(p); bytes > 0) {
      scratch = at::empty({(bytes + 15) / 16, 2}, logits.options().dtype(at::kLong));  // 16-byte aligned
      p.scratch = scratch.data_ptr();
      p.scratch_bytes = bytes;
    }
    launch_masked_confidence(p, scope.stream());
  }
  return {x0, conf, lse};
}

template <Backend B>
std::tuple<at::Tensor, at::Tensor, at::Tensor> masked_confidence(
    const at::Tensor& logits, const at::Tensor& x, int64_t mask_id, const std::optional<at::Tensor>& temperature,
    double temperature_value, const std::optional<at::Tensor>& top_p, double top_p_value,
    const std::optional<at::Tensor>& top_k, int64_t top_k_value, c10::string_view confidence,
    bool confidence_from_logits, const std::optional<at::Tensor>& block_start, int64_t block_start_value,
    const std::optional<at::Tensor>& block_end, int64_t block_end_value,
    const std::optional<at::Tensor>& suppress_ids, const std::optional<at::Tensor>& seed, int64_t seed_value,
    const std::optional<at::Tensor>& offset, int64_t offset_value, bool return_lse, bool all_positions,
    const std::optional<at::Tensor>& prev_token_penalty, double prev_token_penalty_value) {
  return masked_confidence_impl<B>({logits, x, mask_id, temperature, temperature_value, top_p, top_p_value, top_k,
                                    top_k_value, confidence, confidence_from_logits, block_start, block_start_value,
                                    block_end, block_end_value, suppress_ids, seed, seed_value, offset, offset_value,
                                    return_lse, all_positions, prev_token_penalty, prev_token_penalty_value});
}

}  // namespace
}  // namespace dk

DK_REGISTER_OP("masked_confidence",
               "masked_confidence(Tensor logits, Tensor x, int mask_id, *, Tensor? temperature=None, "
               "float temperature_value=0., Tensor? top_p=None, float top_p_value=1., Tensor? top_k=None, "
               "int top_k_value=0, str confidence=\"prob\", bool confidence_from_logits=False, "
               "Tensor? block_start=None, int block_start_value=0, Tensor? block_end=None, "
               "int block_end_value=9223372036854775807, Tensor? suppress_ids=None, Tensor? seed=None, "
               "int seed_value=0, Tensor? offset=None, int offset_value=0, bool return_lse=False, "
               "bool all_positions=False, Tensor? prev_token_penalty=None, float prev_token_penalty_value=0.) "
               "-> (Tensor x0, Tensor confidence, Tensor lse)",
               dk::masked_confidence)

#if !defined(DK_EMULATED)
namespace dk {

std::optional<std::tuple<at::Tensor, at::Tensor, at::Tensor>> masked_confidence_direct(const MaskedConfidenceArgs& a) {
  PlainCall call;
  for (const auto* t : {&a.temperature, &a.top_p, &a.top_k, &a.block_start, &a.block_end, &a.suppress_ids, &a.seed,
                        &a.offset, &a.prev_token_penalty}) {
    call.add(*t);
  }
  call.add(a.logits);
  call.add(a.x);
  return run_direct<std::tuple<at::Tensor, at::Tensor, at::Tensor>>(
      call, [&](auto b) { return masked_confidence_impl<decltype(b)::value>(a); });
}

}  // namespace dk
#endif
