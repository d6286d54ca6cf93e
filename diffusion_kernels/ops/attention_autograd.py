"""Gradients of ``attention_with_kv_cache`` for q, k and v (the new rows).

The op itself has no backward kernel (it is an inference op: a flash backward would be a kernel of
its own). When a gradient is asked for, the forward still runs the op (the cache write included)
and the backward recomputes the attention in PyTorch, in float32, from q, the caches and k/v, one
chunk of queries at a time: each chunk's rows hold all of their keys, so the chunk's softmax and
its gradient are exact, and the scores in memory are ``[batch, heads, chunk, cache_len]`` rather
than ``[batch, heads, q_len, cache_len]`` (with the x_t (+) x_0 training layout, never a
``[2L, 2L]`` matrix per head). Block rules build their mask per chunk
(``reference.attention_block_mask``).

The caches are written in place, so they cannot themselves require grad (an in-place write into a
leaf that requires grad is an error in PyTorch too): new keys/values reach the cache through
k/v, which is where their gradients go. Rows of the cache that were not written are
constants of the call. Writing into the caches again before the backward would change what it
recomputes; that is detected and refused.
"""
from typing import Optional, Tuple

import torch

from .. import reference

# Bytes of float32 scores-shaped temporaries (scores, probabilities, their gradients) per chunk.
_CHUNK_BYTES = 16 << 20


def needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


class AttentionWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k_new, v_new, k_cache, v_cache, write_start, starts, key_padding_mask, key_lengths, scale,
                write_status, op, causal_block_size=0, noisy_length=0, store_kv=True):
        out, lse = op(q, k_cache, v_cache, k_new, v_new, write_start, starts, key_padding_mask, key_lengths, scale,
                      True, write_status, causal_block_size, noisy_length, store_kv)
        ctx.save_for_backward(q, k_new, v_new, starts, key_padding_mask, key_lengths)
        # The caches are not saved tensors (they are mutated by design): their versions are checked.
        ctx.caches = (k_cache, v_cache, k_cache._version, v_cache._version)
        ctx.write_start, ctx.scale = write_start, scale
        ctx.block_rule = (causal_block_size or None, noisy_length or None)
        return out, lse

    @staticmethod
    def backward(ctx, grad_out, grad_lse):
        q, k_new, v_new, starts, key_padding_mask, key_lengths = ctx.saved_tensors
        k_cache, v_cache, k_version, v_version = ctx.caches
        if k_cache._version != k_version or v_cache._version != v_version:
            raise RuntimeError("diffusion_kernels: attention_with_kv_cache backward: 'k_cache'/'v_cache' were "
                               "modified after the forward; the backward recomputes from them, so keep them "
                               "unchanged until backward")
        if starts is None:
            starts = torch.full((q.shape[0],), ctx.write_start, dtype=torch.int64, device=q.device)
        grad_q, grad_k, grad_v = attention_grads(
            q, k_cache, v_cache, k_new, v_new, starts, key_padding_mask, key_lengths, ctx.scale, grad_out, grad_lse,
            *ctx.block_rule)
        need_q, need_k, need_v = ctx.needs_input_grad[:3]
        return (grad_q if need_q else None, grad_k if need_k else None, grad_v if need_v else None,
                None, None, None, None, None, None, None, None, None, None, None, None)


