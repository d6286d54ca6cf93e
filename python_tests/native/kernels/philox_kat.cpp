// Known-answer test of the Philox4x32-10 block function against the published test vectors of
// the Random123 distribution (kat_vectors), plus the uniform mapping's open-interval guarantee.
#include <cstdio>

#include "kernels/philox.cuh"

int main() {
  using dk::Uint4x32;
  struct Case {
    Uint4x32 ctr;
    uint32_t k0, k1;
    Uint4x32 want;
  } cases[] = {
      {{{0, 0, 0, 0}}, 0, 0, {{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}}},
      {{{~0u, ~0u, ~0u, ~0u}}, ~0u, ~0u, {{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}}},
      {{{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}}, 0xa4093822u, 0x299f31d0u,
       {{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}}},
  };
  int failures = 0;
  for (const Case& c : cases) {
    const Uint4x32 got = dk::philox4x32_10(c.ctr, c.k0, c.k1);
    for (int i = 0; i < 4; ++i) {
      if (got.v[i] != c.want.v[i]) {
        std::printf("mismatch word %d: got %08x want %08x\n", i, got.v[i], c.want.v[i]);
        ++failures;
      }
    }
  }
  const float lo = dk::uniform_from_bits(0u), hi = dk::uniform_from_bits(~0u);
  if (!(lo > 0.f && hi < 1.f)) {
    std::printf("uniform not in (0, 1): %g %g\n", lo, hi);
    ++failures;
  }
  std::printf("%d passed, %d failed\n", failures == 0 ? 1 : 0, failures == 0 ? 0 : 1);
  return failures == 0 ? 0 : 1;
}
