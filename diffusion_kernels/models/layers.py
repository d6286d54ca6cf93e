"""Layers shared by the models: RMSNorm, rotary embeddings (rotate-half layout, optionally on a
leading part of the head dim), the SwiGLU feed-forward, the self-attention call without a cache,
and the argument checks of a model's forward."""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import nn

from ..ops import attention_with_kv_cache

__all__ = ["RMSNorm", "SwiGLU", "swiglu", "rope_inv_freq", "rope_angles", "apply_rope", "self_attention",
           "check_int", "check_positive_number", "check_token_ids", "check_cache_args"]


def check_int(value, name: str, minimum: int, owner: str) -> None:
    """A TypeError/ValueError naming ``owner``'s field ``name`` unless ``value`` is an int >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"diffusion_kernels: {owner}: '{name}' must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"diffusion_kernels: {owner}: '{name}' must be >= {minimum}, got {value}")


def check_positive_number(value, name: str, owner: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValueError(f"diffusion_kernels: {owner}: '{name}' must be a finite number > 0, got {value!r}")


class RMSNorm(nn.Module):
    """``x / rms(x) * weight`` computed in float32, returned in x's dtype."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return (h * self.weight.float()).to(x.dtype)


def swiglu(x: torch.Tensor, gate: nn.Linear, up: nn.Linear, down: nn.Linear) -> torch.Tensor:
    """``down(silu(gate(x)) * up(x))``."""
    return down(nn.functional.silu(gate(x)) * up(x))


class SwiGLU(nn.Module):
    """The LLaMA/Qwen feed-forward with Hugging Face's names ``gate_proj``, ``up_proj``, ``down_proj``."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden, bias=False)
        self.up_proj = nn.Linear(dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return swiglu(x, self.gate_proj, self.up_proj, self.down_proj)


def rope_inv_freq(rotary_dim: int, theta: float, device=None) -> torch.Tensor:
    """float32 ``theta ** (-2i / rotary_dim)`` for the ``rotary_dim // 2`` pairs (computed in float64)."""
    exponent = torch.arange(0, rotary_dim, 2, dtype=torch.float64, device=device) / rotary_dim
    return (1.0 / theta ** exponent).float()


def rope_angles(positions: torch.Tensor, inv_freq: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(cos, sin)`` of ``positions [T]`` or ``[B, T]``, shaped ``[1 or B, T, 1, pairs]`` to
    broadcast over ``[B, T, heads, head_dim]``."""
    ang = positions.to(torch.float32)[..., None] * inv_freq
    if ang.dim() == 2:
        ang = ang[None]
    return ang.cos()[:, :, None, :], ang.sin()[:, :, None, :]


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE on the first ``2 * pairs`` dims of the head (dim ``i`` pairs with
    ``i + pairs``); the rest of the head passes through (partial rotary, as LLaDA2's)."""
    pairs = cos.shape[-1]
    x1, x2 = x[..., :pairs].float(), x[..., pairs:2 * pairs].float()
    rotated = torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(x.dtype)
    if 2 * pairs == x.shape[-1]:
        return rotated
    return torch.cat([rotated, x[..., 2 * pairs:]], dim=-1)


def self_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_padding_mask: Optional[torch.Tensor],
                   **block_rule) -> torch.Tensor:
    """The package's attention op over the fresh ``k``/``v`` themselves (no cache). When a
    gradient is needed, ``k``/``v`` go in as the new rows of a scratch cache (the op's autograd
    differentiates the new rows, never the cache); otherwise they are read as the cache."""
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        k_cache, v_cache = torch.empty_like(k, requires_grad=False), torch.empty_like(v, requires_grad=False)
        return attention_with_kv_cache(q, k_cache, v_cache, k, v, cache_seqlens=0,
                                       key_padding_mask=key_padding_mask, **block_rule)
    return attention_with_kv_cache(q, k, v, key_padding_mask=key_padding_mask, **block_rule)


def check_token_ids(x: torch.Tensor, vocab_size: int, owner: str) -> None:
    """Token ids outside the vocabulary are an error naming 'x', not the embedding's "index out
    of range in self". Values are checked on the CPU only: on a GPU the check would synchronise."""
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.is_floating_point() or x.is_complex() \
            or x.dtype == torch.bool:
        got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"diffusion_kernels: {owner}: argument 'x' must be [batch, seq] integer token ids, got {got}")
    if x.device.type == "cpu" and x.numel():
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi >= vocab_size:
            raise ValueError(f"diffusion_kernels: {owner}: argument 'x' holds token id {lo if lo < 0 else hi}, "
                             f"outside the vocabulary [0, {vocab_size})")


def check_bool_flags(owner: str, **flags) -> None:
    """Each keyword's value must be a bool (not a tensor or an int that happens to be 0 or 1)."""
    for name, flag in flags.items():
        if not isinstance(flag, bool):
            raise TypeError(f"diffusion_kernels: {owner}: argument '{name}' must be a bool, got {flag!r}")


def check_cache_args(x: torch.Tensor, attention_mask: Optional[torch.Tensor], kv_cache, start, owner: str) -> None:
    """``start`` must place ``x`` inside the cache, the cache must have x's batch, and
    ``attention_mask`` must cover the whole sequence (the cache's length, or x's without one)."""
    B, T = x.shape
    length = T if kv_cache is None else kv_cache.length
    if kv_cache is not None:
        if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start <= length - T:
            raise ValueError(f"diffusion_kernels: {owner}: argument 'start' must be an int in [0, {length - T}] "
                             f"(x of {T} positions in a kv_cache of {length}), got {start!r}")
        if kv_cache.batch != B:
            raise ValueError(f"diffusion_kernels: {owner}: argument 'kv_cache' holds {kv_cache.batch} rows, x has {B}")
    if attention_mask is not None and tuple(attention_mask.shape) != (B, length):
        raise ValueError(f"diffusion_kernels: {owner}: argument 'attention_mask' must be [{B}, {length}] "
                         f"(the whole sequence), got {tuple(attention_mask.shape)}")
