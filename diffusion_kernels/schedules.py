"""Per-step transfer counts of the dLLM samplers, batched (plain torch: tiny, and they run on
whatever device the counts live on without a host sync).

* :func:`llada_num_transfer_tokens`: LLaDA's integer schedule (``get_num_transfer_tokens``):
  ``M // S`` per step with the remainder given to the first steps.
* :func:`dream_num_transfer_tokens`: Dream's linear schedule for one step, from the current
  number of masks, reproducing its float32 ``linspace`` and truncation exactly.

Counts on the CPU are checked (negative or NaN counts raise); on other devices that check would
synchronise, so it is skipped there.
"""
import math

import torch

__all__ = ["llada_num_transfer_tokens", "dream_num_transfer_tokens"]


def _check_int(value, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"diffusion_kernels: argument '{name}' must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"diffusion_kernels: argument '{name}' must be an int >= {minimum}, got {value}")


def _check_counts(counts: torch.Tensor, name: str) -> None:
    """Non-negative (and not NaN) counts, checked where that costs no device sync."""
    if counts.device.type == "cpu" and counts.numel() and not bool((counts >= 0).all()):
        raise ValueError(f"diffusion_kernels: argument '{name}' holds a negative or NaN count: {counts.tolist()}")


def llada_num_transfer_tokens(mask_index: torch.Tensor, steps: int) -> torch.Tensor:
    """``[batch, steps]`` int64 counts: ``n[b, s] = M_b // steps + (s < M_b % steps)``.

    Args:
        mask_index: ``[batch, L]`` bool (the masked positions of the block), or ``[batch]``
            integer mask counts ``M_b`` (>= 0).
        steps: steps per block, >= 1.

    Returns:
        ``[batch, steps]`` int64 tensor on ``mask_index``'s device.

    Examples:
        >>> llada_num_transfer_tokens(torch.tensor([32]), 5).tolist()
        [[7, 7, 6, 6, 6]]
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"diffusion_kernels: argument 'steps' must be an int >= 1, got {steps!r}")
    if not isinstance(mask_index, torch.Tensor):
        raise TypeError(f"diffusion_kernels: argument 'mask_index' must be a tensor, got {type(mask_index).__name__}")
    if mask_index.dim() == 2:
        if mask_index.dtype != torch.bool:
            raise TypeError(f"diffusion_kernels: argument 'mask_index' [batch, L] must be bool, got {mask_index.dtype}")
        counts = mask_index.sum(dim=1)
    elif mask_index.dim() == 1:
        if mask_index.is_floating_point() or mask_index.is_complex() or mask_index.dtype == torch.bool:
            raise TypeError(f"diffusion_kernels: argument 'mask_index' as [batch] counts must be integers, got {mask_index.dtype}")
        counts = mask_index
        _check_counts(counts, "mask_index")
    else:
        raise ValueError(f"diffusion_kernels: argument 'mask_index' must be [batch, L] bool or [batch] counts, "
                         f"got shape {tuple(mask_index.shape)}")
    counts = counts.to(torch.int64)
    base, remainder = counts // steps, counts % steps
    step = torch.arange(steps, device=counts.device)
    return base.unsqueeze(1) + (step.unsqueeze(0) < remainder.unsqueeze(1)).to(torch.int64)


def dream_num_transfer_tokens(num_masked: torch.Tensor, step: int, steps: int, eps: float = 1e-3) -> torch.Tensor:
    """Dream's count for step ``step`` (0-based) of ``steps``: ``trunc(N * (1 - s / t))`` with
    ``t, s`` consecutive entries of ``linspace(1, eps, steps + 1)`` in float32, and all of ``N``
    at the last step.

    Args:
        num_masked: the current number of masks ``N`` (>= 0), a tensor of any shape (``[batch]``
            per row). Dream itself uses one count for the batch, the float32 mean
            ``mask_index.sum() / batch``; pass that (expanded) to reproduce it exactly.
        step, steps: ``0 <= step < steps``.
        eps: the last time of the schedule, in (0, 1) (Dream's default 1e-3).

    Returns:
        int64 tensor of the shape of ``num_masked``.

    Examples:
        >>> dream_num_transfer_tokens(torch.tensor([256]), 0, 128).tolist()
        [1]
    """
    _check_int(steps, "steps", 1)
    _check_int(step, "step", 0)
    if step >= steps:
        raise ValueError(f"diffusion_kernels: argument 'step' must be in [0, {steps}), got {step}")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 1:
        raise ValueError(f"diffusion_kernels: argument 'eps' must be a number in (0, 1), got {eps!r}")
    if not isinstance(num_masked, torch.Tensor) or num_masked.is_complex() or num_masked.dtype == torch.bool:
        raise TypeError("diffusion_kernels: argument 'num_masked' must be an integer or float tensor, got "
                        f"{num_masked.dtype if isinstance(num_masked, torch.Tensor) else type(num_masked).__name__}")
    _check_counts(num_masked, "num_masked")
    n = num_masked.to(torch.float32)
    if step == steps - 1:
        return n.to(torch.int64)
    timesteps = torch.linspace(1, eps, steps + 1, device=n.device)
    t, s = timesteps[step], timesteps[step + 1]
    return (n * (1 - s / t)).to(torch.int64)
