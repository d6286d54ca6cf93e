"""Argument checks and the loss normalisations shared by masked_diffusion_loss and
fused_linear_masked_diffusion_loss (LLaDA's pre-training and SFT losses, MDLM's masked-token mean)."""
import math
from typing import Optional, Sequence, Union

import torch

from .ops._args import host_readable, lengths_arg, same_device_or_cpu

NORMALIZE = ("pretrain", "sft", "masked_tokens")
REDUCTION = ("mean", "sum", "none")


def check_tokens(targets, masked, token_shape) -> None:
    """``targets`` int64 and ``masked`` bool, both of the tokens' shape."""
    if not isinstance(targets, torch.Tensor) or targets.shape != token_shape:
        raise ValueError(f"diffusion_kernels: argument 'targets' must have shape {tuple(token_shape)}, got "
                         f"{tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets).__name__}")
    if targets.dtype != torch.int64:
        raise ValueError(f"diffusion_kernels: argument 'targets' must be int64 token ids, got {targets.dtype}")
    if not isinstance(masked, torch.Tensor) or masked.shape != token_shape or masked.dtype != torch.bool:
        raise ValueError(f"diffusion_kernels: argument 'masked' must be a bool tensor of shape {tuple(token_shape)}")


def check_choices(normalize, reduction, prompt_lengths, token_shape, device) -> Optional[torch.Tensor]:
    """Checks the options; returns ``prompt_lengths`` as int64 ``[batch]`` (or None)."""
    if reduction not in REDUCTION:
        raise ValueError(f"diffusion_kernels: argument 'reduction' must be one of {REDUCTION}, got {reduction!r}")
    if normalize not in NORMALIZE:
        raise ValueError(f"diffusion_kernels: argument 'normalize' must be one of {NORMALIZE}, got {normalize!r}")
    if reduction == "mean" and normalize == "sft":
        if prompt_lengths is None:
            raise ValueError("diffusion_kernels: argument 'prompt_lengths' is required by normalize='sft' "
                             "(the answer length of row b is seq - prompt_lengths[b])")
        if len(token_shape) != 2:
            raise ValueError("diffusion_kernels: normalize='sft' needs [batch, seq] tokens, got token shape "
                             f"{tuple(token_shape)}")
    if prompt_lengths is None:
        return None
    if len(token_shape) != 2:
        raise ValueError("diffusion_kernels: argument 'prompt_lengths' needs [batch, seq] tokens, got token shape "
                         f"{tuple(token_shape)}")
    return lengths_arg(prompt_lengths, "prompt_lengths", token_shape[0], token_shape[1], device)


def row_p_mask(p_mask: Union[float, torch.Tensor], token_shape: Sequence[int], device: torch.device,
               masked: torch.Tensor) -> torch.Tensor:
    """p_mask as a float32 tensor of the tokens' shape ([batch] broadcasts over positions), checked
    positive at masked positions where that needs no device sync."""
    if isinstance(p_mask, bool) or not isinstance(p_mask, (int, float, torch.Tensor)):
        raise TypeError(f"diffusion_kernels: argument 'p_mask' must be a number or a tensor, got {type(p_mask).__name__}")
    if not isinstance(p_mask, torch.Tensor) and not p_mask > 0:
        raise ValueError(f"diffusion_kernels: argument 'p_mask' must be positive (the loss divides by it), got {p_mask}")
    p = torch.as_tensor(p_mask)
    same_device_or_cpu(p, "p_mask", device)
    if not p.dtype.is_floating_point:
        raise ValueError(f"diffusion_kernels: argument 'p_mask' must be floating point, got {p.dtype}")
    if p.dim() == 1 and len(token_shape) == 2 and p.shape[0] == token_shape[0]:
        p = p[:, None]
    try:
        p = torch.broadcast_to(p, token_shape)
    except RuntimeError:
        raise ValueError(f"diffusion_kernels: argument 'p_mask' must be [batch], [batch, seq] or a scalar, "
                         f"got shape {tuple(p.shape)} for tokens of shape {tuple(token_shape)}") from None
    if host_readable(p) and host_readable(masked) and not (p > 0)[masked].all():
        raise ValueError("diffusion_kernels: argument 'p_mask' must be positive at masked positions (the loss "
                         "divides by it), got a value <= 0 or NaN")
    return p.to(device=device, dtype=torch.float32)


def check_p_rows(p_rows: torch.Tensor) -> None:
    """p_mask of the masked rows, checked positive on any device (the caller reads data on the host anyway)."""
    if p_rows.device.type != "meta" and not torch.compiler.is_compiling() and not bool((p_rows > 0).all()):
        raise ValueError("diffusion_kernels: argument 'p_mask' must be positive at masked positions (the loss "
                         "divides by it), got a value <= 0 or NaN")


def answer_lengths(prompt_lengths: torch.Tensor, seq: int) -> torch.Tensor:
    return (seq - prompt_lengths).to(torch.float32)


def reduce(token_loss, masked, normalize, reduction, prompt_lengths):
    """token_loss: CE / p_mask at masked positions and 0 elsewhere, in the tokens' shape.

    pretrain (LLaDA):      sum / (B * L)
    sft (LLaDA SFT):       sum over masked tokens of loss / answer_length(row), then / B
    masked_tokens:         sum / number of masked tokens (0 when nothing is masked)
    """
    if reduction == "none":
        return token_loss
    if reduction == "sum":
        return token_loss.sum()
    if normalize == "pretrain":
        return token_loss.sum() / token_loss.numel()
    if normalize == "sft":
        b, l = token_loss.shape
        ans = answer_lengths(prompt_lengths, l)[:, None]
        # A row whose prompt fills it has no masked token: keep its 0 / 0 out of the sum.
        return torch.where(masked, token_loss / ans, 0.0).sum() / b
    return token_loss.sum() / masked.sum().clamp_min(1)


def row_weights(p_rows, masked_rows_batch, token_shape, normalize, reduction, prompt_lengths, n_masked):
    """d(loss)/d(ce) of each masked row for the scalar reductions, in float64."""
    w = 1.0 / p_rows.to(torch.float64)
    if reduction == "sum":
        return w
    if normalize == "pretrain":
        return w / math.prod(token_shape)
    if normalize == "sft":
        b, l = token_shape
        ans = answer_lengths(prompt_lengths, l).to(torch.float64)
        return w / ans[masked_rows_batch] / b
    return w / max(n_masked, 1)
