"""Remasking of committed tokens (self-correction): a step may put tokens it committed earlier
back to ``[MASK]`` so that later steps, which see more context, decode them again.

* :class:`ReMDM` (Wang et al. 2025, "Remasking Discrete Diffusion Models with Inference-Time
  Scaling"; the ``remdm-cap`` / ``-rescale`` / ``-conf`` / ``-loop`` samplers of
  kuleshov-group/remdm): each committed token is remasked with probability ``sigma``, drawn
  with the package's Philox generator.
* :class:`RemaskLowConfidence`: committed tokens whose probability under the current step's
  logits falls below a threshold are remasked, least probable first.

Both run inside a fixed schedule (``steps`` per block) over the current block, and keep the
schedule's count of committed tokens: a step that remasks ``r`` tokens commits ``r`` more masked
positions (``TopK(k + r)``) from the same logits, so after every step the block holds exactly as
many committed tokens as without remasking, and the block's last step (which commits everything
left) never remasks. :func:`remask_step` is the step; ``generate(remask_committed=...)`` runs it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Optional, Tuple, Union

import torch

from .._philox import philox_uniform
from ..ops import select_transfer
from .proposal import Proposal
from .rules import TopK
from .step import decode_step
from .token_log_prob import token_log_prob

__all__ = ["CommittedRemasking", "ReMDM", "RemaskLowConfidence", "REMASK_OFFSET", "remask_step"]

# Philox offsets of the remasking draws: step s draws at (seed, 2**41 + s), apart from the step's
# token draws (s) and alg_temp's position draws (2**40 + s).
REMASK_OFFSET = 1 << 41


def _number(value, name: str, lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"diffusion_kernels: argument '{name}' must be a number, got {type(value).__name__}")
    v = float(value)
    ok = (lo < v if lo_open else lo <= v) and (v < hi if hi_open else v <= hi)
    if not ok:  # NaN fails both bounds
        bounds = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise ValueError(f"diffusion_kernels: argument '{name}' must be in {bounds}, got {value}")
    return v


class CommittedRemasking:
    """Base of the remasking policies. A policy says, at one step of a block, which committed
    tokens are candidates for remasking and in which order (a score, ``-inf`` for none); the
    step keeps the best ones up to the schedule's room (:func:`remask_step`)."""

    needs_commit_confidence: ClassVar[bool] = False

    def base_count(self, k: torch.Tensor, step: int, steps: int, block_size: int) -> torch.Tensor:
        """The step's commit count before remasking (the schedule's ``k``; ReMDM-loop's own)."""
        return k

    def scores(self, *, logits: torch.Tensor, block: torch.Tensor, committed: torch.Tensor, k: torch.Tensor,
               step: int, steps: int, mask_id: int, proposal: Proposal, seed: int, offset: int,
               positions: torch.Tensor, commit_confidence: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """``[batch, block]`` float: finite at the committed positions to remask (larger first),
        ``-inf`` elsewhere; ``None`` when the step remasks nothing."""
        raise NotImplementedError


@dataclass(frozen=True)
class ReMDM(CommittedRemasking):
    """ReMDM's remasking schedules: a committed token of the block is remasked with probability
    ``sigma`` at each step (the remasked ones are re-decoded by later steps).

    With ``alpha_t`` the block's committed fraction before the step and ``alpha_s`` the one the
    schedule reaches after it (ReMDM's ``alpha_t``, ``alpha_s``), and ``sigma_max = min(1,
    (1 - alpha_s) / alpha_t)``:

    * ``'cap'``: ``sigma = min(eta, (1 - alpha_s) / alpha_t)``;
    * ``'rescale'``: ``sigma = eta * sigma_max``;
    * ``'conf'``: per token, ``sigma_i = sigma_max * softmax_j(-c_j)_i`` over the committed tokens
      ``j`` of the block, ``c`` the confidence the step computed when it committed the token
      (ReMDM: its probability), so unsure tokens go first; ``eta`` is not used;
    * ``'loop'``: ReMDM-loop's three phases over the block's steps, at times ``t = 1 - i / steps``:
      while ``t > t_on`` the block is decoded up to the fraction ``alpha_on``; while ``t_off <
      t <= t_on`` the committed count stays at ``alpha_on`` and each committed token is remasked
      with probability ``eta`` (as many masked positions are committed in its place); then the
      rest is decoded. These phases replace the schedule's counts (``schedule='llada'`` only).

    Differences from ReMDM's sampler (an MDLM ancestral sampler over the whole sequence): the
    committed counts follow the block's schedule exactly (ReMDM draws them), the fractions
    ``alpha`` are the schedule's counts, not ``1 - t``, and candidates are the current block's.

    Args:
        schedule: ``'cap'``, ``'rescale'``, ``'conf'`` or ``'loop'``.
        eta: remasking strength in ``[0, 1]`` (ReMDM's scripts: cap 0.008, rescale 0.015, loop 0.02).
        t_on, t_off, alpha_on: the loop's switch-on time, switch-off time (``0 <= t_off < t_on
            <= 1``) and committed fraction while it remasks (``(0, 1)``; ReMDM: 0.55, 0.05, 0.9).

    Examples:
        >>> from diffusion_kernels import generate
        >>> from diffusion_kernels.demo import load_model, task
        >>> model, prompt = load_model(), task.parse("503912748160293847561029")
        >>> out = generate(model, prompt, 24, 24, 12, mask_id=task.MASK, progress=False,
        ...                remask_committed=ReMDM("loop", eta=0.2), seed=0)
        >>> task.render(out[0])
        '000111222334455667788999'
    """

    schedule: str = "cap"
    eta: float = 0.02
    t_on: float = 0.55
    t_off: float = 0.05
    alpha_on: float = 0.9

    def __post_init__(self):
        if self.schedule not in ("cap", "rescale", "conf", "loop"):
            raise ValueError(f"diffusion_kernels: argument 'schedule' of ReMDM must be 'cap', 'rescale', 'conf' or "
                             f"'loop', got {self.schedule!r}")
        _number(self.eta, "eta", 0.0, 1.0)
        _number(self.t_on, "t_on", 0.0, 1.0, lo_open=True)
        _number(self.t_off, "t_off", 0.0, 1.0)
        _number(self.alpha_on, "alpha_on", 0.0, 1.0, lo_open=True, hi_open=True)
        if not self.t_off < self.t_on:
            raise ValueError(f"diffusion_kernels: ReMDM needs 't_off' < 't_on', got t_off={self.t_off}, t_on={self.t_on}")

    @property
    def needs_commit_confidence(self) -> bool:
        return self.schedule == "conf"

    def _loop_fraction(self, t: float) -> float:
        """ReMDM-loop's committed fraction at time ``t``: linear up to ``alpha_on`` at ``t_on``,
        flat down to ``t_off``, then linear to 1 at ``t = 0``."""
        if t > self.t_off:
            return self.alpha_on * min(1.0, (1.0 - t) / (1.0 - self.t_on)) if self.t_on < 1 else self.alpha_on
        return 1.0 - t * (1.0 - self.alpha_on) / self.t_off

    def base_count(self, k, step, steps, block_size):
        if self.schedule != "loop":
            return k
        done = [math.floor(block_size * self._loop_fraction(1.0 - i / steps) + 0.5) for i in (step, step + 1)]
        done[1] = block_size if step + 1 == steps else done[1]
        return torch.full_like(k, max(done[1] - done[0], 0))

    def _in_loop_phase(self, step: int, steps: int) -> bool:
        t = 1.0 - step / steps
        return self.t_off < t <= self.t_on

    def scores(self, *, logits, block, committed, k, step, steps, mask_id, proposal, seed, offset, positions,
               commit_confidence):
        if self.schedule == "loop":
            if not self._in_loop_phase(step, steps) or self.eta == 0:
                return None
            sigma = torch.full(committed.shape, self.eta, dtype=torch.float64, device=block.device)
        else:
            n = committed.shape[1]
            c = committed.sum(1, keepdim=True).double()
            after = (n - c - k[:, None].double()).clamp(min=0)             # masks the schedule leaves
            ratio = torch.where(c > 0, after / c.clamp(min=1), 0.0)         # (1 - alpha_s) / alpha_t
            if self.schedule == "cap":
                sigma = ratio.clamp(max=self.eta)
            elif self.schedule == "rescale":
                sigma = self.eta * ratio.clamp(max=1.0)
            else:  # conf: the least confident committed tokens carry the most of sigma_max
                weight = torch.softmax(torch.where(committed, -commit_confidence.double(), -math.inf), dim=1)
                sigma = ratio.clamp(max=1.0) * torch.nan_to_num(weight, nan=0.0)
            sigma = sigma.expand(committed.shape)
        u = philox_uniform(seed, REMASK_OFFSET + offset, positions, 0).to(block.device)
        drawn = committed & (u.double() < sigma)
        return torch.where(drawn, u, -math.inf)  # a uniform order among the drawn, for the room cap


@dataclass(frozen=True)
class RemaskLowConfidence(CommittedRemasking):
    """Remask the committed tokens whose probability under the current step's logits is below
    ``threshold`` (the untempered softmax, without the proposal's ``suppress_ids``), least
    probable first, at most ``max_per_step`` per row and step (``None``: no limit besides the
    schedule's room).

    Examples:
        >>> from diffusion_kernels import generate
        >>> from diffusion_kernels.demo import load_model, task
        >>> model, prompt = load_model(), task.parse("503912748160293847561029")
        >>> out = generate(model, prompt, 24, 24, 6, mask_id=task.MASK, progress=False,
        ...                remask_committed=RemaskLowConfidence(0.5))
        >>> task.render(out[0])
        '000111222334455667788999'
    """

    threshold: float
    max_per_step: Optional[int] = None

    def __post_init__(self):
        _number(self.threshold, "threshold", 0.0, 1.0)
        m = self.max_per_step
        if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 0):
            raise ValueError(f"diffusion_kernels: argument 'max_per_step' must be None or an int >= 0, got {m!r}")

    def scores(self, *, logits, block, committed, k, step, steps, mask_id, proposal, seed, offset, positions,
               commit_confidence):
        if self.max_per_step == 0 or self.threshold == 0:
            return None
        log_p = token_log_prob(logits, block, committed, suppress_ids=proposal.suppress_ids)
        low = committed & (log_p < math.log(self.threshold))
        return torch.where(low, -log_p, -math.inf)


