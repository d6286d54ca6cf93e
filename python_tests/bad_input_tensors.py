"""Tensor builders of the battery: seeded values and the same values in unusual layouts."""
import torch

NAN, INF = float("nan"), float("inf")


def randn(*shape, dtype=torch.float32, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g) * scale).to(dtype)


def randint(lo, hi, *shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(lo, hi, shape, generator=g)


def padded(t):
    """The same values with every row stride larger than its row (last dimension contiguous)."""
    n = t.shape[-1]
    buf = torch.full(t.shape[:-1] + (2 * n + 1,), 7, dtype=t.dtype) if t.dtype != torch.bool else \
        torch.zeros(t.shape[:-1] + (2 * n + 1,), dtype=t.dtype)
    buf[..., :n] = t
    return buf[..., :n]


def transposed(t, d0=0, d1=1):
    """The same values with dimensions d0 and d1 stored swapped (non-contiguous)."""
    return t.transpose(d0, d1).contiguous().transpose(d0, d1)


def last_dim_strided(t):
    """The same values with a last-dimension stride of 2."""
    buf = torch.zeros(t.shape[:-1] + (2 * t.shape[-1],), dtype=t.dtype)
    buf[..., ::2] = t
    return buf[..., ::2]


def expanded(t, dim):
    """The first slice along dim repeated with stride 0 (the shape is unchanged)."""
    return t.narrow(dim, 0, 1).expand(t.shape)


def meta(t):
    return t.to("meta")
