"""SGLang plugin: SGLang's dLLM decoding algorithms on the package's fused ops.

Installing the package declares :func:`register` under SGLang's ``sglang.srt.plugins`` entry-point
group, so every SGLang process calls it at start-up. It adds two algorithms to
``sglang.srt.dllm.algorithm.algo_name_to_cls``:

* ``DKLowConfidence``: SGLang's ``LowConfidence`` (``algorithm_config`` key ``threshold``,
  default 0.95);
* ``DKJointThreshold``: SGLang's ``JointThreshold``, LLaDA2.1's joint threshold with token editing
  (keys ``threshold`` 0.5, ``edit_threshold`` 0, ``max_post_edit_steps`` 16, ``penalty_lambda`` 0).

Select one with ``--dllm-algorithm DKJointThreshold``. With ``DK_SGLANG_OVERRIDE=1`` in the
environment the stock names ``LowConfidence`` and ``JointThreshold`` run ours too (or name them:
``DK_SGLANG_OVERRIDE=JointThreshold``), so existing launch scripts and configs need no change.

Same contract as the stock classes: ``step(forward_batch, full_logits, states) -> list[bool]``,
``forward_batch.input_ids`` (flat ``[batch * block]``) edited in place (CUDA-graph safe),
``forward_batch.dllm_prompt_mask`` honoured, the same per-request state dicts across
first-done-first-out rounds, the same decisions on the same logits. Where they can differ, and why,
is in docs/engines.md ("Same decisions").
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Set

import torch

from ..decoding import EditState, JointThreshold, Threshold, joint_threshold_step
from ..ops import masked_confidence

__all__ = ["register", "algorithm_classes", "low_confidence_step", "joint_threshold_engine_step", "OVERRIDE_ENV"]

OVERRIDE_ENV = "DK_SGLANG_OVERRIDE"
_STOCK_TO_OURS = {"LowConfidence": "DKLowConfidence", "JointThreshold": "DKJointThreshold"}
_FALSE = ("", "0", "false", "no", "off")
_TRUE = ("1", "true", "yes", "on", "all")


def _engine():
    """SGLang's algorithm package and its ``DllmAlgorithm`` base class."""
    try:
        from sglang.srt.dllm import algorithm
        from sglang.srt.dllm.algorithm.base import DllmAlgorithm
    except ImportError as e:
        raise ImportError("diffusion_kernels.integrations.sglang needs SGLang with dLLM support: "
                          "pip install 'sglang>=0.5.23'") from e
    return algorithm, DllmAlgorithm


def _overridden() -> Set[str]:
    """Stock names the environment asks to replace."""
    value = os.environ.get(OVERRIDE_ENV, "").strip()
    if value.lower() in _FALSE:
        return set()
    if value.lower() in _TRUE:
        return set(_STOCK_TO_OURS)
    names = {n.strip() for n in value.split(",") if n.strip()}
    unknown = names - set(_STOCK_TO_OURS)
    if unknown:
        raise ValueError(f"diffusion_kernels: {OVERRIDE_ENV}={value!r} names {sorted(unknown)}; use 1, 0 or a "
                         f"comma-separated subset of {sorted(_STOCK_TO_OURS)}")
    return names


def register() -> None:
    """Entry point of the ``sglang.srt.plugins`` group: add ``DKLowConfidence`` and
    ``DKJointThreshold`` to SGLang's algorithm table and, with ``DK_SGLANG_OVERRIDE``, map the
    stock names to them.

    Raises:
        ImportError: SGLang (with ``sglang.srt.dllm``) is not installed.
        ValueError: ``DK_SGLANG_OVERRIDE`` names an algorithm we do not replace.

    Examples:
        >>> from diffusion_kernels.integrations import sglang as dk_sglang
        >>> dk_sglang.register()  # doctest: +SKIP
    """
    algorithm, _ = _engine()
    replace = _overridden()
    classes = algorithm_classes()
    algorithm.algo_name_to_cls.update(classes)
    for stock in replace:
        algorithm.algo_name_to_cls[stock] = classes[_STOCK_TO_OURS[stock]]


