// torch.ops.diffusion_kernels.masked_ce_forward / _backward / _forward_backward_: argument checks,
// the Params fill and the dispatch to the CPU kernels or the CUDA launchers (ops/registration.h).
// The CPU path range-checks the targets of masked rows; the launchers do not (that would read
// device memory): their kernels write NaN for such a row, never out of bounds.
#include <ATen/MemoryOverlap.h>
#include <ATen/ops/empty.h>

#include <tuple>

#include "cpu/masked_ce.h"
#include "kernels/launchers.h"
#include "ops/checks.h"
#include "ops/direct.h"
#include "ops/fast_path.h"
#include "ops/poison.h"
#include "ops/registration.h"

namespace dk {
namespace {

// Keeps the contiguous copies of the per-row vectors alive while the kernel runs, and holds the
// freshly allocated outputs.
struct MaskedCeTensors {
  at::Tensor targets, masked, grad_ce, grad_lse, lse_in, scale;
  at::Tensor ce, lse, grad_logits;
};

// float64 logits use float64 per-row values; every other dtype uses float32.
at::ScalarType acc_type(const at::Tensor& logits) {
  return logits.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

at::Tensor row_vector(const at::Tensor& t, const char* name, const at::Tensor& logits, at::ScalarType dtype,
                      const char* dtype_name) {
  check_dim(t, name, 1, "[rows]");
  check_same_device(t, name, logits, "logits");
  DK_CHECK_ARG(t.scalar_type() == dtype, name, "must be ", dtype_name, ", got ", t.scalar_type());
  DK_CHECK_ARG(t.size(0) == logits.size(0), name, "must have ", logits.size(0),
               " entries (one per row of 'logits'), got ", t.size(0));
  return t.contiguous();
}

const char* acc_name(const at::Tensor& logits) {
  return logits.scalar_type() == at::kDouble ? "float64 (the dtype of float64 logits)"
                                             : "float32 (float64 only with float64 logits)";
}

// The checks and fields every masked CE op shares. The launchers have no float64 kernels.
template <Backend B>
MaskedCeParams base_params(const at::Tensor& logits, const at::Tensor& targets, const at::Tensor& masked,
                           MaskedCeTensors& t) {
  if constexpr (B == Backend::Launcher) {
    DK_CHECK_ARG(logits.scalar_type() != at::kDouble, "logits",
                 "must be float32, float16 or bfloat16 on this device (float64 is CPU-only), got Double");
  }
  check_dim(logits, "logits", 2, "[rows, vocab]");
  DK_CHECK_ARG(logits.size(1) >= 1, "logits", "must have a non-empty vocabulary dimension, got shape ",
               logits.sizes());
  check_last_dim_contiguous(logits, "logits");
  t.targets = row_vector(targets, "targets", logits, at::kLong, "int64 token ids");
  t.masked = row_vector(masked, "masked", logits, at::kBool, "bool");
  MaskedCeParams p{};
  p.logits = const_cast<void*>(logits.data_ptr());
  p.kind = scalar_kind_of(logits, "logits", /*float64_on_cpu=*/true);
  p.rows = logits.size(0);
  p.vocab = logits.size(1);
  p.logits_stride = logits.stride(0);
  p.targets = t.targets.data_ptr<int64_t>();
  p.masked = t.masked.data_ptr<bool>();
  return p;
}

// CPU only (reads the data): every masked row's target must index the vocabulary.
void check_masked_targets_in_range(const MaskedCeParams& p) {
  for (int64_t r = 0; r < p.rows; ++r) {
    if (!p.masked[r]) continue;
    DK_CHECK_ARG(p.targets[r] >= 0 && p.targets[r] < p.vocab, "targets",
                 "must lie in [0, vocab = ", p.vocab, ") at masked rows, got ", p.targets[r], " at row ", r);
  }
}

void alloc_row_outputs(const at::Tensor& logits, MaskedCeTensors& t, MaskedCeParams& p) {
  const auto opts = logits.options().dtype(acc_type(logits));
  t.ce = at::empty({logits.size(0)}, opts);
  t.lse = at::empty({logits.size(0)}, opts);
  poison(t.ce, t.lse);
  p.ce = t.ce.data_ptr();
  p.lse = t.lse.data_ptr();
}

template <Backend B>
std::tuple<at::Tensor, at::Tensor> masked_ce_forward(const at::Tensor& logits, const at::Tensor& targets,
                                                     const at::Tensor& masked) {
  const DeviceScope<B> scope(logits);
  MaskedCeTensors t;
  MaskedCeParams p = base_params<B>(logits, targets, masked, t);
  alloc_row_outputs(logits, t, p);
  if constexpr (B == Backend::Cpu) {
    check_masked_targets_in_range(p);
    cpu::masked_ce_forward(p);
  } else {
    launch_masked_ce_forward(p, scope.stream());
  }
  return {t.ce, t.lse};
}

template <Backend B>
at::Tensor masked_ce_backward(const at::Tensor& grad_ce, const at::Tensor& grad_lse, const at::Tensor& logits,
                              const at::Tensor& targets, const at::Tensor& masked, const at::Tensor& lse) {
  const DeviceScope<B> scope(logits);
  MaskedCeTensors t;
  MaskedCeParams p = base_params<B>(logits, targets, masked, t);
  const auto acc = acc_type(logits);
  t.grad_ce = row_vector(grad_ce, "grad_ce", logits, acc, acc_name(logits));
  t.grad_lse = row_vector(grad_lse, "grad_lse", logits, acc, acc_name(logits));
  t.lse_in = row_vector(lse, "lse", logits, acc, acc_name(logits));
  p.grad_ce = t.grad_ce.data_ptr();
  p.grad_lse = t.grad_lse.data_ptr();
  p.lse_in = t.lse_in.data_ptr();
  t.grad_logits = at::empty(logits.sizes(), logits.options());  // contiguous
  poison(t.grad_logits);
  p.grad_logits = t.grad_logits.data_ptr();
  p.grad_stride = t.grad_logits.stride(0);
  if constexpr (B == Backend::Cpu) {
    check_masked_targets_in_range(p);
    cpu::masked_ce_backward(p);
  } else {
    launch_masked_ce_backward(p, scope.stream());
  }
  return t.grad_logits;
}

template <Backend B>
std::tuple<at::Tensor, at::Tensor> masked_ce_forward_backward(at::Tensor& logits, const at::Tensor& targets,
                                                              const at::Tensor& masked, const at::Tensor& scale) {
  const DeviceScope<B> scope(logits);
  // Rows that share memory would each receive another row's gradient.
  DK_CHECK_ARG(at::has_internal_overlap(logits) != at::MemOverlap::Yes, "logits",
               "is overwritten in place and must not have overlapping elements (e.g. an expanded tensor)");
  MaskedCeTensors t;
  MaskedCeParams p = base_params<B>(logits, targets, masked, t);
  t.scale = row_vector(scale, "scale", logits, acc_type(logits), acc_name(logits));
  p.scale = t.scale.data_ptr();
  alloc_row_outputs(logits, t, p);
  if constexpr (B == Backend::Cpu) {
    check_masked_targets_in_range(p);
    cpu::masked_ce_forward_backward(p);
  } else {
    launch_masked_ce_forward_backward(p, scope.stream());
  }
  return {t.ce, t.lse};
}

}  // namespace
}  // namespace dk

DK_REGISTER_OP("masked_ce_forward",
               "masked_ce_forward(Tensor logits, Tensor targets, Tensor masked) -> (Tensor ce, Tensor lse)",
               dk::masked_ce_forward)
DK_REGISTER_OP("masked_ce_backward",
               "masked_ce_backward(Tensor grad_ce, Tensor grad_lse, Tensor logits, Tensor targets, "
               "Tensor masked, Tensor lse) -> Tensor",
               dk::masked_ce_backward)
// The logits are overwritten by the scaled gradient.
DK_REGISTER_OP("masked_ce_forward_backward_",
               "masked_ce_forward_backward_(Tensor(a!) logits, Tensor targets, Tensor masked, Tensor scale) "
               "-> (Tensor ce, Tensor lse)",
               dk::masked_ce_forward_backward)

#if !defined(DK_EMULATED)
namespace dk {

// The autograd kernel (ops/masked_ce.py) only records a graph for logits that require grad,
// which PlainCall declines; otherwise it returns what the forward returns.
std::optional<std::tuple<at::Tensor, at::Tensor>> masked_ce_forward_direct(const at::Tensor& logits,
                                                                           const at::Tensor& targets,
                                                                           const at::Tensor& masked) {
  PlainCall call;
  call.add(logits);
  call.add(targets);
  call.add(masked);
  return run_direct<std::tuple<at::Tensor, at::Tensor>>(
      call, [&](auto b) { return masked_ce_forward<decltype(b)::value>(logits, targets, masked); });
}

}  // namespace dk
#endif
