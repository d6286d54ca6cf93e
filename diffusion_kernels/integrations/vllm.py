"""vLLM plugin: a batched remasking policy for vllm-project's dllm-plugin, on the fused ops.

:class:`DKRemaskingPolicy` is a drop-in for the plugin's ``Llada2DefaultRemaskingPolicy`` (same
``apply(*, input_draft, logits, remasking_config) -> RemaskStepResult``, same ``remasking_config``
keys, same decisions) that computes on tensors instead of Python lists, and adds
:meth:`DKRemaskingPolicy.apply_batch` for many requests in one call.

Installing the package declares :func:`register` under vLLM's ``vllm.general_plugins`` entry-point
group. It does nothing unless ``DK_VLLM_OVERRIDE=1`` is set; then it makes the dllm-plugin use
:class:`DKRemaskingPolicy` wherever it uses its default policy.
"""
from __future__ import annotations

import os
from typing import Any, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from ..decoding import TopK
from ..ops import masked_confidence

__all__ = ["DKRemaskingPolicy", "register", "transfer_counts", "OVERRIDE_ENV"]

OVERRIDE_ENV = "DK_VLLM_OVERRIDE"
_POLICY_NAME = "Llada2DefaultRemaskingPolicy"


def _plugin():
    """The dllm-plugin modules the policy needs: its config and its result type."""
    try:
        from dllm_plugin import config
        from dllm_plugin.remasking import base
    except ImportError as e:
        raise ImportError("diffusion_kernels.integrations.vllm needs vLLM's dLLM plugin: "
                          "pip install vllm-dllm-plugin (github.com/vllm-project/dllm-plugin)") from e
    return config, base


def register() -> None:
    """Entry point of the ``vllm.general_plugins`` group. With ``DK_VLLM_OVERRIDE=1``, replace
    the dllm-plugin's ``Llada2DefaultRemaskingPolicy`` by :class:`DKRemaskingPolicy` in every
    dllm-plugin module that refers to it (already imported or imported later); otherwise do
    nothing, so installing the package never changes a vLLM deployment by itself.

    Raises:
        ImportError: the override is requested but the dllm-plugin is not installed.

    Examples:
        >>> from diffusion_kernels.integrations import vllm as dk_vllm
        >>> dk_vllm.register()  # doctest: +SKIP
    """
    if os.environ.get(OVERRIDE_ENV, "").strip().lower() in ("", "0", "false", "no", "off"):
        return
    _plugin()
    import sys

    from dllm_plugin import remasking
    stock = getattr(remasking, _POLICY_NAME, None)
    for name, module in list(sys.modules.items()):
        if (name == "dllm_plugin" or name.startswith("dllm_plugin.")) and module is not None:
            if stock is not None and getattr(module, _POLICY_NAME, None) is stock:
                setattr(module, _POLICY_NAME, DKRemaskingPolicy)
    setattr(remasking, _POLICY_NAME, DKRemaskingPolicy)


def _schedule_count(block: int, steps: int, step: int) -> int:
    """Entry ``step`` (clamped) of the LLaDA2 schedule ``block // steps`` + 1 for the first
    ``block % steps`` steps."""
    if steps <= 0:
        raise ValueError(f"diffusion_kernels: remasking_config 'denoise_steps' must be positive, got {steps}")
    step = max(0, min(step, steps - 1))
    return block // steps + (1 if step < block % steps else 0)


def transfer_counts(configs: Sequence[Mapping[str, Any]], draft_size: int, default_steps: int) -> List[int]:
    """Per request, how many masked positions the LLaDA2 default policy wants at this step:
    ``num_transfer`` (or the schedule's entry for ``denoise_step_index`` over ``denoise_steps``)
    plus ``grammar_extra_transfer`` (negative counts as 0).

    Examples:
        >>> transfer_counts([{"denoise_steps": 5, "denoise_step_index": 0}, {"num_transfer": 3}], 32, 32)
        [7, 3]
    """
    counts = []
    for cfg in configs:
        extra = max(0, int(cfg.get("grammar_extra_transfer", 0)))
        if "num_transfer" in cfg:
            n = int(cfg["num_transfer"]) + extra
            if n < 0:
                raise ValueError("diffusion_kernels: remasking_config 'num_transfer' must be non-negative")
        else:
            n = _schedule_count(draft_size, int(cfg.get("denoise_steps", default_steps)),
                                int(cfg.get("denoise_step_index", 0))) + extra
        counts.append(n)
    return counts


