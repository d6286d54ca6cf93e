"""diffusion_kernels._philox (the pure-torch Philox the references use) against the published
Random123 known answers and against the native generator as the CPU kernel consumes it."""
import torch

import diffusion_kernels as dk
from diffusion_kernels import _philox


def test_known_answers():
    t = lambda v: torch.tensor([v])  # noqa: E731
    cases = [((0, 0, 0, 0), 0, 0, (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
             ((2**32 - 1,) * 4, 2**32 - 1, 2**32 - 1, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
             ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), 0xA4093822, 0x299F31D0,
              (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1))]
    for ctr, k0, k1, want in cases:
        got = _philox.philox4x32_10(tuple(t(c) for c in ctr), k0, k1)
        assert [int(w) for w in got] == list(want)


def test_uniform_range_and_exactness():
    u = _philox.philox_uniform(123, 456, torch.arange(64)[:, None], torch.arange(1000)[None])
    assert u.dtype == torch.float32 and (u > 0).all() and (u < 1).all()
    bits = _philox.philox_bits(123, 456, torch.arange(64)[:, None], torch.arange(1000)[None])
    assert torch.equal(u.double(), (bits >> 9).double() * 2.0**-23 + 2.0**-24)


def test_native_draws_match_the_mirror():
    """alg_temp with equal confidences: the kernel's choice is the top-k of the Gumbel noise
    alone, which the mirror reproduces (row b uses Philox row b, column i)."""
    b, l, k, seed, offset = 5, 300, 17, 2**40 + 3, 2**35 + 9
    mask = dk.select_transfer(torch.zeros(b, l), k=k, alg_temp=1.0, seed=seed, offset=offset)
    u = _philox.philox_uniform(seed, offset, torch.arange(b)[:, None], torch.arange(l)[None]).double()
    gumbel = (-torch.log(-torch.log(u))).float()
    want = torch.zeros(b, l, dtype=torch.bool)
    want.scatter_(1, torch.topk(gumbel, k, dim=1).indices, True)
    assert torch.equal(mask, want)
