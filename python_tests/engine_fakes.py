"""Fakes of the serving engines' documented interfaces, installed as modules in ``sys.modules`` so
the adapters import them as they would the real engines (shared/research/engines.md):

* SGLang: ``sglang.srt.dllm.algorithm`` (``algo_name_to_cls``) and ``.base.DllmAlgorithm`` (config
  with ``block_size``, ``mask_id``, ``first_done_first_out_mode``, ``algorithm_config``; the
  synchronous and first-done-first-out loops of ``run``), with the stock ``LowConfidence`` and
  ``JointThreshold`` built on the transcriptions of engine_stock.py.
* vLLM dllm-plugin: ``dllm_plugin.config``, ``dllm_plugin.remasking`` (``RemaskStepResult``,
  ``validate_remask_step_result``, the stock ``Llada2DefaultRemaskingPolicy``) and a
  ``dllm_plugin.runtime_worker`` that holds the policy class, as the real one does.

A toy "model" (:func:`toy_logits`) gives logits that depend on the tokens, with many exact ties.
"""
from __future__ import annotations

import inspect
import sys
import types
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Optional

import pytest
import torch

import diffusion_kernels
import engine_stock as stock

# The joint threshold needs masked_confidence(positions="all", prev_token_penalty=...) (contract A)
needs_editing_ops = pytest.mark.skipif(
    "positions" not in inspect.signature(diffusion_kernels.masked_confidence).parameters,
    reason="this build's masked_confidence has no positions='all' / prev_token_penalty yet")


