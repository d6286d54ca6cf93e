// Part of simt/simt.h (emulator): __syncthreads* and the warp collectives.
#pragma once

#include <cstdint>
#include <cstring>
#include <source_location>
#include <string>
#include <type_traits>

#include "simt/detail/emu_runtime.h"

namespace simt::detail {

// ------------------------------------------------------------------------------ __syncthreads --

// Every thread must arrive at the same call site (and variant). In strict mode a barrier after
// some thread of the block has exited is an error: on the GPU it hangs or is undefined.
inline int block_sync(BarrierOp op, int pred, const std::source_location& loc) {
  Fiber* fp;
  uint64_t gen;
  {
    san::Ignore ig;
    Fiber& f = current_fiber(op_name(op));
    Launch& L = *f.launch;
    Barrier& b = L.barrier;
    const Site s = site_of(loc);
    if (L.nexited && L.cfg.strict)
      fail_at(f, s,
              std::string(op_name(op)) + " reached after " + std::to_string(L.nexited) + " of " +
                  std::to_string(L.nthreads) + " threads of the block returned from the kernel (first: " +
                  thread_str(L.fibers[L.first_exited].tid) +
                  "); undefined behaviour on the GPU (SIMT_STRICT=0 counts exited threads as arrived)");
    if (b.arrived == 0) {
      b.op = op;
      b.site = s;
      b.first = f.linear;
    } else if (!same_site(b.site, s) || b.op != op) {
      fail_at(f, s,
              std::string("divergent barrier: this thread reached ") + op_name(op) + " at " + site_str(s) + ", but " +
                  thread_str(L.fibers[b.first].tid) + " (and " + std::to_string(b.arrived - 1) +
                  " more) wait at " + op_name(b.op) + " at " + site_str(b.site));
    }
    b.acc += pred != 0;
    ++b.arrived;
    f.state = State::Blocked;
    f.wait = Wait::Barrier;
    f.site = s;
    gen = b.gen;
    fp = &f;
    const unsigned counted = b.arrived + (L.cfg.strict ? 0 : L.nexited);
    if (counted == L.nthreads) complete_barrier(L);
  }
  Barrier& b = fp->launch->barrier;
  san::release(&b.tsan_sync[gen & 1]);
  block_on(*fp);
  san::acquire(&b.tsan_sync[gen & 1]);
  san::Ignore ig;
  return b.result;
}

// ---------------------------------------------------------------------- warp collectives -------

inline bool is_shuffle(WarpOp op) {
  return op == WarpOp::Shfl || op == WarpOp::ShflUp || op == WarpOp::ShflDown || op == WarpOp::ShflXor;
}

inline std::string lanes_str(unsigned m) { return hex(m); }

// The CUDA/PTX shfl rules: the warp is cut into segments of `width` lanes; idx reads
// srcLane % width inside the segment; up/down return the caller's own value when the source
// leaves the segment; xor may read earlier segments but not later ones. Only 5 bits of the lane
// operand count. Returns the source lane, or -1 for "own value".
inline int shuffle_source(WarpOp op, unsigned lane, int arg, int width) {
  const unsigned w = static_cast<unsigned>(width);
  const unsigned base = lane & ~(w - 1);
  const unsigned last = base + w - 1;
  const unsigned b = static_cast<unsigned>(arg) & 31u;
  switch (op) {
    case WarpOp::Shfl: return static_cast<int>(base | (b & (w - 1)));
    case WarpOp::ShflUp: return (lane & (w - 1)) >= b ? static_cast<int>(lane - b) : -1;
    case WarpOp::ShflDown: return lane + b <= last ? static_cast<int>(lane + b) : -1;
    case WarpOp::ShflXor: return (lane ^ b) <= last ? static_cast<int>(lane ^ b) : -1;
    default: return -1;
  }
}

// Runs in the fiber of the lane that arrived last; errors name the lane they concern.
SIMT_NOINLINE inline void complete_group(Launch& L, unsigned warp, WarpGroup& g) {
  Fiber* lanes = &L.fibers[warp * 32];
  const unsigned mask = g.mask;
  uint32_t ballot = 0;
  uint64_t red = 0;
  bool red_init = false;
  for (unsigned l = 0; l < 32; ++l) {
    if (!(mask >> l & 1)) continue;
    if (g.value[l]) ballot |= 1u << l;
    const uint64_t v = g.value[l];
    const bool sgn = g.arg[l] != 0;
    const auto as_i = [](uint64_t x) { return static_cast<int32_t>(static_cast<uint32_t>(x)); };
    if (!red_init) {
      red = v, red_init = true;
      continue;
    }
    switch (g.op) {
      case WarpOp::ReduceAdd: red = static_cast<uint32_t>(red + v); break;
      case WarpOp::ReduceMin:
        red = sgn ? (as_i(v) < as_i(red) ? v : red) : (static_cast<uint32_t>(v) < static_cast<uint32_t>(red) ? v : red);
        break;
      case WarpOp::ReduceMax:
        red = sgn ? (as_i(v) > as_i(red) ? v : red) : (static_cast<uint32_t>(v) > static_cast<uint32_t>(red) ? v : red);
        break;
      case WarpOp::ReduceAnd: red &= v; break;
      case WarpOp::ReduceOr: red |= v; break;
      case WarpOp::ReduceXor: red ^= v; break;
      default: break;
    }
  }
  bool all_equal = true;
  for (unsigned l = 0; l < 32; ++l)
    if ((mask >> l & 1) && g.value[l] != g.value[g.first_lane]) all_equal = false;

  for (unsigned l = 0; l < 32; ++l) {
    if (!(mask >> l & 1)) continue;
    Fiber& x = lanes[l];
    uint64_t r = 0;
    switch (g.op) {
      case WarpOp::Shfl:
      case WarpOp::ShflUp:
      case WarpOp::ShflDown:
      case WarpOp::ShflXor: {
        const int src = shuffle_source(g.op, l, g.arg[l], g.width);
        if (src >= 0 && !(mask >> src & 1))
          fail_at(x, g.site,
                  std::string(op_name(g.op)) + ": lane " + std::to_string(l) + " reads lane " +
                      std::to_string(src) + ", which is not in mask " + hex(mask) +
                      " (its value is undefined)");
        r = src >= 0 ? g.value[src] : g.value[l];
        break;
      }
      case WarpOp::Ballot: r = ballot; break;
      case WarpOp::Any: r = ballot != 0; break;
      case WarpOp::All: r = ballot == mask; break;
      case WarpOp::ReduceAdd:
      case WarpOp::ReduceMin:
      case WarpOp::ReduceMax:
      case WarpOp::ReduceAnd:
      case WarpOp::ReduceOr:
      case WarpOp::ReduceXor: r = red; break;
      case WarpOp::MatchAny:
        for (unsigned j = 0; j < 32; ++j)
          if ((mask >> j & 1) && g.value[j] == g.value[l]) r |= 1ull << j;
        break;
      case WarpOp::MatchAll: r = all_equal ? (uint64_t{mask} | (1ull << 32)) : 0; break;
      case WarpOp::AllGather:
        for (unsigned j = 0; j < 32; ++j) g.out[l][j] = (mask >> j & 1) ? g.value[j] : ~uint64_t{0};
        break;
      case WarpOp::SyncWarp: break;
    }
    x.result = r;
  }
  for (unsigned l = 0; l < 32; ++l)
    if (mask >> l & 1) lanes[l].state = State::Ready, lanes[l].wait = Wait::None;
  g.arrived = 0;
  ++g.gen;
}

// One lane arrives at a collective. Groups are keyed by mask: lanes with the same mask meet,
// whatever their call site (legal since Volta), but they must call the same intrinsic with the
// same width. Two different masks that overlap at the same call site mean the lanes disagree
// about the mask, which is undefined behaviour.
SIMT_NOINLINE inline uint64_t warp_op(WarpOp op, unsigned mask, uint64_t value, int arg, int width,
                                      uint64_t* out, const std::source_location& loc) {
  Fiber* fp;
  WarpGroup* gp;
  unsigned gen;
  {
    san::Ignore ig;
    Fiber& f = current_fiber(op_name(op));
    Launch& L = *f.launch;
    Warp& w = L.warps[f.warp];
    const Site s = site_of(loc);
    auto call = [&] { return std::string(op_name(op)) + "(mask " + hex(mask) + ")"; };
    const unsigned bit = 1u << f.lane;
    if (!(mask & bit))
      fail_at(f, s, call() + ": the calling lane " + std::to_string(f.lane) + " is not in the mask");
    if (mask & ~w.exists)
      fail_at(f, s,
              call() + " names lanes " + lanes_str(mask & ~w.exists) + " that do not exist (warp " +
                  std::to_string(f.warp) + " of a block of " + std::to_string(L.nthreads) +
                  " threads has lanes " + lanes_str(w.exists) + ")");
    if (mask & w.exited)
      fail_at(f, s, call() + " names lanes " + lanes_str(mask & w.exited) + " that have exited");
    if (is_shuffle(op) && (width < 1 || width > 32 || (width & (width - 1))))
      fail_at(f, s, call() + ": width " + std::to_string(width) + " is not a power of two in 1..32");

    WarpGroup* g = nullptr;
    WarpGroup* free_slot = nullptr;
    for (auto& p : w.groups) {
      if (!p->arrived) {
        if (!free_slot) free_slot = p.get();
      } else if (p->mask == mask) {
        g = p.get();
        break;
      }
    }
    if (!g) {
      for (auto& p : w.groups)
        if (p->arrived && (p->mask & mask) && same_site(p->site, s))
          fail_at(f, s,
                  call() + " overlaps mask " + hex(p->mask) + " of lanes " + lanes_str(p->arrived) +
                      " waiting at the same call site: the lanes disagree about the mask");
      if (!free_slot) {
        w.groups.push_back(std::make_unique<WarpGroup>());
        free_slot = w.groups.back().get();
      }
      g = free_slot;
      g->mask = mask;
      g->op = op;
      g->width = width;
      g->site = s;
      g->first_lane = f.lane;
    } else if (g->op != op || g->width != width) {
      fail_at(f, s,
              "lanes of mask " + hex(mask) + " disagree: lane " + std::to_string(f.lane) + " calls " +
                  op_name(op) + " (width " + std::to_string(width) + ") here, lane " +
                  std::to_string(g->first_lane) + " called " + op_name(g->op) + " (width " +
                  std::to_string(g->width) + ") at " + site_str(g->site));
    }
    g->value[f.lane] = value;
    g->arg[f.lane] = arg;
    g->out[f.lane] = out;
    g->arrived |= bit;
    f.state = State::Blocked;
    f.wait = Wait::Warp;
    f.site = s;
    f.wait_mask = mask;
    f.wait_op = op;
    gen = g->gen;
    fp = &f;
    gp = g;
    if (g->arrived == mask) complete_group(L, f.warp, *g);
  }
  // Only __syncwarp orders memory; shuffles and votes exchange values but imply no ordering.
  const bool orders_memory = op == WarpOp::SyncWarp;
  if (orders_memory) san::release(&gp->tsan_sync[gen & 1]);
  block_on(*fp);
  if (orders_memory) san::acquire(&gp->tsan_sync[gen & 1]);
  san::Ignore ig;
  return fp->result;
}

// By bytes, as the hardware moves registers. (__half2 and __nv_bfloat162 have user-provided
// assignment, so they are not formally trivially copyable, but they are plain 32-bit values.)
template <class T>
inline uint64_t to_bits(const T& v) {
  static_assert(sizeof(T) <= 8 && std::is_standard_layout_v<T>);
  uint64_t u = 0;
  std::memcpy(static_cast<void*>(&u), static_cast<const void*>(&v), sizeof(T));
  return u;
}

template <class T>
inline T from_bits(uint64_t u) {
  T v;
  std::memcpy(static_cast<void*>(&v), static_cast<const void*>(&u), sizeof(T));
  return v;
}

template <class T>
inline T shuffle(WarpOp op, unsigned mask, T var, int arg, int width, const std::source_location& loc) {
  return from_bits<T>(warp_op(op, mask, to_bits(var), arg, width, nullptr, loc));
}

template <class T>
inline unsigned match(WarpOp op, unsigned mask, T value, int* pred, const std::source_location& loc) {
  const uint64_t r = warp_op(op, mask, to_bits(value), 0, static_cast<int>(sizeof(T)), nullptr, loc);
  if (pred) *pred = static_cast<int>(r >> 32);
  return static_cast<unsigned>(r);
}

}  // namespace simt::detail

