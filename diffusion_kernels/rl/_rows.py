"""Log-probabilities of chosen tokens at chosen positions of one model call, through the fused
masked cross-entropy: only the chosen rows are ever scored, so no ``[positions, vocab]``
log-softmax exists. Two sources: the model's logits, or its hidden states and the LM head
(chunked, the logits recomputed in the backward: nothing vocabulary-sized is kept)."""
from __future__ import annotations

import math
from typing import Optional

import torch

from ..fused_linear_loss import _CHUNK_ELEMENTS, _PerRowCE
from ..ops.masked_ce import _FLOAT_DTYPES, grad_logits


def check_temperature(temperature) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"diffusion_kernels: argument 'temperature' must be a number, got {type(temperature).__name__}")
    if not (0 < temperature < math.inf):  # NaN fails too
        raise ValueError(f"diffusion_kernels: argument 'temperature' must be positive and finite, got {temperature}")
    return float(temperature)


def check_chunk_size(chunk_size, vocab: int) -> int:
    if chunk_size is None:
        return max(1, _CHUNK_ELEMENTS // vocab)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"diffusion_kernels: argument 'chunk_size' must be a positive int, got {chunk_size!r}")
    return chunk_size


def check_head(weight) -> None:
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2 or weight.shape[0] == 0:
        got = list(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"diffusion_kernels: argument 'lm_head_weight' must be [vocab, H] with vocab >= 1, got {got}")
    if weight.dtype not in _FLOAT_DTYPES:
        raise ValueError(f"diffusion_kernels: argument 'lm_head_weight' must be float32, float16, bfloat16 (or float64 "
                         f"on CPU), got {weight.dtype}")


def _acc(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


class _GatheredCE(torch.autograd.Function):
    """CE of the rows ``rows`` of ``logits [n, V]`` (divided by ``temperature``). Saves only the
    gathered rows; the backward writes their gradient straight into one zero ``[n, V]`` buffer
    (autograd's gather backward would hold two: the zeros and the scattered copy)."""

    @staticmethod
    def forward(ctx, logits, rows, targets, temperature):
        picked = logits.index_select(0, rows)
        if temperature != 1.0:  # in float32, as the sampler scales the logits
            picked = picked.to(_acc(picked.dtype)).div_(temperature)
        everything = torch.ones_like(targets, dtype=torch.bool)
        ce, lse = torch.ops.diffusion_kernels.masked_ce_forward.default(picked, targets, everything)
        ctx.save_for_backward(picked, rows, targets, everything, lse)
        ctx.shape, ctx.dtype, ctx.temperature = logits.shape, logits.dtype, temperature
        return ce

    @staticmethod
    def backward(ctx, grad_ce):
        picked, rows, targets, everything, lse = ctx.saved_tensors
        grad = grad_logits(torch.ops.diffusion_kernels.masked_ce_backward.default, grad_ce, None, picked, targets,
                           everything, lse)
        if ctx.temperature != 1.0:
            grad.div_(ctx.temperature)
        out = torch.zeros(ctx.shape, dtype=ctx.dtype, device=grad.device)
        return out.index_copy_(0, rows, grad.to(ctx.dtype)), None, None, None


class RowScorer:
    """``scorer(x, attention_mask, positions, targets) -> [M]`` log-probabilities
    ``log softmax(out / temperature)[targets]`` of ``model(x, attention_mask=...)``'s output at the
    flat positions ``positions`` of ``x [b, L]``, differentiable in the model's parameters.

    ``lm_head_weight=None``: the model returns logits ``[b, L, V]`` (or an object with
    ``.logits``); the chosen rows are gathered (``[M, V]``, what the CE keeps for its backward)
    and the whole logits tensor is released. Otherwise the model returns hidden states
    ``[b, L, H]`` and the logits of chunks of ``chunk_size`` chosen rows are computed, scored and
    dropped (recomputed in the backward). ``shift_logits``: Dream's convention, the output at
    ``i`` predicts token ``i + 1`` (position 0 uses output 0, as generate() does)."""

    def __init__(self, model, lm_head_weight: Optional[torch.Tensor] = None, *, temperature: float = 1.0,
                 shift_logits: bool = False, chunk_size: Optional[int] = None):
        if not callable(model):
            raise TypeError(f"diffusion_kernels: argument 'model' must be callable, got {type(model).__name__}")
        if not isinstance(shift_logits, bool):
            raise TypeError(f"diffusion_kernels: argument 'shift_logits' must be a bool, got {type(shift_logits).__name__}")
        self.model, self.weight, self.shift = model, lm_head_weight, shift_logits
        self.temperature = check_temperature(temperature)
        if lm_head_weight is not None:
            check_head(lm_head_weight)
            self.chunk = check_chunk_size(chunk_size, lm_head_weight.shape[0])
        elif chunk_size is not None:
            raise ValueError("diffusion_kernels: argument 'chunk_size' applies to the fused_linear variants only")

    def _output(self, x: torch.Tensor, attention_mask: Optional[torch.Tensor]) -> torch.Tensor:
        out = self.model(x, attention_mask=attention_mask)
        what = "logits" if self.weight is None else "hidden states"
        if self.weight is None:
            out = getattr(out, "logits", out)
        if not isinstance(out, torch.Tensor) or out.dim() != 3 or tuple(out.shape[:2]) != tuple(x.shape):
            got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"diffusion_kernels: argument 'model' must return [b, L, *] {what} for [b, L] = "
                             f"{list(x.shape)} tokens, got {got}")
        if self.weight is None:
            if out.dtype not in _FLOAT_DTYPES or out.shape[2] == 0:
                raise ValueError(f"diffusion_kernels: argument 'model' must return float logits with a non-empty "
                                 f"vocabulary, got {out.dtype} {list(out.shape)}")
        elif out.shape[2] != self.weight.shape[1] or out.dtype != self.weight.dtype or out.device != self.weight.device:
            raise ValueError(f"diffusion_kernels: argument 'model' must return hidden states [b, L, H = "
                             f"{self.weight.shape[1]}] of the dtype and device of 'lm_head_weight' ({self.weight.dtype}, "
                             f"{self.weight.device}), got {out.dtype} {list(out.shape)} on {out.device}")
        return out

    def __call__(self, x: torch.Tensor, attention_mask: Optional[torch.Tensor], positions: torch.Tensor,
                 targets: torch.Tensor) -> torch.Tensor:
        out = self._output(x, attention_mask)
        b, L, width = out.shape
        rows = positions
        if self.shift:
            rows = torch.where(positions % L == 0, positions, positions - 1)
        vocab = width if self.weight is None else self.weight.shape[0]
        if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= vocab):
            raise ValueError(f"diffusion_kernels: the scored tokens must lie in [0, vocab = {vocab}), got values in "
                             f"[{int(targets.min())}, {int(targets.max())}]")
        flat = out.reshape(b * L, width)
        del out
        if self.weight is None:  # the [b, L, V] logits die on return: only the picked rows are kept
            return -_GatheredCE.apply(flat, rows, targets, self.temperature)
        picked = flat.index_select(0, rows)
        if self.temperature != 1.0:  # h / T @ W.T == (h @ W.T) / T
            picked = picked / self.temperature
        index = torch.arange(picked.shape[0], device=picked.device)
        return -_PerRowCE.apply(picked, self.weight, index, targets, self.chunk)
