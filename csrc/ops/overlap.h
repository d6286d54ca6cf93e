// Exact memory-overlap tests for ops that write a tensor in place while reading others, from
// sizes, strides and addresses only (no data is read, so no device synchronisation). ATen's
// at::get_overlap_status answers "too hard" for every non-dense view (a cache sliced along its
// sequence, the K part of a fused QKV buffer); these answer those layouts exactly.
#pragma once
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

namespace dk {

// (size, stride) of t's dimensions of size > 1, by increasing stride.
inline std::vector<std::pair<int64_t, int64_t>> dims_by_stride(const at::Tensor& t) {
  std::vector<std::pair<int64_t, int64_t>> dims;
  for (int64_t i = 0; i < t.dim(); ++i)
    if (t.size(i) > 1) dims.emplace_back(t.size(i), t.stride(i));
  std::sort(dims.begin(), dims.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
  return dims;
}

// Whether two indices of t may address one element: false when every stride (dims of size > 1,
// sorted) exceeds the span of the smaller ones, as in every view made by slicing, transposing or
// permuting a dense tensor ("nested" strides); true otherwise (an expanded view, say).
inline bool may_overlap_itself(const at::Tensor& t) {
  if (t.numel() <= 1 || t.is_non_overlapping_and_dense()) return false;
  int64_t reach = 0;
  for (const auto& [n, s] : dims_by_stride(t)) {
    if (s <= reach) return true;
    reach += (n - 1) * s;
  }
  return false;
}

// [first byte, end byte) of t's elements (t non-empty).
inline std::pair<uintptr_t, uintptr_t> byte_span(const at::Tensor& t) {
  int64_t extent = 0;
  for (int64_t i = 0; i < t.dim(); ++i) extent += (t.size(i) - 1) * t.stride(i);
  const auto lo = reinterpret_cast<uintptr_t>(t.const_data_ptr());
  return {lo, lo + static_cast<uintptr_t>((extent + 1) * t.element_size())};
}

// Whether t and `written` (nested strides, see may_overlap_itself) address a common element.
// Both are [..., head_dim] with the same head_dim, element size and a contiguous last dimension
// (the caller's shape checks have passed), so each is a set of rows of head_dim consecutive
// elements: two such rows meet iff the first or the last element of one lies in the other, and
// an offset lies in `written` iff it decomposes greedily into valid indices (strides nested).
inline bool shares_elements(const at::Tensor& t, const at::Tensor& written) {
  if (t.numel() == 0 || written.numel() == 0) return false;
  if (t.storage().data() != written.storage().data() && !t.is_same(written)) return false;
  const auto [lo, hi] = byte_span(t);
  const auto [wlo, whi] = byte_span(written);
  if (hi <= wlo || whi <= lo) return false;
  const int64_t size = written.element_size();
  const int64_t delta = static_cast<int64_t>(lo) - static_cast<int64_t>(wlo);
  if (delta % size != 0) return true;  // views of one buffer as different dtypes: the bytes overlap
  std::vector<std::pair<int64_t, int64_t>> wdims = dims_by_stride(written);
  std::reverse(wdims.begin(), wdims.end());  // greedy: the largest stride first
  const auto inside = [&wdims](int64_t rest) {
    for (const auto& [n, s] : wdims) {
      const int64_t q = rest >= 0 ? rest / s : -((-rest + s - 1) / s);  // floor division
      if (q < 0 || q >= n) return false;
      rest -= q * s;
    }
    return rest == 0;
  };
  const int64_t d = t.size(-1), rows = t.numel() / d, outer = t.dim() - 1;
  std::vector<int64_t> idx(static_cast<size_t>(outer), 0);
  for (int64_t r = 0; r < rows; ++r) {
    int64_t first = delta / size;
    for (int64_t i = 0; i < outer; ++i) first += idx[i] * t.stride(i);
    if (inside(first) || inside(first + d - 1)) return true;
    for (int64_t i = outer - 1; i >= 0; --i) {  // next row index, the last dimension fastest
      if (++idx[i] < t.size(i)) break;
      idx[i] = 0;
    }
  }
  return false;
}

}  // namespace dk