def _module(monkeypatch, name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    if "." not in name or attrs.get("__path__") is not None:
        mod.__path__ = []
    monkeypatch.setitem(sys.modules, name, mod)
    return mod


# --- SGLang ---------------------------------------------------------------------------------------

@dataclass
class DllmConfig:
    """The fields of SGLang's ``DllmConfig`` that algorithms read."""
    algorithm: str
    algorithm_config: dict
    block_size: int
    mask_id: int
    first_done_first_out_mode: bool = False


def forward_batch(ids: torch.Tensor, prompt_mask: Optional[torch.Tensor] = None) -> SimpleNamespace:
    """A ForwardBatch-like object: ``batch_size``, flat ``input_ids``, ``dllm_prompt_mask``."""
    return SimpleNamespace(batch_size=ids.shape[0], input_ids=ids.reshape(-1).clone(), dllm_prompt_mask=prompt_mask)


class FakeDllmAlgorithm:
    """``sglang.srt.dllm.algorithm.base.DllmAlgorithm``: the hooks and the two loops of ``run``."""

    def __init__(self, config):
        self.block_size = config.block_size
        self.mask_id = config.mask_id
        self.fdfo = config.first_done_first_out_mode

    def init_step_state(self, forward_batch):
        return [None] * forward_batch.batch_size

    def max_steps(self, block_size: int) -> int:
        return block_size + 1

    def step(self, forward_batch, full_logits, states):
        raise NotImplementedError

    def run(self, model, forward_batch, algo_states=None):
        """``model(forward_batch) -> full_logits``. Sync mode: until every row is done or the step
        budget is spent; returns ``(steps, None)``. FDFO mode: one step; returns ``(done, states
        to carry)``."""
        batch = forward_batch.batch_size
        if self.fdfo:
            fresh = None
            states = []
            for i, carried in enumerate(algo_states or [None] * batch):
                if carried is None:
                    fresh = fresh if fresh is not None else self.init_step_state(forward_batch)
                    states.append(fresh[i])
                else:
                    states.append(carried)
            done = self.step(forward_batch, model(forward_batch), states)
            return done, [None if d else s for d, s in zip(done, states)]
        states = self.init_step_state(forward_batch)
        ids = forward_batch.input_ids.view(batch, self.block_size)
        if bool((ids != self.mask_id).all()):
            return 0, None
        steps = 0
        for _ in range(self.max_steps(self.block_size)):
            steps += 1
            if all(self.step(forward_batch, model(forward_batch), states)):
                break
        return steps, None


def _stock_classes(base):
    class LowConfidence(base):
        def __init__(self, config):
            super().__init__(config)
            self.threshold = config.algorithm_config.get("threshold", 0.95)

        def step(self, forward_batch, full_logits, states):
            return stock.sglang_low_confidence_step(forward_batch.input_ids, full_logits, forward_batch.batch_size,
                                                    self.block_size, self.mask_id, self.threshold,
                                                    getattr(forward_batch, "dllm_prompt_mask", None))

    class JointThreshold(base):
        def __init__(self, config):
            super().__init__(config)
            cfg = config.algorithm_config
            self.threshold = cfg.get("threshold", 0.5)
            self.edit_threshold = cfg.get("edit_threshold", 0)
            self.max_post_edit_steps = cfg.get("max_post_edit_steps", 16)
            self.penalty_lambda = cfg.get("penalty_lambda", 0)

        def max_steps(self, block_size):
            return block_size + self.max_post_edit_steps + 1

        def init_step_state(self, forward_batch):
            return stock.sglang_joint_threshold_init(forward_batch.input_ids, forward_batch.batch_size, self.block_size,
                                                     self.mask_id, getattr(forward_batch, "dllm_prompt_mask", None))

        def step(self, forward_batch, full_logits, states):
            return stock.sglang_joint_threshold_step(
                forward_batch.input_ids, full_logits, states, forward_batch.batch_size, self.block_size, self.mask_id,
                self.threshold, self.edit_threshold, self.max_post_edit_steps, self.penalty_lambda)

    return LowConfidence, JointThreshold


def install_sglang(monkeypatch) -> types.ModuleType:
    """Install the fake SGLang; returns ``sglang.srt.dllm.algorithm`` (its ``algo_name_to_cls``
    holds the stock classes)."""
    low, joint = _stock_classes(FakeDllmAlgorithm)
    _module(monkeypatch, "sglang")
    _module(monkeypatch, "sglang.srt", __path__=[])
    _module(monkeypatch, "sglang.srt.dllm", __path__=[])
    algo = _module(monkeypatch, "sglang.srt.dllm.algorithm", __path__=[],
                   algo_name_to_cls={"LowConfidence": low, "JointThreshold": joint})
    _module(monkeypatch, "sglang.srt.dllm.algorithm.base", DllmAlgorithm=FakeDllmAlgorithm)
    return algo


# --- vLLM dllm-plugin -----------------------------------------------------------------------------

@dataclass(frozen=True)
class RemaskStepResult:
    committed_token_ids: tuple
    next_input_block: tuple


def install_dllm_plugin(monkeypatch, draft_size: int = 32) -> SimpleNamespace:
    """Install the fake vllm-project/dllm-plugin; returns its modules."""
    def validate(result, *, draft_size: int = draft_size, vocab_size: Optional[int] = None) -> None:
        if len(result.next_input_block) != draft_size:
            raise ValueError(f"next_input_block must have length draft_size={draft_size}")
        if not 0 <= len(result.committed_token_ids) <= draft_size:
            raise ValueError("committed_token_ids length must be in 0..draft_size")

    class Llada2DefaultRemaskingPolicy:
        def apply(self, *, input_draft, logits: Any = None, remasking_config=None):
            committed, nxt = stock.vllm_llada2_default_apply(input_draft, logits, dict(remasking_config or {}),
                                                             draft_size=draft_size)
            result = RemaskStepResult(committed_token_ids=committed, next_input_block=nxt)
            validate(result)
            return result

    config = _module(monkeypatch, "dllm_plugin.config", DRAFT_SIZE=draft_size,
                     LLADA2_DEFAULT_COMMIT_CONFIDENCE_THRESHOLD=0.9, LLADA2_DEFAULT_MASK_TOKEN_ID=156895,
                     LLADA2_DEFAULT_DENOISE_STEPS=draft_size)
    base = _module(monkeypatch, "dllm_plugin.remasking.base", RemaskStepResult=RemaskStepResult,
                   validate_remask_step_result=validate)
    default = _module(monkeypatch, "dllm_plugin.remasking.llada2_default",
                      Llada2DefaultRemaskingPolicy=Llada2DefaultRemaskingPolicy)
    remasking = _module(monkeypatch, "dllm_plugin.remasking", __path__=[], RemaskStepResult=RemaskStepResult,
                        validate_remask_step_result=validate, Llada2DefaultRemaskingPolicy=Llada2DefaultRemaskingPolicy)
    worker = _module(monkeypatch, "dllm_plugin.runtime_worker", Llada2DefaultRemaskingPolicy=Llada2DefaultRemaskingPolicy)
    package = _module(monkeypatch, "dllm_plugin", __path__=[], config=config, remasking=remasking)
    return SimpleNamespace(package=package, config=config, base=base, default=default, remasking=remasking,
                           runtime_worker=worker, stock_policy=Llada2DefaultRemaskingPolicy)


# --- a toy model ----------------------------------------------------------------------------------

class ToyModel:
    """Logits ``[B * block, V]`` that depend on each row's tokens (position bias + a term from the
    previous and the current token), rounded to quarters so that ties are common. ``vocab``
    includes ``mask_id``."""

    def __init__(self, block: int, vocab: int, seed: int = 0, scale: float = 2.0, dtype=torch.float32):
        g = torch.Generator().manual_seed(seed)
        self.block = block
        self.pos = (torch.randn(block, vocab, generator=g) * scale * 4).round() / 4
        self.prev = (torch.randn(vocab, vocab, generator=g) * scale * 2).round() / 4
        self.cur = (torch.randn(vocab, vocab, generator=g) * scale * 2).round() / 4
        self.dtype = dtype

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        rows = ids.view(-1, self.block)
        prev = torch.cat([rows[:, :1], rows[:, :-1]], dim=1)
        out = self.pos[None] + self.prev[prev] + self.cur[rows]
        return out.reshape(-1, out.shape[-1]).to(self.dtype)

    def __call__(self, forward_batch) -> torch.Tensor:
        return self.logits(forward_batch.input_ids)
