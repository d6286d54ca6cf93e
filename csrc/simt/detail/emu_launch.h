// Part of simt/simt.h (emulator): simt::launch, launch limits, shared memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "simt/detail/emu_runtime.h"

namespace simt::detail {

// Static __shared__ storage is one copy per process, so launches must not overlap.
inline std::mutex& launch_mutex() {
  static std::mutex m;
  return m;
}

// Kernel -> cudaFuncAttributeMaxDynamicSharedMemorySize. Guarded by launch_mutex(); a handful of
// entries, so a vector.
inline std::vector<std::pair<const void*, size_t>>& smem_limits() {
  static std::vector<std::pair<const void*, size_t>> m;
  return m;
}

// ---------------------------------------------------------------------------- shared memory ----

// The per-call-site anchor of a SIMT_SHARED array; constant-initialised, so no guard variable.
struct SharedSlot {
  void* p = nullptr;
  uint64_t epoch = 0;
};

// The first thread of a block that reaches a SIMT_SHARED declaration allocates the block's copy.
SIMT_NOINLINE inline void* shared_slot(SharedSlot& slot, size_t bytes, size_t align,
                                       const char* name, const char* file, unsigned line) {
  san::Ignore ig;
  Fiber& f = current_fiber("SIMT_SHARED");
  Launch& L = *f.launch;
  if (slot.epoch != L.epoch) {
    const Site s{file, line};
    L.shared_bytes += bytes;
    if (L.shared_bytes > kMaxStaticSmem)
      fail_at(f, s,
              std::string("SIMT_SHARED '") + name + "' brings the block's static shared memory to " +
                  std::to_string(L.shared_bytes) + " bytes; the limit is 48 KiB (49152)");
    if (L.shared_bytes + L.dyn_bytes > kMaxDynSmem)
      fail_at(f, s,
              std::string("SIMT_SHARED '") + name + "': static (" + std::to_string(L.shared_bytes) +
                  ") plus dynamic (" + std::to_string(L.dyn_bytes) +
                  ") shared memory exceed 227 KiB per block");
    align = align < 16 ? 16 : align;
    auto* p = static_cast<unsigned char*>(::operator new(bytes + kCanaryBytes, std::align_val_t(align)));
    std::memset(p, kPoisonByte, bytes);
    std::memset(p + bytes, kCanaryByte, kCanaryBytes);
    L.shared.push_back(SharedAlloc{p, bytes, align, name, s});
    slot.p = p;
    slot.epoch = L.epoch;
  }
  return slot.p;
}

inline unsigned char* dynamic_smem() {
  san::Ignore ig;
  return current_fiber("SIMT_DYNAMIC_SHARED").launch->dyn;
}

// ------------------------------------------------------------------------------ fiber stacks ---

struct StackPool {
  std::vector<Stack> stacks;
  size_t bytes = 0;
};

inline StackPool& stack_pool() {
  static StackPool p;
  return p;
}

// Stacks outlive launches (mapping them is a few system calls each), except under TSan, which
// resets its shadow of a stack only when it is unmapped.
inline std::vector<Stack> take_stacks(size_t n, size_t bytes) {
  StackPool& pool = stack_pool();
  if (pool.bytes != bytes) pool.stacks.clear(), pool.bytes = bytes;
  std::vector<Stack> out;
  out.reserve(n);
  while (out.size() < n && !pool.stacks.empty()) {
    out.push_back(std::move(pool.stacks.back()));
    pool.stacks.pop_back();
    san::unpoison(out.back().lo(), out.back().size());
  }
  while (out.size() < n) out.emplace_back(bytes);
  return out;
}

inline void give_back_stacks(std::vector<Stack>&& stacks) {
  if (SIMT_TSAN) return;
  for (Stack& s : stacks) stack_pool().stacks.push_back(std::move(s));
}

// Owns the fibers of one launch; the destructor runs the terminate protocol.
class FiberSet {
 public:
  explicit FiberSet(Launch& L) : L_(L), stacks_(take_stacks(L.nthreads, L.cfg.stack_bytes)) {
    L.sched_tsan = san::current_fiber();
    L.fibers.resize(L.nthreads);
    const dim3 b = L.block;
    for (unsigned i = 0; i < L.nthreads; ++i) {
      Fiber& f = L.fibers[i];
      f.linear = i;
      f.lane = i % 32;
      f.warp = i / 32;
      f.tid = uint3{i % b.x, (i / b.x) % b.y, i / (b.x * b.y)};
      f.stack = &stacks_[i];
      f.launch = &L;
      context_init(f.ctx, stacks_[i], &fiber_entry);
      f.tsan = san::create_fiber();
    }
  }
  ~FiberSet() {
    bool parked_mid_kernel = false;
    for (const Fiber& f : L_.fibers) parked_mid_kernel |= f.started && f.state != State::Done;
    if (parked_mid_kernel) abort_block(L_);
    L_.terminating = true;
    for (Fiber& f : L_.fibers)
      if (f.ever_started) resume(L_, f);
    for (Fiber& f : L_.fibers) san::destroy_fiber(f.tsan);
    give_back_stacks(std::move(stacks_));
  }
  FiberSet(const FiberSet&) = delete;
  FiberSet& operator=(const FiberSet&) = delete;

