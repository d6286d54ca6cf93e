// Shared by the self-test translation units (host side only; kernels live in the .cuh files).
#pragma once

#include "simt/simt.h"

#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

namespace selftest {

// What a case proves when it passes (correct cases) or which mechanism must catch it (broken).
enum class Kind { Correct, Broken };

struct Outcome {
  bool ok = false;
  std::string detail;  // why it failed, or what caught the defect
  uint64_t hash = 0;   // FNV-1a of every output buffer: must not depend on the resume order
};

struct Case {
  const char* name;
  Kind kind;
  // Broken cases: the mechanism expected to catch it:
  //   "KernelError:<substring>"  the launch throws simt::KernelError whose message contains it
  //   "order-matrix"             outputs differ across resume orders or from the reference
  //   "poison"                   outputs contain the 0xFF poison (NaN) of fresh shared memory
  //   "asan:<regex>"             only an ASan(+UBSan) build catches it: the process aborts with a
  //                              report matching the extended regex
  //   "tsan"                     only a TSan build catches it (ThreadSanitizer data race report)
  // Correct cases: a short description.
  const char* expect;
  std::function<Outcome()> run;
};

std::vector<Case> correct_cases();  // correct_cases.cpp
std::vector<Case> broken_cases();   // broken_cases.cpp
int bench();                        // correct_cases.cpp: times a 4096 x 256-thread launch

struct Hasher {
  uint64_t h = 1469598103934665603ull;
  void bytes(const void* p, size_t n) {
    const unsigned char* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  }
  template <class T>
  void add(const std::vector<T>& v) {
    bytes(v.data(), v.size() * sizeof(T));
  }
};

// Collects mismatches; the first few are kept for the report.
struct Checker {
  int failures = 0;
  std::string first;
  void fail(const std::string& what) {
    if (failures++ < 3) first += (first.empty() ? "" : "; ") + what;
  }
  template <class A, class B>
  void eq(const A& got, const B& want, const std::string& what) {
    if (!(got == want)) fail(what + ": got " + std::to_string(got) + ", want " + std::to_string(want));
  }
  Outcome outcome(const Hasher& h) const {
    Outcome o;
    o.ok = failures == 0;
    o.detail = failures ? std::to_string(failures) + " mismatches: " + first : "";
    o.hash = h.h;
    return o;
  }
};

template <class K, class... A>
void run(K kernel, dim3 grid, dim3 block, size_t smem, A&&... args) {
  simt::launch(kernel, grid, block, smem, static_cast<cudaStream_t>(nullptr), std::forward<A>(args)...);
  simt::check_launch("selftest");
}

// Runs `fn` under every resume order (forward, reverse, random 1..3) in this process.
struct OrderRun {
  std::string label;
  Outcome outcome;
};
std::vector<OrderRun> run_all_orders(const std::function<Outcome()>& fn);  // main.cpp

}  // namespace selftest
