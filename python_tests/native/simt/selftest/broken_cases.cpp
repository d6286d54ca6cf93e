// Broken kernels: each case reports whether the expected mechanism caught the defect.
#include "selftest.h"
#include "broken_kernels.cuh"
#include "template_kernels.cuh"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace selftest {
namespace {

// The launch must throw a KernelError whose message contains `needle` (or one of its
// '|'-separated alternatives).
Outcome expect_kernel_error(const std::function<void()>& launch, const std::string& needle) {
  Outcome o;
  try {
    launch();
    o.detail = "the launch completed without an error";
  } catch (const simt::KernelError& e) {
    const std::string msg = e.what();
    for (size_t at = 0; at <= needle.size();) {
      const size_t bar = std::min(needle.find('|', at), needle.size());
      o.ok = o.ok || msg.find(needle.substr(at, bar - at)) != std::string::npos;
      at = bar + 1;
    }
    o.detail = (o.ok ? "" : "message lacks '" + needle + "': ") + msg;
  }
  return o;
}

std::function<Outcome()> kernel_error_case(void (*kernel)(float*), dim3 block, size_t smem, std::string needle) {
  return [=] {
    return expect_kernel_error(
        [&] {
          std::vector<float> out(4096, 0.f);
          run(kernel, dim3(2), block, smem, out.data());
        },
        needle);
  };
}

// Order matrix: the outputs of every resume order must equal the correct kernel's, bit for bit.
Outcome order_matrix(const std::function<std::vector<float>()>& broken,
                     const std::function<std::vector<float>()>& reference) {
  const std::vector<float> want = reference();
  std::vector<OrderRun> runs = run_all_orders([&] {
    const std::vector<float> got = broken();
    Outcome o;
    o.ok = got.size() == want.size() && std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) == 0;
    Hasher h;
    h.add(got);
    o.hash = h.h;
    return o;
  });
  Outcome o;
  std::string wrong;
  for (const OrderRun& r : runs)
    if (!r.outcome.ok) wrong += (wrong.empty() ? "" : ", ") + r.label;
  o.ok = !wrong.empty();
  o.detail = o.ok ? "wrong result under " + wrong + " (of forward, reverse, random 1-3)"
                  : "every order matched the reference";
  return o;
}

std::vector<float> run_block_sum(bool with_barrier) {
  const long long n = 50000;
  std::vector<float> x(n);
  for (long long i = 0; i < n; ++i) x[i] = float(i % 97) * 0.25f;
  std::vector<float> partial(9, 0.f);  // 8 blocks + total
  if (with_barrier)
    run(block_sum_kernel<256, true>, dim3(8), dim3(256), 0, x.data(), n, partial.data(), &partial[8]);
  else
    run(block_sum_kernel<256, false>, dim3(8), dim3(256), 0, x.data(), n, partial.data(), &partial[8]);
  return partial;
}

std::vector<float> run_matmul(bool trailing_barrier) {
  const int M = 48, N = 40, K = 64;
  std::vector<float> A(M * K), B(K * N), C(M * N, 0.f);
  for (int i = 0; i < M * K; ++i) A[i] = float(i % 13) - 6.f;
  for (int i = 0; i < K * N; ++i) B[i] = float(i % 7) - 3.f;
  const dim3 grid((N + 15) / 16, (M + 15) / 16), block(16, 16);
  if (trailing_barrier)
    run(matmul_kernel<true>, grid, block, 0, A.data(), B.data(), C.data(), M, N, K);
  else
    run(matmul_kernel<false>, grid, block, 0, A.data(), B.data(), C.data(), M, N, K);
  return C;
}

// Sanitizer-only defects: without that sanitizer the driver reports "needs ..." (exit code 2).
Outcome sanitizer_case(bool have, const char* which, const std::function<void()>& launch) {
  Outcome o;
  if (!have) {
    o.detail = std::string("needs a ") + which + " build";
    return o;
  }
  launch();
  o.ok = true;  // the sanitizer's report (and exit status) decides
  o.detail = std::string("ran; expect a ") + which + " report";
  return o;
}

}  // namespace

