// Part of simt/simt.h: what both builds share. Do not include directly.
#pragma once

#include <stdexcept>
#include <string>

namespace simt {

// Undefined behaviour or misuse found by the emulator (never thrown by the nvcc build, but defined
// there too so host code can name it in both builds). what() names the block, the thread and the
// kernel's file:line when they are known.
class KernelError : public std::runtime_error {
 public:
  struct Coord {
    unsigned x = 0, y = 0, z = 0;
  };

  explicit KernelError(const std::string& message) : std::runtime_error(message) {}
  KernelError(const std::string& problem, Coord block, Coord thread, const char* file, unsigned line)
      : std::runtime_error(format(problem, &block, &thread, file, line)),
        block_(block), thread_(thread), file_(file ? file : ""), line_(line), located_(true) {}
  // Found after the fact (at the end of a block): the block and a declaration site are known.
  KernelError(const std::string& problem, Coord block, const char* file, unsigned line)
      : std::runtime_error(format(problem, &block, nullptr, file, line)),
        block_(block), file_(file ? file : ""), line_(line) {}

  bool located() const { return located_; }  // thread() is meaningful (and block, file, line)
  Coord block() const { return block_; }
  Coord thread() const { return thread_; }
  const std::string& file() const { return file_; }
  unsigned line() const { return line_; }

 private:
  static std::string coord(const char* what, const Coord& c) {
    return std::string(what) + " (" + std::to_string(c.x) + "," + std::to_string(c.y) + "," +
           std::to_string(c.z) + ")";
  }
  static std::string format(const std::string& problem, const Coord* block, const Coord* thread,
                            const char* file, unsigned line) {
    std::string s = "simt: " + problem + "\n    in ";
    if (block) s += coord("block", *block);
    if (thread) s += ", " + coord("thread", *thread);
    if (file) s += ", at " + std::string(file) + ":" + std::to_string(line);
    return s;
  }

  Coord block_, thread_;
  std::string file_;
  unsigned line_ = 0;
  bool located_ = false;
};

}  // namespace simt
