"""Bidirectional attention over a KV cache that is partly rewritten in place: no cache, prefix
cache, dual cache (Fast-dLLM) and left-padded batches in one op."""
import torch

from ._args import int64_arg
from .attention_autograd import AttentionWithGrad, needs_grad

__all__ = ["attention_with_kv_cache"]


def attention_with_kv_cache(q, k_cache, v_cache, k_new=None, v_new=None, write_start=0,
                            key_padding_mask=None, key_lengths=None, scale=None, return_lse=False, _op=None):
    """Write new K/V rows into the caches in place, then attend every query over the valid keys.

    1. ``k_cache[b, s_b : s_b + new_len] = k_new[b]`` (and the same for V), where ``s_b`` is
       ``write_start`` (an int, or a ``[batch]`` int64 tensor for a per-row start);
    2. ``out[b, i, h] = softmax(scale * q[b, i, h] . K_b^T) V_b`` over the keys ``j`` of the
       updated cache with ``key_padding_mask[b, j]`` True and ``j < key_lengths[b]`` (each
       optional), non-causally. A query whose batch row has no valid key gets 0 (not NaN) and an
       lse of ``-inf``.

    Usage: *no cache*: ``k_cache``/``v_cache`` are ``[B, L, Hkv, D]`` buffers, ``k_new`` the fresh
    K of all ``L`` positions, ``write_start=0``. *Prefix cache*: queries are the current block
    plus the suffix, written after the cached prefix at ``write_start = block_start``. *Dual
    cache*: queries are the current block only, the cache holds the whole sequence and the
    block's rows are overwritten at ``write_start = block_start``. *Left padding*: pass
    ``key_padding_mask`` (False on the pad positions) and per-row ``write_start`` tensors.

    Args:
        q: ``[batch, q_len, heads_q, head_dim]``.
        k_cache, v_cache: ``[batch, cache_len, heads_kv, head_dim]``, written in place;
            ``heads_q % heads_kv == 0`` (GQA: query head ``h`` reads kv head
            ``h // (heads_q // heads_kv)``).
        k_new, v_new: ``[batch, new_len, heads_kv, head_dim]`` or None (no write).
        write_start: int or ``[batch]`` int64 tensor. A write range outside ``[0, cache_len)`` is a
            ``ValueError`` (an int, or any tensor on CPU); for a CUDA tensor the kernel checks it on
            the device without a host sync and raises a device-side assertion (the CUDA context is
            then unusable, as with an out-of-range index in PyTorch) instead of writing.
        key_padding_mask: ``[batch, cache_len]`` bool, True where the key is valid.
        key_lengths: ``[batch]`` integer tensor: keys ``>= key_lengths[b]`` are invalid.
        scale: softmax scale, default ``head_dim ** -0.5``.
        return_lse: also return the log-sum-exp of the scaled scores.

    All float tensors share one dtype: float16 or bfloat16 (CUDA and CPU) or float32 (CPU); the
    head dimension must be contiguous, other strides are free. The CPU kernel accumulates in
    float32; CUDA supports head_dim 64 and 128.

    Autograd: gradients flow to ``q``, ``k_new`` and ``v_new`` (the caches, written in place, must
    not require grad); the backward recomputes the attention in PyTorch (exact, unfused memory),
    see ``diffusion_kernels/ops/attention_autograd.py``.

    Returns:
        ``out [batch, q_len, heads_q, head_dim]`` in q's dtype, and with ``return_lse`` also
        ``lse [batch, heads_q, q_len]`` float32.
    """
    starts = None
    if isinstance(write_start, torch.Tensor) and write_start.dim() > 0:
        starts = write_start.to(torch.int64)
        write_start = 0
    else:
        write_start = int64_arg(write_start, "write_start")
    if key_lengths is not None and key_lengths.dtype != torch.int64:
        if key_lengths.dtype.is_floating_point or key_lengths.dtype == torch.bool:
            raise ValueError(f"diffusion_kernels: argument 'key_lengths' must be an integer tensor, got {key_lengths.dtype}")
        key_lengths = key_lengths.to(torch.int64)
    if scale is not None:
        scale = float(scale)
    op = torch.ops.diffusion_kernels.attention_with_kv_cache.default if _op is None else _op  # _op: emulated twin
    if needs_grad(q, k_new, v_new, k_cache, v_cache):
        for name, t in (("k_cache", k_cache), ("v_cache", v_cache)):
            if t.requires_grad:
                raise ValueError(f"diffusion_kernels: argument '{name}' must not require grad: it is written in "
                                 "place; pass the differentiable new rows as 'k_new'/'v_new'")
        out, lse = AttentionWithGrad.apply(q, k_new, v_new, k_cache, v_cache, write_start, starts, key_padding_mask,
                                           key_lengths, scale, op)
    else:
        out, lse = op(
            q, k_cache, v_cache, k_new, v_new, write_start, starts, key_padding_mask, key_lengths, scale,
            bool(return_lse))
    return (out, lse) if return_lse else out


@torch.library.register_fake("diffusion_kernels::attention_with_kv_cache")
def _attention_with_kv_cache_fake(q, k_cache, v_cache, k_new, v_new, write_start, write_starts,
                                  key_padding_mask, key_lengths, scale, return_lse):
    torch._check(q.dim() == 4, lambda: f"'q' must be [batch, q_len, heads_q, head_dim], got {tuple(q.shape)}")
    torch._check(q.dtype in (torch.float32, torch.float16, torch.bfloat16),
                 lambda: f"'q' must be float32, float16 or bfloat16, got {q.dtype}")
    for name, t in (("k_cache", k_cache), ("v_cache", v_cache), ("k_new", k_new), ("v_new", v_new)):
        if t is not None:
            torch._check(t.dim() == 4, lambda: f"'{name}' must be [batch, seq, heads, head_dim]")
            torch._check(t.dtype == q.dtype, lambda: f"'{name}' must have the dtype of 'q'")
            torch._check(t.device == q.device, lambda: f"'{name}' must be on the same device as 'q'")
    torch._check(k_cache.shape == v_cache.shape, lambda: "'v_cache' must have the shape of 'k_cache'")
    torch._check(k_cache.shape[0] == q.shape[0] and k_cache.shape[3] == q.shape[3],
                 lambda: "'k_cache' must match q's batch and head_dim")
    torch._check(q.shape[2] % k_cache.shape[2] == 0, lambda: "'k_cache' heads must divide heads_q")
    b, lq, hq, d = q.shape
    out = q.new_empty((b, lq, hq, d))
    lse = q.new_empty((b if return_lse else 0, hq, lq), dtype=torch.float32)
    return out, lse

