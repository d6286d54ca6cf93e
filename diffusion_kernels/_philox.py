"""A pure-PyTorch mirror of csrc/kernels/philox.cuh, so references can reproduce the kernels'
random draws exactly: same (seed, offset, row, column) -> same 32 bits.

Everything is int64 tensor arithmetic on values below 2**32 (torch has no uint32 multiply), so a
32x32-bit product is split into 16-bit halves to stay below 2**63.
"""
import torch

_M32 = 0xFFFFFFFF
_MUL0, _MUL1 = 0xD2511F53, 0xCD9E8D57
_WEYL0, _WEYL1 = 0x9E3779B9, 0xBB67AE85


def _mulhilo(a: int, b: torch.Tensor):
    """(hi, lo) 32-bit words of the 64-bit product of the constant a and the tensor b."""
    p1 = (a >> 16) * b  # < 2**48
    p0 = (a & 0xFFFF) * b
    hi = (p1 + (p0 >> 16)) >> 16
    lo = (((p1 & 0xFFFF) << 16) + p0) & _M32
    return hi, lo


def philox4x32_10(ctr, k0: int, k1: int):
    """The block function on four int64 tensors of counter words (broadcastable); returns four."""
    c0, c1, c2, c3 = ctr
    for _ in range(10):
        hi0, lo0 = _mulhilo(_MUL0, c0)
        hi1, lo1 = _mulhilo(_MUL1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = (k0 + _WEYL0) & _M32
        k1 = (k1 + _WEYL1) & _M32
    return c0, c1, c2, c3


def philox_bits(seed: int, offset: int, row: torch.Tensor, column: torch.Tensor) -> torch.Tensor:
    """32 random bits (as int64) for each broadcast (row, column) pair; see philox.cuh."""
    seed &= (1 << 64) - 1
    offset &= (1 << 64) - 1
    row = torch.as_tensor(row, dtype=torch.int64) & _M32
    column = torch.as_tensor(column, dtype=torch.int64, device=row.device)
    row, column = torch.broadcast_tensors(row, column)
    ctr = (column >> 2, row, torch.full_like(row, offset & _M32), torch.full_like(row, offset >> 32))
    words = torch.stack(philox4x32_10(ctr, seed & _M32, seed >> 32), dim=-1)
    return words.gather(-1, (column & 3).unsqueeze(-1)).squeeze(-1)


def uniform_from_bits(bits: torch.Tensor) -> torch.Tensor:
    """The header's mapping to (0, 1): (bits >> 9 + 1/2) * 2**-23, exact in float32."""
    return ((bits >> 9).to(torch.float64) * 2.0**-23 + 2.0**-24).to(torch.float32)


def philox_uniform(seed: int, offset: int, row, column) -> torch.Tensor:
    return uniform_from_bits(philox_bits(seed, offset, row, column))


def philox_gumbel(seed: int, offset: int, row, column) -> torch.Tensor:
    """Standard Gumbel noise in float64 from the float32 uniform (the kernels compute the two
    logarithms in float32, so they agree with this to a few float32 ulps)."""
    u = philox_uniform(seed, offset, row, column).double()
    return -torch.log(-torch.log(u))
