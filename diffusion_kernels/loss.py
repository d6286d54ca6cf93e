"""Masked-diffusion training losses (LLaDA pre-training and SFT, MDLM) on precomputed logits.

See :func:`masked_diffusion_loss`; the chunked version that never materialises the logits is
:func:`diffusion_kernels.fused_linear_masked_diffusion_loss`; the noising is
:func:`diffusion_kernels.forward_mask`.
"""
import torch

from . import _normalize
from .ops.masked_ce import masked_cross_entropy

__all__ = ["masked_diffusion_loss"]


def masked_diffusion_loss(logits: torch.Tensor, targets: torch.Tensor, masked: torch.Tensor, p_mask,
                          normalize: str = "pretrain", reduction: str = "mean", prompt_lengths=None):
    """Σ over masked positions of ``CE(logits, x0) / p_mask``, normalised as in LLaDA.

    The cross-entropy is the fused op :func:`masked_cross_entropy` (only masked rows, no softmax
    materialised, gradient exactly 0 at unmasked rows).

    Args:
        logits: ``[batch, seq, vocab]`` (or ``[rows, vocab]``), float32/float16/bfloat16 (float64
            on CPU); the vocabulary dimension contiguous.
        targets: clean tokens ``x0``, ``[batch, seq]`` (or ``[rows]``) int64.
        masked: bool, same shape as ``targets``.
        p_mask: mask probability of each position: ``[batch, seq]``, ``[batch]`` or a scalar.
        normalize: for ``reduction='mean'``:
            ``'pretrain'``: ``/ (batch * seq)`` (LLaDA pre-training);
            ``'sft'``: each token divided by its row's answer length ``seq - prompt_lengths[b]``
            (padding EOS included), summed, ``/ batch`` (LLaDA SFT);
            ``'masked_tokens'``: ``/`` the number of masked tokens (0 if none is masked).
        reduction: ``'mean'`` (normalised as above), ``'sum'`` (unnormalised sum) or ``'none'``
            (per-token ``CE / p_mask``, 0 at unmasked positions, in ``targets``' shape).
        prompt_lengths: ``[batch]`` int (or an int) — required by ``normalize='sft'``.

    Returns:
        float32 (float64 for float64 logits) scalar, or per-token losses for ``'none'``.
    """
    if not isinstance(logits, torch.Tensor) or logits.dim() < 2:
        raise ValueError("diffusion_kernels: argument 'logits' must be [batch, seq, vocab] or [rows, vocab]")
    token_shape = logits.shape[:-1]
    if not isinstance(targets, torch.Tensor) or targets.shape != token_shape:
        raise ValueError(f"diffusion_kernels: argument 'targets' must have shape {tuple(token_shape)}, got "
                         f"{tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets).__name__}")
    if not isinstance(masked, torch.Tensor) or masked.shape != token_shape or masked.dtype != torch.bool:
        raise ValueError(f"diffusion_kernels: argument 'masked' must be a bool tensor of shape {tuple(token_shape)}")
    _normalize.check_choices(normalize, reduction, prompt_lengths, token_shape)
    p = _normalize.row_p_mask(p_mask, token_shape, logits.device)
    ce, _ = masked_cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), masked.reshape(-1))
    ce = ce.view(token_shape)
    token_loss = torch.where(masked, ce / p.to(ce.dtype), 0.0)
    return _normalize.reduce(token_loss, masked, normalize, reduction, prompt_lengths)
