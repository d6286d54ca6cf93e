"""Transfer rules: which of the proposed tokens a dLLM sampler commits at one step.

A rule is a small frozen dataclass; :meth:`Rule.select` applies it to a ``[batch, seq]`` confidence
(``-inf`` / non-finite at positions that are not candidates) through the fused
:func:`~diffusion_kernels.select_transfer` op, optionally writing the committed proposals into
``x`` in place. Per-row values (``TopK.k``) may be tensors on the logits' device: no host sync.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Optional, Union

import torch

from ..ops import select_transfer

__all__ = ["Rule", "TopK", "Threshold", "Factor", "ALG_TEMP_OFFSET"]

# Philox offsets of TopK's alg_temp position draws: a step at offset s draws at 2**40 + s, so they
# never reuse the (seed, s) stream of that step's token draws.
ALG_TEMP_OFFSET = 1 << 40


def _real(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"diffusion_kernels: argument '{name}' must be a number, got {type(value).__name__}")
    if math.isnan(value):
        raise ValueError(f"diffusion_kernels: argument '{name}' must not be NaN")
    return float(value)


class Rule:
    """Base of the transfer rules. ``adaptive``: the rule decides how many tokens a step commits
    (at least one per row that has a candidate), so a block runs until it has no mask left;
    otherwise a schedule fixes the count of every step."""

    adaptive: ClassVar[bool] = False

    def select_kwargs(self, seed: Union[int, torch.Tensor], offset: Union[int, torch.Tensor]) -> dict:
        """The rule as :func:`~diffusion_kernels.select_transfer` keywords."""
        raise NotImplementedError

    def select(self, confidence: torch.Tensor, x: Optional[torch.Tensor] = None, x0: Optional[torch.Tensor] = None,
               *, seed: Union[int, torch.Tensor] = 0, offset: Union[int, torch.Tensor] = 0) -> torch.Tensor:
        """``[batch, seq]`` bool mask of the committed positions; with ``x``/``x0`` also writes
        ``x[b, i] = x0[b, i]`` there, in place. ``seed``/``offset``: the step's Philox key."""
        return select_transfer(confidence, x=x, x0=x0, **self.select_kwargs(seed, offset))


@dataclass(frozen=True)
class TopK(Rule):
    """The ``k`` most confident candidates of each row (ties: lowest index).

    LLaDA ``generate.py``: ``torch.topk(confidence[j], k=num_transfer_tokens[j, i])`` with the count
    from ``get_num_transfer_tokens``; Dream ``sample_tokens`` + ``torch.topk(full_confidence,
    number_transfer_tokens)``. ``k``: an int or a ``[batch]`` integer tensor; more than the row's
    candidates commits them all.

    ``alg_temp > 0`` is Dream's ``alg_temp``: the ``k`` positions are drawn without replacement from
    ``softmax(confidence / alg_temp)`` (Dream: ``torch.multinomial``; here Gumbel-top-k with the
    package's Philox generator at ``(seed, ALG_TEMP_OFFSET + offset)``). ``None``/0: plain top-k.
    """

    k: Union[int, torch.Tensor]
    alg_temp: Optional[float] = None

    def __post_init__(self):
        if not isinstance(self.k, torch.Tensor):
            if isinstance(self.k, bool) or not isinstance(self.k, int):
                raise TypeError(f"diffusion_kernels: argument 'k' must be an int or an integer tensor, got {type(self.k).__name__}")
            if self.k < 0:
                raise ValueError(f"diffusion_kernels: argument 'k' must be >= 0, got {self.k}")
        if self.alg_temp is not None and not _real(self.alg_temp, "alg_temp") >= 0:
            raise ValueError(f"diffusion_kernels: argument 'alg_temp' must be >= 0, got {self.alg_temp}")

    def select_kwargs(self, seed, offset):
        if not self.alg_temp:
            return {"k": self.k}
        return {"k": self.k, "alg_temp": self.alg_temp, "seed": seed, "offset": ALG_TEMP_OFFSET + offset}


@dataclass(frozen=True)
class Threshold(Rule):
    """Every candidate whose confidence passes ``threshold``, and at least the row's best.

    Fast-dLLM ``get_transfer_index`` (``threshold`` argument of ``generate``): keeps the top-1 and
    drops the others with ``confidence < threshold``, i.e. commits ``>= threshold`` (inclusive, the
    default). ``strict=True`` commits ``> threshold`` (SGLang's ``LowConfidence``), with the same
    top-1 fallback. The bound is compared in float32, as torch compares a float32 tensor with a
    Python float.
    """

    threshold: float
    strict: bool = False
    adaptive: ClassVar[bool] = True

    def __post_init__(self):
        _real(self.threshold, "threshold")

    def select_kwargs(self, seed, offset):
        if not self.strict:
            return {"threshold": self.threshold}
        # c > t  <=>  c >= the next float32 above t, for the finite float32 confidences that compete
        t = torch.tensor(self.threshold, dtype=torch.float32)
        return {"threshold": torch.nextafter(t, torch.tensor(math.inf)).item()}


@dataclass(frozen=True)
class Factor(Rule):
    """Fast-dLLM's factor-based parallel decoding, the rule of the paper (Theorem 1): with the
    candidates sorted ``c_1 >= c_2 >= ...``, commit the first ``n`` for the largest ``n`` with
    ``(n + 1) (1 - c_n) < factor``, at least one. Fast-dLLM's code (``get_transfer_index_dynamic``)
    also commits the last-ranked candidate when it alone fails; this rule does not."""

    factor: float
    adaptive: ClassVar[bool] = True

    def __post_init__(self):
        if not _real(self.factor, "factor") > 0:
            raise ValueError(f"diffusion_kernels: argument 'factor' must be > 0, got {self.factor}")

    def select_kwargs(self, seed, offset):
        return {"factor": self.factor}
