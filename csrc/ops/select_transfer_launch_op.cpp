// Torch-facing entry of the CUDA launcher; linked into the CUDA build of _C and into the
// emulated module, which provide the launcher from nvcc and from g++ respectively.
#include <ATen/ops/empty.h>

#include "kernels/launchers.h"
#include "ops/select_transfer.h"
#include "ops/select_transfer_common.h"

namespace dk {

at::Tensor select_transfer_launcher(const SelectTransferArgs& args, void* stream) {
  at::Tensor mask;
  auto params = prepare_select_transfer(args, mask);
  at::Tensor scratch;
  const int64_t len = select_transfer_scratch_len(params);
  if (len > 0) {
    scratch = at::empty({params.batch, len}, args.confidence.options().dtype(at::kLong));
    params.scratch = reinterpret_cast<uint64_t*>(scratch.data_ptr<int64_t>());
    params.scratch_len = len;
  }
  launch_select_transfer(params, stream);
  return mask;
}

}  // namespace dk
