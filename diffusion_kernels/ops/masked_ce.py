"""Masked cross-entropy ops: per-row CE over the rows a mask selects, with autograd."""
from typing import Tuple

import torch

from .. import _C

__all__ = ["masked_cross_entropy"]

_forward_op = torch.ops.diffusion_kernels.masked_ce_forward.default  # resolved once
_forward_direct = _C.masked_ce_forward_direct
_is_compiling = torch.compiler.is_compiling

_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, masked: torch.Tensor
                         ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of each masked row, without materialising the softmax.

    Args:
        logits: ``[rows, vocab]`` float32, float16 or bfloat16 (float64 on CPU, for gradcheck),
            ``vocab >= 1``; any row stride, the vocabulary dimension contiguous.
        targets: ``[rows]`` int64; read only at masked rows, where it must lie in ``[0, vocab)``:
            checked on CPU (a ``ValueError`` naming ``targets``); on CUDA, where the check would
            cost a device sync, an out-of-range target gives NaN in that row's CE and gradient.
        masked: ``[rows]`` bool; rows to compute.

    Returns:
        ``(ce, lse)``, both ``[rows]`` float32 (float64 for float64 logits): at masked rows
        ``lse = logsumexp(logits)`` and ``ce = lse - logits[target]`` (accumulated in float32), at
        other rows 0. Differentiable in ``logits`` through both outputs; the gradient is
        ``(grad_ce + grad_lse) * softmax - grad_ce * onehot(target)`` at masked rows and exactly 0
        at the others. Non-finite rows follow torch: ``lse`` is NaN for a row holding a NaN, +inf
        for one holding a +inf, -inf for a row of only -inf (``torch.logsumexp``); ``ce`` and the
        row's gradient are NaN wherever ``lse`` is not finite (``F.cross_entropy``).

    Examples:
        >>> import torch, diffusion_kernels as dk
        >>> logits = torch.randn(4, 10, requires_grad=True)
        >>> targets = torch.tensor([1, 2, 3, 4])
        >>> masked = torch.tensor([True, False, True, False])
        >>> ce, lse = dk.masked_cross_entropy(logits, targets, masked)
        >>> ce.sum().backward()
        >>> bool((logits.grad[1] == 0).all())
        True
    """
    if not _is_compiling():
        # None where the dispatcher could route the call elsewhere, e.g. logits that require grad
        out = _forward_direct(logits, targets, masked)
        if out is not None:
            return out
    return _forward_op(logits, targets, masked)


def _acc_dtype(logits):
    return torch.float64 if logits.dtype == torch.float64 else torch.float32


def _check_rows(logits, name, t, dtype):
    torch._check(t.dim() == 1 and t.shape[0] == logits.shape[0],
                 lambda: f"'{name}' must be [rows] = [{logits.shape[0]}], got {tuple(t.shape)}")
    torch._check(t.dtype == dtype, lambda: f"'{name}' must be {dtype}, got {t.dtype}")
    torch._check(t.device == logits.device, lambda: f"'{name}' must be on the same device as 'logits' ({logits.device}), got {t.device}")


def _check_forward_args(logits, targets, masked):
    torch._check(logits.dim() == 2, lambda: f"'logits' must be [rows, vocab], got {tuple(logits.shape)}")
    torch._check(logits.dtype in _FLOAT_DTYPES, lambda: f"'logits' must be a float dtype, got {logits.dtype}")
    _check_rows(logits, "targets", targets, torch.int64)
    _check_rows(logits, "masked", masked, torch.bool)


@torch.library.register_fake("diffusion_kernels::masked_ce_forward")
def _masked_ce_forward_fake(logits, targets, masked):
    _check_forward_args(logits, targets, masked)
    out = logits.new_empty(logits.shape[0], dtype=_acc_dtype(logits))
    return out, torch.empty_like(out)


@torch.library.register_fake("diffusion_kernels::masked_ce_backward")
def _masked_ce_backward_fake(grad_ce, grad_lse, logits, targets, masked, lse):
    _check_forward_args(logits, targets, masked)
    for name, t in (("grad_ce", grad_ce), ("grad_lse", grad_lse), ("lse", lse)):
        _check_rows(logits, name, t, _acc_dtype(logits))
    return torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)


@torch.library.register_fake("diffusion_kernels::masked_ce_forward_backward_")
def _masked_ce_forward_backward_fake(logits, targets, masked, scale):
    _check_forward_args(logits, targets, masked)
    _check_rows(logits, "scale", scale, _acc_dtype(logits))
    out = logits.new_empty(logits.shape[0], dtype=_acc_dtype(logits))
    return out, torch.empty_like(out)


def _setup_context(ctx, inputs, output):
    logits, targets, masked = inputs
    ctx.save_for_backward(logits, targets, masked, output[1])


def grad_logits(backward_op, grad_ce, grad_lse, logits, targets, masked, lse):
    """The logits gradient by ``backward_op`` (the native or the emulated kernel); a missing
    output gradient counts as zeros."""
    grad_ce = torch.zeros_like(lse) if grad_ce is None else grad_ce.to(lse.dtype)
    grad_lse = torch.zeros_like(lse) if grad_lse is None else grad_lse.to(lse.dtype)
    return backward_op(grad_ce, grad_lse, logits, targets, masked, lse)


def _backward(ctx, grad_ce, grad_lse):
    if not ctx.needs_input_grad[0]:
        return None, None, None
    grad = grad_logits(torch.ops.diffusion_kernels.masked_ce_backward.default, grad_ce, grad_lse, *ctx.saved_tensors)
    return grad, None, None


torch.library.register_autograd("diffusion_kernels::masked_ce_forward", _backward, setup_context=_setup_context)
