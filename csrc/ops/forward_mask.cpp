// torch.ops.diffusion_kernels.forward_mask: argument checks, the Params fill and the dispatch to
// the CPU kernel or the CUDA launcher (ops/registration.h).
#include <ATen/ops/empty.h>

#include <cmath>
#include <optional>
#include <tuple>

#include "cpu/forward_mask.h"
#include "kernels/launchers.h"
#include "ops/checks.h"
#include "ops/direct.h"
#include "ops/fast_path.h"
#include "ops/poison.h"
#include "ops/registration.h"

namespace dk {
namespace {

template <Backend B>
std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_mask(const at::Tensor& x0, int64_t mask_id, double eps,
                                                            const std::optional<at::Tensor>& t,
                                                            const std::optional<at::Tensor>& prompt_lengths,
                                                            int64_t seed, int64_t offset, bool antithetic) {
  const DeviceScope<B> scope(x0);
  check_dim(x0, "x0", 2, "[batch, seq]");
  DK_CHECK_ARG(x0.scalar_type() == at::kLong, "x0", "must be int64 token ids, got ", x0.scalar_type());
  const int64_t batch = x0.size(0), seq = x0.size(1);
  // Philox indexes rows with 32 bits and positions below kForwardMaskTimeColumn.
  DK_CHECK_ARG(batch <= int64_t{0xffffffff}, "x0", "must have fewer than 2^32 rows, got ", batch);
  DK_CHECK_ARG(std::isfinite(eps) && eps >= 0.0 && eps <= 1.0, "eps", "must lie in [0, 1], got ", eps);
  ForwardMaskParams p{};
  at::Tensor t_contig, lengths_contig;  // kept alive until the kernel has read them
  if (t.has_value()) {
    check_dim(*t, "t", 1, "[batch]");
    check_same_device(*t, "t", x0, "x0");
    DK_CHECK_ARG(t->scalar_type() == at::kFloat, "t", "must be float32, got ", t->scalar_type());
    DK_CHECK_ARG(t->size(0) == batch, "t", "must have one entry per row of 'x0' (", batch, "), got ", t->size(0));
    DK_CHECK_ARG(!antithetic, "antithetic", "must be False when 't' is given");
    t_contig = t->contiguous();
    p.t = t_contig.data_ptr<float>();
  }
  if (prompt_lengths.has_value()) {
    check_dim(*prompt_lengths, "prompt_lengths", 1, "[batch]");
    check_same_device(*prompt_lengths, "prompt_lengths", x0, "x0");
    DK_CHECK_ARG(prompt_lengths->scalar_type() == at::kLong, "prompt_lengths", "must be int64, got ",
                 prompt_lengths->scalar_type());
    DK_CHECK_ARG(prompt_lengths->size(0) == batch, "prompt_lengths", "must have one entry per row of 'x0' (",
                 batch, "), got ", prompt_lengths->size(0));
    lengths_contig = prompt_lengths->contiguous();
    p.prompt_lengths = lengths_contig.data_ptr<int64_t>();
  }
  at::Tensor x_t = at::empty({batch, seq}, x0.options());
  at::Tensor masked = at::empty({batch, seq}, x0.options().dtype(at::kBool));
  at::Tensor p_mask = at::empty({batch, seq}, x0.options().dtype(at::kFloat));
  poison(x_t, masked, p_mask);

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
  p.x_t = x_t.data_ptr<int64_t>();
  p.masked = masked.data_ptr<bool>();
  p.p_mask = p_mask.data_ptr<float>();

  if constexpr (B == Backend::Cpu) {
    cpu::forward_mask(p);
  } else {
    launch_forward_mask(p, scope.stream());
  }
  return {x_t, masked, p_mask};
}

}  // namespace
}  // namespace dk

DK_REGISTER_OP("forward_mask",
               "forward_mask(Tensor x0, int mask_id, float eps, Tensor? t, Tensor? prompt_lengths, int seed, "
               "int offset, bool antithetic) -> (Tensor x_t, Tensor masked, Tensor p_mask)",
               dk::forward_mask)

#if !defined(DK_EMULATED)
namespace dk {

std::optional<std::tuple<at::Tensor, at::Tensor, at::Tensor>> forward_mask_direct(
    const at::Tensor& x0, int64_t mask_id, double eps, const std::optional<at::Tensor>& t,
    const std::optional<at::Tensor>& prompt_lengths, int64_t seed, int64_t offset, bool antithetic) {
  PlainCall call;
  call.add(x0);
  call.add(t);
  call.add(prompt_lengths);
  return run_direct<std::tuple<at::Tensor, at::Tensor, at::Tensor>>(
      call, [&](auto b) {
        return forward_mask<decltype(b)::value>(x0, mask_id, eps, t, prompt_lengths, seed, offset, antithetic);
      });
}

}  // namespace dk
#endif
