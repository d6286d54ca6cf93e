"""Masked-diffusion loss through the LM head without materialising the ``[tokens, vocab]`` logits
(:func:`fused_linear_masked_diffusion_loss`; the chunking and gradient schemes are described in
docs/loss.md)."""
import math
from typing import Optional, Union

import torch

from . import _normalize
from .loss import masked_diffusion_loss
from .ops.masked_ce import _FLOAT_DTYPES, masked_cross_entropy

__all__ = ["fused_linear_masked_diffusion_loss"]

_CHUNK_ELEMENTS = 1 << 24  # default budget of one chunk of logits (64 MB in float32)


def _acc_dtype(t):
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _chunk_pass(hidden, index, weight, targets, scale, chunk, want_grad_h, want_grad_w):
    """CE of the rows hidden[index] (and, when scale is given, the gradients of Σ scale_i * ce_i:
    grad_hidden [N, H], zero outside index, and grad_w). Rows are gathered per chunk, so nothing
    but the chunk is [M, *]-sized besides the outputs."""
    m = index.numel()
    ce = hidden.new_empty(m, dtype=_acc_dtype(hidden))
    grad_hidden = torch.zeros_like(hidden) if want_grad_h else None
    grad_w = None
    if want_grad_w:
        acc = torch.float32 if weight.dtype in (torch.float16, torch.bfloat16) else weight.dtype
        grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device)
    everything = torch.ones(min(chunk, m), dtype=torch.bool, device=hidden.device)
    for s in range(0, m, chunk):
        e = min(s + chunk, m)
        rows = index[s:e]
        hc = hidden.index_select(0, rows)
        logits = hc @ weight.t()
        if scale is None:
            ce[s:e] = masked_cross_entropy(logits, targets[s:e], everything[: e - s])[0]
            continue
        # The chunk's logits become its gradient in place.
        ce[s:e] = torch.ops.diffusion_kernels.masked_ce_forward_backward_.default(
            logits, targets[s:e], everything[: e - s], scale[s:e])[0]
        if want_grad_h:
            grad_hidden.index_copy_(0, rows, logits @ weight)
        if want_grad_w:
            if grad_w.dtype == logits.dtype:
                grad_w.addmm_(logits.t(), hc)
            else:
                grad_w.addmm_(logits.t().to(grad_w.dtype), hc.to(grad_w.dtype))
        del logits
    return ce, grad_hidden, grad_w


