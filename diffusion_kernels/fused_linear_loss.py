"""Masked-diffusion loss through the LM head without materialising the ``[tokens, vocab]`` logits.

Only masked rows are computed: their hidden states are gathered (``[M, H]``, M = masked count),
then processed in chunks of rows. Per chunk: ``logits = h @ W.T`` (``[chunk, V]``, the only
vocabulary-sized buffer), the fused op ``masked_ce_forward_backward_`` computes the CE and
overwrites the chunk with ``scale * (softmax - onehot)``, and the gradients follow by two matmuls
(``grad_h = g @ W``, ``grad_W += g.T @ h``, accumulated in float32 for 16-bit weights).

For ``reduction='mean'/'sum'`` the row scales are known in the forward, so the gradients are
computed there (Liger's scheme: three matmuls in all, as the unfused way) and the backward only
multiplies them by the incoming scalar gradient. For ``reduction='none'`` the forward keeps nothing
vocabulary-sized and the backward recomputes the chunk logits (CCE's scheme: one matmul more).
"""
import torch

from . import _normalize
from .ops.masked_ce import masked_cross_entropy

__all__ = ["fused_linear_masked_diffusion_loss"]

_CHUNK_ELEMENTS = 1 << 24  # default budget of one chunk of logits (64 MB in float32)


def _acc_dtype(t):
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _chunk_pass(h, weight, targets, scale, chunk, want_grad_h, want_grad_w):
    """CE of every row of h (and, when scale is given, the gradients of Σ scale_i * ce_i)."""
    m = h.shape[0]
    ce = h.new_empty(m, dtype=_acc_dtype(h))
    grad_h = torch.empty_like(h) if want_grad_h else None
    grad_w = None
    if want_grad_w:
        acc = torch.float32 if weight.dtype in (torch.float16, torch.bfloat16) else weight.dtype
        grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device)
    everything = torch.ones(min(chunk, m), dtype=torch.bool, device=h.device)
    for s in range(0, m, chunk):
        e = min(s + chunk, m)
        hc = h[s:e]
        logits = hc @ weight.t()
        if scale is None:
            ce[s:e] = masked_cross_entropy(logits, targets[s:e], everything[: e - s])[0]
            continue
        ce[s:e] = torch.ops.diffusion_kernels.masked_ce_forward_backward_.default(
            logits, targets[s:e], everything[: e - s], scale[s:e])[0]
        if want_grad_h:
            torch.mm(logits, weight, out=grad_h[s:e])
        if want_grad_w:
            if grad_w.dtype == logits.dtype:
                grad_w.addmm_(logits.t(), hc)
            else:
                grad_w.addmm_(logits.t().to(grad_w.dtype), hc.to(grad_w.dtype))
        del logits
    return ce, grad_h, grad_w


def _scatter_rows(rows, index, n):
    out = rows.new_zeros((n,) + rows.shape[1:])
    return out.index_copy_(0, index, rows)


