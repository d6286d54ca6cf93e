"""LLaDA2.1's joint threshold with token editing (SGLang ``JointThreshold``), on the fused ops.

One step proposes a token and a confidence at *every* non-prompt position of the block, masked or
not (``masked_confidence``, the repetition penalty fused), commits masked positions above a strict
threshold with a top-1 fallback (the core's :class:`~diffusion_kernels.decoding.Threshold`, i.e.
``select_transfer(strict=True)``), and replaces committed, non-prompt tokens whose proposal differs
and is confident enough (token-to-token edits). Rows without a mask count post-edit steps and
finish past their budget or when a step changes nothing. Everything is batched: per-row state lives
in tensors (:class:`EditState`), no host sync inside the step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Optional, Union

import torch

from ..ops import masked_confidence
from .rules import Threshold, _real

__all__ = ["JointThreshold", "EditState", "EditResult", "joint_threshold_step"]


@dataclass(frozen=True)
class JointThreshold:
    """LLaDA2.1's joint threshold decoding with token editing (SGLang ``JointThreshold``; its
    ``algorithm_config`` keys are the field names).

    Attributes:
        threshold: mask-to-token (M2T): a masked position is committed when the probability of its
            argmax is ``> threshold`` (strict); a row with masks but none above commits its most
            confident masked position (ties: lowest index).
        edit_threshold: token-to-token (T2T): a committed, non-prompt position whose argmax differs
            from its token and whose probability is ``> edit_threshold`` takes the argmax.
        max_post_edit_steps: steps a row may keep editing once it has no mask left; the row is
            finished at the step that exceeds it, or at the first step that changes nothing.
        penalty_lambda: repetition penalty: at position ``i >= 1`` the logit of the token currently
            at ``i - 1`` is lowered by ``penalty_lambda`` before the argmax and the softmax (0: off).

    Comparisons are in float32, as torch compares a float32 tensor with a Python float.

    Examples:
        >>> rule = JointThreshold(threshold=0.9, edit_threshold=0.5)
        >>> rule.max_steps(32)
        49
    """

    threshold: float = 0.5
    edit_threshold: float = 0.0
    max_post_edit_steps: int = 16
    penalty_lambda: float = 0.0
    adaptive: ClassVar[bool] = True

    def __post_init__(self):
        _real(self.threshold, "threshold")
        _real(self.edit_threshold, "edit_threshold")
        steps = self.max_post_edit_steps
        if isinstance(steps, bool) or not isinstance(steps, int):
            raise TypeError(f"diffusion_kernels: argument 'max_post_edit_steps' must be an int, got {type(steps).__name__}")
        if steps < 0:
            raise ValueError(f"diffusion_kernels: argument 'max_post_edit_steps' must be >= 0, got {steps}")
        lam = _real(self.penalty_lambda, "penalty_lambda")
        if not (math.isfinite(lam) and lam >= 0):
            raise ValueError(f"diffusion_kernels: argument 'penalty_lambda' must be finite and >= 0, got {lam}")

    @property
    def mask_rule(self) -> Threshold:
        """The mask-to-token half: the core's strict threshold with its top-1 fallback."""
        return Threshold(self.threshold, strict=True)

    def max_steps(self, block_size: int) -> int:
        """Model calls a block may need at most: every position once, the edit budget, one more."""
        return block_size + self.max_post_edit_steps + 1


@dataclass
class EditState:
    """Per-row state of a block decoded with :class:`JointThreshold`, updated in place by
    :func:`joint_threshold_step` (tensors on the logits' device).

    Attributes:
        prompt_mask: ``[batch, seq]`` bool, positions never decoded nor edited (the prompt part of
            the block; a prompt position may hold the mask id literally).
        post_edit_steps: ``[batch]`` integer, steps taken since the row had no mask left.
        finished: ``[batch]`` bool, rows that are done (no more writes).
    """

    prompt_mask: torch.Tensor
    post_edit_steps: torch.Tensor
    finished: torch.Tensor

    @classmethod
    def start(cls, x: torch.Tensor, mask_id: int, prompt_mask: Optional[torch.Tensor] = None) -> "EditState":
        """The state at the first step of a block: the prompt is every position not holding
        ``mask_id`` (SGLang's ``init_step_state``), plus ``prompt_mask`` when given.

        Examples:
            >>> s = EditState.start(torch.tensor([[5, 9, 9]]), mask_id=9)
            >>> s.prompt_mask.tolist(), s.post_edit_steps.tolist(), s.finished.tolist()
            ([[True, False, False]], [0], [False])
        """
        fixed = x != mask_id
        if prompt_mask is not None:
            fixed = fixed | prompt_mask.to(device=x.device, dtype=torch.bool)
        batch = x.shape[0]
        return cls(prompt_mask=fixed, post_edit_steps=torch.zeros(batch, dtype=torch.int32, device=x.device),
                   finished=torch.zeros(batch, dtype=torch.bool, device=x.device))


