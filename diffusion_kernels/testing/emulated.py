"""The CUDA kernels of this package executed on CPU tensors by the SIMT emulator.

Built only with ``DK_BUILD_EMULATOR=1``. ``emulated.masked_confidence(...)`` has exactly the
signature of :func:`diffusion_kernels.masked_confidence` but runs the CUDA launcher and kernel
source compiled by g++. The thread resume order comes from the environment variables
``SIMT_ORDER`` (forward, reverse, random) and ``SIMT_SEED``, read at every launch; use
:func:`resume_order` to set them for a block of code.
"""
import contextlib
import os

import torch


try:
    from .. import _simt  # noqa: F401  (registers torch.ops.dk_emulated.*)

    AVAILABLE = True
except ImportError:
    AVAILABLE = False

__all__ = ["AVAILABLE", "attention_with_kv_cache", "masked_confidence", "resume_order", "select_transfer",
           "masked_cross_entropy", "masked_ce_forward", "masked_ce_backward", "masked_ce_forward_backward_",
           "forward_mask"]


def masked_confidence(logits, x, mask_id, **options):
    """Same arguments and results as :func:`diffusion_kernels.masked_confidence`."""
    from ..ops import confidence

    return confidence.masked_confidence(logits, x, mask_id, _op=torch.ops.dk_emulated.masked_confidence.default, **options)


def select_transfer(confidence, **kwargs):
    """:func:`diffusion_kernels.select_transfer` run by the CUDA kernel under the emulator."""
    from ..ops.transfer import select_transfer_args

    return torch.ops.dk_emulated.select_transfer.default(*select_transfer_args(confidence, **kwargs))


def attention_with_kv_cache(*args, **kwargs):
    """:func:`diffusion_kernels.attention_with_kv_cache` (same arguments) run by the CUDA kernels under the emulator."""
    from ..ops import attention

    return attention._attention_with_op(torch.ops.dk_emulated.attention_with_kv_cache.default, *args, **kwargs)


@contextlib.contextmanager
def resume_order(order: str, seed: int = 0):
    """Run the emulated kernels with fibers resumed in `order` (forward, reverse or random)."""
    saved = {k: os.environ.get(k) for k in ("SIMT_ORDER", "SIMT_SEED")}
    os.environ["SIMT_ORDER"], os.environ["SIMT_SEED"] = order, str(seed)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, masked: torch.Tensor):
    """:func:`diffusion_kernels.masked_cross_entropy` (with autograd) run by the CUDA kernels under the emulator."""
    return _EmulatedMaskedCE.apply(logits, targets, masked)


class _EmulatedMaskedCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, targets, masked):
        ce, lse = masked_ce_forward(logits, targets, masked)
        ctx.save_for_backward(logits, targets, masked, lse)
        return ce, lse

    @staticmethod
    def backward(ctx, grad_ce, grad_lse):
        from ..ops.masked_ce import grad_logits

        return grad_logits(masked_ce_backward, grad_ce, grad_lse, *ctx.saved_tensors), None, None


def masked_ce_forward(logits, targets, masked):
    """The registered ``masked_ce_forward`` op run by the CUDA kernel under the emulator."""
    return torch.ops.dk_emulated.masked_ce_forward.default(logits, targets, masked)


def masked_ce_backward(grad_ce, grad_lse, logits, targets, masked, lse):
    """The registered ``masked_ce_backward`` op run by the CUDA kernel under the emulator."""
    return torch.ops.dk_emulated.masked_ce_backward.default(grad_ce, grad_lse, logits, targets, masked, lse)


def masked_ce_forward_backward_(logits, targets, masked, scale):
    """The registered in-place ``masked_ce_forward_backward_`` op run by the CUDA kernel under the emulator."""
    return torch.ops.dk_emulated.masked_ce_forward_backward_.default(logits, targets, masked, scale)


def forward_mask(x0, mask_id, **options):
    """:func:`diffusion_kernels.forward_mask` (same arguments) run by the CUDA kernel under the emulator."""
    from ..ops.forward_mask import forward_mask_args

    return torch.ops.dk_emulated.forward_mask.default(*forward_mask_args(x0, mask_id, **options))
