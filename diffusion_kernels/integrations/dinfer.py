"""dInfer decoders on the package's fused ops.

dInfer (inclusionAI) takes its parallel decoder as a duck-typed object: ``BlockWiseDiffusionLLM(
model, decoder, ...)`` reads ``decoder.mask_id`` / ``decoder.eos_id`` and calls
``decoder.block_init(block_x, block_id)`` and ``decoder.decode(logits, block_start, block_end, x,
iter_threshold=None)``. The classes here have that interface and the constructor arguments of the
dInfer decoders they replace (``python/dinfer/decoding/parallel_strategy.py``):

* :class:`DKThresholdParallelDecoder`: ``ThresholdParallelDecoder`` (also ``batch_decode``), the
  core's :class:`~diffusion_kernels.decoding.DInferThreshold` rule;
* :class:`DKHierarchyDecoder`: ``HierarchyDecoder``, batched (dInfer's takes batch 1);
* :class:`DKFixedParallelDecoder`: ``FixedParallelDecoder``, the core's
  :class:`~diffusion_kernels.decoding.TopK` with LLaDA's schedule.

They need nothing from dInfer itself (``x`` may be a tensor or dInfer's ``TokenArray``), so this
module imports no engine. Same decisions as dInfer's at temperature 0; with ``temperature > 0``
the Gumbel noise comes from the package's Philox generator (``seed``), not ``torch.rand``.
"""
from __future__ import annotations

import math
from typing import Optional, Union

import torch

from ..decoding import DInferThreshold, Proposal, TopK, propose
from ..schedules import llada_num_transfer_tokens

__all__ = ["DKThresholdParallelDecoder", "DKHierarchyDecoder", "DKFixedParallelDecoder", "run_maxima"]

_REMASKING = {"low_confidence": "prob", "random": "random"}


