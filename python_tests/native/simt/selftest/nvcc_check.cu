// Compile-only check that simt.h's nvcc branch and the self-test kernels build for the GPU:
//   nvcc -std=c++17 -arch=sm_80 -I csrc -c python_tests/native/simt/selftest/nvcc_check.cu -o /dev/null
//   nvcc -std=c++20 -arch=sm_90 -I csrc -c python_tests/native/simt/selftest/nvcc_check.cu -o /dev/null
// (run by .ci/simt_selftest.sh when nvcc is available). Nothing here is executed.
#include "simt/simt.h"
#include "template_kernels.cuh"
#include "correct_kernels.cuh"
#include "broken_kernels.cuh"
#include "api_coverage.cuh"

static_assert(SIMT_EMULATED == 0, "nvcc must take the CUDA branch of simt.h");

namespace selftest {

// Every kernel launched once through simt::launch, so both of nvcc's passes see it.
void launch_everything(float* f, int* i, unsigned* u, unsigned long long* ull, long long* ll,
                       unsigned short* us, AtomicCounters* counters, ApiBuffers* api, cudaStream_t s) {
  simt::set_max_dynamic_smem(dynsmem_kernel, 64 * 1024);
  simt::launch(block_sum_kernel<256>, dim3(64), dim3(256), 0, s, f, 100ll, f, f);
  simt::launch(block_sum_kernel<256, false>, dim3(64), dim3(256), 0, s, f, 100ll, f, f);
  simt::launch(softmax_stats_kernel<128>, dim3(16), dim3(128), 48, s, f, 1000, f, f, i);
  simt::launch(matmul_kernel<true>, dim3(4, 4), dim3(16, 16), 0, s, f, f, f, 64, 64, 64);
  simt::launch(matmul_kernel<false>, dim3(4, 4), dim3(16, 16), 0, s, f, f, f, 64, 64, 64);
  simt::launch(shuffle_kernel, dim3(1), dim3(kShflThreads), 0, s, ull);
  simt::launch(vote_kernel, dim3(1), dim3(kVoteThreads), 0, s, u);
  simt::launch(dynsmem_kernel, dim3(2), dim3(256), 64 * 1024, s, 16384, i, i);
  simt::launch(half_kernel, dim3(1), dim3(32), 0, s, f, 32, us, us, f, f);
  simt::launch(atomics_kernel, dim3(4), dim3(96), 0, s, counters);
  simt::launch(intrinsics_kernel, dim3(1), dim3(32), 0, s, f, ll);
  simt::launch(indexing_kernel, dim3(3, 2, 2), dim3(8, 3, 2), 0, s, u, i);
  simt::launch(early_exit_kernel, dim3(2), dim3(64), 0, s, i);
  simt::launch(barrier_bench_kernel, dim3(4096), dim3(256), 0, s, i);
  simt::launch(bad_divergent_barrier, dim3(2), dim3(64), 0, s, f);
  simt::launch(bad_divergent_same_line, dim3(2), dim3(64), 0, s, f);
  simt::launch(bad_barrier_after_exit, dim3(2), dim3(64), 0, s, f);
  simt::launch(bad_mask_partial_warp, dim3(2), dim3(48), 0, s, f);
  simt::launch(bad_mask_caller, dim3(2), dim3(32), 0, s, f);
  simt::launch(bad_mask_read_outside, dim3(2), dim3(32), 0, s, f);
  simt::launch(bad_mask_mismatch, dim3(2), dim3(32), 0, s, f);
  simt::launch(bad_deadlock, dim3(2), dim3(32), 0, s, f);
  simt::launch(bad_dyn_smem_overrun, dim3(1), dim3(256), 1024, s, f);
  simt::launch(bad_static_smem_overrun<64>, dim3(1), dim3(64), 0, s, f);
  simt::launch(bad_global_oob_read, dim3(1), dim3(128), 0, s, f, 1000, f);
  simt::launch(bad_uninitialised_smem, dim3(1), dim3(64), 0, s, f);
  simt::launch(bad_smem_race, dim3(2), dim3(32), 0, s, i);
  simt::launch(bad_big_dyn_smem, dim3(1), dim3(64), 64 * 1024, s, f);
  simt::launch(api_coverage_kernel, dim3(1), dim3(32), 0, s, api);
  simt::check_launch("nvcc_check");
}

}  // namespace selftest
