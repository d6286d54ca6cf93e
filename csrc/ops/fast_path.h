// When an op may be called directly from Python (bindings.cpp), skipping the torch dispatcher's
// boxed argument parsing: only when the dispatcher would itself go straight to our CPU or CUDA
// kernel. Anything that could intercept the call (tensor subclasses, fake/functional tensors,
// torch_dispatch and torch_function modes, functorch transforms, the Python dispatcher, autograd
// on an input that requires grad, the profiler's record_function hooks) makes the direct entry
// decline, and the Python wrapper then calls the registered op as before.
#pragma once
#include <ATen/core/Tensor.h>
#include <ATen/PythonTorchFunctionTLS.h>
#include <ATen/record_function.h>
#include <c10/core/DispatchKeySet.h>
#include <c10/core/GradMode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <c10/core/impl/PythonDispatcherTLS.h>

#include <optional>
#include <type_traits>

#include "ops/registration.h"

namespace dk {

// Collects the tensors of one call and says whether a direct call is equivalent to dispatching.
class PlainCall {
 public:
  void add(const at::Tensor& t) {
    if (!t.defined()) return;
    keys_ = keys_ | t.key_set();
    grad_ = grad_ || t.requires_grad();
  }
  void add(const std::optional<at::Tensor>& t) {
    if (t.has_value()) add(*t);
  }
  // The backend the dispatcher would pick (CPU or CUDA), or nullopt when something else would run first.
  std::optional<c10::DispatchKey> backend() const {
    if (grad_ && c10::GradMode::is_enabled()) return std::nullopt;
    if (c10::impl::PythonDispatcherTLS::get_state() != nullptr || at::impl::torch_function_mode_enabled() ||
        at::hasCallbacks()) {
      return std::nullopt;
    }
    const c10::impl::LocalDispatchKeySet tls = c10::impl::tls_local_dispatch_key_set();
    // Autograd and autocast keys fall through for ops without such kernels (and grad was handled
    // above); BackendSelect, always in the TLS included set, is skipped for ops with tensor arguments.
    const c10::DispatchKeySet ks = ((keys_ | tls.included_) - tls.excluded_) -
                                   c10::autograd_dispatch_keyset_with_ADInplaceOrView - c10::autocast_dispatch_keyset -
                                   c10::DispatchKeySet(c10::DispatchKey::BackendSelect);
    const c10::DispatchKey k = ks.highestPriorityTypeId();
    if (k == c10::DispatchKey::CPU || k == c10::DispatchKey::CUDA) return k;
    return std::nullopt;
  }

 private:
  c10::DispatchKeySet keys_;
  bool grad_ = false;
};

// Runs `run(backend)` (backend: a std::integral_constant<Backend, ...>) for the backend the
// dispatcher would pick for `call`'s tensors; nullopt where a direct call is not equivalent.
template <typename Result, typename Run>
std::optional<Result> run_direct(const PlainCall& call, Run&& run) {
  const std::optional<c10::DispatchKey> backend = call.backend();
  if (backend == c10::DispatchKey::CPU) return run(std::integral_constant<Backend, Backend::Cpu>{});
#if defined(DK_WITH_CUDA)
  if (backend == c10::DispatchKey::CUDA) return run(std::integral_constant<Backend, Backend::Launcher>{});
#endif
  return std::nullopt;
}

}  // namespace dk
