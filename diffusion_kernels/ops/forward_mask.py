"""Masked-diffusion forward noising (LLaDA / MDLM) with the package's Philox stream."""
from typing import Optional, Tuple, Union

import torch

from .. import _C
from ._args import host_readable, int64_arg, lengths_arg, same_device_or_cpu

__all__ = ["forward_mask"]

_op = torch.ops.diffusion_kernels.forward_mask.default  # resolved once
_direct = _C.forward_mask_direct
_is_compiling = torch.compiler.is_compiling


def forward_mask(x0: torch.Tensor, mask_id: int, *, eps: float = 1e-3, t: Optional[Union[float, torch.Tensor]] = None,
                 seed: int = 0, offset: int = 0, prompt_lengths: Optional[Union[int, torch.Tensor]] = None,
                 antithetic: bool = False) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Masks each token of ``x0`` independently with probability ``p = (1 - eps) * t + eps``.

    LLaDA pre-training draws ``t ~ U(0, 1)`` per row; ``prompt_lengths`` (LLaDA SFT) keeps the first
    ``prompt_lengths[b]`` positions of row ``b`` clean; ``antithetic=True`` draws MDLM's stratified
    times. The draws come from Philox keyed by ``(seed, offset)``: CPU, emulated CUDA and CUDA give
    the same result for the same key, and ``diffusion_kernels.reference.forward_mask`` reproduces it
    bit for bit (the streams are described in docs/loss.md).

    Args:
        x0: ``[batch, seq]`` int64 clean tokens.
        mask_id: the ``[MASK]`` token id (LLaDA: 126336).
        eps: minimum mask probability, in ``(0, 1)``, so that every ``p`` is positive (the losses
            divide by it).
        t: ``None`` (drawn), a number in ``[0, 1]``, or a ``[batch]`` tensor of times (cast to
            float32; its range is checked when it lives on the CPU).
        seed: Philox seed (int64).
        offset: Philox offset (int64; use a new offset per training step).
        prompt_lengths: ``None``, an int, or a ``[batch]`` integer tensor, each in ``[0, seq]``
            (checked for ints and CPU tensors; on CUDA a value outside is clamped to ``[0, seq]``,
            as the reference does, instead of costing a device sync).
        antithetic: stratified times; not allowed together with ``t``.

    Returns:
        ``(x_t, masked, p_mask)``: ``x_t [batch, seq]`` int64 with ``mask_id`` at masked positions,
        ``masked [batch, seq]`` bool, ``p_mask [batch, seq]`` float32 (each row's ``p``, as LLaDA's
        ``forward_process`` returns it).

    Examples:
        >>> import torch, diffusion_kernels as dk
        >>> x0 = torch.randint(0, 1000, (2, 8))
        >>> x_t, masked, p_mask = dk.forward_mask(x0, 126336, seed=0, offset=0, prompt_lengths=3)
        >>> bool(masked[:, :3].any()), bool((x_t[masked] == 126336).all())
        (False, True)
    """
    if not _is_compiling():
        # the arguments as given, in one call: None where they need the checks below (times, prompt
        # lengths), or where the dispatcher could route the call elsewhere (ops/fast_path.h)
        out = _direct(x0, mask_id, eps, t, seed, offset, prompt_lengths, antithetic)
        if out is not None:
            return out
    return _op(*forward_mask_args(x0, mask_id, eps=eps, t=t, seed=seed, offset=offset, prompt_lengths=prompt_lengths,
                                  antithetic=antithetic))


def forward_mask_args(x0, mask_id, *, eps=1e-3, t=None, seed=0, offset=0, prompt_lengths=None, antithetic=False):
    """The registered op's positional arguments, every one checked with an error naming it."""
    if not isinstance(x0, torch.Tensor) or x0.dim() != 2:
        raise ValueError(f"diffusion_kernels: argument 'x0' must be a [batch, seq] tensor, got "
                         f"{tuple(x0.shape) if isinstance(x0, torch.Tensor) else type(x0).__name__}")
    batch, seq = x0.shape
    mask_id = int64_arg(mask_id, "mask_id")
    if eps.__class__ is not float and (isinstance(eps, bool) or not isinstance(eps, (int, float))):
        raise TypeError(f"diffusion_kernels: argument 'eps' must be a float, got {type(eps).__name__}")
    if not 0.0 < eps < 1.0:  # also refuses NaN
        raise ValueError(f"diffusion_kernels: argument 'eps' must lie in (0, 1), got {eps}")
    if antithetic.__class__ is not bool:
        raise TypeError(f"diffusion_kernels: argument 'antithetic' must be a bool, got {type(antithetic).__name__}")
    if t is not None:
        t = _times(t, x0)
    if prompt_lengths is not None:
        prompt_lengths = lengths_arg(prompt_lengths, "prompt_lengths", batch, seq, x0.device)
    return (x0, mask_id, float(eps), t, prompt_lengths, int64_arg(seed, "seed"), int64_arg(offset, "offset"),
            antithetic)


def _times(t, x0):
    if isinstance(t, torch.Tensor):
        if t.dtype == torch.bool or t.is_complex():
            raise TypeError(f"diffusion_kernels: argument 't' must be a number or a real [batch] tensor, got {t.dtype}")
        same_device_or_cpu(t, "t", x0.device)
        if host_readable(t) and not ((t >= 0) & (t <= 1)).all():
            raise ValueError("diffusion_kernels: argument 't' must lie in [0, 1], got a value outside or NaN")
        t = t.to(device=x0.device, dtype=torch.float32)
    elif isinstance(t, bool) or not isinstance(t, (int, float)):
        raise TypeError(f"diffusion_kernels: argument 't' must be a number or a [batch] tensor, got {type(t).__name__}")
    elif not 0.0 <= t <= 1.0:  # also refuses NaN
        raise ValueError(f"diffusion_kernels: argument 't' must lie in [0, 1], got {t}")
    else:
        t = torch.tensor(t, dtype=torch.float32, device=x0.device)
    return t.expand(x0.shape[0]) if t.dim() == 0 else t


@torch.library.register_fake("diffusion_kernels::forward_mask")
def _forward_mask_fake(x0, mask_id, eps, t, prompt_lengths, seed, offset, antithetic):
    torch._check(x0.dim() == 2, lambda: f"'x0' must be [batch, seq], got {tuple(x0.shape)}")
    torch._check(x0.dtype == torch.int64, lambda: f"'x0' must be int64, got {x0.dtype}")
    return (torch.empty_like(x0), torch.empty(x0.shape, dtype=torch.bool, device=x0.device),
            torch.empty(x0.shape, dtype=torch.float32, device=x0.device))
