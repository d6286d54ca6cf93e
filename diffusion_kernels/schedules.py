"""Per-step transfer counts of the dLLM samplers, batched (plain torch: tiny, and they run on
whatever device the counts live on without a host sync).

* :func:`llada_num_transfer_tokens`: LLaDA's integer schedule (``get_num_transfer_tokens``):
  ``M // S`` per step with the remainder given to the first steps.
* :func:`dream_num_transfer_tokens`: Dream's linear schedule for one step, from the current
  number of masks, reproducing its float32 ``linspace`` and truncation exactly.
"""
import torch

__all__ = ["llada_num_transfer_tokens", "dream_num_transfer_tokens"]


def llada_num_transfer_tokens(mask_index: torch.Tensor, steps: int) -> torch.Tensor:
    """``[batch, steps]`` int64 counts: ``n[b, s] = M_b // steps + (s < M_b % steps)``.

    Args:
        mask_index: ``[batch, L]`` bool (the masked positions of the block), or ``[batch]``
            integer mask counts ``M_b``.
        steps: steps per block, >= 1.
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"diffusion_kernels: argument 'steps' must be an int >= 1, got {steps!r}")
    counts = mask_index.sum(dim=1) if mask_index.dim() == 2 else mask_index
    counts = counts.to(torch.int64)
    base, remainder = counts // steps, counts % steps
    step = torch.arange(steps, device=counts.device)
    return base.unsqueeze(1) + (step.unsqueeze(0) < remainder.unsqueeze(1)).to(torch.int64)


def dream_num_transfer_tokens(num_masked: torch.Tensor, step: int, steps: int, eps: float = 1e-3) -> torch.Tensor:
    """Dream's count for step ``step`` (0-based) of ``steps``: ``trunc(N * (1 - s / t))`` with
    ``t, s`` consecutive entries of ``linspace(1, eps, steps + 1)`` in float32, and all of ``N``
    at the last step.

    Args:
        num_masked: the current number of masks ``N``, a tensor of any shape (``[batch]`` per
            row). Dream itself uses one count for the batch, the float32 mean
            ``mask_index.sum() / batch``; pass that (expanded) to reproduce it exactly.
    Returns:
        int64 tensor of the shape of ``num_masked``.
    """
    if not 0 <= step < steps:
        raise ValueError(f"diffusion_kernels: argument 'step' must be in [0, {steps}), got {step}")
    n = num_masked.to(torch.float32)
    if step == steps - 1:
        return n.to(torch.int64)
    timesteps = torch.linspace(1, eps, steps + 1, device=n.device)
    t, s = timesteps[step], timesteps[step + 1]
    return (n * (1 - s / t)).to(torch.int64)
