"""``generate(cuda_graph=True)``: the decode step on static buffers, captured as a CUDA graph once
per step shape and replayed.

A step reads and writes only tensors whose addresses never change during a generation: the
sequence ``x``, ``order`` and ``log_prob`` of the call, the model's weights and KV cache, and a
few one-element (``[batch]`` for the count) int64 buffers the host fills before each step (Philox
offset, first position run, block bounds, top-k count). What varies per step is in those buffers,
never in a Python number of the step function, so a captured graph replays any step of its
shape. Everything that needs the host (the plan's counts, "is the block done", callbacks) runs
between steps. Without CUDA (or with ``capture=False``) the same step function runs eagerly on
the same buffers: the path the CPU tests check token for token against the eager loop.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Dict, Generic, Iterator, Optional, Tuple, TypeVar

import torch

from .cache import query_range
from .rules import DInferThreshold, Factor, Rule, Threshold, TopK
from .step import decode_step
from .token_log_prob import proposal_log_prob

__all__ = ["StepGraph", "StaticDecodeStep", "static_step_active", "GRAPH_RULES"]

# rules that read nothing per step but the static buffers (TopK's count is copied into one)
GRAPH_RULES = (TopK, Threshold, Factor, DInferThreshold)

_state = threading.local()
T = TypeVar("T")


def static_step_active() -> bool:
    """True while a static decode step runs (captured or eagerly): models must not read a device
    value on the host then (e.g. "is every key valid?")."""
    return getattr(_state, "depth", 0) > 0


@contextmanager
def _static_step() -> Iterator[None]:
    _state.depth = getattr(_state, "depth", 0) + 1
    try:
        yield
    finally:
        _state.depth -= 1


class StepGraph(Generic[T]):
    """A function of no arguments over static buffers, run eagerly or as a captured CUDA graph.

    With ``capture=True`` (CUDA only) the first call runs ``fn`` eagerly on a side stream (the
    real step, and the warm-up capture needs), then captures it into a ``torch.cuda.CUDAGraph``
    in ``pool`` (shared by the graphs of one generation: each step's outputs are read before the
    next step runs); later calls replay it and return the captured outputs, rewritten in place.
    With ``capture=False`` every call runs ``fn`` eagerly.

    Args:
        fn: the step; it must read per-step values from static buffers only.
        capture: capture on CUDA (False: run eagerly, e.g. on the CPU).
        pool: a ``torch.cuda.graph_pool_handle()`` to share, or None.

    Examples:
        >>> buf = torch.zeros(3)
        >>> step = StepGraph(lambda: buf.add_(1).sum(), capture=False)
        >>> float(step()), float(step())
        (3.0, 6.0)
    """

    def __init__(self, fn: Callable[[], T], *, capture: bool, pool=None):
        self.fn, self.capture, self.pool = fn, capture, pool
        self.graph: Optional["torch.cuda.CUDAGraph"] = None
        self.outputs: Optional[T] = None
        self.replays = 0

    def __call__(self) -> T:
        if self.graph is not None:
            self.graph.replay()
            self.replays += 1
            return self.outputs
        if not self.capture:
            with _static_step():
                return self.fn()
        side, current = torch.cuda.Stream(), torch.cuda.current_stream()
        side.wait_stream(current)
        with torch.cuda.stream(side), _static_step():
            out = self.fn()
        current.wait_stream(side)
        self._capture()
        return out

    def _capture(self) -> None:
        graph = torch.cuda.CUDAGraph()
        try:
            with _static_step(), torch.cuda.graph(graph, pool=self.pool):
                self.outputs = self.fn()
        except RuntimeError as e:
            raise RuntimeError("diffusion_kernels: generate(cuda_graph=True): capturing the decode step failed; the "
                               "model's forward must run without host synchronisation or host-to-device copies "
                               f"(use cuda_graph=False for this model): {e}") from e
        self.graph = graph


class StaticDecodeStep:
    """One decode step of :class:`~diffusion_kernels.decoding.BlockLoop` on static buffers, one
    :class:`StepGraph` per step shape.

    The shape of a step is the number of positions run through the model and decoded: the whole
    sequence (no cache, or a block's first step), the block (``cache='dual'``, shared by every
    block) or the block to the end (``'prefix'``, one per block; the previous block's graph is
    released when a new one is made). The step gathers its tokens at the positions
    ``start + arange(n)`` (``start`` a static buffer), runs the model with the tensor ``start``,
    proposes, commits in place, and scatters tokens, ``order`` and ``log_prob`` back.

    Args:
        forward: the loop's :class:`~diffusion_kernels.decoding.ModelForward` (its ``x`` is the
            static sequence; with a cache, a model with ``accepts_tensor_start``).
        order: ``[B, L]`` int64, the step that committed each position (written in the step).
        proposal, mask_id, seed: as for :func:`decode_step` (``seed`` constant over the run).
        log_prob: ``[B, L]`` float32 or None: the committed tokens' log-probabilities.
        capture: capture CUDA graphs (default: when ``x`` is on a CUDA device).

    Examples:
        >>> import torch
        >>> from diffusion_kernels.decoding import ModelForward, Proposal, TopK
        >>> x = torch.tensor([[1, 9, 9, 9]])                            # 9 = [MASK]
        >>> fwd = ModelForward(lambda t, attention_mask=None: torch.eye(9)[t % 9] * 5, x, mask_id=9)
        >>> step = StaticDecodeStep(fwd, torch.full_like(x, -1), Proposal(), mask_id=9)
        >>> moved, q0 = step(0, 1, 4, nfe=0, rule=TopK(2))
        >>> x.tolist(), moved.tolist()
        ([[1, 0, 0, 9]], [[False, True, True, False]])
    """

    def __init__(self, forward, order: torch.Tensor, proposal, *, mask_id: int, seed=0,
                 log_prob: Optional[torch.Tensor] = None, capture: Optional[bool] = None):
        x = forward.x
        B, L = x.shape
        self.forward, self.x, self.order, self.log_prob = forward, x, order, log_prob
        self.proposal, self.mask_id, self.seed = proposal, mask_id, seed
        self.capture = x.is_cuda if capture is None else capture
        self.pool = torch.cuda.graph_pool_handle() if self.capture else None

        def scalar():
            return torch.zeros(1, dtype=torch.int64, device=x.device)

        # the per-step values: Philox offset (= the step's NFE index), first position run,
        # block bounds relative to the first decoded position, and TopK's count
        self.offset, self.start, self.block_start, self.block_end = scalar(), scalar(), scalar(), scalar()
        self.k = torch.zeros(B, dtype=torch.int64, device=x.device)
        self.positions = torch.arange(L, device=x.device)
        self.graphs: Dict[tuple, StepGraph] = {}

    def static_buffers(self) -> Dict[str, torch.Tensor]:
        """The tensors the host writes before a step (tests check their addresses never change)."""
        return {"offset": self.offset, "start": self.start, "block_start": self.block_start,
                "block_end": self.block_end, "k": self.k}

    def _static_rule(self, rule: Rule) -> Tuple[Rule, tuple]:
        """The rule reading its per-step count from ``self.k``, and the part of the graph key it gives."""
        if type(rule) is TopK:
            if isinstance(rule.k, torch.Tensor):
                self.k.copy_(rule.k.reshape(-1).expand(self.k.shape[0]))
            else:
                self.k.fill_(rule.k)
            return TopK(self.k, rule.alg_temp), ("topk", rule.alg_temp)
        if type(rule) in GRAPH_RULES:
            return rule, ("rule", id(rule))  # the same object at every step (an adaptive plan's rule)
        raise ValueError(f"diffusion_kernels: generate(cuda_graph=True) cannot capture a step with the rule "
                         f"{type(rule).__name__} (it reads per-step values on the host); use cuda_graph=False")

    def __call__(self, step_in_block: int, start: int, end: int, *, nfe: int, rule: Rule
                 ) -> Tuple[torch.Tensor, int]:
        """Runs step ``step_in_block`` of the block ``[start, end)``; returns ``(moved, q0)``: the
        ``[B, n]`` committed mask of the positions ``[q0, q0 + n)``."""
        fwd, L = self.forward, self.x.shape[1]
        q0, q1 = query_range(fwd.cache, step_in_block, start, end, L)
        lo = q0 - 1 if fwd.shift_logits and q0 > 0 else q0  # Dream's logits at i predict i + 1
        static_rule, rule_key = self._static_rule(rule)
        self.offset.fill_(nfe)
        self.start.fill_(lo)
        self.block_start.fill_(start - q0)
        self.block_end.fill_(end - q0)
        key = (q1 - lo, q0 - lo) + rule_key
        graph = self.graphs.get(key)
        if graph is None:
            if fwd.cache == "prefix" and lo > 0:  # a shape of an earlier block never comes back
                self.graphs = {k: g for k, g in self.graphs.items() if k[0] == L}
            graph = self.graphs[key] = StepGraph(self._step_fn(q1 - lo, q0 - lo, static_rule), capture=self.capture,
                                                 pool=self.pool)
        moved = graph()
        if fwd.kv is not None:
            fwd.kv.wrote(lo, q1)
        return moved, q0

    def _step_fn(self, n_run: int, skip: int, rule: Rule) -> Callable[[], torch.Tensor]:
        """The step at one shape: ``n_run`` positions from ``self.start`` through the model, the
        last ``n_run - skip`` of them decoded."""
        fwd, x, order, log_prob = self.forward, self.x, self.order, self.log_prob
        whole = n_run == x.shape[1] and skip == 0  # the whole sequence decoded: x itself, start 0
        cached = fwd.kv is not None

        def step() -> torch.Tensor:
            if whole:
                idx, xs, prompt = None, x, fwd.prompt_index
            else:
                idx = self.start + self.positions[:n_run]
                xs, prompt = x.index_select(1, idx), fwd.prompt_index.index_select(1, idx)
            logits = fwd.logits_of(xs, prompt, (0 if whole else self.start) if cached else None)
            if fwd.shift_logits:
                logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1) if skip == 0 else logits[:, :-1]
            # the decoded positions, contiguous: written in place, then scattered back
            view = xs if skip == 0 else x.index_select(1, idx[skip:])
            moved = decode_step(logits, view, rule, mask_id=self.mask_id, proposal=self.proposal,
                                block_start=self.block_start, block_end=self.block_end, seed=self.seed,
                                offset=self.offset).transferred
            if log_prob is not None:
                lp = proposal_log_prob(logits, view, moved, self.proposal, seed=self.seed, offset=self.offset)
            if whole:
                order.copy_(torch.where(moved, self.offset, order))
                if log_prob is not None:
                    log_prob.copy_(torch.where(moved, lp, log_prob))
            else:
                at = idx[skip:]
                x.index_copy_(1, at, view)
                order.index_copy_(1, at, torch.where(moved, self.offset, order.index_select(1, at)))
                if log_prob is not None:
                    log_prob.index_copy_(1, at, torch.where(moved, lp, log_prob.index_select(1, at)))
            return moved

        return step
