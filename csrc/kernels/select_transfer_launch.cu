// Host launcher of select_transfer. nvcc builds it for the GPU; setup.py has g++ compile this same
// file against the SIMT emulator.
#include "simt/simt.h"
#include <algorithm>
#include "kernels/launchers.h"
#include "kernels/select_transfer.cuh"

namespace dk {
namespace {

int64_t sort_length(int64_t seq) {
  int64_t len = 2;
  while (len < seq) len <<= 1;
  return len;
}

bool sorts(const SelectTransferParams& p) { return p.rule == TransferRule::TopK || p.rule == TransferRule::Factor; }

}  // namespace

int64_t select_transfer_scratch_len(const SelectTransferParams& p) {
  return sorts(p) && p.seq > kMaxSharedSort ? 2 * sort_length(p.seq) : 0;  // two buffers per row
}

void launch_select_transfer(const SelectTransferParams& p, void* stream) {
  if (p.batch == 0 || p.seq == 0) return;
  // The kernels stride over their jobs, so the grid cap only bounds the launch, not the problem.
  constexpr int64_t kMaxBlocks = int64_t{1} << 30;
  const dim3 grid(static_cast<unsigned>(std::min(p.batch, kMaxBlocks)));
  const auto s = static_cast<cudaStream_t>(stream);
  const int64_t len = sort_length(p.seq);
  if (!sorts(p)) {
    const int threads = static_cast<int>(std::clamp<int64_t>((p.seq + 31) / 32 * 32, 32, 256));
    simt::launch(select_transfer_threshold_kernel, grid, dim3(threads), 0, s, p);
  } else if (len <= kMaxSharedSort) {
    const int threads = static_cast<int>(std::clamp<int64_t>(len / 2, 32, 1024));
    const size_t smem = static_cast<size_t>(len) * sizeof(unsigned long long);
    simt::launch(select_transfer_sort_kernel, grid, dim3(threads), smem, s, p, len);
  } else {
    if (p.scratch == nullptr || p.scratch_len < 2 * len)
      throw std::runtime_error("select_transfer: rows longer than 4096 need the scratch buffer");
    const int64_t chunks = p.batch * (len / kMaxSharedSort);
    const size_t smem = kMaxSharedSort * sizeof(unsigned long long);
    simt::launch(select_transfer_chunk_sort_kernel, dim3(static_cast<unsigned>(std::min(chunks, kMaxBlocks))),
                 dim3(1024), smem, s, p, len);
    simt::check_launch("select_transfer (chunk sort)");
    int from = 0;
    constexpr int kMergeThreads = 256;
    const int64_t merge_blocks = std::min((p.batch * len + kMergeThreads - 1) / kMergeThreads, kMaxBlocks);
    for (int64_t width = kMaxSharedSort; width < len; width *= 2, from = 1 - from) {
      simt::launch(select_transfer_merge_kernel, dim3(static_cast<unsigned>(merge_blocks)), dim3(kMergeThreads), 0, s,
                   p, len, width, from);
      simt::check_launch("select_transfer (merge)");
    }
    simt::launch(select_transfer_finish_kernel, grid, dim3(1024), 0, s, p, len, from);
  }
  simt::check_launch("select_transfer");
}

}  // namespace dk