def remask_step(logits: torch.Tensor, x: torch.Tensor, rule: TopK, remasking: CommittedRemasking, *, mask_id: int,
                proposal: Proposal, block_start: int, block_end: int, step: int, steps: int, seed: int = 0,
                offset: int = 0, row_length: Optional[int] = None, position0: int = 0,
                commit_confidence: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """One step of a fixed schedule with remasking: choose committed tokens of the block to
    remask, commit ``k + r`` masked ones (``r`` per row: the remasked count), then remask.

    Args:
        logits: ``[batch, n, vocab]`` logits of the positions of ``x``.
        x: ``[batch, n]`` int64 tokens (a view of the sequence), updated in place.
        rule: the schedule's :class:`TopK` of this step.
        remasking: the policy.
        mask_id, proposal, seed, offset: as :func:`decode_step` (``seed``/``offset``: ints).
        block_start, block_end: the current block in ``x``'s coordinates.
        step, steps: the step in the block and the block's steps.
        row_length, position0: the Philox key of a position is ``b * row_length + position0 + i``
            (the whole sequence's length and ``x``'s first position in it).
        commit_confidence: ``[batch, block]`` float32 confidences of the committed tokens, for
            ``ReMDM('conf')``; updated in place.

    Returns:
        ``(transferred, remasked)``, ``[batch, n]`` bool each.

    Examples:
        >>> x = torch.tensor([[5, 9, 9]])                      # 9 = [MASK]
        >>> logits = torch.zeros(1, 3, 9); logits[0, :, 2] = 5.0
        >>> t, r = remask_step(logits, x, TopK(torch.tensor([1])), RemaskLowConfidence(0.5), mask_id=9,
        ...                    proposal=Proposal(), block_start=0, block_end=3, step=1, steps=2)
        >>> t.tolist(), r.tolist(), x.tolist()            # token 5 is unlikely: remasked, two committed
        ([[False, True, True]], [[True, False, False]], [[9, 2, 2]])
    """
    B, n = x.shape
    block = x[:, block_start:block_end]
    block_logits = logits[:, block_start:block_end]
    size = block.shape[1]
    k = rule.k if isinstance(rule.k, torch.Tensor) else torch.full((B,), rule.k, dtype=torch.int64, device=x.device)
    k = remasking.base_count(k.to(device=x.device, dtype=torch.int64).reshape(B), step, steps, size)
    committed = block != mask_id
    chosen = torch.zeros_like(committed)
    if step > 0:  # a block starts fully masked
        length = n if row_length is None else row_length
        positions = (torch.arange(B, device=x.device)[:, None] * length + position0 + block_start
                     + torch.arange(size, device=x.device)[None, :])
        scores = remasking.scores(logits=block_logits, block=block, committed=committed, k=k, step=step, steps=steps,
                                  mask_id=mask_id, proposal=proposal, seed=seed, offset=offset, positions=positions,
                                  commit_confidence=commit_confidence)
        if scores is not None:
            room = (size - committed.sum(1) - k).clamp(min=0)   # masks the schedule leaves after the step
            limit = getattr(remasking, "max_per_step", None)
            if limit is not None:
                room = room.clamp(max=limit)
            chosen = select_transfer(scores.float(), k=room)
    r = chosen.sum(1)
    res = decode_step(logits, x, TopK(k + r, rule.alg_temp), mask_id=mask_id, proposal=proposal,
                      block_start=block_start, block_end=block_end, seed=seed, offset=offset)
    block.masked_fill_(chosen, mask_id)
    if commit_confidence is not None:
        moved = res.transferred[:, block_start:block_end]
        commit_confidence.copy_(torch.where(moved, res.confidence[:, block_start:block_end], commit_confidence))
    remasked = torch.zeros_like(res.transferred)
    remasked[:, block_start:block_end] = chosen
    return res.transferred, remasked