class _WeightedCE(torch.autograd.Function):
    """Σ_i w_i * CE(h_i @ W.T, t_i) over the masked rows, gradients computed in the forward."""

    @staticmethod
    def forward(ctx, hidden, weight, index, targets, w, chunk):
        h = hidden.index_select(0, index)
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        scale = w.to(_acc_dtype(h)) if (need_h or need_w) else None
        ce, grad_h, grad_w = _chunk_pass(h, weight, targets, scale, chunk, need_h, need_w)
        ctx.save_for_backward(index, grad_h, grad_w)
        ctx.n_rows, ctx.weight_dtype = hidden.shape[0], weight.dtype
        return (ce.to(torch.float64) * w.to(torch.float64)).sum().to(ce.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        index, grad_h, grad_w = ctx.saved_tensors
        gh = gw = None
        scalar = None if torch.equal(grad_out, torch.ones_like(grad_out)) else grad_out
        if grad_h is not None:
            gh = grad_h if scalar is None else grad_h * scalar.to(grad_h.dtype)
            gh = _scatter_rows(gh, index, ctx.n_rows)
        if grad_w is not None:
            gw = grad_w if scalar is None else grad_w * scalar.to(grad_w.dtype)
            gw = gw.to(ctx.weight_dtype)
        return gh, gw, None, None, None, None


class _PerRowCE(torch.autograd.Function):
    """CE of each masked row; the backward recomputes the chunk logits."""

    @staticmethod
    def forward(ctx, hidden, weight, index, targets, chunk):
        h = hidden.index_select(0, index)
        ce, _, _ = _chunk_pass(h, weight, targets, None, chunk, False, False)
        ctx.save_for_backward(hidden, weight, index, targets)
        ctx.chunk = chunk
        return ce

    @staticmethod
    def backward(ctx, grad_ce):
        hidden, weight, index, targets = ctx.saved_tensors
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        h = hidden.index_select(0, index)
        _, grad_h, grad_w = _chunk_pass(h, weight, targets, grad_ce.to(_acc_dtype(h)).contiguous(), ctx.chunk,
                                        need_h, need_w)
        gh = _scatter_rows(grad_h, index, hidden.shape[0]) if need_h else None
        gw = grad_w.to(weight.dtype) if need_w else None
        return gh, gw, None, None, None


def fused_linear_masked_diffusion_loss(hidden: torch.Tensor, lm_head_weight: torch.Tensor, targets: torch.Tensor,
                                       masked: torch.Tensor, p_mask, normalize: str = "pretrain",
                                       reduction: str = "mean", prompt_lengths=None, chunk_size: int = None):
    """:func:`masked_diffusion_loss` of ``logits = hidden @ lm_head_weight.T`` without the logits.

    Args:
        hidden: ``[batch, seq, H]`` or ``[rows, H]`` final hidden states (float32, bfloat16,
            float16; float64 on CPU).
        lm_head_weight: ``[vocab, H]``, same dtype (no bias: LLaDA's head has none).
        targets, masked, p_mask, normalize, reduction, prompt_lengths: as
            :func:`diffusion_kernels.masked_diffusion_loss`.
        chunk_size: rows per chunk (default: as many as keep one chunk of logits at 2**24
            elements, i.e. 64 MB in float32).

    Returns:
        As :func:`masked_diffusion_loss`. Gradients flow to ``hidden`` (exactly 0 at unmasked rows)
        and ``lm_head_weight`` (accumulated in float32). Peak extra memory: one ``[chunk, vocab]``
        buffer plus the gathered ``[M, H]`` hidden states and their gradient, besides the
        gradient of the weight itself. The masked count is read on the host (one sync on CUDA).
    """
    if not isinstance(hidden, torch.Tensor) or hidden.dim() < 2:
        raise ValueError("diffusion_kernels: argument 'hidden' must be [batch, seq, H] or [rows, H]")
    if not isinstance(lm_head_weight, torch.Tensor) or lm_head_weight.dim() != 2 \
            or lm_head_weight.shape[1] != hidden.shape[-1]:
        raise ValueError(f"diffusion_kernels: argument 'lm_head_weight' must be [vocab, H = {hidden.shape[-1]}], got "
                         f"{tuple(lm_head_weight.shape) if isinstance(lm_head_weight, torch.Tensor) else None}")
    if lm_head_weight.dtype != hidden.dtype or lm_head_weight.device != hidden.device:
        raise ValueError(f"diffusion_kernels: argument 'lm_head_weight' must match 'hidden' in dtype and device "
                         f"({hidden.dtype}, {hidden.device}), got {lm_head_weight.dtype}, {lm_head_weight.device}")
    token_shape = hidden.shape[:-1]
    if not isinstance(targets, torch.Tensor) or targets.shape != token_shape or targets.dtype != torch.int64:
        raise ValueError(f"diffusion_kernels: argument 'targets' must be int64 of shape {tuple(token_shape)}")
    if not isinstance(masked, torch.Tensor) or masked.shape != token_shape or masked.dtype != torch.bool:
        raise ValueError(f"diffusion_kernels: argument 'masked' must be a bool tensor of shape {tuple(token_shape)}")
    _normalize.check_choices(normalize, reduction, prompt_lengths, token_shape)
    vocab = lm_head_weight.shape[0]
    if chunk_size is None:
        chunk_size = max(1, _CHUNK_ELEMENTS // max(vocab, 1))
    elif isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"diffusion_kernels: argument 'chunk_size' must be a positive int, got {chunk_size!r}")

    p = _normalize.row_p_mask(p_mask, token_shape, hidden.device).reshape(-1)
    flat_masked = masked.reshape(-1)
    index = flat_masked.nonzero().squeeze(1)
    t = targets.reshape(-1).index_select(0, index)
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= vocab):
        raise ValueError(f"diffusion_kernels: argument 'targets' must lie in [0, vocab = {vocab}) at masked positions")
    h2 = hidden.reshape(-1, hidden.shape[-1])
    p_rows = p.index_select(0, index)

    if reduction == "none":
        ce = _PerRowCE.apply(h2, lm_head_weight, index, t, chunk_size)
        token_loss = _scatter_rows(ce / p_rows.to(ce.dtype), index, h2.shape[0])
        return token_loss.view(token_shape)
    batch_of_row = index // token_shape[-1] if len(token_shape) == 2 else None
    w = _normalize.row_weights(p_rows, batch_of_row, token_shape, normalize, reduction, prompt_lengths,
                               int(index.numel()))
    return _WeightedCE.apply(h2, lm_head_weight, index, t, w, chunk_size)
