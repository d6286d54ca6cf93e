// Part of simt/simt.h (emulator): ASan and TSan hooks for fibers (research/simt_emulation.md §3.4).
// Without a sanitizer every hook is an empty inline function.
#pragma once

#include <cstddef>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SIMT_ASAN 1
#endif
#if __has_feature(thread_sanitizer)
#define SIMT_TSAN 1
#endif
#endif
#if !defined(SIMT_ASAN) && defined(__SANITIZE_ADDRESS__)
#define SIMT_ASAN 1
#endif
#if !defined(SIMT_TSAN) && defined(__SANITIZE_THREAD__)
#define SIMT_TSAN 1
#endif
#ifndef SIMT_ASAN
#define SIMT_ASAN 0
#endif
#ifndef SIMT_TSAN
#define SIMT_TSAN 0
#endif

#if SIMT_ASAN
extern "C" {
void __sanitizer_start_switch_fiber(void** fake_stack_save, const void* bottom, size_t size);
void __sanitizer_finish_switch_fiber(void* fake_stack_save, const void** bottom_old, size_t* size_old);
void __asan_unpoison_memory_region(void const volatile* addr, size_t size);
void __sanitizer_set_death_callback(void (*callback)(void));
}
#endif
#if SIMT_TSAN
extern "C" {
void* __tsan_get_current_fiber(void);
void* __tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void* fiber);
void __tsan_switch_to_fiber(void* fiber, unsigned flags);
void __tsan_set_fiber_name(void* fiber, const char* name);
void __tsan_acquire(void* addr);
void __tsan_release(void* addr);
void __tsan_ignore_thread_begin(void);
void __tsan_ignore_thread_end(void);
}
#endif

namespace simt::detail::san {

// ---- ASan: tell it which stack is live, so it neither misreports nor loses fake stacks. ----
inline void start_switch(void** fake_stack_save, const void* bottom, size_t size) {
#if SIMT_ASAN
  __sanitizer_start_switch_fiber(fake_stack_save, bottom, size);
#else
  (void)fake_stack_save, (void)bottom, (void)size;
#endif
}
inline void finish_switch(void* fake_stack_save, const void** bottom_old, size_t* size_old) {
#if SIMT_ASAN
  __sanitizer_finish_switch_fiber(fake_stack_save, bottom_old, size_old);
#else
  (void)fake_stack_save, (void)bottom_old, (void)size_old;
#endif
}
// Frames abandoned on a reused stack leave redzones behind; a later frame there would trip on them.
inline void unpoison(void* p, size_t n) {
#if SIMT_ASAN
  __asan_unpoison_memory_region(p, n);
#else
  (void)p, (void)n;
#endif
}

// Called once: when ASan (or UBSan with it) aborts, `report` says which CUDA thread was running.
inline void on_death(void (*report)()) {
#if SIMT_ASAN
  __sanitizer_set_death_callback(report);
#else
  (void)report;
#endif
}

// ---- TSan: every fiber is a TSan fiber; switches carry no synchronisation, so only the
// emulated barriers, __syncwarp, atomics and the block boundaries order memory accesses. ----
inline void* current_fiber() {
#if SIMT_TSAN
  return __tsan_get_current_fiber();
#else
  return nullptr;
#endif
}
inline void* create_fiber() {
#if SIMT_TSAN
  return __tsan_create_fiber(0);
#else
  return nullptr;
#endif
}
inline void destroy_fiber(void* f) {
#if SIMT_TSAN
  if (f) __tsan_destroy_fiber(f);
#else
  (void)f;
#endif
}
// Reports name the fiber: "Thread T5 'simt block (0,0,0) thread (4,0,0)'".
inline void name_fiber(void* f, const char* name) {
#if SIMT_TSAN
  if (f) __tsan_set_fiber_name(f, name);
#else
  (void)f, (void)name;
#endif
}
inline void switch_to(void* f) {
#if SIMT_TSAN
  __tsan_switch_to_fiber(f, 1 /* __tsan_switch_to_fiber_no_sync */);
#else
  (void)f;
#endif
}
inline void release(void* addr) {
#if SIMT_TSAN
  __tsan_release(addr);
#else
  (void)addr;
#endif
}
inline void acquire(void* addr) {
#if SIMT_TSAN
  __tsan_acquire(addr);
#else
  (void)addr;
#endif
}

// Emulator bookkeeping is shared by all fibers of a block without TSan-visible synchronisation;
// it runs inside ignore regions. A fiber must never be switched out (or destroyed) inside one.
struct Ignore {
#if SIMT_TSAN
  Ignore() { __tsan_ignore_thread_begin(); }
  ~Ignore() { __tsan_ignore_thread_end(); }
#else
  Ignore() {}  // user-provided: no unused-variable warnings at the call sites
#endif
  Ignore(const Ignore&) = delete;
  Ignore& operator=(const Ignore&) = delete;
};

}  // namespace simt::detail::san
