"""PPO / GRPO's clipped surrogate on per-token log-probabilities, with d1's k3 KL penalty."""
from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import torch

__all__ = ["clipped_policy_loss", "group_advantages"]

_REDUCTIONS = ("sequence", "token", "sum", "none")


def _float_tensor(t, name: str, shape) -> torch.Tensor:
    if not isinstance(t, torch.Tensor) or not t.is_floating_point():
        got = t.dtype if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"diffusion_kernels: argument '{name}' must be a float tensor, got {got}")
    if shape is not None and tuple(t.shape) != tuple(shape):
        raise ValueError(f"diffusion_kernels: argument '{name}' must have the shape of 'log_probs' {list(shape)}, "
                         f"got {list(t.shape)}")
    return t


def _clip_range(clip_eps) -> Tuple[float, float]:
    pair = clip_eps if isinstance(clip_eps, (tuple, list)) else (clip_eps, clip_eps)
    if len(pair) != 2 or any(isinstance(e, bool) or not isinstance(e, (int, float)) or not 0 <= e < math.inf
                             for e in pair):
        raise ValueError(f"diffusion_kernels: argument 'clip_eps' must be a number >= 0 or a (low, high) pair of "
                         f"them, got {clip_eps!r}")
    return 1.0 - pair[0], 1.0 + pair[1]


def clipped_policy_loss(log_probs: torch.Tensor, old_log_probs: torch.Tensor, advantages: torch.Tensor, *,
                        clip_eps: Union[float, Tuple[float, float]] = 0.2, ref_log_probs: Optional[torch.Tensor] = None,
                        kl_coef: float = 0.0, mask: Optional[torch.Tensor] = None,
                        reduction: str = "sequence") -> torch.Tensor:
    """PPO's clipped objective per token, negated to be minimised, with an optional KL penalty.

    Per token ``t`` of row ``b`` (where ``mask``):
    ``r = exp(log_probs - old_log_probs)``,
    ``loss = -min(r * A, clip(r, 1 - eps_low, 1 + eps_high) * A) + kl_coef * kl`` with
    ``kl = exp(ref - log_probs) - (ref - log_probs) - 1`` (Schulman's k3 estimator of
    ``KL(pi || pi_ref)``, as in GRPO and d1). ``old_log_probs`` and ``ref_log_probs`` are
    constants (detached).

    Args:
        log_probs: ``[B, T]`` float, the current policy's per-token log-probabilities (e.g.
            :func:`trajectory_log_probs` or :func:`one_step_log_probs`), differentiable.
        old_log_probs: ``[B, T]``, the sampling policy's (same estimator and group size).
        advantages: ``[B]`` per sequence (broadcast over its tokens, GRPO) or ``[B, T]``.
        clip_eps: ``eps`` (>= 0), or ``(eps_low, eps_high)`` (DAPO's clip-higher).
        ref_log_probs: ``[B, T]`` of the reference policy, needed when ``kl_coef > 0``.
        kl_coef: the KL weight ``beta`` (>= 0; d1: 0.04).
        mask: ``[B, T]`` bool, the tokens that count (e.g. ``trajectory.action_mask``, or the
            completion up to its EOS); ``None``: all.
        reduction: ``'sequence'`` (each row's mean over its masked tokens, then the mean over
            rows: GRPO / d1; a row with no token counts 0), ``'token'`` (the sum over every masked
            token / their number, DAPO), ``'sum'``, or ``'none'`` (``[B, T]``, 0 outside ``mask``).

    Returns:
        A 0-d tensor (``[B, T]`` for ``'none'``) of ``log_probs``' dtype.

    Examples:
        >>> import torch
        >>> from diffusion_kernels.rl import clipped_policy_loss
        >>> lp = torch.tensor([[-1.0, -2.0], [-0.5, -3.0]], requires_grad=True)
        >>> loss = clipped_policy_loss(lp, lp.detach(), torch.tensor([1.0, -1.0]))
        >>> loss.backward()                                    # ratio 1: loss = -mean advantage
        >>> loss.item(), lp.grad.tolist()
        (0.0, [[-0.25, -0.25], [0.25, 0.25]])
    """
    log_probs = _float_tensor(log_probs, "log_probs", None)
    if log_probs.dim() != 2:
        raise ValueError(f"diffusion_kernels: argument 'log_probs' must be [B, T], got {list(log_probs.shape)}")
    B, T = log_probs.shape
    old = _float_tensor(old_log_probs, "old_log_probs", (B, T)).detach()
    adv = _float_tensor(advantages, "advantages", None).detach()
    if tuple(adv.shape) in ((B,), (B, 1)):
        adv = adv.reshape(B, 1)
    elif tuple(adv.shape) != (B, T):
        raise ValueError(f"diffusion_kernels: argument 'advantages' must be [B] = [{B}] or [B, T] = [{B}, {T}], "
                         f"got {list(adv.shape)}")
    lo, hi = _clip_range(clip_eps)
    if isinstance(kl_coef, bool) or not isinstance(kl_coef, (int, float)) or not 0 <= kl_coef < math.inf:
        raise ValueError(f"diffusion_kernels: argument 'kl_coef' must be a finite number >= 0, got {kl_coef!r}")
    if kl_coef > 0 and ref_log_probs is None:
        raise ValueError("diffusion_kernels: argument 'ref_log_probs' is needed when 'kl_coef' > 0")
    if mask is None:
        mask = torch.ones(B, T, dtype=torch.bool, device=log_probs.device)
    elif not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != (B, T):
        got = f"{mask.dtype} {list(mask.shape)}" if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"diffusion_kernels: argument 'mask' must be a [B, T] = [{B}, {T}] bool tensor, got {got}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"diffusion_kernels: argument 'reduction' must be one of {_REDUCTIONS}, got {reduction!r}")

    # Masked-out entries may hold anything (-inf, garbage): zero them before exp, so that
    # neither the value nor the gradient can turn into inf * 0.
    zero = log_probs.new_zeros(())
    ratio = torch.exp(torch.where(mask, log_probs - old.to(log_probs.dtype), zero))
    adv = adv.to(log_probs.dtype)
    token = -torch.minimum(ratio * adv, ratio.clamp(lo, hi) * adv)
    if kl_coef > 0:
        ref = _float_tensor(ref_log_probs, "ref_log_probs", (B, T)).detach().to(log_probs.dtype)
        d = torch.where(mask, ref - log_probs, zero)
        token = token + kl_coef * (torch.exp(d) - d - 1)
    token = torch.where(mask, token, zero)
    if reduction == "none":
        return token
    if reduction == "sum":
        return token.sum()
    if reduction == "token":
        return token.sum() / mask.sum().clamp(min=1).to(token.dtype)
    per_row = token.sum(dim=1) / mask.sum(dim=1).clamp(min=1).to(token.dtype)
    return per_row.mean()