// ------------------------------------------------------------------------------- public API ----

// Macros, so the barrier knows its call site (every thread must reach the same one): inside a
// macro, source_location::current() is the invocation's file, line and column.
#define __syncthreads()                                                         \
  ((void)::simt::detail::block_sync(::simt::detail::BarrierOp::Sync, 1,         \
                                    std::source_location::current()))
#define __syncthreads_count(pred) \
  ::simt::detail::block_sync(::simt::detail::BarrierOp::Count, (pred), std::source_location::current())
#define __syncthreads_and(pred) \
  ::simt::detail::block_sync(::simt::detail::BarrierOp::And, (pred), std::source_location::current())
#define __syncthreads_or(pred) \
  ::simt::detail::block_sync(::simt::detail::BarrierOp::Or, (pred), std::source_location::current())

#define SIMT_HERE_ std::source_location simt_loc = std::source_location::current()

// Exactly CUDA's overload set, so that overload resolution (and its errors) match nvcc.
#define SIMT_SHFL_OVERLOADS_(T)                                                                     \
  inline T __shfl_sync(unsigned mask, T var, int srcLane, int width = warpSize, SIMT_HERE_) {       \
    return ::simt::detail::shuffle(::simt::detail::WarpOp::Shfl, mask, var, srcLane, width, simt_loc); \
  }                                                                                                 \
  inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize, SIMT_HERE_) { \
    return ::simt::detail::shuffle(::simt::detail::WarpOp::ShflUp, mask, var, static_cast<int>(delta), \
                                   width, simt_loc);                                                \
  }                                                                                                 \
  inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize, SIMT_HERE_) { \
    return ::simt::detail::shuffle(::simt::detail::WarpOp::ShflDown, mask, var,                    \
                                   static_cast<int>(delta), width, simt_loc);                       \
  }                                                                                                 \
  inline T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = warpSize, SIMT_HERE_) {  \
    return ::simt::detail::shuffle(::simt::detail::WarpOp::ShflXor, mask, var, laneMask, width, simt_loc); \
  }