class _WeightedCE(torch.autograd.Function):
    """Σ_i w_i * CE(h_i @ W.T, t_i) over the masked rows, gradients computed in the forward.

    The gradients are kept on ctx (not saved tensors) so that the backward hands over the only
    reference: autograd can then adopt the 2 GB weight gradient instead of copying it. Hence no
    retain_graph / double backward."""

    @staticmethod
    def forward(ctx, hidden, weight, index, targets, w, chunk):
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        scale = w.to(_acc_dtype(hidden)) if (need_h or need_w) else None
        ce, ctx.grad_hidden, ctx.grad_w = _chunk_pass(hidden, index, weight, targets, scale, chunk, need_h, need_w)
        ctx.weight_dtype = weight.dtype
        return (ce.to(torch.float64) * w.to(torch.float64)).sum().to(ce.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        gh, gw = ctx.grad_hidden, ctx.grad_w
        if gh is None and gw is None and (ctx.needs_input_grad[0] or ctx.needs_input_grad[1]):
            raise RuntimeError("diffusion_kernels: fused_linear_masked_diffusion_loss cannot backward twice "
                               "through the same graph (its gradients are computed once, in the forward)")
        ctx.grad_hidden = ctx.grad_w = None
        if not torch.equal(grad_out, torch.ones_like(grad_out)):
            gh = None if gh is None else gh.mul_(grad_out.to(gh.dtype))
            gw = None if gw is None else gw.mul_(grad_out.to(gw.dtype))
        if gw is not None:
            gw = gw.to(ctx.weight_dtype)
        return gh, gw, None, None, None, None


class _PerRowCE(torch.autograd.Function):
    """CE of each masked row; the backward recomputes the chunk logits."""

    @staticmethod
    def forward(ctx, hidden, weight, index, targets, chunk):
        ce, _, _ = _chunk_pass(hidden, index, weight, targets, None, chunk, False, False)
        ctx.save_for_backward(hidden, weight, index, targets)
        ctx.chunk = chunk
        return ce

    @staticmethod
    def backward(ctx, grad_ce):
        hidden, weight, index, targets = ctx.saved_tensors
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        _, gh, gw = _chunk_pass(hidden, index, weight, targets, grad_ce.to(_acc_dtype(hidden)).contiguous(),
                                ctx.chunk, need_h, need_w)
        return gh, None if gw is None else gw.to(weight.dtype), None, None, None


def _scatter_rows(rows, index, n):
    out = rows.new_zeros((n,) + rows.shape[1:])
    return out.index_copy_(0, index, rows)


def fused_linear_masked_diffusion_loss(hidden: torch.Tensor, lm_head_weight: torch.Tensor, targets: torch.Tensor,
                                       masked: torch.Tensor, p_mask: Union[float, torch.Tensor], *,
                                       normalize: str = "pretrain", reduction: str = "mean",
                                       prompt_lengths: Optional[Union[int, torch.Tensor]] = None,
                                       chunk_size: Optional[int] = None) -> torch.Tensor:
    """:func:`masked_diffusion_loss` of ``logits = hidden @ lm_head_weight.T`` without the logits.

    Only the masked rows are computed, in chunks of rows: peak extra memory is one
    ``[chunk, vocab]`` buffer (and the chunk's hidden rows), besides the gradients themselves.

    Args:
        hidden: ``[batch, seq, H]`` or ``[rows, H]`` final hidden states (float32, bfloat16,
            float16; float64 on CPU).
        lm_head_weight: ``[vocab, H]``, ``vocab >= 1``, same dtype and device (no bias: LLaDA's
            head has none).
        targets: clean tokens, int64 of ``hidden``'s token shape, in ``[0, vocab)`` at masked
            positions (checked on every device).
        masked: bool, same shape as ``targets``.
        p_mask: as :func:`diffusion_kernels.masked_diffusion_loss`; its masked entries are checked
            positive on every device (this function reads the masked count on the host anyway).
        normalize, reduction, prompt_lengths: as :func:`diffusion_kernels.masked_diffusion_loss`.
        chunk_size: rows per chunk (default: as many as keep one chunk of logits at 2**24
            elements, i.e. 64 MB in float32).

    Returns:
        As :func:`masked_diffusion_loss`. Gradients flow to ``hidden`` (exactly 0 at unmasked rows)
        and ``lm_head_weight`` (accumulated in float32); for ``reduction='mean'``/``'sum'`` they
        are computed in the forward, so the graph can be backpropagated once. The masked count is
        read on the host (one sync on CUDA). Meta tensors are refused (the masked count is data).

    Examples:
        >>> import torch, diffusion_kernels as dk
        >>> x0 = torch.randint(0, 100, (2, 16))
        >>> _, masked, p_mask = dk.forward_mask(x0, 99, seed=0)
        >>> hidden = torch.randn(2, 16, 32, requires_grad=True)
        >>> weight = torch.randn(100, 32, requires_grad=True)
        >>> loss = dk.fused_linear_masked_diffusion_loss(hidden, weight, x0, masked, p_mask, chunk_size=8)
        >>> loss.backward()
    """
    if not isinstance(hidden, torch.Tensor) or hidden.dim() < 2:
        raise ValueError("diffusion_kernels: argument 'hidden' must be [batch, seq, H] or [rows, H]")
    if hidden.dtype not in _FLOAT_DTYPES:
        raise ValueError(f"diffusion_kernels: argument 'hidden' must be float32, float16, bfloat16 (or float64 on "
                         f"CPU), got {hidden.dtype}")
    if not isinstance(lm_head_weight, torch.Tensor) or lm_head_weight.dim() != 2 \
            or lm_head_weight.shape[1] != hidden.shape[-1] or lm_head_weight.shape[0] == 0:
        got = tuple(lm_head_weight.shape) if isinstance(lm_head_weight, torch.Tensor) else type(lm_head_weight).__name__
        raise ValueError(f"diffusion_kernels: argument 'lm_head_weight' must be [vocab, H = {hidden.shape[-1]}] with "
                         f"vocab >= 1, got {got}")
    if lm_head_weight.dtype != hidden.dtype or lm_head_weight.device != hidden.device:
        raise ValueError(f"diffusion_kernels: argument 'lm_head_weight' must match 'hidden' in dtype and device "
                         f"({hidden.dtype}, {hidden.device}), got {lm_head_weight.dtype}, {lm_head_weight.device}")
    token_shape = hidden.shape[:-1]
    _normalize.check_tokens(targets, masked, token_shape)
    for name, t in (("targets", targets), ("masked", masked)):
        if t.device != hidden.device:
            raise ValueError(f"diffusion_kernels: argument '{name}' must be on the device of 'hidden' "
                             f"({hidden.device}), got {t.device}")
    prompt_lengths = _normalize.check_choices(normalize, reduction, prompt_lengths, token_shape, hidden.device)
    vocab = lm_head_weight.shape[0]
    if chunk_size is None:
        chunk_size = max(1, _CHUNK_ELEMENTS // vocab)
    elif isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"diffusion_kernels: argument 'chunk_size' must be a positive int, got {chunk_size!r}")
    p = _normalize.row_p_mask(p_mask, token_shape, hidden.device, masked)
    if hidden.device.type == "meta":
        raise ValueError("diffusion_kernels: argument 'hidden' is a meta tensor: the fused loss gathers the masked "
                         "rows, whose count is data a meta tensor does not hold")
    n = math.prod(token_shape)
    if n == 0:  # nothing to chunk: the materialised loss gives the documented empty result
        return masked_diffusion_loss(hidden @ lm_head_weight.t(), targets, masked, p, normalize=normalize,
                                     reduction=reduction, prompt_lengths=prompt_lengths)

    index = masked.reshape(n).nonzero().squeeze(1)
    t = targets.reshape(n).index_select(0, index)
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= vocab):
        raise ValueError(f"diffusion_kernels: argument 'targets' must lie in [0, vocab = {vocab}) at masked positions")
    h2 = hidden.reshape(n, hidden.shape[-1])
    p_rows = p.reshape(n).index_select(0, index)
    _normalize.check_p_rows(p_rows)

    if reduction == "none":
        ce = _PerRowCE.apply(h2, lm_head_weight, index, t, chunk_size)
        token_loss = _scatter_rows(ce / p_rows.to(ce.dtype), index, n)
        return token_loss.view(token_shape)
    batch_of_row = index // token_shape[-1] if len(token_shape) == 2 else None
    w = _normalize.row_weights(p_rows, batch_of_row, token_shape, normalize, reduction, prompt_lengths,
                               int(index.numel()))
    return _WeightedCE.apply(h2, lm_head_weight, index, t, w, chunk_size)