class DKRemaskingPolicy:
    """The dllm-plugin's LLaDA2 default remasking policy, batched on ``masked_confidence`` and
    ``select_transfer``.

    Per request: proposals are the argmax of each position's logits and confidences the softmax
    probability of that argmax, at masked positions; with ``n`` the step's transfer count
    (:func:`transfer_counts`) and ``h`` the number of masked positions with confidence
    ``> commit_confidence_threshold``, the ``max(h, min(n, masked))`` most confident masked
    positions are committed (ties: lowest index), which is the stock rule "all of the confident
    ones if there are at least ``n``, else the top ``n``". A block without masks left is returned as
    ``committed_token_ids`` with an all-mask ``next_input_block``; otherwise nothing is committed
    and ``next_input_block`` carries the progress. Confidences are float32 here, Python floats
    (float64) in the stock policy: docs/engines.md ("Same decisions").
    """

    def apply(self, *, input_draft: Sequence[int], logits: Any = None,
              remasking_config: Optional[Mapping[str, Any]] = None):
        """One request's step (the plugin's ``RemaskingPolicy.apply``).

        Args:
            input_draft: the block's current tokens, length ``DRAFT_SIZE``.
            logits: ``[DRAFT_SIZE, vocab]`` tensor (or nested sequences) of the block's logits.
            remasking_config: the policy's keys (``commit_confidence_threshold``, ``mask_token_id``,
                ``denoise_steps``, ``denoise_step_index``, ``num_transfer``,
                ``grammar_extra_transfer``).

        Returns:
            The plugin's ``RemaskStepResult``.

        Raises:
            ImportError: the dllm-plugin is not installed.
            ValueError: wrong lengths, missing logits, bad counts (as the stock policy).
        """
        if logits is None:
            raise ValueError("diffusion_kernels: DKRemaskingPolicy.apply needs logits")
        return self.apply_batch(input_drafts=[input_draft], logits=_as_tensor(logits).unsqueeze(0),
                                remasking_configs=[remasking_config or {}])[0]

    def apply_batch(self, *, input_drafts: Union[torch.Tensor, Sequence[Sequence[int]]], logits: torch.Tensor,
                    remasking_configs: Union[Mapping[str, Any], Sequence[Mapping[str, Any]], None] = None) -> list:
        """Many requests' steps in one batched call.

        Args:
            input_drafts: ``[batch, DRAFT_SIZE]`` int tokens (tensor or nested sequences).
            logits: ``[batch, DRAFT_SIZE, vocab]`` or flat ``[batch * DRAFT_SIZE, vocab]`` tensor.
            remasking_configs: one mapping for all requests, or one per request.

        Returns:
            A list of the plugin's ``RemaskStepResult``, one per request.

        Examples:
            >>> policy = DKRemaskingPolicy()
            >>> results = policy.apply_batch(input_drafts=drafts, logits=logits)  # doctest: +SKIP
        """
        config, base = _plugin()
        draft_size = int(config.DRAFT_SIZE)
        logits = _as_tensor(logits)
        drafts = torch.as_tensor(input_drafts, dtype=torch.int64, device=logits.device)
        if drafts.dim() != 2 or drafts.shape[1] != draft_size:
            raise ValueError(f"diffusion_kernels: input_draft length must be DRAFT_SIZE={draft_size}, "
                             f"got shape {tuple(drafts.shape)}")
        batch = drafts.shape[0]
        if logits.dim() == 2:
            logits = logits.unflatten(0, (batch, draft_size))
        if logits.dim() != 3 or logits.shape[:2] != drafts.shape:
            raise ValueError(f"diffusion_kernels: logits must be [batch, DRAFT_SIZE={draft_size}, vocab], "
                             f"got {tuple(logits.shape)}")
        if remasking_configs is None or isinstance(remasking_configs, Mapping):
            configs = [dict(remasking_configs or {})] * batch
        else:
            configs = [dict(c or {}) for c in remasking_configs]
        threshold = [float(c.get("commit_confidence_threshold", config.LLADA2_DEFAULT_COMMIT_CONFIDENCE_THRESHOLD))
                     for c in configs]
        mask_ids = [int(c.get("mask_token_id", config.LLADA2_DEFAULT_MASK_TOKEN_ID)) for c in configs]
        wanted = transfer_counts(configs, draft_size, int(config.LLADA2_DEFAULT_DENOISE_STEPS))

        device = logits.device
        mask_col = torch.tensor(mask_ids, device=device)[:, None]
        if len(set(mask_ids)) == 1:
            proposal, confidence = masked_confidence(logits, drafts, mask_ids[0], confidence="prob",
                                                     confidence_from="logits")
        else:  # requests with different mask ids: mark every row's masks with one id the op knows
            marked = torch.where(drafts == mask_col, torch.full_like(drafts, -1), drafts)
            proposal, confidence = masked_confidence(logits, marked, -1, confidence="prob", confidence_from="logits")
            proposal = torch.where(proposal == -1, drafts, proposal)
        masked = drafts == mask_col
        # the stock rule, "the confident ones if at least n, else the top n", is the top max(h, min(n, masked))
        t = torch.tensor(threshold, dtype=torch.float32, device=device)[:, None]
        confident = (masked & (confidence > t)).sum(1)
        n = torch.tensor(wanted, dtype=torch.int64, device=device)
        k = torch.maximum(confident, torch.minimum(n, masked.sum(1)))
        nxt = drafts.clone()
        TopK(k).select(confidence, nxt, proposal)
        rows = nxt.tolist()
        results = []
        for row, mask_id in zip(rows, mask_ids):
            if mask_id in row:
                result = base.RemaskStepResult(committed_token_ids=(), next_input_block=tuple(row))
            else:
                result = base.RemaskStepResult(committed_token_ids=tuple(row), next_input_block=(mask_id,) * draft_size)
            base.validate_remask_step_result(result)
            results.append(result)
        return results


def _as_tensor(logits) -> torch.Tensor:
    """Logits as a floating tensor: nested sequences (the plugin's mock path) become float32."""
    if isinstance(logits, torch.Tensor):
        return logits if logits.is_floating_point() else logits.float()
    return torch.tensor(logits, dtype=torch.float32)
