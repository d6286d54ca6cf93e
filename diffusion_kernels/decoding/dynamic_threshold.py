"""SDAR's and LLaDA2's step rules: a top-k count per step that a confidence threshold may raise.

SDAR ``block_diffusion_generate`` (``remasking_strategy``) and LLaDA2's ``generate``: the count of
step ``i`` comes from ``get_num_transfer_tokens(block_length, steps)`` (the block length split over
the steps, remainder first, whatever the prompt covers of the block); ``low_confidence_static``
commits the top ``k_i``, ``low_confidence_dynamic`` commits every masked position with confidence
``> threshold`` when there are at least ``k_i`` of them, else the top ``k_i``: the union of both
sets, i.e. the top ``max(k_i, #{c > threshold})``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Union

import torch

from ..ops import select_transfer
from ..schedules import llada_num_transfer_tokens
from .plans import StepPlan
from .rules import Rule, TopK

__all__ = ["DynamicThreshold", "SDARPlan"]


def _number(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"diffusion_kernels: argument '{name}' must be a number, got {type(value).__name__}")
    if math.isnan(value):
        raise ValueError(f"diffusion_kernels: argument '{name}' must not be NaN")
    return float(value)


@dataclass(frozen=True)
class DynamicThreshold(Rule):
    """The top ``max(k, #{candidates with confidence > threshold})`` of each row (strict, as SDAR
    and LLaDA2 compare; ties at the count go to the lowest index, as the op's top-k). ``k``: an
    int or a ``[batch]`` integer tensor. The count is formed with torch ops (no host sync) and
    committed by ``select_transfer``'s top-k.

    Examples:
        >>> conf = torch.tensor([[0.99, 0.2, 0.97, 0.3]])
        >>> DynamicThreshold(1, 0.9).select(conf).tolist(), DynamicThreshold(3, 0.9).select(conf).tolist()
        ([[True, False, True, False]], [[True, False, True, True]])
    """

    k: Union[int, torch.Tensor]
    threshold: float

    def __post_init__(self):
        TopK(self.k)  # the same checks of k
        _number(self.threshold, "threshold")

    def select_kwargs(self, seed, offset):
        raise ValueError("diffusion_kernels: DynamicThreshold is not one select_transfer rule (its count depends on "
                         "the confidences); call its select()")

    def count(self, confidence: torch.Tensor) -> torch.Tensor:
        """``[batch]`` int64: how many candidates the rule commits (before capping at the candidates)."""
        # confidence is float32 (or upcast exactly): compare as torch compares it with the float
        above = ((confidence > self.threshold) & torch.isfinite(confidence)).sum(1)
        k = self.k if isinstance(self.k, torch.Tensor) else torch.tensor(self.k, device=confidence.device)
        return torch.maximum(above, k.to(device=confidence.device, dtype=torch.int64).reshape(-1))

    def select(self, confidence: torch.Tensor, x: Optional[torch.Tensor] = None, x0: Optional[torch.Tensor] = None,
               *, seed: Union[int, torch.Tensor] = 0, offset: Union[int, torch.Tensor] = 0) -> torch.Tensor:
        if not isinstance(confidence, torch.Tensor) or confidence.dim() != 2:
            return select_transfer(confidence, x=x, x0=x0, k=0)  # the op's own check gives the message
        return select_transfer(confidence, x=x, x0=x0, k=self.count(confidence))


@dataclass
class SDARPlan(StepPlan):
    """SDAR / LLaDA2 per block: step ``i`` commits ``n_i`` of ``get_num_transfer_tokens(block_length,
    steps_per_block)`` (``TopK``), or with ``threshold`` the :class:`DynamicThreshold` of that count.
    The block loop stops a block as soon as it has no mask left, as both do.

    Examples:
        >>> plan = SDARPlan(3, 8, threshold=0.9)
        >>> plan.rule(0, None), plan.rule(2, None).k
        (DynamicThreshold(k=3, threshold=0.9), 2)
    """
    steps_per_block: int
    block_length: Optional[int] = None   # required (a default only as StepPlan gives steps_per_block one)
    threshold: Optional[float] = None

    def __post_init__(self):
        for name in ("steps_per_block", "block_length"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"diffusion_kernels: argument '{name}' must be an int >= 1, got {v!r}")
        if self.threshold is not None:
            _number(self.threshold, "threshold")
        self._counts = llada_num_transfer_tokens(torch.tensor([self.block_length]), self.steps_per_block)[0].tolist()

    def rule(self, step, masks_left):
        k = self._counts[step]
        return TopK(k) if self.threshold is None else DynamicThreshold(k, self.threshold)
