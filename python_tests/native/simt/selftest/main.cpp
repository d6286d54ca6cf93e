// Self-test driver of the SIMT emulator (csrc/simt/simt.h).
//
// Build (plain; add -fsanitize=... for the sanitizer legs, see .ci/simt_selftest.sh):
//   g++ -std=c++20 -O2 -pthread -I csrc -I $CUDA_HOME/include
//       python_tests/native/simt/selftest/main.cpp python_tests/native/simt/selftest/correct_cases.cpp
//       python_tests/native/simt/selftest/broken_cases.cpp -o selftest
//
// Usage:
//   selftest list                     one line per case: name, correct|broken, expectation
//   selftest <case> [ORDER [SEED]]    run one case; ORDER = forward | reverse | random
//   selftest all [ORDER [SEED]]       every correct case
//   selftest matrix [CASE...]         correct cases under forward, reverse, random 1..3: each must
//                                     pass and produce bitwise-identical outputs
//   selftest bench                    time a 4096 x 256-thread launch with 3 barriers per block
// Without ORDER the environment decides (SIMT_ORDER, SIMT_SEED).
//
// Output: "PASS|FAIL <case> [<order>] hash=<hex> ..." for correct cases; "CAUGHT|MISSED <case>
// by <mechanism>: ..." for broken ones; "NEEDS <case> ..." (exit 2) for a defect that only a
// sanitizer build catches. Exit status: 0 all good, 1 a failure, 2 needs a sanitizer build.
#include "selftest.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace selftest {

namespace {

struct OrderSpec {
  const char* label;
  simt::Order order;
  uint64_t seed;
};

const OrderSpec kOrders[] = {{"forward", simt::Order::Forward, 0},
                             {"reverse", simt::Order::Reverse, 0},
                             {"random1", simt::Order::Random, 1},
                             {"random2", simt::Order::Random, 2},
                             {"random3", simt::Order::Random, 3}};

double now_ms() {
  using namespace std::chrono;
  return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

// Runs a case, turning an escaped exception into a failed outcome.
Outcome guarded(const Case& c) {
  try {
    return c.run();
  } catch (const std::exception& e) {
    Outcome o;
    o.detail = std::string("unexpected exception: ") + e.what();
    return o;
  }
}

std::string order_label() {
  const simt::Config cfg = simt::current_config();
  std::string s = simt::to_string(cfg.order);
  if (cfg.order == simt::Order::Random) s += std::to_string(cfg.seed);
  return s;
}

const Case* find_case(const std::vector<Case>& all, const std::string& name) {
  for (const Case& c : all)
    if (name == c.name) return &c;
  return nullptr;
}

int run_correct(const Case& c) {
  const double t0 = now_ms();
  const Outcome o = guarded(c);
  std::printf("%s %s %s hash=%016llx (%.1f ms)%s%s\n", o.ok ? "PASS" : "FAIL", c.name, order_label().c_str(),
              static_cast<unsigned long long>(o.hash), now_ms() - t0, o.ok ? "" : ": ", o.detail.c_str());
  return o.ok ? 0 : 1;
}

int run_broken(const Case& c) {
  const Outcome o = guarded(c);
  const std::string expect = c.expect;
  const bool sanitizer = expect.rfind("asan", 0) == 0 || expect == "tsan";
  if (sanitizer && !o.ok && o.detail.rfind("needs", 0) == 0) {
    std::printf("NEEDS %s: %s (%s)\n", c.name, o.detail.c_str(), c.expect);
    return 2;
  }
  std::printf("%s %s by %s: %s\n", o.ok ? "CAUGHT" : "MISSED", c.name, c.expect, o.detail.c_str());
  return o.ok ? 0 : 1;
}

int run_matrix(const Case& c) {
  const std::vector<OrderRun> runs = run_all_orders([&] { return guarded(c); });
  bool ok = true;
  std::string detail;
  for (const OrderRun& r : runs) {
    ok = ok && r.outcome.ok && r.outcome.hash == runs[0].outcome.hash;
    char buf[64];
    std::snprintf(buf, sizeof buf, " %s=%s:%016llx", r.label.c_str(), r.outcome.ok ? "ok" : "FAIL",
                  static_cast<unsigned long long>(r.outcome.hash));
    detail += buf;
    if (!r.outcome.ok) detail += " (" + r.outcome.detail + ")";
  }
  std::printf("%s %s matrix%s%s\n", ok ? "PASS" : "FAIL", c.name,
              ok ? " bitwise identical:" : ":", detail.c_str());
  return ok ? 0 : 1;
}

int usage() {
  std::fprintf(stderr,
               "usage: selftest list | all [ORDER [SEED]] | matrix [CASE...] | bench | CASE [ORDER [SEED]]\n"
               "       ORDER = forward | reverse | random\n");
  return 64;
}

bool set_order(int argc, char** argv, int at) {
  if (argc <= at) return true;
  const std::string o = argv[at];
  if (o == "forward") simt::options().order = simt::Order::Forward;
  else if (o == "reverse") simt::options().order = simt::Order::Reverse;
  else if (o == "random") simt::options().order = simt::Order::Random;
  else return false;
  simt::options().seed = argc > at + 1 ? std::strtoull(argv[at + 1], nullptr, 0) : 0;
  return true;
}

}  // namespace

std::vector<OrderRun> run_all_orders(const std::function<Outcome()>& fn) {
  const simt::Options saved = simt::options();
  std::vector<OrderRun> runs;
  for (const OrderSpec& s : kOrders) {
    simt::options().order = s.order;
    simt::options().seed = s.seed;
    runs.push_back({s.label, fn()});
  }
  simt::options() = saved;
  return runs;
}

}  // namespace selftest

int main(int argc, char** argv) {
  using namespace selftest;
  if (argc < 2) return usage();
  const std::string cmd = argv[1];
  const std::vector<Case> correct = correct_cases(), broken = broken_cases();
  if (cmd == "list") {
    for (const Case& c : correct) std::printf("%s\tcorrect\t%s\n", c.name, c.expect);
    for (const Case& c : broken) std::printf("%s\tbroken\t%s\n", c.name, c.expect);
    return 0;
  }
  if (cmd == "bench") return bench();
  if (cmd == "matrix") {
    int rc = 0;
    for (const Case& c : correct) {
      bool wanted = argc == 2;
      for (int i = 2; i < argc; ++i) wanted |= c.name == std::string(argv[i]);
      if (wanted) rc |= run_matrix(c);
    }
    for (int i = 2; i < argc; ++i)
      if (!find_case(correct, argv[i])) return std::fprintf(stderr, "no correct case '%s'\n", argv[i]), 64;
    return rc;
  }
  if (!set_order(argc, argv, 2)) return usage();
  if (cmd == "all") {
    int rc = 0;
    for (const Case& c : correct) rc |= run_correct(c);
    return rc;
  }
  if (const Case* c = find_case(correct, cmd)) return run_correct(*c);
  if (const Case* c = find_case(broken, cmd)) return run_broken(*c);
  std::fprintf(stderr, "unknown case '%s' (see: selftest list)\n", cmd.c_str());
  return 64;
}
