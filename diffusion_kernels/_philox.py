"""Pure-PyTorch mirror of csrc/kernels/philox.cuh (Philox4x32-10 keyed by (seed, offset), indexed
by (row, column)), for references and for Python-side draws that must match the kernels bit for
bit. Works on any device; 32-bit words are held in int64 tensors.
"""
import torch

__all__ = ["philox_bits", "philox_uniform", "philox4x32_10"]

_M32 = 0xFFFFFFFF
_MUL0, _MUL1 = 0xD2511F53, 0xCD9E8D57
_WEYL0, _WEYL1 = 0x9E3779B9, 0xBB67AE85


def _mulhilo(a: int, b: torch.Tensor):
    """(hi, lo) 32-bit words of a * b; 16-bit limbs keep every partial product inside int64."""
    a_lo, a_hi = a & 0xFFFF, a >> 16
    b_lo, b_hi = b & 0xFFFF, b >> 16
    ll, lh, hl, hh = a_lo * b_lo, a_lo * b_hi, a_hi * b_lo, a_hi * b_hi
    mid = (ll >> 16) + (lh & 0xFFFF) + (hl & 0xFFFF)
    lo = ((mid & 0xFFFF) << 16) | (ll & 0xFFFF)
    hi = (hh + (lh >> 16) + (hl >> 16) + (mid >> 16)) & _M32
    return hi, lo


def philox4x32_10(ctr, k0: int, k1: int):
    """The block function on four int64 tensors of 32-bit words (broadcastable); returns four."""
    c0, c1, c2, c3 = ctr
    for _ in range(10):
        hi0, lo0 = _mulhilo(_MUL0, c0)
        hi1, lo1 = _mulhilo(_MUL1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0, k1 = (k0 + _WEYL0) & _M32, (k1 + _WEYL1) & _M32
    return c0, c1, c2, c3


def philox_bits(seed: int, offset: int, row, column) -> torch.Tensor:
    """32 random bits (as int64) for each broadcast (row, column) pair, as dk::philox_bits."""
    row = torch.as_tensor(row, dtype=torch.int64)
    column = torch.as_tensor(column, dtype=torch.int64, device=row.device)
    row, column = torch.broadcast_tensors(row, column)
    seed &= (1 << 64) - 1
    offset &= (1 << 64) - 1
    zeros = torch.zeros_like(row)
    ctr = (column >> 2, row & _M32, zeros + (offset & _M32), zeros + (offset >> 32))
    words = torch.stack(philox4x32_10(ctr, seed & _M32, seed >> 32), dim=-1)
    return words.gather(-1, (column & 3).unsqueeze(-1)).squeeze(-1)


def philox_uniform(seed: int, offset: int, row, column) -> torch.Tensor:
    """float32 uniforms in (0, 1), as dk::philox_uniform: 23 bits centred in their cell (exact)."""
    bits = philox_bits(seed, offset, row, column)
    return (bits >> 9).to(torch.float32) * 1.1920928955078125e-07 + 5.9604644775390625e-08
