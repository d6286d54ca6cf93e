"""Step plans: the rule each step of a block uses, and how long a block runs.

A fixed plan (LLaDA's or Dream's schedule) gives every step a :class:`TopK` with that step's counts
and runs ``steps_per_block`` steps; :class:`UntilDone` repeats an adaptive rule (threshold, factor)
until the block has no mask left.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..schedules import dream_num_transfer_tokens, llada_num_transfer_tokens
from .rules import Rule, TopK

__all__ = ["StepPlan", "LLaDAPlan", "DreamPlan", "UntilDone"]


class StepPlan:
    """``steps_per_block``: steps of every block, or ``None`` for "until no mask is left".
    ``begin_block(masks_left)`` is called once per block, ``rule(step, masks_left)`` before every
    step; ``masks_left`` is the ``[batch]`` int64 count of masks in the block (a device tensor)."""

    steps_per_block: Optional[int] = None

    def begin_block(self, masks_left: torch.Tensor) -> None:
        pass

    def rule(self, step: int, masks_left: torch.Tensor) -> Rule:
        raise NotImplementedError


@dataclass
class LLaDAPlan(StepPlan):
    """LLaDA ``get_num_transfer_tokens``: the block's masks split evenly over its steps, the
    remainder to the first steps, counted once per block."""
    steps_per_block: int
    alg_temp: Optional[float] = None
    _counts: Optional[torch.Tensor] = None

    def begin_block(self, masks_left):
        self._counts = llada_num_transfer_tokens(masks_left, self.steps_per_block)

    def rule(self, step, masks_left):
        return TopK(self._counts[:, step], self.alg_temp)


@dataclass
class DreamPlan(StepPlan):
    """Dream's linear schedule: ``trunc(N (1 - s / t))`` of the masks ``N`` left now, ``t, s``
    consecutive entries of ``linspace(1, eps, steps + 1)``, everything at the last step; per row
    (Dream uses the batch mean, equal while rows have equal counts)."""
    steps_per_block: int
    eps: float = 1e-3
    alg_temp: Optional[float] = None

    def rule(self, step, masks_left):
        return TopK(dream_num_transfer_tokens(masks_left, step, self.steps_per_block, self.eps), self.alg_temp)


@dataclass
class UntilDone(StepPlan):
    """An adaptive rule (:class:`Threshold`, :class:`Factor`) at every step until the block is decoded."""
    every_step: Rule
    steps_per_block = None

    def rule(self, step, masks_left):
        return self.every_step
