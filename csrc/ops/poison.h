// Debug aid for the tests: with DK_POISON_OUTPUTS=1, freshly allocated outputs are filled with
// values no kernel legitimately writes, so an element a kernel forgets to write fails the test.
#pragma once
#include <ATen/core/Tensor.h>

namespace dk {

constexpr float kPoisonFloat = -1.2345e38f;
constexpr int64_t kPoisonIndex = -0x0BADBAD;

bool poison_outputs_enabled();  // reads the environment at each call: tests may toggle it
void poison_fill(at::Tensor& t);  // fills with the poison of t's dtype

// Fills each output with its poison when enabled: one look at the environment for all of them.
template <typename... Tensors>
void poison(Tensors&... outputs) {
  if (poison_outputs_enabled()) (poison_fill(outputs), ...);
}

}  // namespace dk