def attention_grads(q, k_cache, v_cache, k_new, v_new, starts, key_padding_mask, key_lengths, scale, grad_out,
                    grad_lse, causal_block_size=None, noisy_length=None, chunk_bytes: int = _CHUNK_BYTES
                    ) -> Tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Gradients of ``(out, lse)`` for q, k_new and v_new (None where absent), recomputed by query
    chunks in float32. The keys are the caches with k_new/v_new placed at ``starts`` (whether the
    forward stored them or not)."""
    b, lq, hq, d = q.shape
    lc, hkv = k_cache.shape[1], k_cache.shape[2]
    g = hq // hkv
    scale = d ** -0.5 if scale is None else scale
    dev = q.device
    valid = torch.ones(b, lc, dtype=torch.bool, device=dev)
    if key_padding_mask is not None:
        valid &= key_padding_mask.to(torch.bool)
    if key_lengths is not None:
        valid &= torch.arange(lc, device=dev)[None, :] < key_lengths.to(dev)[:, None]
    # [b, hkv, lc, d] float32 keys/values; invalid rows zeroed so that whatever they hold (NaN)
    # never meets a zero probability in a product.
    keys, values = (c.detach().float().masked_fill(~valid[:, :, None, None], 0).permute(0, 2, 1, 3).contiguous()
                    for c in (k_cache, v_cache))
    rows = None
    if k_new is not None:
        rows = starts.to(dev)[:, None] + torch.arange(k_new.shape[1], device=dev)[None, :]  # [b, new_len]
        for full, new in ((keys, k_new), (values, v_new)):
            placed = new.detach().float().permute(0, 2, 1, 3)  # [b, hkv, new_len, d]
            full.scatter_(2, rows[:, None, :, None].expand_as(placed), placed)
            full.masked_fill_(~valid[:, None, :, None], 0)

    grad_keys, grad_values = torch.zeros_like(keys), torch.zeros_like(values)
    grad_q = torch.empty(b, lq, hq, d, dtype=torch.float32, device=dev)
    chunk = max(1, min(lq, chunk_bytes // max(1, 4 * 4 * b * hq * lc)))
    # Batched matmuls over (batch, kv head): the group's query heads and the chunk's rows are the
    # g * c rows of one matrix, so K/V are never repeated per query head.
    for i0 in range(0, lq, chunk):
        i1 = min(lq, i0 + chunk)
        c = i1 - i0
        qc = q[:, i0:i1].detach().float().view(b, c, hkv, g, d).permute(0, 2, 3, 1, 4).reshape(b, hkv, g * c, d)
        seen = valid[:, None, :]  # [b, c or 1, lc]
        if causal_block_size is not None:
            seen = seen & reference.attention_block_mask(starts, c, lc, causal_block_size, noisy_length,
                                                         first_query=i0)
        hidden = ~seen[:, None, None]  # [b, 1, 1, c or 1, lc] against scores viewed [b, hkv, g, c, lc]
        scores = torch.matmul(qc, keys.transpose(-1, -2)).mul_(scale)
        scores.view(b, hkv, g, c, lc).masked_fill_(hidden, float("-inf"))
        lse = torch.logsumexp(scores, dim=-1, keepdim=True)
        probs = scores.sub_(torch.where(torch.isneginf(lse), 0, lse)).exp_()  # rows without a key: all 0
        out = torch.matmul(probs, values)
        dout = grad_out[:, i0:i1].float().view(b, c, hkv, g, d).permute(0, 2, 3, 1, 4).reshape(b, hkv, g * c, d)
        dscores = torch.matmul(dout, values.transpose(-1, -2))
        dscores.sub_((dout * out).sum(-1, keepdim=True))
        if grad_lse is not None:
            dscores.add_(grad_lse[:, :, i0:i1].float().reshape(b, hkv, g * c, 1))
        dscores.mul_(probs).view(b, hkv, g, c, lc).masked_fill_(hidden, 0)
        dscores.mul_(scale)
        grad_q[:, i0:i1] = torch.matmul(dscores, keys).view(b, hkv, g, c, d).permute(0, 3, 1, 2, 4).reshape(b, c, hq, d)
        grad_keys.add_(torch.matmul(dscores.transpose(-1, -2), qc))
        grad_values.add_(torch.matmul(probs.transpose(-1, -2), dout))
        del scores, probs, dscores

    grad_k = grad_v = None
    if k_new is not None:
        idx = rows[:, None, :, None].expand(b, hkv, k_new.shape[1], d)
        grad_k = grad_keys.gather(2, idx).permute(0, 2, 1, 3).to(k_new.dtype)
        grad_v = grad_values.gather(2, idx).permute(0, 2, 1, 3).to(v_new.dtype)
    return grad_q.to(q.dtype), grad_k, grad_v