def group_advantages(rewards: torch.Tensor, group_size: int, *, eps: float = 1e-4,
                     scale: bool = True) -> torch.Tensor:
    """GRPO's advantages: each reward minus the mean of its group of ``group_size`` consecutive
    completions of one prompt, divided by the group's standard deviation (unbiased, as
    ``torch.std``) plus ``eps`` when ``scale`` (d1; Dr. GRPO drops the division: ``scale=False``).

    Args:
        rewards: ``[B]`` float, ``B`` a multiple of ``group_size``, the completions of one prompt
            adjacent.
        group_size: completions per prompt (``>= 1``; a group of 1 has advantage 0).
        eps: added to the standard deviation.
        scale: divide by the standard deviation.

    Returns:
        ``[B]`` advantages of ``rewards``' dtype.

    Examples:
        >>> import torch
        >>> from diffusion_kernels.rl import group_advantages
        >>> group_advantages(torch.tensor([1.0, 0.0, 0.5, 0.5]), 2, scale=False)
        tensor([ 0.5000, -0.5000,  0.0000,  0.0000])
    """
    rewards = _float_tensor(rewards, "rewards", None)
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"diffusion_kernels: argument 'group_size' must be a positive int, got {group_size!r}")
    if rewards.dim() != 1 or rewards.numel() % group_size:
        raise ValueError(f"diffusion_kernels: argument 'rewards' must be [B] with B a multiple of group_size = "
                         f"{group_size}, got {list(rewards.shape)}")
    grouped = rewards.view(-1, group_size)
    adv = grouped - grouped.mean(dim=1, keepdim=True)
    if scale and group_size > 1:
        adv = adv / (grouped.std(dim=1, keepdim=True) + eps)
    return adv.reshape(-1)