std::vector<Case> broken_cases() {
  const bool asan = SIMT_ASAN, tsan = SIMT_TSAN;
  const char* overrun_expect = asan ? "asan:heap-buffer-overflow" : "KernelError:wrote past the end";
  // SIMT_SHARED is a real array type, so UBSan's bounds check (when built with it) fires first.
  const char* array_overrun_expect =
      asan ? "asan:heap-buffer-overflow|index [0-9]+ out of bounds" : "KernelError:wrote past the end";
  return {
      {"missing_barrier_sum", Kind::Broken, "order-matrix",
       [] { return order_matrix([] { return run_block_sum(false); }, [] { return run_block_sum(true); }); }},
      {"missing_barrier_matmul", Kind::Broken, "order-matrix",
       [] { return order_matrix([] { return run_matmul(false); }, [] { return run_matmul(true); }); }},
      {"divergent_barrier", Kind::Broken, "KernelError:divergent barrier",
       kernel_error_case(bad_divergent_barrier, dim3(64), 0, "divergent barrier")},
      {"divergent_barrier_same_line", Kind::Broken, "KernelError:divergent barrier",
       kernel_error_case(bad_divergent_same_line, dim3(64), 0, "divergent barrier")},
      {"barrier_after_exit", Kind::Broken, "KernelError:returned from the kernel",
       kernel_error_case(bad_barrier_after_exit, dim3(64), 0, "returned from the kernel")},
      {"mask_partial_warp", Kind::Broken, "KernelError:do not exist",
       kernel_error_case(bad_mask_partial_warp, dim3(48), 0, "do not exist")},
      {"mask_caller_not_in_mask", Kind::Broken, "KernelError:is not in the mask",
       kernel_error_case(bad_mask_caller, dim3(32), 0, "is not in the mask")},
      {"mask_read_outside", Kind::Broken, "KernelError:which is not in mask",
       kernel_error_case(bad_mask_read_outside, dim3(32), 0, "which is not in mask")},
      // Which check fires depends on the order: lanes meeting at one call site with overlapping
      // masks, or the 0x0000ffff lanes leaving while the others wait for them.
      {"mask_mismatch", Kind::Broken, "KernelError:disagree about the mask|wait for it in",
       kernel_error_case(bad_mask_mismatch, dim3(32), 0, "disagree about the mask|wait for it in")},
      {"deadlock", Kind::Broken, "KernelError:deadlock", kernel_error_case(bad_deadlock, dim3(32), 0, "deadlock")},
      {"dyn_smem_64k_no_optin", Kind::Broken, "KernelError:set_max_dynamic_smem",
       kernel_error_case(bad_big_dyn_smem, dim3(64), 64 * 1024, "set_max_dynamic_smem")},
      {"too_many_threads", Kind::Broken, "KernelError:exceeds the limit of 1024",
       kernel_error_case(bad_big_dyn_smem, dim3(32, 33), 0, "exceeds the limit of 1024")},
      {"dyn_smem_overrun", Kind::Broken, overrun_expect,
       [] {
         return expect_kernel_error([] {
           std::vector<float> out(256);
           run(bad_dyn_smem_overrun, dim3(1), dim3(256), 256 * sizeof(float), out.data());
         }, "wrote past the end of the dynamic shared memory");
       }},
      {"static_smem_overrun", Kind::Broken, array_overrun_expect,
       [] {
         return expect_kernel_error([] {
           std::vector<float> out(64);
           run(bad_static_smem_overrun<64>, dim3(1), dim3(64), 0, out.data());
         }, "wrote past the end of SIMT_SHARED array 'tile'");
       }},
      {"uninitialised_smem", Kind::Broken, "poison",
       [] {
         std::vector<float> out(64, 0.f);
         run(bad_uninitialised_smem, dim3(1), dim3(64), 0, out.data());
         int nans = 0;
         for (float v : out) nans += std::isnan(v);
         Outcome o;
         o.ok = nans == 32;
         o.detail = std::to_string(nans) + " of 64 outputs are the 0xFF poison (NaN)";
         return o;
       }},
      {"global_oob_read", Kind::Broken, "asan:heap-buffer-overflow",
       [asan] {
         return sanitizer_case(asan, "ASan", [] {
           std::vector<float> x(1000, 1.f), out(128);
           run(bad_global_oob_read, dim3(1), dim3(128), 0, x.data(), 1000, out.data());
         });
       }},
      {"smem_race", Kind::Broken, "tsan",
       [tsan] {
         return sanitizer_case(tsan, "TSan", [] {
           std::vector<int> out(2);
           run(bad_smem_race, dim3(2), dim3(32), 0, out.data());
         });
       }},
  };
}

}  // namespace selftest
