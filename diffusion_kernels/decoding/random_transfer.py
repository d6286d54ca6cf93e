"""Dream's ``alg="origin"``: every masked position of the block is committed independently with
probability ``1 - s / t``, so the count of a step is random (binomial), not scheduled.

The coin flips come from the package's Philox generator keyed by ``(seed, ORIGIN_OFFSET + offset)``
at (row, column) of the step's confidence, so a seed reproduces them on every device and they never
reuse the stream of the step's token draws (``offset``) or of ``TopK``'s ``alg_temp`` draws.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Union

import torch

from .._philox import philox_uniform
from ..ops import select_transfer
from .plans import StepPlan
from .rules import Rule

__all__ = ["RandomTransfer", "DreamOriginPlan", "ORIGIN_OFFSET", "dream_origin_probability"]

# Philox offsets of the coin flips: a step at offset s flips at 2**41 + s (TopK's alg_temp uses 2**40 + s).
ORIGIN_OFFSET = 1 << 41


def _key(value, name: str) -> int:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_floating_point() or value.dtype == torch.bool:
            raise ValueError(f"diffusion_kernels: argument '{name}' must be an int or a one-element integer tensor")
        return int(value.item())  # one read: the pure-PyTorch Philox takes the key on the host
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"diffusion_kernels: argument '{name}' must be an int, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class RandomTransfer(Rule):
    """Each candidate (finite confidence) is committed with probability ``p``, independently.

    Dream ``sample_tokens`` with ``alg="origin"``: ``torch.rand(n) < p_transfer`` over the masked
    positions, ``p_transfer = 1 - s / t`` (1 at the last step); the confidence plays no part. Here
    the uniforms are Philox's ``(bits >> 9 + 1/2) 2**-23`` in ``(0, 1)``, compared with ``p`` in
    float32, and the chosen positions are committed by ``select_transfer``'s top-k with the row's
    count (so ``x`` is written by the op, as for every rule).

    Examples:
        >>> conf = torch.zeros(2, 6)                            # six candidates per row
        >>> RandomTransfer(1.0).select(conf).sum().item(), RandomTransfer(0.0).select(conf).sum().item()
        (12, 0)
    """

    p: float

    def __post_init__(self):
        if isinstance(self.p, bool) or not isinstance(self.p, (int, float)):
            raise TypeError(f"diffusion_kernels: argument 'p' must be a number, got {type(self.p).__name__}")
        if not 0.0 <= self.p <= 1.0:  # also refuses NaN
            raise ValueError(f"diffusion_kernels: argument 'p' must be in [0, 1], got {self.p}")

    def select_kwargs(self, seed, offset):
        raise ValueError("diffusion_kernels: RandomTransfer is not one select_transfer rule (its count is drawn "
                         "first); call its select()")

    def chosen(self, confidence: torch.Tensor, *, seed: Union[int, torch.Tensor] = 0,
               offset: Union[int, torch.Tensor] = 0) -> torch.Tensor:
        """``[batch, seq]`` bool: the candidates whose coin came up (before any write)."""
        if not isinstance(confidence, torch.Tensor) or confidence.dim() != 2:
            raise ValueError("diffusion_kernels: argument 'confidence' must be a [batch, seq] tensor")
        seed, offset = _key(seed, "seed"), _key(offset, "offset")
        B, S = confidence.shape
        dev = confidence.device
        u = philox_uniform(seed, ORIGIN_OFFSET + offset, torch.arange(B, device=dev)[:, None],
                           torch.arange(S, device=dev)[None, :])
        return torch.isfinite(confidence) & (u < torch.tensor(self.p, dtype=torch.float32, device=dev))

    def select(self, confidence: torch.Tensor, x: Optional[torch.Tensor] = None, x0: Optional[torch.Tensor] = None,
               *, seed: Union[int, torch.Tensor] = 0, offset: Union[int, torch.Tensor] = 0) -> torch.Tensor:
        chosen = self.chosen(confidence, seed=seed, offset=offset)
        # chosen 1 > unchosen candidate 0 > non-candidate -inf: the op's top-k of the count takes the chosen
        score = torch.where(chosen, 1.0, torch.where(torch.isfinite(confidence), 0.0, -math.inf)).float()
        return select_transfer(score, k=chosen.sum(1), x=x, x0=x0)


def dream_origin_probability(step: int, steps: int, eps: float = 1e-3) -> float:
    """Dream's ``p_transfer`` at ``step`` of ``steps``: ``1 - s / t`` with ``t, s`` consecutive
    entries of the float32 ``linspace(1, eps, steps + 1)``, computed in float32; 1 at the last step.

    Examples:
        >>> [round(dream_origin_probability(i, 4), 4) for i in range(4)]
        [0.2498, 0.3329, 0.499, 1.0]
    """
    if step >= steps - 1:
        return 1.0
    ts = torch.linspace(1, eps, steps + 1, dtype=torch.float32)
    return float(1 - ts[step + 1] / ts[step])


@dataclass
class DreamOriginPlan(StepPlan):
    """Dream ``alg="origin"`` per block: step ``i`` of ``steps_per_block`` is
    ``RandomTransfer(dream_origin_probability(i, steps_per_block, eps))``; the last step commits
    every mask left. Dream's sampler has no blocks: one block over the whole answer reproduces it.

    Examples:
        >>> plan = DreamOriginPlan(4)
        >>> plan.rule(3, None)
        RandomTransfer(p=1.0)
    """
    steps_per_block: int
    eps: float = 1e-3

    def __post_init__(self):
        if isinstance(self.steps_per_block, bool) or not isinstance(self.steps_per_block, int) or self.steps_per_block < 1:
            raise ValueError(f"diffusion_kernels: argument 'steps_per_block' must be an int >= 1, got {self.steps_per_block!r}")
        if isinstance(self.eps, bool) or not isinstance(self.eps, (int, float)) or not 0 < self.eps < 1:
            raise ValueError(f"diffusion_kernels: argument 'eps' must be in (0, 1), got {self.eps!r}")
        self._p = [dream_origin_probability(i, self.steps_per_block, self.eps) for i in range(self.steps_per_block)]

    def rule(self, step, masks_left):
        return RandomTransfer(self._p[step])
