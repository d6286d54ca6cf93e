// Part of simt/simt.h (emulator): configuration, per-launch state, the fiber scheduler.
//
// Execution model: simt::launch runs the grid one block at a time on the calling thread. Each CUDA
// thread of the block is a fiber; every sync point (barrier, warp collective) switches back to the
// scheduler, which resumes the runnable fibers in the configured order and repeats. A pass that
// resumes nothing while fibers are still blocked is a deadlock.
#pragma once

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <optional>
#include <source_location>
#include <string>
#include <vector>

#include "simt/detail/common.h"
#include "simt/detail/emu_context.h"
#include "simt/detail/emu_sanitizers.h"

// The emulator's runtime functions are large; inlining them into every sync point of every kernel
// would only slow down compilation (a sync point costs a context switch anyway).
#ifndef SIMT_NOINLINE
#define SIMT_NOINLINE __attribute__((noinline))
#endif

namespace simt {

enum class Order { Forward, Reverse, Random };

inline const char* to_string(Order o) {
  return o == Order::Forward ? "forward" : o == Order::Reverse ? "reverse" : "random";
}

// Programmatic overrides; a field left empty falls back to the environment variable, which is
// read again at every launch (so pytest can parametrise with monkeypatch.setenv).
struct Options {
  std::optional<Order> order;          // SIMT_ORDER   = forward | reverse | random
  std::optional<uint64_t> seed;        // SIMT_SEED    = integer
  std::optional<bool> strict;          // SIMT_STRICT  = 1 | 0
  std::optional<size_t> stack_bytes;   // SIMT_STACK_KB = integer (KiB)
};

inline Options& options() {
  static Options o;
  return o;
}

// What a launch uses.
struct Config {
  Order order = Order::Forward;
  uint64_t seed = 0;
  bool strict = true;
  size_t stack_bytes = 0;
};

namespace detail {

inline std::string env_string(const char* name) {
  const char* v = std::getenv(name);
  std::string s = v ? v : "";
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

[[noreturn]] inline void bad_env(const char* name, const std::string& value, const char* expected) {
  throw std::invalid_argument(std::string("simt: ") + name + "='" + value + "': expected " + expected);
}

inline uint64_t env_uint(const char* name, uint64_t fallback) {
  const std::string s = env_string(name);
  if (s.empty()) return fallback;
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(s.c_str(), &end, 0);
  if (errno || *end || s[0] == '-') bad_env(name, s, "a non-negative integer");
  return v;
}

}  // namespace detail

SIMT_NOINLINE inline Config current_config() {
  using detail::env_string;
  const Options& o = options();
  Config c;
  if (o.order) {
    c.order = *o.order;
  } else {
    const std::string s = env_string("SIMT_ORDER");
    if (s.empty() || s == "forward" || s == "fwd") c.order = Order::Forward;
    else if (s == "reverse" || s == "rev") c.order = Order::Reverse;
    else if (s == "random" || s == "rand") c.order = Order::Random;
    else detail::bad_env("SIMT_ORDER", s, "forward, reverse or random");
  }
  c.seed = o.seed ? *o.seed : detail::env_uint("SIMT_SEED", 0);
  if (o.strict) {
    c.strict = *o.strict;
  } else {
    const std::string s = env_string("SIMT_STRICT");
    if (s.empty() || s == "1" || s == "true" || s == "yes" || s == "on") c.strict = true;
    else if (s == "0" || s == "false" || s == "no" || s == "off") c.strict = false;
    else detail::bad_env("SIMT_STRICT", s, "1 or 0");
  }
  // Sanitizer frames are several times larger (redzones).
  const size_t default_kb = SIMT_ASAN ? 1024 : 256;
  c.stack_bytes = o.stack_bytes ? *o.stack_bytes : detail::env_uint("SIMT_STACK_KB", default_kb) * 1024;
  if (c.stack_bytes < 16 * 1024) c.stack_bytes = 16 * 1024;
  return c;
}

namespace detail {

// Thrown inside a fiber to unwind it (running destructors) when its block is aborted.
// Deliberately not a std::exception, so kernel code cannot catch it by accident.
struct Cancelled {};

// A call site. The column tells apart two barriers on one line (`if (c) __syncthreads(); else ...`).
struct Site {
  const char* file = "?";
  unsigned line = 0;
  unsigned column = 0;
};

inline Site site_of(const std::source_location& l) { return Site{l.file_name(), l.line(), l.column()}; }

inline bool same_site(const Site& a, const Site& b) {
  return a.line == b.line && a.column == b.column && (a.file == b.file || std::strcmp(a.file, b.file) == 0);
}

inline std::string site_str(const Site& s) {
  return std::string(s.file) + ":" + std::to_string(s.line) + (s.column ? ":" + std::to_string(s.column) : "");
}

inline std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%08llx", static_cast<unsigned long long>(v));
  return buf;
}

enum class State : uint8_t { Ready, Blocked, Done };
enum class Wait : uint8_t { None, Barrier, Warp };
enum class BarrierOp : uint8_t { Sync, Count, And, Or };
enum class WarpOp : uint8_t {
  Shfl, ShflUp, ShflDown, ShflXor, Ballot, Any, All, SyncWarp, AllGather,
  ReduceAdd, ReduceMin, ReduceMax, ReduceAnd, ReduceOr, ReduceXor, MatchAny, MatchAll,
};

inline const char* op_name(BarrierOp op) {
  switch (op) {
    case BarrierOp::Sync: return "__syncthreads";
    case BarrierOp::Count: return "__syncthreads_count";
    case BarrierOp::And: return "__syncthreads_and";
    case BarrierOp::Or: return "__syncthreads_or";
  }
  return "?";
}

inline const char* op_name(WarpOp op) {
  static const char* const names[] = {
      "__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync", "__ballot_sync",
      "__any_sync", "__all_sync", "__syncwarp", "simt::warp_allgather", "__reduce_add_sync",
      "__reduce_min_sync", "__reduce_max_sync", "__reduce_and_sync", "__reduce_or_sync",
      "__reduce_xor_sync", "__match_any_sync", "__match_all_sync"};
  return names[static_cast<int>(op)];
}

struct Launch;

struct Fiber {
  // Scheduling state, shared with the scheduler and the other fibers (bookkeeping).
  State state = State::Done;
  Wait wait = Wait::None;
  bool started = false;       // has begun the current block
  bool ever_started = false;  // has run at all in this launch (needs the terminate protocol)
  Site site;                  // where it waits
  unsigned wait_mask = 0;     // the mask it waits with (warp collectives)
  WarpOp wait_op = WarpOp::Shfl;
  uint64_t result = 0;        // warp-collective result, stored by the lane that completes it
  // Identity.
  unsigned linear = 0, lane = 0, warp = 0;
  uint3 tid{};
  // Machine state.
  Context ctx{};
  Stack* stack = nullptr;
  void* tsan = nullptr;
  void* asan_fake = nullptr;
  Launch* launch = nullptr;
};

// A warp collective in progress among the lanes of `mask`. The lane that arrives last computes
// every lane's result into its Fiber, so one synchronisation per operation suffices.
struct WarpGroup {
  unsigned mask = 0, arrived = 0;  // arrived == 0: the slot is free
  WarpOp op = WarpOp::Shfl;
  int width = 0;
  Site site;
  unsigned first_lane = 0;
  unsigned gen = 0;
  uint64_t value[32];
  int arg[32];
  uint64_t* out[32];
  char tsan_sync[2];  // alternate by generation: a fast lane's next release must not leak into
                      // a slow lane's acquire of this one
};

struct Warp {
  unsigned exists = 0, exited = 0;
  std::vector<std::unique_ptr<WarpGroup>> groups;  // pointers: TSan sync addresses stay put
};

struct Barrier {
  unsigned arrived = 0;
  BarrierOp op = BarrierOp::Sync;
  Site site;
  unsigned first = 0;  // linear index of the first thread that arrived
  int acc = 0;         // true predicates so far
  int result = 0;
  uint64_t gen = 0;
  char tsan_sync[2];
};

struct SharedAlloc {
  unsigned char* p;
  size_t bytes;
  size_t align;
  const char* name;
  Site site;
};

// Bytes after each shared-memory allocation that must still hold kCanaryByte at the end of the
// block. Under ASan allocations are exact instead and ASan names the faulting access.
constexpr size_t kCanaryBytes = SIMT_ASAN ? 0 : 64;
constexpr unsigned char kCanaryByte = 0xA5;
constexpr unsigned char kPoisonByte = 0xFF;  // NaN for f32/f16/bf16, -1 for integers
constexpr size_t kDefaultDynSmem = 48 * 1024;
constexpr size_t kMaxDynSmem = 227 * 1024;
constexpr size_t kMaxStaticSmem = 48 * 1024;

struct Launch {
  Config cfg;
  dim3 grid, block;
  unsigned nthreads = 0, nwarps = 0;
  void (*thunk)(void*) = nullptr;
  void* thunk_ctx = nullptr;
  // Per-block state.
  uint3 block_idx{};
  std::vector<Fiber> fibers;
  std::vector<unsigned> order;
  std::vector<Warp> warps;
  Barrier barrier;
  unsigned nexited = 0, ndone = 0, first_exited = 0;
  // Shared memory.
  unsigned char* dyn = nullptr;
  size_t dyn_bytes = 0;
  std::vector<SharedAlloc> shared;  // this block's SIMT_SHARED arrays
  size_t shared_bytes = 0;
  uint64_t epoch = 0;               // identifies the current block for SIMT_SHARED slots
  // Errors and shutdown.
  std::exception_ptr error;
  bool cancelling = false, terminating = false;
  // The scheduler's side of the switches.
  Context sched{};
  void* sched_tsan = nullptr;
  void* sched_fake = nullptr;
  const void* sched_stack_lo = nullptr;
  size_t sched_stack_size = 0;
  uint64_t rng = 0;  // splitmix64 state of the random order
  char tsan_block_start = 0, tsan_block_end = 0;
};

inline thread_local Fiber* tl_fiber = nullptr;  // the running fiber; null on the scheduler

inline KernelError::Coord coord(const uint3& v) { return {v.x, v.y, v.z}; }

inline std::string thread_str(const uint3& t) {
  return "thread (" + std::to_string(t.x) + "," + std::to_string(t.y) + "," + std::to_string(t.z) + ")";
}

[[noreturn]] inline void fail_at(const Fiber& f, const Site& s, const std::string& problem) {
  throw KernelError(problem, coord(f.launch->block_idx), coord(f.tid), s.file, s.line);
}

inline Fiber& current_fiber(const char* what) {
  Fiber* f = tl_fiber;
  if (!f) throw std::logic_error(std::string(what) + " called outside a kernel run by simt::launch");
  return *f;
}

// ---------------------------------------------------------------------------------- switches ---

inline void switch_to_scheduler(Fiber& f) {
  Launch& L = *f.launch;
  san::start_switch(&f.asan_fake, L.sched_stack_lo, L.sched_stack_size);
  san::switch_to(L.sched_tsan);
  context_swap(f.ctx, L.sched);
  san::finish_switch(f.asan_fake, &L.sched_stack_lo, &L.sched_stack_size);
}

// Called by a fiber at a sync point, outside any TSan ignore region.
inline void block_on(Fiber& f) {
  switch_to_scheduler(f);
  bool cancel;
  {
    san::Ignore ig;
    cancel = f.launch->cancelling;
  }
  if (cancel) throw Cancelled{};
}

inline void resume(Launch& L, Fiber& f) {
  threadIdx = f.tid;
  tl_fiber = &f;
  san::start_switch(&L.sched_fake, f.stack->lo(), f.stack->size());
  san::switch_to(f.tsan);
  context_swap(L.sched, f.ctx);
  san::finish_switch(L.sched_fake, nullptr, nullptr);
  tl_fiber = nullptr;
}

// ------------------------------------------------------------------------- barrier, exits ------

inline void complete_barrier(Launch& L) {
  Barrier& b = L.barrier;
  switch (b.op) {
    case BarrierOp::Sync: b.result = 0; break;
    case BarrierOp::Count: b.result = b.acc; break;
    case BarrierOp::And: b.result = b.acc == static_cast<int>(b.arrived); break;
    case BarrierOp::Or: b.result = b.acc != 0; break;
  }
  b.arrived = 0;
  b.acc = 0;
  ++b.gen;
  for (Fiber& x : L.fibers)
    if (x.state == State::Blocked && x.wait == Wait::Barrier) x.state = State::Ready, x.wait = Wait::None;
}

// The kernel function returned for this thread.
inline void thread_exit(Fiber& f) {
  san::Ignore ig;
  Launch& L = *f.launch;
  Warp& w = L.warps[f.warp];
  const unsigned bit = 1u << f.lane;
  for (auto& g : w.groups)
    if (g->arrived && (g->mask & bit))
      fail_at(f, g->site,
              "thread returned from the kernel while lanes " + hex(g->arrived) + " of warp " +
                  std::to_string(f.warp) + " wait for it in " + op_name(g->op) + "(mask " +
                  hex(g->mask) + ") at " + site_str(g->site));
  if (L.nexited++ == 0) L.first_exited = f.linear;
  w.exited |= bit;
  if (L.barrier.arrived) {
    if (L.cfg.strict)
      fail_at(f, L.barrier.site,
              "thread returned from the kernel while " + std::to_string(L.barrier.arrived) + " of " +
                  std::to_string(L.nthreads) + " threads wait at " + op_name(L.barrier.op) + " at " +
                  site_str(L.barrier.site) + " (undefined behaviour; SIMT_STRICT=0 counts exited "
                  "threads as arrived)");
    if (L.barrier.arrived + L.nexited == L.nthreads) complete_barrier(L);
  }
}

// ------------------------------------------------------------------------------ fiber body -----

inline void run_thread(Fiber& f) {
  Launch& L = *f.launch;
  {
    san::Ignore ig;
    f.started = f.ever_started = true;
  }
  san::acquire(&L.tsan_block_start);
  try {
    L.thunk(L.thunk_ctx);
    thread_exit(f);
  } catch (const Cancelled&) {
  } catch (...) {
    san::Ignore ig;
    if (!L.error) L.error = std::current_exception();
  }
  san::release(&L.tsan_block_end);
  san::Ignore ig;
  f.state = State::Done;
  f.wait = Wait::None;
  ++L.ndone;
}

// Each fiber loops over the blocks of its launch, parking at the end of each one. At the end of
// the launch it is resumed once more to leave the loop (the terminate protocol: it never sits in a
// TSan ignore region or holds an ASan fake stack when it is dropped).
[[noreturn]] inline void fiber_entry() {
  Fiber* f;
  {
    san::Ignore ig;
    f = tl_fiber;
  }
  san::finish_switch(nullptr, &f->launch->sched_stack_lo, &f->launch->sched_stack_size);
  for (;;) {
    bool terminating;
    {
      san::Ignore ig;
      terminating = f->launch->terminating;
    }
    if (terminating) break;
    run_thread(*f);
    switch_to_scheduler(*f);
  }
  Launch& L = *f->launch;
  san::start_switch(nullptr, L.sched_stack_lo, L.sched_stack_size);
  san::switch_to(L.sched_tsan);
  context_swap(f->ctx, L.sched);
  __builtin_unreachable();
}

// For sanitizer aborts: their report names the kernel's line but not the CUDA thread.
inline void report_running_thread() {
  if (const Fiber* f = tl_fiber)
    std::fprintf(stderr, "simt: the report above was raised in block (%u,%u,%u), thread (%u,%u,%u)\n",
                 f->launch->block_idx.x, f->launch->block_idx.y, f->launch->block_idx.z, f->tid.x,
                 f->tid.y, f->tid.z);
}

// -------------------------------------------------------------------------------- scheduler ----

// "threads 0-15 wait in __shfl_sync(mask 0x0000ffff) at k.cuh:12", one line per run of threads.
SIMT_NOINLINE inline std::string deadlock_report(const Launch& L) {
  auto describe = [&](const Fiber& f) -> std::string {
    if (f.state == State::Done) return "";
    if (f.state == State::Ready) return "are runnable";
    if (f.wait == Wait::Barrier) return std::string("wait in ") + op_name(L.barrier.op) + " at " + site_str(f.site);
    return std::string("wait in ") + op_name(f.wait_op) + "(mask " + hex(f.wait_mask) + ") at " + site_str(f.site);
  };
  std::string out;
  unsigned i = 0;
  while (i < L.nthreads) {
    const std::string d = describe(L.fibers[i]);
    unsigned j = i + 1;
    while (j < L.nthreads && describe(L.fibers[j]) == d) ++j;
    if (!d.empty()) {
      out += "\n      threads " + std::to_string(i) + (j - i > 1 ? "-" + std::to_string(j - 1) : "") +
             " (linear index) " + d;
    }
    i = j;
  }
  if (L.nexited) out += "\n      " + std::to_string(L.nexited) + " threads have exited";
  return out;
}

SIMT_NOINLINE inline void abort_block(Launch& L) {
  L.cancelling = true;
  for (Fiber& f : L.fibers)
    if (f.started && f.state != State::Done) resume(L, f);  // unwinds it with Cancelled
  for (Fiber& f : L.fibers) f.state = State::Done;
  L.cancelling = false;
}

// Fisher-Yates with splitmix64: deterministic for a seed, independent of the standard library.
inline void shuffle_order(Launch& L) {
  for (size_t i = L.order.size(); i > 1; --i) {
    uint64_t z = (L.rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    std::swap(L.order[i - 1], L.order[z % i]);
  }
}

// Frees the block's SIMT_SHARED arrays; a damaged canary means some thread wrote past an array.
SIMT_NOINLINE inline void end_block_smem(Launch& L) {
  auto intact = [](const unsigned char* p) {
    for (size_t i = 0; i < kCanaryBytes; ++i)
      if (p[i] != kCanaryByte) return false;
    return true;
  };
  const char* hint = " (found at the end of the block; build with -fsanitize=address to locate the access)";
  std::string problem;
  Site site{nullptr, 0};
  if (!intact(L.dyn + L.dyn_bytes))
    problem = "a thread wrote past the end of the dynamic shared memory (" + std::to_string(L.dyn_bytes) +
              " bytes requested at launch)" + hint;
  for (const SharedAlloc& a : L.shared) {
    if (problem.empty() && !intact(a.p + a.bytes)) {
      problem = std::string("a thread wrote past the end of SIMT_SHARED array '") + a.name + "' (" +
                std::to_string(a.bytes) + " bytes)" + hint;
      site = a.site;
    }
    ::operator delete(a.p, std::align_val_t(a.align));
  }
  L.shared.clear();
  L.shared_bytes = 0;
  if (!problem.empty() && !L.error)
    L.error = std::make_exception_ptr(KernelError(problem, coord(L.block_idx), site.file, site.line));
}

inline void run_block(Launch& L, uint3 bidx) {
  L.block_idx = bidx;
  blockIdx = bidx;
  static uint64_t epoch = 0;  // process-wide, so SIMT_SHARED slots never match a finished block
  L.epoch = ++epoch;
  L.nexited = L.ndone = 0;
  L.barrier.arrived = 0;
  L.barrier.acc = 0;
  for (Fiber& f : L.fibers) {
    f.state = State::Ready;
    f.wait = Wait::None;
    f.started = false;
    if (SIMT_TSAN) {
      const std::string name = "simt block (" + std::to_string(bidx.x) + "," + std::to_string(bidx.y) + "," +
                               std::to_string(bidx.z) + ") " + thread_str(f.tid);
      san::name_fiber(f.tsan, name.c_str());
    }
  }
  for (Warp& w : L.warps) {
    w.exited = 0;
    for (auto& g : w.groups) g->arrived = 0;
  }
  std::memset(L.dyn, kPoisonByte, L.dyn_bytes);
  std::memset(L.dyn + L.dyn_bytes, kCanaryByte, kCanaryBytes);
  san::release(&L.tsan_block_start);

  for (;;) {
    if (L.cfg.order == Order::Random) shuffle_order(L);
    bool progress = false;
    for (unsigned i : L.order) {
      Fiber& f = L.fibers[i];
      if (f.state != State::Ready) continue;
      resume(L, f);
      progress = true;
      if (L.error) break;
    }
    if (L.error || L.ndone == L.nthreads) break;
    if (!progress) {
      const Fiber* first = nullptr;
      for (const Fiber& f : L.fibers)
        if (f.state == State::Blocked) {
          first = &f;
          break;
        }
      L.error = std::make_exception_ptr(KernelError(
          "deadlock: no thread of the block can proceed;" + deadlock_report(L), coord(L.block_idx),
          coord(first->tid), first->site.file, first->site.line));
      break;
    }
  }
  if (L.error) abort_block(L);
  san::acquire(&L.tsan_block_end);
  end_block_smem(L);
}

}  // namespace detail
}  // namespace simt
