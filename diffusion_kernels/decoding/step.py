"""One decoding step: propose (``masked_confidence``), choose (a :class:`Rule` on
``select_transfer``) and commit in place. Every sampler decision goes through :func:`decode_step`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import torch

from .proposal import Proposal, propose
from .rules import Rule

__all__ = ["StepResult", "decode_step"]


@dataclass
class StepResult:
    """What one step did. ``transferred``: ``[batch, seq]`` bool, the positions committed;
    ``proposal``: ``[batch, seq]`` int64 proposed tokens (``x`` where none was computed);
    ``confidence``: ``[batch, seq]`` float32 (``-inf`` where none was computed)."""
    transferred: torch.Tensor
    proposal: torch.Tensor
    confidence: torch.Tensor


def decode_step(logits: torch.Tensor, x: torch.Tensor, rule: Rule, *, mask_id: int,
                proposal: Proposal = Proposal(), block_start: Union[int, torch.Tensor] = 0,
                block_end: Optional[Union[int, torch.Tensor]] = None, seed: Union[int, torch.Tensor] = 0,
                offset: Union[int, torch.Tensor] = 0) -> StepResult:
    """Apply ``rule`` to the proposals of ``logits`` and write the committed tokens into ``x``.

    Args:
        logits: ``[batch, seq, vocab]`` logits of the positions of ``x`` (row ``i`` predicts ``x[:, i]``).
        x: ``[batch, seq]`` int64 current tokens, updated in place (may be a view of a longer sequence).
        rule: a :class:`TopK`, :class:`Threshold` or :class:`Factor`.
        mask_id: the ``[MASK]`` id: only masked positions in ``[block_start, block_end)`` compete.
        proposal: how tokens and confidences are proposed (:class:`Proposal`).
        block_start, block_end: the current block, ints or ``[batch]`` tensors; ``None``: to the end.
        seed, offset: Philox key of the step's random draws (advance ``offset`` every step): ints
            or one-element int64 tensors.

    Returns:
        :class:`StepResult`.

    Examples:
        >>> from diffusion_kernels.decoding import TopK, decode_step
        >>> x = torch.tensor([[5, 9, 9, 9]])                     # 9 = [MASK]
        >>> logits = torch.randn(1, 4, 9)                     # no logit for [MASK]
        >>> res = decode_step(logits, x, TopK(1), mask_id=9, block_start=1)
        >>> int(res.transferred.sum()), int((x == 9).sum())
        (1, 2)
    """
    x0, confidence = propose(logits, x, mask_id, proposal, block_start=block_start, block_end=block_end, seed=seed,
                             offset=offset)
    transferred = rule.select(confidence, x, x0, seed=seed, offset=offset)
    return StepResult(transferred=transferred, proposal=x0, confidence=confidence)
