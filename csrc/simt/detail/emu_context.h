// Part of simt/simt.h (emulator): fiber stacks and the context switch.
//
// Default on x86-64: a hand-written switch (callee-saved registers + MXCSR + x87 control word).
// Elsewhere, or with -DSIMT_USE_UCONTEXT: glibc swapcontext, much slower because it makes a
// sigprocmask system call per switch.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

#if defined(__x86_64__) && !defined(SIMT_USE_UCONTEXT)
#define SIMT_CONTEXT_ASM 1
#else
#define SIMT_CONTEXT_ASM 0
#include <ucontext.h>
#endif

namespace simt::detail {

// An mmap'ed stack whose lowest page is PROT_NONE: an overflow faults instead of corrupting memory.
class Stack {
 public:
  Stack() = default;
  explicit Stack(size_t usable) {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    usable = (usable + page - 1) / page * page;
    void* p = mmap(nullptr, usable + page, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (p == MAP_FAILED)
      throw std::runtime_error("simt: cannot map a fiber stack: " + std::string(std::strerror(errno)));
    if (mprotect(p, page, PROT_NONE) != 0) {
      munmap(p, usable + page);
      throw std::runtime_error("simt: cannot protect a fiber stack guard page");
    }
    map_ = static_cast<char*>(p);
    map_bytes_ = usable + page;
    lo_ = map_ + page;
    size_ = usable;
  }
  Stack(Stack&& o) noexcept { *this = static_cast<Stack&&>(o); }
  Stack& operator=(Stack&& o) noexcept {
    if (this != &o) {
      release();
      map_ = o.map_, map_bytes_ = o.map_bytes_, lo_ = o.lo_, size_ = o.size_;
      o.map_ = nullptr, o.map_bytes_ = 0, o.lo_ = nullptr, o.size_ = 0;
    }
    return *this;
  }
  ~Stack() { release(); }

  char* lo() const { return lo_; }  // lowest usable address
  size_t size() const { return size_; }

 private:
  void release() {
    if (map_) munmap(map_, map_bytes_);
    map_ = nullptr;
  }
  char* map_ = nullptr;
  size_t map_bytes_ = 0;
  char* lo_ = nullptr;
  size_t size_ = 0;
};

#if SIMT_CONTEXT_ASM

struct Context {
  void* sp = nullptr;
};

// Saves the callee-saved state of the caller on its stack, stores the stack pointer in *save_sp,
// loads load_sp and pops the state saved there. MXCSR and the x87 control word are callee-saved in
// the SysV ABI (rounding mode, FTZ/DAZ), so a kernel that changes them cannot leak into another.
// Loading them is slow (fldcw is most of the cost of a switch), and they almost never differ
// between fibers, so each is loaded only when it differs from the outgoing context's value.
__attribute__((naked, noinline)) inline void context_swap_asm(void** /*save_sp*/, void* /*load_sp*/) {
  asm("pushq %rbp\n\t"
      "pushq %rbx\n\t"
      "pushq %r12\n\t"
      "pushq %r13\n\t"
      "pushq %r14\n\t"
      "pushq %r15\n\t"
      "subq $8, %rsp\n\t"
      "stmxcsr (%rsp)\n\t"
      "fnstcw 4(%rsp)\n\t"
      "movq %rsp, (%rdi)\n\t"
      "movq %rsp, %rcx\n\t"  // the outgoing state, to compare against
      "movq %rsi, %rsp\n\t"
      "movl (%rsp), %eax\n\t"
      "cmpl (%rcx), %eax\n\t"
      "je 1f\n\t"
      "ldmxcsr (%rsp)\n"
      "1:\n\t"
      "movzwl 4(%rsp), %eax\n\t"
      "cmpw 4(%rcx), %ax\n\t"
      "je 2f\n\t"
      "fldcw 4(%rsp)\n"
      "2:\n\t"
      "addq $8, %rsp\n\t"
      "popq %r15\n\t"
      "popq %r14\n\t"
      "popq %r13\n\t"
      "popq %r12\n\t"
      "popq %rbx\n\t"
      "popq %rbp\n\t"
      "ret\n\t");
}

inline void context_swap(Context& from, Context& to) { context_swap_asm(&from.sp, to.sp); }

// Lays out a frame that context_swap "returns" into: entry() starts with rsp % 16 == 8, exactly as
// after a call, above a null return address (so unwinders and debuggers stop there).
inline void context_init(Context& c, const Stack& s, void (*entry)()) {
  uint64_t* top = reinterpret_cast<uint64_t*>(
      (reinterpret_cast<uintptr_t>(s.lo()) + s.size()) & ~uintptr_t{15});
  uint32_t mxcsr;
  uint16_t x87cw;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(x87cw));
  top[-1] = 0;                                     // entry's return address
  top[-2] = reinterpret_cast<uint64_t>(entry);     // popped by `ret`
  for (int i = 3; i <= 8; ++i) top[-i] = 0;        // rbp rbx r12 r13 r14 r15
  top[-9] = uint64_t{mxcsr} | (uint64_t{x87cw} << 32);
  c.sp = &top[-9];
}

#else  // ucontext

struct Context {
  ucontext_t uc;
};

inline void context_swap(Context& from, Context& to) {
  if (swapcontext(&from.uc, &to.uc) != 0) throw std::runtime_error("simt: swapcontext failed");
}

inline void context_init(Context& c, const Stack& s, void (*entry)()) {
  if (getcontext(&c.uc) != 0) throw std::runtime_error("simt: getcontext failed");
  c.uc.uc_stack.ss_sp = s.lo();
  c.uc.uc_stack.ss_size = s.size();
  c.uc.uc_link = nullptr;  // entry never returns
  makecontext(&c.uc, entry, 0);
}

#endif

}  // namespace simt::detail
