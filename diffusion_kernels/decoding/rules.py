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

__all__ = ["Rule", "TopK", "Threshold", "Factor", "DInferThreshold", "ALG_TEMP_OFFSET"]

# Philox offsets of TopK's alg_temp position draws: a step at offset s draws at 2**40 + s, so they
# never reuse the (seed, s) stream of that step's token draws.
ALG_TEMP_OFFSET = 1 << 40


def _threshold(value, name: str = "threshold") -> None:
    """A threshold: a number that is not NaN, or a real per-row tensor (its entries are the op's
    to read: no host sync)."""
    if isinstance(value, torch.Tensor):
        if value.dtype == torch.bool or value.is_complex():
            raise TypeError(f"diffusion_kernels: argument '{name}' must be a number or a real [batch] tensor, "
                            f"got {value.dtype}")
        return
    _real(value, name)


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
    Python float. ``threshold`` may be a ``[batch]`` tensor on the confidences' device, one bound
    per row (engines batch requests at different steps); a NaN entry commits only that row's best.

    Examples:
        >>> conf = torch.tensor([[0.9, 0.95, 0.5], [0.9, 0.6, 0.7]])
        >>> Threshold(0.9).select(conf).tolist(), Threshold(0.9, strict=True).select(conf).tolist()
        ([[True, True, False], [True, False, False]], [[False, True, False], [True, False, False]])
        >>> Threshold(torch.tensor([0.99, 0.65])).select(conf).tolist()
        [[False, True, False], [True, False, True]]
    """

    threshold: Union[float, torch.Tensor]
    strict: bool = False
    adaptive: ClassVar[bool] = True

    def __post_init__(self):
        _threshold(self.threshold)
        if not isinstance(self.strict, bool):
            raise TypeError(f"diffusion_kernels: argument 'strict' must be a bool, got {type(self.strict).__name__}")

    def select_kwargs(self, seed, offset):
        if not self.strict:
            return {"threshold": self.threshold}
        return {"threshold": self.threshold, "strict": True}


@dataclass(frozen=True)
class Factor(Rule):
    """Fast-dLLM's factor-based parallel decoding (the ``factor`` argument of its ``generate``).

    ``variant='paper'`` (default), the rule of the paper (Theorem 1): with the candidates sorted
    ``c_1 >= c_2 >= ...``, commit the first ``n`` for the largest ``n`` with ``(n + 1) (1 - c_n) <
    factor``, at least one; this is ``select_transfer``'s ``factor`` rule.

    ``variant='fastdllm_code'``, the rule as Fast-dLLM's ``get_transfer_index_dynamic`` runs it (so
    published numbers reproduce): per row it sorts the candidates (``sorted_conf``), bounds rank
    ``n`` by ``threshs[n-1] = 1 - factor / (n + 1)`` with ``threshs[0] = -1``, stops at the first
    rank with ``sorted_conf < threshs`` (``top_i``) and commits the top ``top_i``, except that a
    stop at rank 1 or at the last rank adds one (``top_i += 1``): when only the last-ranked
    candidate fails it is committed anyway. The bound is inclusive (``c_n >= 1 - factor / (n + 1)``
    in float64, as the code compares), so at the exact bound it also commits where the paper's
    strict form does not. ``select_transfer`` has no such rule: the count comes from a sort of the
    ``[batch, seq]`` confidences in torch ops (no host sync, no loop over rows) and the op's top-k
    commits it (ties to the lowest index). The code fails on a row without candidates; here that
    row commits nothing.

    Examples:
        >>> conf = torch.tensor([[0.99, 0.98, 0.2]])       # only the last-ranked fails its bound
        >>> Factor(1.0).select(conf).tolist(), Factor(1.0, variant="fastdllm_code").select(conf).tolist()
        ([[True, True, False]], [[True, True, True]])
    """

    factor: float
    variant: str = "paper"
    adaptive: ClassVar[bool] = True

    def __post_init__(self):
        if not _real(self.factor, "factor") > 0:
            raise ValueError(f"diffusion_kernels: argument 'factor' must be > 0, got {self.factor}")
        if self.variant not in ("paper", "fastdllm_code"):
            raise ValueError(f"diffusion_kernels: argument 'variant' must be 'paper' or 'fastdllm_code', got {self.variant!r}")

    def select_kwargs(self, seed, offset):
        if self.variant == "paper":
            return {"factor": self.factor}
        raise ValueError("diffusion_kernels: Factor(variant='fastdllm_code') is not a select_transfer rule; "
                         "call its select()")

    def select(self, confidence: torch.Tensor, x: Optional[torch.Tensor] = None, x0: Optional[torch.Tensor] = None,
               *, seed: Union[int, torch.Tensor] = 0, offset: Union[int, torch.Tensor] = 0) -> torch.Tensor:
        if self.variant == "paper":
            return super().select(confidence, x, x0, seed=seed, offset=offset)
        if not isinstance(confidence, torch.Tensor) or confidence.dim() != 2:
            # the op's own check gives the message
            return select_transfer(confidence, x=x, x0=x0, factor=self.factor)
        return select_transfer(confidence, x=x, x0=x0, k=self._code_count(confidence))

    def _code_count(self, confidence: torch.Tensor) -> torch.Tensor:
        """``[batch]`` int64: how many candidates ``get_transfer_index_dynamic`` commits per row."""
        conf = confidence.to(torch.float64)  # float32/16 -> float64 is exact; the code compares in float64
        cand = torch.isfinite(conf)
        ranked = torch.sort(conf.masked_fill(~cand, -math.inf), dim=1, descending=True).values
        n = torch.arange(1, conf.shape[1] + 1, dtype=torch.float64, device=conf.device)
        bound = 1.0 - self.factor / (n + 1.0)
        bound[:1] = -1.0
        leading = (ranked >= bound).to(torch.int64).cumprod(1).sum(1)  # ranks before the first failure
        m = cand.sum(1)
        return torch.where(leading >= m - 1, m, leading.clamp(min=1))


@dataclass(frozen=True)
class DInferThreshold(Rule):
    """dInfer's threshold decoder (``ThresholdParallelDecoder``, ``get_transfer_index_threshold``):
    commit every candidate with ``confidence >= actual_threshold``, ``actual_threshold =
    min(max(confidence) - eps, threshold)`` per row (dInfer: ``eps = 1e-5``), compared in float32;
    the row's best (and anything within ``eps`` of it) is always committed. This is
    ``select_transfer``'s ``threshold_rowmax`` rule (``threshold`` with ``eps``).

    ``mask_id``: dInfer's ``rm_mask`` exclusion, ``mask_index & (x0 != mask_id)``: a position whose
    proposal ``x0`` is the mask token is no candidate (nor counted in the row maximum); needs
    ``x0``. ``None``: no exclusion. A row whose every candidate proposes ``mask_id`` commits nothing.
    dInfer also clamps the bound below at -1000 (``clamp(-1000, threshold)``): it only differs for
    confidences below -1000, never for probabilities. ``threshold`` may be a ``[batch]`` tensor
    (one bound per row, as :class:`Threshold`'s).

    Examples:
        >>> conf = torch.tensor([[0.5, 0.95, 0.97, 0.5]])
        >>> x, x0 = torch.full((1, 4), 9), torch.tensor([[1, 2, 9, 3]])  # 9 = [MASK], proposed at 2
        >>> DInferThreshold(0.9, mask_id=9).select(conf, x, x0).tolist(), x.tolist()
        ([[False, True, False, False]], [[9, 2, 9, 9]])
    """

    threshold: Union[float, torch.Tensor]
    eps: float = 1e-5
    mask_id: Optional[int] = None
    adaptive: ClassVar[bool] = True

    def __post_init__(self):
        _threshold(self.threshold)
        if not (math.isfinite(_real(self.eps, "eps")) and self.eps >= 0):
            raise ValueError(f"diffusion_kernels: argument 'eps' must be finite and >= 0, got {self.eps}")
        if self.mask_id is not None and (isinstance(self.mask_id, bool) or not isinstance(self.mask_id, int)):
            raise TypeError(f"diffusion_kernels: argument 'mask_id' must be an int or None, got {type(self.mask_id).__name__}")

    def select_kwargs(self, seed, offset):
        return {"threshold": self.threshold, "eps": self.eps}

    def select(self, confidence: torch.Tensor, x: Optional[torch.Tensor] = None, x0: Optional[torch.Tensor] = None,
               *, seed: Union[int, torch.Tensor] = 0, offset: Union[int, torch.Tensor] = 0) -> torch.Tensor:
        if self.mask_id is not None:
            if x0 is None:
                raise ValueError("diffusion_kernels: argument 'x0' is required by DInferThreshold(mask_id=...)")
            if (isinstance(confidence, torch.Tensor) and isinstance(x0, torch.Tensor) and x0.shape == confidence.shape
                    and x0.device == confidence.device):  # otherwise the op refuses with its message
                confidence = confidence.masked_fill(x0 == self.mask_id, -math.inf)
            if x is None:  # x0 served the exclusion only: nothing to write
                x0 = None
        return super().select(confidence, x, x0, seed=seed, offset=offset)
