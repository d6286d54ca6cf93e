"""The KV-cache policy of the block loop (Fast-dLLM's block-wise approximate caches): which
positions each step runs through the model. The K/V of every position are written by the full
forward at a block's first step; later steps of the block reuse some of them."""
from __future__ import annotations

from typing import Optional, Tuple

CACHE_POLICIES = (None, "prefix", "dual")


def check_cache_policy(cache: Optional[str], model) -> None:
    if cache not in CACHE_POLICIES:
        raise ValueError(f"diffusion_kernels: argument 'cache' must be None, 'prefix' or 'dual', got {cache!r}")
    if cache is not None and not hasattr(model, "init_cache"):
        raise ValueError(f"diffusion_kernels: cache={cache!r} needs a model with init_cache() "
                         "(diffusion_kernels.models.LLaDAModel); use cache=None for other models")


def query_range(cache: Optional[str], step_in_block: int, start: int, end: int, length: int) -> Tuple[int, int]:
    """Positions ``[q0, q1)`` the model runs at step ``step_in_block`` of the block ``[start, end)``.

    * ``None``: the whole sequence, every step (LLaDA).
    * ``'prefix'`` (Fast-dLLM ``generate_with_prefix_cache``): the block and everything after it;
      the K/V before the block come from the block's first step.
    * ``'dual'`` (Fast-dLLM ``generate_with_dual_cache``): only the block; the K/V before and
      after it come from the block's first step.

    The block's first step always runs everything (and so refreshes every cached K/V).
    """
    if cache is None or step_in_block == 0:
        return 0, length
    return (start, length) if cache == "prefix" else (start, end)
