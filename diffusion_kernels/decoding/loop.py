"""The block loop: LLaDA's semi-autoregressive schedule, one :func:`decode_step` per forward.

Host synchronisation: a fixed plan never reads a device value inside a block; an adaptive one
reads one pair of booleans per step ("block finished", "a row made no progress"), as the number
of steps is not known in advance. Every block ends with one read: "was every position committed"
(and, with ``stop_at_eos``, "has every row an EOS").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional

import torch

from .forward import ModelForward
from .graph import StaticDecodeStep
from .plans import StepPlan
from .proposal import Proposal
from .remasking import CommittedRemasking, remask_step
from .step import decode_step
from .token_log_prob import proposal_log_prob

__all__ = ["StepInfo", "BlockLoop"]


@dataclass
class StepInfo:
    """What a ``callback`` receives after every step (tensors are live views: copy to keep)."""
    step: int              # global step (NFE index), 0-based
    block: int             # block index
    x: torch.Tensor        # [B, L] current sequence (prompt + generation)
    transferred: torch.Tensor  # [B, L] bool: positions committed at this step
    prompt_length: int
    remasked: Optional[torch.Tensor] = None  # [B, L] bool: committed tokens put back to [MASK] (remask_committed)


def _rows(flags: torch.Tensor) -> List[int]:
    return torch.nonzero(flags).flatten().tolist()


@dataclass
class BlockLoop:
    """Decodes ``x[:, prompt_length:]`` in blocks of ``block_length``, left to right.

    ``run(x, order)`` updates ``x`` in place, writes into ``order`` the step that committed each
    position (-1 again for a remasked one), and returns the number of forwards (NFE). With
    ``remasking`` every step runs :func:`remask_step` (fixed plans only); with ``log_prob`` (a
    ``[B, L]`` float32 tensor) each committed token's log-probability under its step's logits is
    written there (:func:`proposal_log_prob`). Raises RuntimeError when a row cannot
    progress: its masked positions have no finite confidence (NaN/inf logits) or the model keeps
    proposing ``[MASK]``, so that an adaptive rule would loop forever or a fixed schedule would
    leave positions no step committed."""
    forward: ModelForward
    plan: StepPlan
    proposal: Proposal
    mask_id: int
    prompt_length: int
    block_length: int
    seed: int = 0
    eos_id: Optional[int] = None     # with stop_at_eos: stop once every row has an EOS
    stop_at_eos: bool = False
    callback: Optional[Callable[[StepInfo], None]] = None
    bar: object = None               # a progress bar (update(n)), or None
    remasking: Optional[CommittedRemasking] = None
    log_prob: Optional[torch.Tensor] = None
    cuda_graph: bool = False         # steps on static buffers, captured as CUDA graphs on a GPU (graph.py)
    capture: Optional[bool] = None   # with cuda_graph: capture (None: when x is on a CUDA device)

    def run(self, x: torch.Tensor, order: torch.Tensor) -> int:
        self.static = None
        if self.cuda_graph:
            if self.remasking is not None:
                raise ValueError("diffusion_kernels: cuda_graph=True cannot capture 'remask_committed' steps (their "
                                 "draws are keyed on the host); use cuda_graph=False")
            if x is not self.forward.x:
                raise ValueError("diffusion_kernels: BlockLoop(cuda_graph=True) decodes the ModelForward's own 'x'")
            self.static = StaticDecodeStep(self.forward, order, self.proposal, mask_id=self.mask_id, seed=self.seed,
                                           log_prob=self.log_prob, capture=self.capture)
        if self.remasking is not None:
            if self.plan.steps_per_block is None:
                raise ValueError("diffusion_kernels: remasking of committed tokens needs a fixed schedule "
                                 "('steps' per block), not an adaptive rule")
            self._seed = int(self.seed)  # the remasking draws are keyed on the host
            self._commit_conf = (torch.full(x.shape, -float("inf"), device=x.device)
                                 if self.remasking.needs_commit_confidence else None)
        num_blocks = (x.shape[1] - self.prompt_length) // self.block_length
        nfe = 0
        for blk in range(num_blocks):
            start = self.prompt_length + blk * self.block_length
            end = start + self.block_length
            nfe = self._decode_block(x, order, blk, start, end, nfe)
            if self._finish_block(x, order, blk, start, end, last=blk + 1 == num_blocks):
                break
        return nfe

    def _masks_left(self, x, start, end) -> torch.Tensor:
        return (x[:, start:end] == self.mask_id).sum(dim=1)

    def _decode_block(self, x, order, blk, start, end, nfe) -> int:
        left = self._masks_left(x, start, end)
        self.plan.begin_block(left)
        i = 0
        while True:
            remasked = None
            if self.static is not None:  # order and log_prob are written inside the step
                moved, q0 = self.static(i, start, end, nfe=nfe, rule=self.plan.rule(i, left))
                n = moved.shape[1]
            else:
                moved, remasked, q0, n = self._eager_step(x, order, i, start, end, nfe, left)
            nfe += 1
            i += 1
            if self.bar is not None:
                self.bar.update(1)
            if self.callback is not None:
                full_moved = torch.zeros_like(x, dtype=torch.bool)
                full_moved[:, q0:q0 + n] = moved
                full_remasked = None
                if remasked is not None:
                    full_remasked = torch.zeros_like(full_moved)
                    full_remasked[:, q0:q0 + n] = remasked
                self.callback(StepInfo(step=nfe - 1, block=blk, x=x, transferred=full_moved,
                                       prompt_length=self.prompt_length, remasked=full_remasked))
            now = self._masks_left(x, start, end)
            if self.plan.steps_per_block is not None:
                if i == self.plan.steps_per_block:
                    return nfe
                left = now
                continue
            stalled = (now > 0) & (now == left)
            done, stuck = torch.stack([(now == 0).all(), stalled.any()]).tolist()  # the one sync per step
            if done:
                return nfe
            if stuck:
                raise RuntimeError(
                    f"diffusion_kernels: generate: step {nfe - 1} (block {blk}) committed no token in row(s) "
                    f"{_rows(stalled)}, which still have masks: no masked position of the block has a finite "
                    "confidence (the model's logits there are NaN or +inf, e.g. through cfg_scale), or the "
                    "model proposes mask_id itself")
            left = now

    def _eager_step(self, x, order, i, start, end, nfe, left):
        """One step from Python, the default: ``(moved, remasked, q0, n)``."""
        logits, q0 = self.forward(i, start, end)
        n = logits.shape[1]
        # decode_step writes the committed tokens into the view x[:, q0:q0 + n], i.e. into x.
        remasked = None
        if self.remasking is None:
            moved = decode_step(logits, x[:, q0:q0 + n], self.plan.rule(i, left), mask_id=self.mask_id,
                                proposal=self.proposal, block_start=start - q0, block_end=end - q0,
                                seed=self.seed, offset=nfe).transferred
        else:
            moved, remasked = remask_step(
                logits, x[:, q0:q0 + n], self.plan.rule(i, left), self.remasking, mask_id=self.mask_id,
                proposal=self.proposal, block_start=start - q0, block_end=end - q0, step=i,
                steps=self.plan.steps_per_block, seed=self._seed, offset=nfe, row_length=x.shape[1], position0=q0,
                commit_confidence=None if self._commit_conf is None else self._commit_conf[:, start:end])
            order[:, q0:q0 + n].masked_fill_(remasked, -1)
        order[:, q0:q0 + n].masked_fill_(moved, nfe)
        if self.log_prob is not None:
            lp = proposal_log_prob(logits, x[:, q0:q0 + n], moved, self.proposal, seed=self.seed, offset=nfe)
            self.log_prob[:, q0:q0 + n] = torch.where(moved, lp, self.log_prob[:, q0:q0 + n])
        return moved, remasked, q0, n

    def _finish_block(self, x, order, blk, start, end, last: bool) -> bool:
        """Checks that every position of the block was committed; True: stop (EOS in every row)."""
        # a sampled [MASK] token leaves its position masked although a step committed it
        uncommitted = ((order[:, start:end] < 0) | (x[:, start:end] == self.mask_id)).any(dim=1)
        check_eos = self.stop_at_eos and not last
        flags = [uncommitted.any()]
        if check_eos:
            flags.append((x[:, self.prompt_length:end] == self.eos_id).any(dim=1).all())
        flags = torch.stack(flags).tolist()  # the one sync per block
        if flags[0]:
            raise RuntimeError(
                f"diffusion_kernels: generate: block {blk} ended with positions no step committed in row(s) "
                f"{_rows(uncommitted)}: their confidences were never finite (the model's logits there are NaN "
                "or +inf, e.g. through cfg_scale), or the model proposes mask_id, which keeps them masked")
        if check_eos and flags[1]:
            x[:, end:] = self.eos_id
            return True
        return False