_BUILT: Dict[type, Dict[str, type]] = {}


def algorithm_classes() -> Dict[str, type]:
    """``{"DKLowConfidence": cls, "DKJointThreshold": cls}``, subclasses of the installed SGLang's
    ``DllmAlgorithm`` (built once per base class).

    Raises:
        ImportError: SGLang is not installed.
    """
    _, base = _engine()
    if base not in _BUILT:
        _BUILT[base] = _build(base)
    return dict(_BUILT[base])


def _full_logits(full_logits):
    """The dense ``[batch * block, vocab]`` logits (SGLang passes a tensor, or an output object
    carrying ``full_logits``)."""
    return getattr(full_logits, "full_logits", full_logits)


def low_confidence_step(input_ids: torch.Tensor, full_logits: torch.Tensor, batch_size: int, block_size: int,
                        mask_id: int, threshold: float, prompt_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """SGLang ``LowConfidence``'s step on the fused ops: every masked position whose argmax has a
    probability ``> threshold`` takes it, a row with none takes its most confident masked position
    (ties: lowest index).

    Args:
        input_ids: flat ``[batch_size * block_size]`` int64 tokens, edited in place.
        full_logits: ``[batch_size * block_size, vocab]`` logits (a ``[batch, block, vocab]``
            tensor works too); never written.
        batch_size, block_size: the layout of ``input_ids``.
        mask_id: the ``[MASK]`` id.
        threshold: the strict threshold.
        prompt_mask: optional ``[batch_size, block_size]`` bool, positions never decoded
            (``forward_batch.dllm_prompt_mask``).

    Returns:
        ``[batch_size]`` bool on the device: rows that had no mask to decode (SGLang's done flags).

    Examples:
        >>> ids = torch.tensor([3, 9, 9, 9])                        # one row, block 4, 9 = [MASK]
        >>> logits = torch.zeros(4, 10); logits[:, 5] = 8.0
        >>> low_confidence_step(ids, logits, 1, 4, mask_id=9, threshold=0.95).tolist(), ids.tolist()
        ([False], [3, 5, 5, 5])
    """
    ids = input_ids.view(batch_size, block_size)
    logits = full_logits if full_logits.dim() == 3 else full_logits.unflatten(0, (batch_size, block_size))
    proposal, confidence = masked_confidence(logits, ids, mask_id, confidence="prob", confidence_from="logits")
    masked = ids == mask_id
    if prompt_mask is not None:
        prompt_mask = prompt_mask.to(device=ids.device, dtype=torch.bool)
        masked = masked & ~prompt_mask
        confidence = confidence.masked_fill(prompt_mask, float("-inf"))
    done = ~masked.any(1)
    Threshold(threshold, strict=True).select(confidence, ids, proposal)
    return done


def _state_tensors(states: list, device) -> EditState:
    """SGLang's per-request state dicts as one batched :class:`EditState`."""
    masks = [s["prompt_mask"] for s in states]
    if masks and isinstance(masks[0], torch.Tensor):
        prompt = torch.stack([m.to(device=device, dtype=torch.bool) for m in masks])
    else:
        prompt = torch.tensor(masks, dtype=torch.bool, device=device)
    return EditState(prompt_mask=prompt,
                     post_edit_steps=torch.tensor([int(s["post_edit_steps"]) for s in states], dtype=torch.int32,
                                                  device=device),
                     finished=torch.tensor([bool(s["finished"]) for s in states], dtype=torch.bool, device=device))


def joint_threshold_engine_step(input_ids: torch.Tensor, full_logits: torch.Tensor, states: list, batch_size: int,
                                block_size: int, mask_id: int, rule: JointThreshold) -> List[bool]:
    """SGLang ``JointThreshold``'s step on :func:`~diffusion_kernels.decoding.joint_threshold_step`:
    all requests in one batched step, ``input_ids`` edited in place, the state dicts
    (``post_edit_steps``, ``finished``, ``prompt_mask``) updated with one device-to-host copy.

    Args:
        input_ids: flat ``[batch_size * block_size]`` int64 tokens, edited in place.
        full_logits: ``[batch_size * block_size, vocab]`` logits; never written.
        states: one dict per request (from ``init_step_state`` or carried across FDFO rounds).
        batch_size, block_size, mask_id: the layout and the ``[MASK]`` id.
        rule: the :class:`~diffusion_kernels.decoding.JointThreshold` parameters.

    Returns:
        Done flags: the requests that were finished before this step.

    Examples:
        >>> from diffusion_kernels.decoding import JointThreshold
        >>> ids = torch.tensor([3, 9, 9, 9])
        >>> logits = torch.zeros(4, 10); logits[:, 5] = 8.0
        >>> states = [{"post_edit_steps": 0, "finished": False, "prompt_mask": [True, False, False, False]}]
        >>> joint_threshold_engine_step(ids, logits, states, 1, 4, 9, JointThreshold(0.9)), ids.tolist()
        ([False], [3, 5, 5, 5])
    """
    done = [bool(s["finished"]) for s in states]
    ids = input_ids.view(batch_size, block_size)
    logits = full_logits if full_logits.dim() == 3 else full_logits.unflatten(0, (batch_size, block_size))
    state = _state_tensors(states, ids.device)
    joint_threshold_step(logits, ids, rule, mask_id=mask_id, state=state)
    steps, finished = torch.stack([state.post_edit_steps.to(torch.int64), state.finished.to(torch.int64)]).tolist()
    for s, n, f in zip(states, steps, finished):
        s["post_edit_steps"] = n
        s["finished"] = bool(f)
    return done


def _build(base: type) -> Dict[str, type]:
    class DKLowConfidence(base):
        """SGLang's ``LowConfidence`` on diffusion_kernels' fused ops (``algorithm_config``:
        ``threshold``, default 0.95)."""

        def __init__(self, config):
            super().__init__(config)
            self.threshold = config.algorithm_config.get("threshold", 0.95)
            Threshold(self.threshold, strict=True)  # a bad value fails at start-up, not at the first step

        def step(self, forward_batch, full_logits, states) -> List[bool]:
            done = low_confidence_step(forward_batch.input_ids, _full_logits(full_logits), forward_batch.batch_size,
                                       self.block_size, self.mask_id, self.threshold,
                                       getattr(forward_batch, "dllm_prompt_mask", None))
            return done.tolist()

    class DKJointThreshold(base):
        """SGLang's ``JointThreshold`` (LLaDA2.1 token editing) on diffusion_kernels' fused ops
        (``algorithm_config``: ``threshold`` 0.5, ``edit_threshold`` 0, ``max_post_edit_steps``
        16, ``penalty_lambda`` 0)."""

        def __init__(self, config):
            super().__init__(config)
            cfg = config.algorithm_config
            self.threshold = cfg.get("threshold", 0.5)
            self.edit_threshold = cfg.get("edit_threshold", 0)
            self.max_post_edit_steps = cfg.get("max_post_edit_steps", 16)
            self.penalty_lambda = cfg.get("penalty_lambda", 0)
            # SGLang applies the penalty only when lambda > 0
            self.rule = JointThreshold(self.threshold, self.edit_threshold, self.max_post_edit_steps,
                                       self.penalty_lambda if self.penalty_lambda > 0 else 0.0)

        def max_steps(self, block_size: int) -> int:
            return self.rule.max_steps(block_size)

        def init_step_state(self, forward_batch) -> list:
            ids = forward_batch.input_ids.view(forward_batch.batch_size, self.block_size)
            fixed = ids != self.mask_id
            literal = getattr(forward_batch, "dllm_prompt_mask", None)
            if literal is not None:
                fixed = fixed | literal.to(device=fixed.device, dtype=torch.bool)
            return [{"post_edit_steps": 0, "finished": False, "prompt_mask": row} for row in fixed.tolist()]

        def step(self, forward_batch, full_logits, states) -> List[bool]:
            return joint_threshold_engine_step(forward_batch.input_ids, _full_logits(full_logits), states,
                                               forward_batch.batch_size, self.block_size, self.mask_id, self.rule)

    return {"DKLowConfidence": DKLowConfidence, "DKJointThreshold": DKJointThreshold}