SIMT_SHFL_OVERLOADS_(int)
SIMT_SHFL_OVERLOADS_(unsigned int)
SIMT_SHFL_OVERLOADS_(long)
SIMT_SHFL_OVERLOADS_(unsigned long)
SIMT_SHFL_OVERLOADS_(long long)
SIMT_SHFL_OVERLOADS_(unsigned long long)
SIMT_SHFL_OVERLOADS_(float)
SIMT_SHFL_OVERLOADS_(double)
SIMT_SHFL_OVERLOADS_(__half)
SIMT_SHFL_OVERLOADS_(__half2)
SIMT_SHFL_OVERLOADS_(__nv_bfloat16)
SIMT_SHFL_OVERLOADS_(__nv_bfloat162)
#undef SIMT_SHFL_OVERLOADS_

inline unsigned __ballot_sync(unsigned mask, int predicate, SIMT_HERE_) {
  return static_cast<unsigned>(
      ::simt::detail::warp_op(::simt::detail::WarpOp::Ballot, mask, predicate != 0, 0, 0, nullptr, simt_loc));
}
inline int __any_sync(unsigned mask, int predicate, SIMT_HERE_) {
  return static_cast<int>(
      ::simt::detail::warp_op(::simt::detail::WarpOp::Any, mask, predicate != 0, 0, 0, nullptr, simt_loc));
}
inline int __all_sync(unsigned mask, int predicate, SIMT_HERE_) {
  return static_cast<int>(
      ::simt::detail::warp_op(::simt::detail::WarpOp::All, mask, predicate != 0, 0, 0, nullptr, simt_loc));
}
inline void __syncwarp(unsigned mask = 0xffffffffu, SIMT_HERE_) {
  ::simt::detail::warp_op(::simt::detail::WarpOp::SyncWarp, mask, 0, 0, 0, nullptr, simt_loc);
}

