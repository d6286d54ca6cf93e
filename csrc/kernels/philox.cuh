// Counter-based random numbers (Philox4x32-10, Salmon et al., SC'11), identical on the host, in
// CUDA kernels and under the SIMT emulator: the same (seed, offset, row, column) gives the same
// bits everywhere, so CPU, emulated CUDA and CUDA draw the same samples. No state: CUDA-graph safe
// when seed/offset come from tensors.
//
// Stream layout: key = seed (64 bits); counter = (column / 4, row, offset lo, offset hi). One
// Philox call yields 4 words, used for columns 4c..4c+3 of that row. `row` is any 32-bit stream
// index (a [batch, seq] position, a batch row, ...); `column` any 34-bit index (vocab id, ...).
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__) || defined(SIMT_EMULATED)
#define DK_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define DK_HOST_DEVICE inline
#endif

namespace dk {

struct PhiloxKey {
  uint64_t seed;
  uint64_t offset;
};

struct Uint4x32 {
  uint32_t v[4];
};

DK_HOST_DEVICE void philox_mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

// The raw block function: 10 rounds over a 128-bit counter with a 64-bit key.
DK_HOST_DEVICE Uint4x32 philox4x32_10(Uint4x32 ctr, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(kMul0, ctr.v[0], hi0, lo0);
    philox_mulhilo(kMul1, ctr.v[2], hi1, lo1);
    ctr = Uint4x32{{hi1 ^ ctr.v[1] ^ k0, lo1, hi0 ^ ctr.v[3] ^ k1, lo0}};
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  return ctr;
}

// Four words for columns [4 * (column / 4), +4) of `row`.
DK_HOST_DEVICE Uint4x32 philox_block(PhiloxKey key, uint32_t row, uint64_t column) {
  const Uint4x32 ctr{{static_cast<uint32_t>(column >> 2), row, static_cast<uint32_t>(key.offset),
                      static_cast<uint32_t>(key.offset >> 32)}};
  return philox4x32_10(ctr, static_cast<uint32_t>(key.seed), static_cast<uint32_t>(key.seed >> 32));
}

// Selects rather than `.v[column & 3]`: a dynamic index would put the block in local memory.
DK_HOST_DEVICE uint32_t philox_bits(PhiloxKey key, uint32_t row, uint64_t column) {
  const Uint4x32 b = philox_block(key, row, column);
  const uint32_t lane = static_cast<uint32_t>(column & 3);
  const uint32_t lo = lane & 1 ? b.v[1] : b.v[0];
  const uint32_t hi = lane & 1 ? b.v[3] : b.v[2];
  return lane & 2 ? hi : lo;
}

// Uniform in the open interval (0, 1): 23 random bits centred in their cell (24 would round the
// top cell to 1.0f), so log(u) and log(-log(u)) are always finite.
DK_HOST_DEVICE float uniform_from_bits(uint32_t bits) {
  return static_cast<float>(bits >> 9) * 1.1920928955078125e-07f + 5.9604644775390625e-08f;
}

DK_HOST_DEVICE float philox_uniform(PhiloxKey key, uint32_t row, uint64_t column) {
  return uniform_from_bits(philox_bits(key, row, column));
}

// Standard Gumbel: argmax(logit / T + gumbel) is an exact sample of softmax(logit / T).
DK_HOST_DEVICE float philox_gumbel(PhiloxKey key, uint32_t row, uint64_t column) {
  return -logf(-logf(philox_uniform(key, row, column)));
}

}  // namespace dk
