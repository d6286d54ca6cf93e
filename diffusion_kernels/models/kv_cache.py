"""The KV cache the models share: per-layer K (after RoPE) and V buffers that the attention op
writes in place."""
from __future__ import annotations

import torch

__all__ = ["KVCache"]


class KVCache:
    """Per-layer ``[batch, length, kv_heads, head_dim]`` K (post-RoPE) and V buffers.

    ``filled``: the end of the rows the models' forwards have written so far (their high-water
    mark); rows at or after it hold no K/V yet (the block-diffusion model never reads them).

    Args:
        n_layers, batch, length, kv_heads, head_dim: the buffer sizes.
        dtype, device: of the buffers (a model's ``init_cache`` uses its weights').

    Examples:
        >>> import torch
        >>> kv = KVCache(2, batch=1, length=16, kv_heads=2, head_dim=8, dtype=torch.float32, device="cpu")
        >>> len(kv.k), tuple(kv.k[0].shape), kv.filled
        (2, (1, 16, 2, 8), 0)
    """

    def __init__(self, n_layers: int, *, batch: int, length: int, kv_heads: int, head_dim: int, dtype, device):
        shape = (batch, length, kv_heads, head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.batch, self.length = batch, length
        self.filled = 0

    def wrote(self, start: int, end: int) -> None:
        """Records that a forward stored K/V in the rows ``[start, end)``."""
        if end > start:
            self.filled = max(self.filled, end)