def _broadcast_if_needed(data: torch.Tensor) -> None:
    """Keep every rank's tokens identical in a multi-GPU run, as dInfer's decoders do."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.broadcast(data, src=0)


class _Decoder:
    """Shared plumbing: the proposal (argmax or Gumbel-max with Philox, confidence from the plain
    softmax) and the per-call Philox offset."""

    def __init__(self, temperature: float, remasking: str, mask_id: int, eos_id: int, seed: int):
        if remasking not in _REMASKING:
            raise ValueError(f"diffusion_kernels: argument 'remasking' must be one of {sorted(_REMASKING)}, "
                             f"got {remasking!r}")
        self.temperature = temperature
        self.remasking = remasking
        self.mask_id = mask_id
        self.eos_id = eos_id
        self.seed = seed
        self.offset = 0
        self._proposal = Proposal(temperature=float(temperature), confidence=_REMASKING[remasking],
                                  confidence_from="logits")

    def block_init(self, block_x: torch.Tensor, block_id: int) -> None:
        """Called by dInfer before each block."""

    def _propose(self, logits: torch.Tensor, cur: torch.Tensor):
        x0, conf = propose(logits, cur, self.mask_id, self._proposal, seed=self.seed, offset=self.offset)
        self.offset += 1
        return x0, conf

    def _decode_block(self, logits, cur, iter_threshold) -> None:
        raise NotImplementedError

    def decode(self, logits: torch.Tensor, block_start: int, block_end: int, x, iter_threshold=None) -> None:
        """Decode one step of the block ``[block_start, block_end)`` of ``x`` (a ``[batch, seq]``
        tensor or dInfer's ``TokenArray``), in place, from ``logits`` ``[batch, block, vocab]``."""
        cur = x[:, block_start:block_end].clone()
        if logits.shape[1] != cur.shape[1]:
            raise ValueError(f"diffusion_kernels: logits cover {logits.shape[1]} positions, the block "
                             f"[{block_start}, {block_end}) has {cur.shape[1]}")
        self._decode_block(logits, cur, iter_threshold)
        x[:, block_start:block_end] = cur
        _broadcast_if_needed(x.data)


class DKThresholdParallelDecoder(_Decoder):
    """dInfer's ``ThresholdParallelDecoder``: commit every masked position whose confidence is
    ``>= min(row max - 1e-5, threshold)``, a position proposing the mask id excluded
    (:class:`~diffusion_kernels.decoding.DInferThreshold`).

    Args:
        temperature: proposal temperature (0: argmax).
        threshold: the default threshold; ``decode(..., iter_threshold=t)`` overrides it per call.
        remasking: ``'low_confidence'`` (probability of the proposal) or ``'random'``.
        mask_id, eos_id: as dInfer (LLaDA's defaults).
        use_float64: accepted for dInfer compatibility; confidences are float32 here.
        seed: Philox key of the ``temperature > 0`` draws.

    Examples:
        >>> dec = DKThresholdParallelDecoder(0, threshold=0.9, mask_id=9)
        >>> x = torch.tensor([[1, 9, 9, 9]])
        >>> logits = torch.zeros(1, 3, 10); logits[0, 0, 4] = 9.0; logits[0, 1, 5] = 9.0
        >>> dec.decode(logits, 1, 4, x); x.tolist()
        [[1, 4, 5, 9]]
    """

    def __init__(self, temperature: float, threshold: float, remasking: str = "low_confidence",
                 mask_id: int = 126336, eos_id: int = 126081, use_float64: bool = False, *, seed: int = 0):
        super().__init__(temperature, remasking, mask_id, eos_id, seed)
        self.threshold = threshold
        self.use_float64 = use_float64
        DInferThreshold(threshold, mask_id=mask_id)  # a bad value fails here, not at the first step

    def _decode_block(self, logits, cur, iter_threshold) -> None:
        threshold = self.threshold if iter_threshold is None else iter_threshold
        x0, conf = self._propose(logits, cur)
        DInferThreshold(float(threshold), mask_id=self.mask_id).select(conf, cur, x0)

    def batch_decode(self, logits: torch.Tensor, block_start: torch.Tensor, x, block_length: int,
                     iter_threshold=None) -> None:
        """Rows at different blocks: row ``b`` decodes ``[block_start[b], block_start[b] +
        block_length)`` of ``x`` from ``logits[b]`` (positions past the sequence end are read as
        its last token and never written)."""
        data = x.data
        seq = data.shape[1]
        where = torch.arange(block_length, device=data.device)[None, :] + block_start.to(data.device)[:, None]
        inside = where < seq
        where = where.clamp(max=seq - 1)
        cur = torch.gather(data, 1, where)
        self._decode_block(logits, cur, iter_threshold)
        rows = torch.arange(data.shape[0], device=data.device)[:, None].expand_as(where)
        data[rows[inside], where[inside]] = cur[inside]
        _broadcast_if_needed(data)


def run_maxima(confidence: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """``[batch, seq]`` bool: the candidates equal to the maximum confidence of their run of
    consecutive candidates (every tied maximum of a run).

    Examples:
        >>> conf = torch.tensor([[0.5, 0.7, 0.2, 0.9, 0.9]])
        >>> run_maxima(conf, torch.tensor([[True, True, False, True, True]])).tolist()
        [[False, True, False, True, True]]
    """
    batch, seq = candidates.shape
    previous = torch.nn.functional.pad(candidates[:, :-1], (1, 0), value=False)
    run = torch.cumsum((candidates & ~previous).to(torch.int64), dim=1) - 1
    run = torch.where(candidates, run, torch.full_like(run, seq))  # non-candidates: a spare slot
    conf = confidence.masked_fill(~candidates, -math.inf)
    best = torch.full((batch, seq + 1), -math.inf, dtype=conf.dtype, device=conf.device)
    best = best.scatter_reduce(1, run, conf, reduce="amax", include_self=True)
    return candidates & (conf == best.gather(1, run))


class DKHierarchyDecoder(_Decoder):
    """dInfer's ``HierarchyDecoder``: in each contiguous run of masked positions the most confident
    ones (every tied maximum) if their confidence is ``> low_threshold``, plus every masked position
    ``> threshold``, plus the row's most confident masked position (ties: lowest index). Batched
    (dInfer's handles batch 1).

    Examples:
        >>> dec = DKHierarchyDecoder(0, mask_id=9, low_threshold=0.4)
        >>> x = torch.tensor([[9, 9, 3, 9]])
        >>> logits = torch.zeros(1, 4, 10); logits[0, :, 2] = torch.tensor([3.0, 6.0, 0.0, 1.0])
        >>> dec.decode(logits, 0, 4, x); x.tolist()
        [[9, 2, 3, 9]]
    """

    def __init__(self, temperature: float, remasking: str = "low_confidence", mask_id: int = 126336,
                 eos_id: int = 126081, threshold: Optional[float] = None, low_threshold: Optional[float] = 0.4, *,
                 seed: int = 0):
        super().__init__(temperature, remasking, mask_id, eos_id, seed)
        self.threshold = threshold
        self.low_threshold = low_threshold
        self.iter = 0

    def block_init(self, block_x: torch.Tensor, block_id: int) -> None:
        self.iter = 0

    def _decode_block(self, logits, cur, iter_threshold) -> None:
        threshold = self.threshold if iter_threshold is None else iter_threshold
        x0, conf = self._propose(logits, cur)
        masked = cur == self.mask_id
        chosen = run_maxima(conf, masked)
        if self.low_threshold is not None:
            chosen &= conf > self.low_threshold
        if threshold is not None:
            chosen |= masked & (conf > threshold)
        chosen |= TopK(1).select(conf.masked_fill(~masked, -math.inf))
        self.iter += 1
        cur.copy_(torch.where(chosen, x0, cur))


class DKFixedParallelDecoder(_Decoder):
    """dInfer's ``FixedParallelDecoder``: ``steps`` steps per block, step ``s`` committing the
    ``n[b, s]`` most confident masked positions (ties: lowest index), ``n`` LLaDA's schedule of the
    block's masks (:func:`~diffusion_kernels.schedules.llada_num_transfer_tokens`), fixed at
    ``block_init``.

    Examples:
        >>> dec = DKFixedParallelDecoder(0, steps=2, mask_id=9)
        >>> x = torch.tensor([[9, 9, 9, 9]])
        >>> dec.block_init(x, 0)
        >>> dec.decode(torch.randn(1, 4, 9), 0, 4, x); int((x == 9).sum())
        2
    """

    def __init__(self, temperature: float, steps: int, remasking: str = "low_confidence", mask_id: int = 126336,
                 eos_id: int = 126081, *, seed: int = 0):
        super().__init__(temperature, remasking, mask_id, eos_id, seed)
        self.steps = steps
        self.iter = 0
        self.num_transfer_tokens: Optional[torch.Tensor] = None

    def block_init(self, block_x: torch.Tensor, block_id: int) -> None:
        self.num_transfer_tokens = llada_num_transfer_tokens(block_x == self.mask_id, self.steps)
        self.iter = 0

    def _decode_block(self, logits, cur, iter_threshold) -> None:
        if self.num_transfer_tokens is None or self.iter >= self.steps:
            raise RuntimeError(f"diffusion_kernels: DKFixedParallelDecoder.decode called {self.iter + 1} times "
                               f"since block_init (steps={self.steps}); call block_init before each block")
        x0, conf = self._propose(logits, cur)
        TopK(self.num_transfer_tokens[:, self.iter].to(cur.device)).select(conf, cur, x0)
        self.iter += 1
