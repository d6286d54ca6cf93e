"""Pure-torch mirror of csrc/kernels/philox.cuh (Philox4x32-10 keyed by (seed, offset), indexed
by (row, column)), for references that must reproduce the kernels' random draws exactly.

32-bit words are held in int64 tensors; the 32x32-bit products wrap modulo 2**64 in int64, which
keeps every bit of the 64-bit product, so masking recovers the high and low words exactly."""
import torch

_M32 = 0xFFFFFFFF
_MUL0, _MUL1 = 0xD2511F53, 0xCD9E8D57
_WEYL0, _WEYL1 = 0x9E3779B9, 0xBB67AE85


def philox4x32_10(c0, c1, c2, c3, k0: int, k1: int):
    """The block function on int64 tensors holding uint32 words; returns the 4 output words."""
    for _ in range(10):
        p0 = c0 * _MUL0
        p1 = c2 * _MUL1
        hi0, lo0 = (p0 >> 32) & _M32, p0 & _M32
        hi1, lo1 = (p1 >> 32) & _M32, p1 & _M32
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0, k1 = (k0 + _WEYL0) & _M32, (k1 + _WEYL1) & _M32
    return c0, c1, c2, c3


def philox_bits(seed: int, offset: int, rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """uint32 words (as int64) for every (row, column) pair of the broadcast of rows and columns."""
    rows, columns = torch.broadcast_tensors(rows.to(torch.int64), columns.to(torch.int64))
    seed &= (1 << 64) - 1
    offset &= (1 << 64) - 1
    c0 = (columns >> 2) & _M32
    c1 = rows & _M32
    c2 = torch.full_like(c0, offset & _M32)
    c3 = torch.full_like(c0, offset >> 32)
    words = torch.stack(philox4x32_10(c0, c1, c2, c3, seed & _M32, seed >> 32), dim=-1)
    return words.gather(-1, (columns & 3).unsqueeze(-1)).squeeze(-1)


def philox_uniform(seed: int, offset: int, rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """float32 uniforms in (0, 1), bit-identical to dk::philox_uniform (the value is exact)."""
    bits = philox_bits(seed, offset, rows, columns)
    return ((bits >> 9).to(torch.float64) * 2.0**-23 + 2.0**-24).to(torch.float32)
