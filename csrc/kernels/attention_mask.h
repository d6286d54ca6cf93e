// Which keys a query sees under the block rules of attention_with_kv_cache: plain (everything),
// block-causal, and the BD3-LM/SDAR training layout. Shared by the CPU kernels, the CUDA kernel
// and the emulator, so every implementation draws the same line.
//
// A query's visible keys are at most two intervals [lo0, hi0) U [lo1, hi1) with hi0 <= lo1:
//   block-causal, block b, position p:  [0, (p / b + 1) * b)            (floor division)
//   training layout x_t (+) x_0, noisy length L, p < L in noisy block n = p / b:
//                                       [n * b, min((n + 1) * b, L))  U  [L, L + n * b)
//   p >= L in clean block n = (p - L) / b:  [L, L + (n + 1) * b)
// intersected with the valid keys (key_lengths, key_padding_mask) by the callers.
#pragma once
#include <cstdint>

#include "kernels/attention_params.h"

#if defined(__CUDACC__) || defined(SIMT_EMULATED)
#define DK_MASK_FN __host__ __device__ __forceinline__
#else
#define DK_MASK_FN inline
#endif

namespace dk {
namespace attn_mask {

struct KeySpans {
  int64_t lo0, hi0, lo1, hi1;
};

DK_MASK_FN bool sees(const KeySpans& s, int64_t key) {
  return (key >= s.lo0 && key < s.hi0) || (key >= s.lo1 && key < s.hi1);
}

// The end of the last non-empty interval (every visible key is below it).
DK_MASK_FN int64_t span_end(const KeySpans& s) { return s.hi1 > s.lo1 ? s.hi1 : s.hi0; }

DK_MASK_FN int64_t floor_div(int64_t a, int64_t b) {  // b > 0
  const int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

// n * b for n >= 0, saturated at cap (no overflow for any n, b >= 1).
DK_MASK_FN int64_t capped_mul(int64_t n, int64_t b, int64_t cap) { return n > cap / b ? cap : (n * b < cap ? n * b : cap); }

// The query position of row offset i of a batch row starting at `start`: starts past the cache
// end act as the cache end (the same keys are visible), which keeps the sum from overflowing.
DK_MASK_FN int64_t query_position(const AttentionParams& p, int64_t start, int64_t i) {
  return (start < p.cache_len ? start : p.cache_len) + i;
}

DK_MASK_FN int64_t row_start(const AttentionParams& p, int64_t b) {
  return p.write_starts != nullptr ? p.write_starts[b] : p.write_start;
}

// Keys visible from position pos (cap: the cache length; no interval reaches past it).
DK_MASK_FN KeySpans visible(int64_t block, int64_t noisy, int64_t cap, int64_t pos) {
  if (block <= 0) return {0, cap, 0, 0};
  if (noisy <= 0) {
    const int64_t n = floor_div(pos, block);
    return {0, n < 0 ? 0 : capped_mul(n + 1, block, cap), 0, 0};
  }
  if (pos < 0) return {0, 0, 0, 0};
  if (pos < noisy) {
    const int64_t n = pos / block;
    return {n * block, capped_mul(n + 1, block, noisy), noisy, noisy + capped_mul(n, block, cap - noisy)};
  }
  const int64_t n = (pos - noisy) / block;
  return {noisy, noisy + capped_mul(n + 1, block, cap - noisy), 0, 0};
}

DK_MASK_FN KeySpans visible(const AttentionParams& p, int64_t pos) {
  return visible(p.causal_block, p.noisy_length, p.cache_len, pos);
}

// A superset of the keys seen by any position in [pmin, pmax] (pmin <= pmax): each interval end
// is monotone in the position within each half of the training layout.
DK_MASK_FN KeySpans visible_range(const AttentionParams& p, int64_t pmin, int64_t pmax) {
  if (p.causal_block <= 0 || p.noisy_length <= 0) return visible(p, pmax);
  const int64_t L = p.noisy_length;
  const KeySpans hi = visible(p, pmax);
  if (pmin >= L) return hi;
  const KeySpans lo = visible(p, pmin < 0 ? 0 : pmin);
  if (pmax < L) return {lo.lo0, hi.hi0, L, hi.hi1};
  const KeySpans last_noisy = visible(p, L - 1);
  return {lo.lo0, last_noisy.hi0, L, last_noisy.hi1 > hi.hi0 ? last_noisy.hi1 : hi.hi0};
}

// The positions of stacked rows [row0, row0 + rows) (row = query head in group * q_len + i) of
// batch row b, as a range [*pmin, *pmax]: exact unless the rows wrap past q_len (then every
// position of the row).
DK_MASK_FN void row_positions(const AttentionParams& p, int64_t b, int64_t row0, int64_t rows, int64_t* pmin,
                              int64_t* pmax) {
  const int64_t first = row0 % p.q_len;
  const bool wraps = first + rows > p.q_len;
  const int64_t start = row_start(p, b);
  *pmin = query_position(p, start, wraps ? 0 : first);
  *pmax = query_position(p, start, wraps ? p.q_len - 1 : first + rows - 1);
}

DK_MASK_FN KeySpans visible_for_rows(const AttentionParams& p, int64_t b, int64_t row0, int64_t rows) {
  int64_t pmin, pmax;
  row_positions(p, b, row0, rows, &pmin, &pmax);
  return visible_range(p, pmin, pmax);
}

// A subset of the keys seen by every position in [pmin, pmax] (where no per-key test is needed).
DK_MASK_FN KeySpans visible_to_all(const AttentionParams& p, int64_t pmin, int64_t pmax) {
  if (p.causal_block <= 0) return visible(p, pmin);
  if (p.noisy_length <= 0) return visible(p, pmin);  // block-causal: the first row sees least
  const int64_t L = p.noisy_length, block = p.causal_block;
  if (pmin < 0) return {0, 0, 0, 0};
  const KeySpans first = visible(p, pmin);
  if (pmin >= L) return first;                                // clean rows: [L, end of pmin's block)
  if (pmax < L && pmin / block == pmax / block) return first;  // one noisy block
  // Noisy rows of several blocks (and maybe clean rows): the clean blocks before pmin's block,
  // which every clean row sees too (clean block 0 is the least a clean row sees).
  const int64_t clean_hi = pmax >= L ? visible(p, L).hi0 : first.hi1;
  return {0, 0, L, first.hi1 < clean_hi ? first.hi1 : clean_hi};
}

}  // namespace attn_mask
}  // namespace dk