// Lanes of the caller's warp that exist and have not exited. Over-approximates the GPU, where it
// is the set of lanes currently converged with the caller.
inline unsigned __activemask() {
  ::simt::detail::san::Ignore ig;
  const ::simt::detail::Fiber& f = ::simt::detail::current_fiber("__activemask");
  const ::simt::detail::Warp& w = f.launch->warps[f.warp];
  return w.exists & ~w.exited;
}

#define SIMT_REDUCE_(name, OP, T, SIGNED)                                                       \
  inline T name(unsigned mask, T value, SIMT_HERE_) {                                          \
    return static_cast<T>(static_cast<uint32_t>(::simt::detail::warp_op(                       \
        ::simt::detail::WarpOp::OP, mask, static_cast<uint32_t>(value), SIGNED, 0, nullptr, simt_loc))); \
  }
SIMT_REDUCE_(__reduce_add_sync, ReduceAdd, unsigned, 0)
SIMT_REDUCE_(__reduce_add_sync, ReduceAdd, int, 1)
SIMT_REDUCE_(__reduce_min_sync, ReduceMin, unsigned, 0)
SIMT_REDUCE_(__reduce_min_sync, ReduceMin, int, 1)
SIMT_REDUCE_(__reduce_max_sync, ReduceMax, unsigned, 0)
SIMT_REDUCE_(__reduce_max_sync, ReduceMax, int, 1)
SIMT_REDUCE_(__reduce_and_sync, ReduceAnd, unsigned, 0)
SIMT_REDUCE_(__reduce_or_sync, ReduceOr, unsigned, 0)
SIMT_REDUCE_(__reduce_xor_sync, ReduceXor, unsigned, 0)
#undef SIMT_REDUCE_

