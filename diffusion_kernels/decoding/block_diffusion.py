"""Block-diffusion decoding (SDAR, LLaDA2, Fast-dLLM v2) over the model's exact KV cache.

The model attends block-causally (protocol D' of docs/block_diffusion.md): a position sees every
position of its own block and of the blocks before it. Blocks sit on the absolute grid of
``block_size`` (the block holding the end of the prompt is part prompt, part answer), so a block's
K/V are final once its tokens are, and the cache of the finished blocks is exact.

Per block: decode steps over the cache without writing it (``store_kv=False``), then commit the
block's K/V. The commit is fused with the next block's first step: one forward over the finished
block and the next one, with ``store_kv=True``, writes the finished block's final K/V and gives the
next block's first logits (the next block's K/V it also writes are never read: its later steps
pass their own, and its commit overwrites them). The prompt's full blocks are prefilled by the
first block's first forward the same way. So the forwards are exactly the decode steps; the
uncached reference (``cache=None``: the whole prefix recomputed block-causally every step) runs the
same decisions on the same logits.

Every decision is a :func:`decode_step` with the plan's rule; nothing here chooses tokens.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

import torch

from .editing import EditState, JointThreshold, joint_threshold_step
from .loop import StepInfo
from .plans import StepPlan
from .proposal import Proposal
from .rules import TopK
from .step import decode_step

__all__ = ["BlockDiffusionLoop", "BLOCK_CACHES", "decoded_blocks"]

BLOCK_CACHES = ("exact", "block", None)


def decoded_blocks(prompt_length: int, length: int, block_size: int) -> int:
    """How many blocks of the model's grid hold answer positions: from the block of the prompt's
    end (``prompt_length // block_size``, shared with the prompt unless it ends on a boundary) to
    the last, possibly partial, block of ``length``.

    Examples:
        >>> decoded_blocks(6, 19, 4), decoded_blocks(8, 16, 4)
        (4, 2)
    """
    return -(-length // block_size) - prompt_length // block_size


def _logits_of(out) -> torch.Tensor:
    return out.logits if hasattr(out, "logits") else out


def _rows(flags: torch.Tensor) -> List[int]:
    return torch.nonzero(flags).flatten().tolist()


@dataclass
class BlockDiffusionLoop:
    """Decodes ``x[:, prompt_length:]`` block by block on the grid of ``block_size``.

    ``run(x, order)`` updates ``x`` ``[B, L]`` in place, writes into ``order`` the step that
    committed each position, and returns the number of forwards (NFE).

    Attributes:
        model: protocol D': ``model(x, *, attention_mask=None, kv_cache=None, start=0,
            store_kv=True) -> logits`` (or an output with ``.logits``) and ``init_cache(B, L)``.
        plan: the rule of every step (:class:`LLaDAPlan`, :class:`UntilDone`, :class:`SDARPlan`,
            :class:`DreamOriginPlan`, ...). A fixed plan runs at most ``steps_per_block`` steps per
            decoding unit and stops early once the unit has no mask left (SDAR, LLaDA2); an
            adaptive one runs until the unit is done.
        proposal, mask_id, seed: as for :class:`BlockLoop`; step ``s`` (0-based over the whole
            generation) draws at Philox offset ``s``.
        prompt_length, block_size: the answer starts at ``prompt_length``; the decoding block, the
            model's block size (or a multiple: several model blocks decoded together stay exact).
        sub_block: Fast-dLLM v2's sub-blocks: the block is decoded ``sub_block`` positions at a
            time, left to right (each sub-block is a decoding unit with its own plan counts);
            ``None``: the whole block is one unit.
        cache: ``'exact'`` (the block-causal cache; steps run the current block only), ``'block'``
            (Fast-dLLM v2's block cache, needs ``sub_block``: while the first position of the
            current sub-block is masked in some row a step runs the whole block and writes its
            K/V; afterwards it runs the sub-block only, attending over the block's K/V from that
            write; approximate, as in v2), or ``None`` (no cache: every step recomputes ``x[:, :end
            of block]`` block-causally, the reference).
        shift_logits: Fast-dLLM v2's convention (the logits at ``i`` predict token ``i + 1``). The
            first token of each block then comes from the previous block's last position: the
            block's commit forward gives it and it is committed at once (a ``TopK(1)`` step on the
            argmax whatever the temperature, v2's ``next_token``), so commit forwards are not fused
            here.
        attention_mask: ``[B, L]`` bool key mask (False: left pad), or ``None``.
        eos_id, stop_at_eos: a row with an EOS in its answer after a block stops: the rest of its
            answer is filled with EOS (``order`` -1) and it has nothing left to decode; the loop
            ends when every row has stopped.
        callback, bar: as for :class:`BlockLoop`.
        editing: LLaDA2.1's :class:`JointThreshold` (mask-to-token and token-to-token edits, the
            edit budget) instead of ``plan``: each block runs :func:`joint_threshold_step` until
            every row is finished (at most ``rule.max_steps(block)`` steps); no sub-blocks. A
            block ends at the step after which every row is finished (SGLang runs one more
            forward, which writes nothing, to see the flags). ``order`` keeps the step of the
            mask-to-token commit; an edit changes the token, not the order.

    Examples:
        >>> from diffusion_kernels.models import BlockDiffusionConfig, BlockDiffusionModel
        >>> from diffusion_kernels.decoding import LLaDAPlan, Proposal
        >>> model = BlockDiffusionModel(BlockDiffusionConfig(vocab_size=32, hidden_size=32, intermediate_size=64,
        ...     num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, block_size=4, mask_token_id=31))
        >>> x = torch.full((1, 14), 31); x[:, :6] = torch.arange(1, 7)     # prompt of 6, answer of 8
        >>> order = torch.full_like(x, -1)
        >>> loop = BlockDiffusionLoop(model, LLaDAPlan(2), Proposal(suppress_ids=(31,)), mask_id=31, prompt_length=6,
        ...                           block_size=4)
        >>> loop.run(x, order), int((x == 31).sum())          # blocks [4, 8), [8, 12), [12, 14): 2 steps each
        (6, 0)
    """
    model: object
    plan: Optional[StepPlan]
    proposal: Proposal
    mask_id: int
    prompt_length: int
    block_size: int
    sub_block: Optional[int] = None
    cache: Optional[str] = "exact"
    shift_logits: bool = False
    attention_mask: Optional[torch.Tensor] = None
    seed: int = 0
    eos_id: Optional[int] = None
    stop_at_eos: bool = False
    callback: Optional[Callable[[StepInfo], None]] = None
    bar: object = None
    editing: Optional[JointThreshold] = None
    _kv: object = field(default=None, init=False, repr=False)
    _frontier: int = field(default=0, init=False, repr=False)   # positions < frontier have final K/V in the cache
    _nfe: int = field(default=0, init=False, repr=False)
    _step: int = field(default=0, init=False, repr=False)
    _block_cached: bool = field(default=False, init=False, repr=False)  # 'block': this block's K/V were written
    _x: Optional[torch.Tensor] = field(default=None, init=False, repr=False)

    def __post_init__(self):
        for name in ("block_size", "prompt_length"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (1 if name == "block_size" else 0):
                raise ValueError(f"diffusion_kernels: argument '{name}' must be an int >= "
                                 f"{1 if name == 'block_size' else 0}, got {v!r}")
        if self.cache not in BLOCK_CACHES:
            raise ValueError(f"diffusion_kernels: argument 'cache' must be 'exact', 'block' or None, got {self.cache!r}")
        if self.sub_block is not None:
            if isinstance(self.sub_block, bool) or not isinstance(self.sub_block, int) or self.sub_block < 1 \
                    or self.block_size % self.sub_block:
                raise ValueError(f"diffusion_kernels: argument 'sub_block' must be a positive divisor of the block size "
                                 f"{self.block_size}, got {self.sub_block!r}")
        if self.cache == "block" and self.sub_block is None:
            raise ValueError("diffusion_kernels: cache='block' (Fast-dLLM v2's block cache) needs 'sub_block'")
        if self.editing is not None:
            if not isinstance(self.editing, JointThreshold):
                raise TypeError(f"diffusion_kernels: argument 'editing' must be a JointThreshold, got "
                                f"{type(self.editing).__name__}")
            if self.sub_block is not None:
                raise ValueError("diffusion_kernels: argument 'editing' decodes whole blocks: it cannot be combined "
                                 "with 'sub_block'")
        elif not isinstance(self.plan, StepPlan):
            raise TypeError(f"diffusion_kernels: argument 'plan' must be a StepPlan (or give 'editing'), got "
                            f"{type(self.plan).__name__}")
        if self.stop_at_eos and self.eos_id is None:
            raise ValueError("diffusion_kernels: 'stop_at_eos' needs 'eos_id'")

    # -- forwards ------------------------------------------------------------------------------
    def _forward(self, x: torch.Tensor, lo: int, hi: int, store_kv: bool) -> torch.Tensor:
        """Logits ``[B, hi - lo, V]`` of the outputs at positions ``[lo, hi)``."""
        self._nfe += 1
        if self.bar is not None:
            self.bar.update(1)
        if self.cache is None:
            am = None if self.attention_mask is None else self.attention_mask[:, :hi]
            return _logits_of(self.model(x[:, :hi], attention_mask=am))[:, lo:hi]
        return _logits_of(self.model(x[:, lo:hi], attention_mask=self.attention_mask, kv_cache=self._kv, start=lo,
                                     store_kv=store_kv))

    def _commit(self, x: torch.Tensor, bs: int) -> Optional[torch.Tensor]:
        """Writes the final K/V of ``[frontier, bs)``; returns the logits of position ``bs - 1``
        (``[B, 1, V]``), or None when there was nothing to write."""
        lo = self._frontier
        if lo >= bs:
            return None
        out = self._forward(x, lo, bs, store_kv=True)
        self._frontier = bs
        return out[:, -1:]

    def _step_logits(self, x, bs: int, be: int, s0: int, s1: int) -> Tuple[torch.Tensor, int]:
        """The logits of this step and the position ``q0`` of their first row (row ``r`` predicts
        position ``q0 + r``); ``[s0, s1)`` is the current sub-block on the grid."""
        if self.cache is not None and not self.shift_logits and self._frontier < bs:
            # the finished blocks' commit fused with this block's first step
            lo = self._frontier
            out = self._forward(x, lo, be, store_kv=True)[:, bs - lo:]
            self._frontier, self._block_cached, q0 = bs, True, bs
        elif self.cache == "block" and self._block_cached and not bool((x[:, s0] == self.mask_id).any()):
            # v2: the sub-block's first token is in: the sub-block alone, over the block's cached K/V
            out, q0 = self._forward(x, s0, s1, store_kv=True), s0
        else:
            out, q0 = self._forward(x, bs, be, store_kv=self.cache == "block"), bs
            self._block_cached = self.cache == "block"
        if self.shift_logits:
            # row q0 would need the output at q0 - 1; q0 is committed (prompt, the block's first
            # token or the sub-block's), so its row is a placeholder that no candidate reads
            out = torch.cat([out[:, :1], out[:, :-1]], dim=1)
        return out, q0

    # -- the loop ------------------------------------------------------------------------------
    def _check_run(self, x, order) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.dtype != torch.int64:
            raise ValueError(f"diffusion_kernels: argument 'x' must be a [batch, seq] int64 tensor, got "
                             f"{(x.dtype, tuple(x.shape)) if isinstance(x, torch.Tensor) else type(x).__name__}")
        if not isinstance(order, torch.Tensor) or order.shape != x.shape or order.dtype != torch.int64:
            raise ValueError(f"diffusion_kernels: argument 'order' must be an int64 tensor of the shape of 'x' "
                             f"{tuple(x.shape)}")
        if self.prompt_length > x.shape[1]:
            raise ValueError(f"diffusion_kernels: argument 'prompt_length' ({self.prompt_length}) exceeds the "
                             f"sequence length {x.shape[1]}")
        mb = getattr(getattr(self.model, "config", None), "block_size", None)
        if isinstance(mb, int) and not isinstance(mb, bool) and mb > 0 and self.block_size % mb:
            # a decoding block that ends inside a model block would cache K/V that later steps change
            raise ValueError(f"diffusion_kernels: argument 'block_size' ({self.block_size}) must be a multiple of the "
                             f"model's config.block_size ({mb})")
        am = self.attention_mask
        if am is not None and (not isinstance(am, torch.Tensor) or tuple(am.shape) != tuple(x.shape)):
            raise ValueError(f"diffusion_kernels: argument 'attention_mask' must be a [batch, seq] = "
                             f"{tuple(x.shape)} key mask of the whole sequence")

    def run(self, x: torch.Tensor, order: torch.Tensor) -> int:
        """Decodes ``x`` in place; returns the number of forwards. See the class."""
        self._check_run(x, order)
        B, L = x.shape
        b = self.block_size
        self._x, self._nfe, self._step, self._frontier = x, 0, 0, 0
        self._kv = self.model.init_cache(B, L) if self.cache is not None else None
        first = self.prompt_length // b
        num_blocks = first + decoded_blocks(self.prompt_length, L, b)
        for n in range(first, num_blocks):
            bs, be = n * b, min((n + 1) * b, L)
            self._decode_block(x, order, n, bs, be)
            if self._finish_block(x, order, n, bs, be, last=n + 1 == num_blocks):
                break
        return self._nfe

    def _units(self, bs: int, be: int) -> List[Tuple[int, int, int, int]]:
        """The decoding units ``(u0, u1, s0, s1)`` of the block: candidates ``[u0, u1)`` inside
        the sub-block ``[s0, s1)`` of the grid (the whole block without sub-blocks)."""
        d0 = max(bs, self.prompt_length)
        size = self.sub_block or self.block_size
        units = []
        for s0 in range(bs, be, size):
            s1 = min(s0 + size, be)
            if max(s0, d0) < s1:
                units.append((max(s0, d0), s1, s0, s1))
        return units

    def _decode_block(self, x, order, blk: int, bs: int, be: int) -> None:
        self._block_cached = False
        if self.shift_logits:
            prev = self._commit(x, bs)
            if prev is not None and bs >= self.prompt_length:
                # v2: the block's first token is the argmax next-token prediction of the finished prefix
                self._apply(prev, x[:, bs:bs + 1], order[:, bs:bs + 1], TopK(1), 0, 1, blk, bs,
                            proposal=self._argmax_proposal())
        if self.editing is not None:
            return self._edit_block(x, order, blk, bs, be)
        for u0, u1, s0, s1 in self._units(bs, be):
            left = self._masks_left(x, u0, u1)
            if not bool((left > 0).any()):
                continue
            self.plan.begin_block(left)
            i = 0
            while True:
                logits, q0 = self._step_logits(x, bs, be, s0, s1)
                n = logits.shape[1]
                self._apply(logits, x[:, q0:q0 + n], order[:, q0:q0 + n], self.plan.rule(i, left), u0 - q0, u1 - q0,
                            blk, q0)
                i += 1
                now = self._masks_left(x, u0, u1)
                if self.plan.steps_per_block is not None:
                    if i == self.plan.steps_per_block or not bool((now > 0).any()):  # the one sync per step
                        break
                    left = now
                    continue
                stalled = (now > 0) & (now == left)
                done, stuck = torch.stack([(now == 0).all(), stalled.any()]).tolist()  # the one sync per step
                if done:
                    break
                if stuck:
                    raise RuntimeError(
                        f"diffusion_kernels: block diffusion: step {self._step - 1} (block {blk}) committed no token "
                        f"in row(s) {_rows(stalled)}, which still have masks: no masked position has a finite "
                        "confidence (NaN or +inf logits), or the model proposes mask_id itself")
                left = now

    def _edit_block(self, x, order, blk: int, bs: int, be: int) -> None:
        u0 = max(bs, self.prompt_length)
        if not bool((x[:, u0:be] == self.mask_id).any()):
            return
        prompt = torch.zeros_like(x[:, bs:be], dtype=torch.bool)
        prompt[:, :u0 - bs] = True
        state = EditState.start(x[:, bs:be], self.mask_id, prompt_mask=prompt)
        for _ in range(self.editing.max_steps(be - bs)):
            logits, q0 = self._step_logits(x, bs, be, bs, be)
            res = joint_threshold_step(logits, x[:, q0:be], self.editing, mask_id=self.mask_id, state=state,
                                       block_start=u0 - q0, block_end=be - q0)
            order[:, q0:be].masked_fill_(res.transferred, self._step)
            self._report(res.transferred | res.edited, blk, q0)
            if bool(state.finished.all()):  # the one sync per step
                return

    def _report(self, moved: torch.Tensor, blk: int, q0: int) -> None:
        self._step += 1
        if self.callback is not None:
            full = torch.zeros_like(self._x, dtype=torch.bool)
            full[:, q0:q0 + moved.shape[1]] = moved
            self.callback(StepInfo(step=self._step - 1, block=blk, x=self._x, transferred=full,
                                   prompt_length=self.prompt_length))

    def _argmax_proposal(self) -> Proposal:
        """The proposal without sampling (v2 takes the argmax for a block's first token at any temperature)."""
        return dataclasses.replace(self.proposal, temperature=0.0, top_p=None, top_k=None, confidence="prob",
                                   confidence_from="logits", renormalize_without=None)

    def _apply(self, logits, xs, orders, rule, u0: int, u1: int, blk: int, q0: int,
               proposal: Optional[Proposal] = None) -> None:
        """One :func:`decode_step` on the view ``xs`` of ``x`` from ``q0``, candidates ``[q0 + u0, q0 + u1)``."""
        proposal = self.proposal if proposal is None else proposal
        moved = decode_step(logits, xs, rule, mask_id=self.mask_id, proposal=proposal, block_start=u0,
                            block_end=u1, seed=self.seed, offset=self._step).transferred
        orders.masked_fill_(moved, self._step)
        self._report(moved, blk, q0)

    def _masks_left(self, x, lo, hi) -> torch.Tensor:
        return (x[:, lo:hi] == self.mask_id).sum(dim=1)

    def _finish_block(self, x, order, blk, bs, be, last: bool) -> bool:
        """Checks that no mask is left in the block; stops the rows with an EOS in their answer.
        Returns True when the loop ends (every row has stopped)."""
        d0 = max(bs, self.prompt_length)
        uncommitted = (x[:, d0:be] == self.mask_id).any(dim=1)
        check_eos = self.stop_at_eos and not last
        flags = [uncommitted.any()]
        if check_eos:
            ended = (x[:, self.prompt_length:be] == self.eos_id).any(dim=1)
            x[:, be:].masked_fill_(ended[:, None], self.eos_id)
            flags.append(ended.all())
        flags = torch.stack(flags).tolist()  # the one sync per block
        if flags[0]:
            raise RuntimeError(
                f"diffusion_kernels: block diffusion: block {blk} ended with masked positions in row(s) "
                f"{_rows(uncommitted)}: the plan's steps committed fewer tokens than the block holds, or the "
                "model's logits there are NaN or +inf, or it proposes mask_id")
        return bool(check_eos and flags[1])