@dataclass
class EditResult:
    """What one :func:`joint_threshold_step` did.

    Attributes:
        transferred: ``[batch, seq]`` bool, masked positions committed (M2T).
        edited: ``[batch, seq]`` bool, committed tokens replaced (T2T).
        done: ``[batch]`` bool, rows that were finished before this step (SGLang's done flag: a
            row reports done one step after its last write, so its final tokens have been seen by
            one more forward).
        proposal: ``[batch, seq]`` int64 argmax tokens (``x`` where no logits are read: outside
            the block, at prompt positions, in rows finished before the step).
        confidence: ``[batch, seq]`` float32 probability of the proposal (``-inf`` where no
            proposal was computed).
    """

    transferred: torch.Tensor
    edited: torch.Tensor
    done: torch.Tensor
    proposal: torch.Tensor
    confidence: torch.Tensor


def _live_block(x: torch.Tensor, finished: torch.Tensor, block_start, block_end):
    """``[batch]`` int64 block bounds on ``x``'s device, empty for finished rows (so the op reads
    none of their logits), and the ``[batch, seq]`` bool mask of ``[start, end)``."""
    batch, seq = x.shape
    start = torch.as_tensor(block_start, dtype=torch.int64, device=x.device).reshape(-1).expand(batch)
    end = torch.as_tensor(seq if block_end is None else block_end, dtype=torch.int64,
                          device=x.device).reshape(-1).expand(batch)
    end = torch.where(finished, start, end)
    pos = torch.arange(seq, device=x.device)[None, :]
    return start, end, (pos >= start[:, None]) & (pos < end[:, None])


def joint_threshold_step(logits: torch.Tensor, x: torch.Tensor, rule: JointThreshold, *, mask_id: int,
                         state: EditState, block_start: Union[int, torch.Tensor] = 0,
                         block_end: Optional[Union[int, torch.Tensor]] = None) -> EditResult:
    """One step of :class:`JointThreshold`: write the committed and edited tokens into ``x`` and
    update ``state``, both in place; rows already finished are left untouched.

    Args:
        logits: ``[batch, seq, vocab]`` or the engines' flat ``[batch * seq, vocab]``, float32,
            float16 or bfloat16 (never written).
        x: ``[batch, seq]`` int64 current tokens (a view of an engine's flat ``input_ids`` is fine:
            only in-place writes).
        rule: the :class:`JointThreshold` parameters.
        mask_id: the ``[MASK]`` id.
        state: the rows' :class:`EditState` (from :meth:`EditState.start` at the block's first step).
        block_start, block_end: the block inside ``x`` (ints or ``[batch]`` tensors); positions
            outside are neither decoded nor edited. Default: the whole row.

    Returns:
        :class:`EditResult`.

    Examples:
        >>> from diffusion_kernels.decoding import EditState, JointThreshold, joint_threshold_step
        >>> x = torch.tensor([[5, 9, 9, 9]])                        # 9 = [MASK]
        >>> logits = torch.full((1, 4, 10), -5.0)
        >>> logits[0, :, 7] = 5.0                                   # sure of token 7 everywhere
        >>> state = EditState.start(x, mask_id=9)
        >>> res = joint_threshold_step(logits, x, JointThreshold(0.9), mask_id=9, state=state)
        >>> x.tolist(), res.done.tolist()                           # the prompt token 5 is kept
        ([[5, 7, 7, 7]], [False])
    """
    start, end, inside = _live_block(x, state.finished, block_start, block_end)
    # Only non-prompt positions of live rows can change: the op reads no other row's logits.
    need = inside & ~state.prompt_mask & ~state.finished[:, None]
    if rule.penalty_lambda == 0:
        # The op computes where its x holds the mask id, so an x with the mask id exactly there.
        # (The penalty reads the previous token from x, hence every position of the block then.)
        wanted = torch.full_like(x, 1 if mask_id == 0 else 0).masked_fill_(need, mask_id)
        proposal, confidence = masked_confidence(logits, wanted, mask_id, confidence="prob", confidence_from="logits")
    else:
        proposal, confidence = masked_confidence(logits, x, mask_id, confidence="prob", confidence_from="logits",
                                                 positions="all", prev_token_penalty=rule.penalty_lambda,
                                                 block_start=start, block_end=end)
        confidence = confidence.masked_fill(~need, -math.inf)
    proposal = torch.where(need, proposal, x)
    done = state.finished.clone()
    active = ~state.finished
    masked = (x == mask_id) & ~state.prompt_mask & inside
    candidates = masked & active[:, None]
    has_mask = candidates.any(1)

    # A row without masks spends one post-edit step; past the budget it stops before editing.
    no_mask = active & ~has_mask
    state.post_edit_steps.add_(no_mask.to(state.post_edit_steps.dtype))
    over_budget = no_mask & (state.post_edit_steps > rule.max_post_edit_steps)
    editing = active & ~over_budget
    edited = (~masked & ~state.prompt_mask & inside & editing[:, None] & (confidence > rule.edit_threshold)
              & (proposal != x))

    transferred = rule.mask_rule.select(confidence.masked_fill(~candidates, -math.inf))
    changed = transferred | edited
    x.copy_(torch.where(changed, proposal, x))
    state.finished.logical_or_(over_budget | (editing & ~changed.any(1)))
    return EditResult(transferred=transferred, edited=edited, done=done, proposal=proposal, confidence=confidence)