#define SIMT_MATCH_OVERLOADS_(T)                                                                \
  inline unsigned __match_any_sync(unsigned mask, T value, SIMT_HERE_) {                       \
    return ::simt::detail::match(::simt::detail::WarpOp::MatchAny, mask, value, nullptr, simt_loc); \
  }                                                                                            \
  inline unsigned __match_all_sync(unsigned mask, T value, int* pred, SIMT_HERE_) {            \
    return ::simt::detail::match(::simt::detail::WarpOp::MatchAll, mask, value, pred, simt_loc); \
  }
SIMT_MATCH_OVERLOADS_(int)
SIMT_MATCH_OVERLOADS_(unsigned int)
SIMT_MATCH_OVERLOADS_(long)
SIMT_MATCH_OVERLOADS_(unsigned long)
SIMT_MATCH_OVERLOADS_(long long)
SIMT_MATCH_OVERLOADS_(unsigned long long)
SIMT_MATCH_OVERLOADS_(float)
SIMT_MATCH_OVERLOADS_(double)
#undef SIMT_MATCH_OVERLOADS_

namespace simt {

// Emulator only: every lane of `mask` contributes `value`; afterwards out[j] holds lane j's value
// for each lane j in the mask (~0 for the others). The building block of ldmatrix and other
// instructions that exchange data across the warp in one step.
inline void warp_allgather(unsigned mask, uint64_t value, uint64_t out[32], SIMT_HERE_) {
  detail::warp_op(detail::WarpOp::AllGather, mask, value, 0, 0, out, simt_loc);
}

// Emulator only: report misuse found by emulation code (e.g. ptx.h wrappers) as a KernelError
// naming the current block and thread and the caller's file:line.
[[noreturn]] inline void fail(const std::string& problem, SIMT_HERE_) {
  const detail::Fiber& f = detail::current_fiber("simt::fail");
  detail::fail_at(f, detail::site_of(simt_loc), problem);
}

}  // namespace simt
