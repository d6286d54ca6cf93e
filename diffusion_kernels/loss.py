"""Masked-diffusion training losses (LLaDA pre-training and SFT, MDLM) on precomputed logits.

See :func:`masked_diffusion_loss`; the chunked version that never materialises the logits is
:func:`diffusion_kernels.fused_linear_masked_diffusion_loss`; the noising is
:func:`diffusion_kernels.forward_mask`.
"""
import math
from typing import Optional, Union

import torch

from . import _normalize
from .ops.masked_ce import masked_cross_entropy

__all__ = ["masked_diffusion_loss"]


def masked_diffusion_loss(logits: torch.Tensor, targets: torch.Tensor, masked: torch.Tensor,
                          p_mask: Union[float, torch.Tensor], *, normalize: str = "pretrain", reduction: str = "mean",
                          prompt_lengths: Optional[Union[int, torch.Tensor]] = None) -> torch.Tensor:
    """Σ over masked positions of ``CE(logits, x0) / p_mask``, normalised as in LLaDA.

    The cross-entropy is the fused op :func:`masked_cross_entropy` (only masked rows, no softmax
    materialised, gradient exactly 0 at unmasked rows).

    Args:
        logits: ``[batch, seq, vocab]`` (or ``[rows, vocab]``), float32/float16/bfloat16 (float64
            on CPU), ``vocab >= 1``; the vocabulary dimension contiguous.
        targets: clean tokens ``x0``, ``[batch, seq]`` (or ``[rows]``) int64, in ``[0, vocab)`` at
            masked positions (checked on CPU; see :func:`masked_cross_entropy` for CUDA).
        masked: bool, same shape as ``targets``.
        p_mask: mask probability of each position: ``[batch, seq]``, ``[batch]`` or a number; it
            must be positive (and not NaN) at masked positions. A number and a CPU tensor are
            checked (``ValueError``); a CUDA tensor is not, as that would cost a device sync: a
            ``p_mask <= 0`` there gives an infinite or NaN loss.
        normalize: for ``reduction='mean'``:
            ``'pretrain'``: ``/ (batch * seq)`` (LLaDA pre-training);
            ``'sft'``: each token divided by its row's answer length ``seq - prompt_lengths[b]``
            (padding EOS included), summed, ``/ batch`` (LLaDA SFT);
            ``'masked_tokens'``: ``/`` the number of masked tokens (0 if none is masked).
        reduction: ``'mean'`` (normalised as above), ``'sum'`` (unnormalised sum) or ``'none'``
            (per-token ``CE / p_mask``, 0 at unmasked positions, in ``targets``' shape).
        prompt_lengths: ``[batch]`` integer tensor or an int, each in ``[0, seq]`` (checked for
            ints and CPU tensors); required by ``normalize='sft'``.

    Returns:
        float32 (float64 for float64 logits) scalar, or per-token losses for ``'none'``. With no
        token at all (``batch * seq == 0``) the ``'pretrain'`` mean is NaN (0 / 0, as
        ``torch.mean`` of nothing and the reference); ``'masked_tokens'`` gives 0.

    Examples:
        >>> import torch, diffusion_kernels as dk
        >>> x0 = torch.randint(0, 100, (2, 16))
        >>> x_t, masked, p_mask = dk.forward_mask(x0, 99, seed=0)
        >>> logits = torch.randn(2, 16, 100, requires_grad=True)  # model(x_t) in practice
        >>> loss = dk.masked_diffusion_loss(logits, x0, masked, p_mask)
        >>> loss.backward()
    """
    if not isinstance(logits, torch.Tensor) or logits.dim() < 2:
        raise ValueError("diffusion_kernels: argument 'logits' must be [batch, seq, vocab] or [rows, vocab]")
    token_shape, vocab = logits.shape[:-1], logits.shape[-1]
    if vocab == 0:
        raise ValueError(f"diffusion_kernels: argument 'logits' must have a non-empty vocabulary, got shape "
                         f"{tuple(logits.shape)}")
    _normalize.check_tokens(targets, masked, token_shape)
    prompt_lengths = _normalize.check_choices(normalize, reduction, prompt_lengths, token_shape, logits.device)
    p = _normalize.row_p_mask(p_mask, token_shape, logits.device, masked)
    n = math.prod(token_shape)
    ce, _ = masked_cross_entropy(logits.reshape(n, vocab), targets.reshape(n), masked.reshape(n))
    ce = ce.view(token_shape)
    token_loss = torch.where(masked, ce / p.to(ce.dtype), 0.0)
    return _normalize.reduce(token_loss, masked, normalize, reduction, prompt_lengths)