 private:
  Launch& L_;
  std::vector<Stack> stacks_;
};

// --------------------------------------------------------------------------------- launching ---

inline std::string dims_str(const dim3& d) {
  return "(" + std::to_string(d.x) + "," + std::to_string(d.y) + "," + std::to_string(d.z) + ")";
}

inline void check_dims(const dim3& grid, const dim3& block) {
  const unsigned long long threads = 1ull * block.x * block.y * block.z;
  std::string bad;
  if (!grid.x || !grid.y || !grid.z || !block.x || !block.y || !block.z)
    bad = "grid and block dimensions must be at least 1";
  else if (threads > 1024)
    bad = "a block of " + std::to_string(threads) + " threads exceeds the limit of 1024";
  else if (block.x > 1024 || block.y > 1024 || block.z > 64)
    bad = "block dimensions exceed (1024,1024,64)";
  else if (grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535)
    bad = "grid dimensions exceed (2^31-1,65535,65535)";
  if (!bad.empty())
    throw KernelError("simt: invalid launch configuration grid " + dims_str(grid) + " block " +
                      dims_str(block) + ": " + bad);
}

// Caller holds launch_mutex().
inline void check_dynamic_smem(const void* kernel, size_t smem) {
  if (smem > kMaxDynSmem)
    throw KernelError("simt: " + std::to_string(smem) +
                      " bytes of dynamic shared memory exceed the per-block maximum of 227 KiB (232448)");
  size_t limit = kDefaultDynSmem;
  for (const auto& [k, bytes] : smem_limits())
    if (k == kernel) limit = bytes;
  if (smem > limit)
    throw KernelError("simt: " + std::to_string(smem) + " bytes of dynamic shared memory exceed this kernel's limit of " +
                      std::to_string(limit) +
                      " bytes; raise it first with simt::set_max_dynamic_smem(kernel, bytes) "
                      "(cudaFuncSetAttribute(..., cudaFuncAttributeMaxDynamicSharedMemorySize, ...))");
}

struct AlignedDelete {
  void operator()(unsigned char* p) const { ::operator delete(p, std::align_val_t(128)); }
};

SIMT_NOINLINE inline void run_grid(const void* kernel, dim3 grid, dim3 block, size_t smem,
                                   void (*thunk)(void*), void* ctx) {
  if (tl_fiber)
    throw KernelError("simt: simt::launch called from a kernel (dynamic parallelism is not emulated)");
  check_dims(grid, block);
  std::lock_guard<std::mutex> lock(launch_mutex());
  check_dynamic_smem(kernel, smem);
  static const bool death_hook = (san::on_death(&report_running_thread), true);
  (void)death_hook;

  auto L = std::make_unique<Launch>();
  L->cfg = current_config();
  L->rng = L->cfg.seed;
  L->grid = grid;
  L->block = block;
  L->nthreads = block.x * block.y * block.z;
  L->nwarps = (L->nthreads + 31) / 32;
  L->thunk = thunk;
  L->thunk_ctx = ctx;
  L->order.resize(L->nthreads);
  for (unsigned i = 0; i < L->nthreads; ++i)
    L->order[i] = L->cfg.order == Order::Reverse ? L->nthreads - 1 - i : i;
  L->warps.resize(L->nwarps);
  for (unsigned w = 0; w < L->nwarps; ++w) {
    const unsigned lanes = std::min(32u, L->nthreads - 32 * w);
    L->warps[w].exists = lanes == 32 ? ~0u : (1u << lanes) - 1;
  }
  std::unique_ptr<unsigned char, AlignedDelete> dyn(
      static_cast<unsigned char*>(::operator new(smem + kCanaryBytes, std::align_val_t(128))));
  L->dyn = dyn.get();
  L->dyn_bytes = smem;
  gridDim = grid;
  blockDim = block;
  std::exception_ptr error;
  {
    // The scheduler's bookkeeping is invisible to TSan; the block boundaries order the fibers.
    san::Ignore ig;
    {
      FiberSet fibers(*L);
      for (unsigned z = 0; z < grid.z && !L->error; ++z)
        for (unsigned y = 0; y < grid.y && !L->error; ++y)
          for (unsigned x = 0; x < grid.x && !L->error; ++x) run_block(*L, uint3{x, y, z});
    }
    error = L->error;
    L.reset();  // inside the region: the fibers read it with no TSan-visible ordering
    threadIdx = blockIdx = uint3{0, 0, 0};
    blockDim = gridDim = dim3();
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace simt::detail

// Per block: fresh, exact-size storage filled with 0xFF, freed at the end of the block, so ASan
// (or the canary check) sees overruns and uninitialised floats read as NaN. `dims` is the array
// part of the declarator, e.g. SIMT_SHARED(float, tile, [32][33]); spell T without commas.
#define SIMT_SHARED(T, name, dims)                                                              \
  static ::simt::detail::SharedSlot simt_shared_slot_##name;                                    \
  T(&name) dims = *reinterpret_cast<T(*) dims>(::simt::detail::shared_slot(                     \
      simt_shared_slot_##name, sizeof(T dims), alignof(T), #name, __FILE__, __LINE__))

// `extern __shared__ T name[]`: exactly the launch's `smem` bytes, refilled with 0xFF per block.
#define SIMT_DYNAMIC_SHARED(T, name) T* name = reinterpret_cast<T*>(::simt::detail::dynamic_smem())

namespace simt {

// kernel<<<grid, block, smem, stream>>>(args...). Runs the whole grid before returning (the
// stream is ignored); rethrows the first error of any thread (KernelError, or whatever the kernel
// threw) after all fibers have been unwound.
template <class... P, class... A>
inline void launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                   A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "simt::launch: wrong number of kernel arguments");
  (void)stream;
  using Params = std::tuple<std::decay_t<P>...>;
  Params params(std::forward<A>(args)...);  // converted once, as the GPU's parameter buffer
  struct Body {
    void (*kernel)(P...);
    Params* params;
    static void run(void* self) {
      Body* b = static_cast<Body*>(self);
      std::apply(b->kernel, *b->params);  // each thread gets its own copy of the arguments
    }
  };
  Body body{kernel, &params};
  detail::run_grid(reinterpret_cast<const void*>(kernel), grid, block, smem, &Body::run, &body);
}

template <class... P>
inline void set_max_dynamic_smem(void (*kernel)(P...), size_t bytes) {
  if (bytes > detail::kMaxDynSmem)
    throw KernelError("simt::set_max_dynamic_smem: " + std::to_string(bytes) +
                      " bytes exceed the per-block maximum of 227 KiB (232448)");
  std::lock_guard<std::mutex> lock(detail::launch_mutex());
  const void* key = reinterpret_cast<const void*>(kernel);
  for (auto& [k, limit] : detail::smem_limits())
    if (k == key) return void(limit = bytes);
  detail::smem_limits().emplace_back(key, bytes);
}

inline void check_launch(const char* what) { (void)what; }

}  // namespace simt
