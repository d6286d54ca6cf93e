"""Hypothesis strategies of the property suite: shapes, dtypes, layouts and values (ties, -inf,
masked and unmasked rows) of the four kernels' inputs. Values come from a drawn seed, so a
falsifying example is a handful of integers."""
import torch
from hypothesis import strategies as st

from bad_input_tensors import expanded, padded, transposed

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
LOW = [torch.float16, torch.bfloat16]


def values(shape, seed, ties, neginf, dtype, scale=3.0):
    """Normal values; ``ties`` rounds them to halves (many exact ties), ``neginf`` sets that
    fraction to -inf."""
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(shape, generator=g) * scale
    if ties:
        t = torch.round(t * 2) / 2
    if neginf:
        t = torch.where(torch.rand(shape, generator=g) < neginf, float("-inf"), t)
    return t.to(dtype)


def layout(t, kind):
    """The same values stored in another layout (the last dimension stays contiguous)."""
    if kind == "padded":
        return padded(t)
    if kind == "transposed" and t.dim() >= 2:
        return transposed(t, 0, 1)
    if kind == "stride0" and t.dim() >= 2 and t.shape[0] > 0:
        return expanded(t, 0)
    return t


seeds = st.integers(0, 2**31 - 1)
neginf_fraction = st.sampled_from([0.0, 0.0, 0.2, 0.9])
layouts = st.sampled_from(["contiguous", "padded", "transposed", "stride0"])
