"""Attention over a KV cache that is partly rewritten in place: no cache, prefix cache, dual cache
(Fast-dLLM) and left-padded batches in one op, bidirectional or under the block rules of block
diffusion (block-causal, store_kv=False, the x_t (+) x_0 training layout), with flash-attn's
argument names.
How it runs on CPU and CUDA: docs/attention.md."""
import math
import warnings
from typing import Optional, Tuple, Union

import torch

from .. import _C
from ._args import host_readable, int64_arg
from .attention_autograd import AttentionWithGrad, needs_grad

__all__ = ["attention_with_kv_cache"]

# The names before flash-attn's, accepted for one release: old name -> new name, and the order of
# the old positional arguments after ``v``.
_RENAMED = {"k_new": "k", "v_new": "v", "write_start": "cache_seqlens", "scale": "softmax_scale",
            "return_lse": "return_softmax_lse"}
_OLD_POSITIONAL = ("write_start", "key_padding_mask", "key_lengths", "scale", "return_lse")
_FLOAT32_MAX = torch.finfo(torch.float32).max
_op = torch.ops.diffusion_kernels.attention_with_kv_cache.default  # resolved once: called every layer and step
_direct = _C.attention_direct
_is_compiling = torch.compiler.is_compiling

AttentionResult = Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]


def attention_with_kv_cache(
        q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
        k: Optional[torch.Tensor] = None, v: Optional[torch.Tensor] = None, *deprecated_positional,
        cache_seqlens: Union[int, torch.Tensor, None] = None,
        key_padding_mask: Optional[torch.Tensor] = None, key_lengths: Optional[torch.Tensor] = None,
        softmax_scale: Optional[float] = None, return_softmax_lse: bool = False,
        write_status: Optional[torch.Tensor] = None, causal_block_size: Optional[int] = None,
        noisy_length: Optional[int] = None, store_kv: bool = True, **deprecated_names) -> AttentionResult:
    """Write new K/V rows into the caches in place, then attend every query over the valid keys.

    1. ``k_cache[b, s_b : s_b + new_len] = k[b]`` (and ``v`` into ``v_cache``), where ``s_b`` is
       ``cache_seqlens`` (an int, or one start per batch row);
    2. ``out[b, i, h] = softmax(softmax_scale * q[b, i, h] . K_b^T) V_b`` over the keys ``j`` of
       the updated cache with ``key_padding_mask[b, j]`` True and ``j < key_lengths[b]`` (each
       optional), bidirectionally, or under a block rule (below). A query with no valid, visible
       key gets 0 and an lse of ``-inf``.

    The names are those of flash-attn's ``flash_attn_with_kvcache``, and ``cache_seqlens`` is where
    ``k``/``v`` are written, as there. Where it differs: flash-attn attends to the keys before
    ``cache_seqlens + new_len`` only; here every key of the cache stays visible, the ones after
    the written block included (the dual cache of Fast-dLLM keeps the suffix there), unless
    ``key_lengths``/``key_padding_mask`` hide them (``key_lengths = cache_seqlens + new_len``
    gives flash-attn's keys). There is no ``causal`` (diffusion LLMs attend both ways), the
    default ``cache_seqlens=None`` writes at row 0 (flash-attn: the whole cache is valid), any
    integer dtype is accepted for it (flash-attn: int32), and a write range outside the cache is
    an error (flash-attn does not check).

    Args:
        q: ``[batch, q_len, heads_q, head_dim]``.
        k_cache, v_cache: ``[batch, cache_len, heads_kv, head_dim]``, written in place;
            ``heads_q % heads_kv == 0`` (GQA: query head ``h`` reads kv head
            ``h // (heads_q // heads_kv)``). They must not require grad.
        k, v: ``[batch, new_len, heads_kv, head_dim]`` new rows, or None (nothing is written).
            When they are given, neither they nor ``q`` may share memory with the caches, which are
            written (with ``store_kv=False`` ``k``/``v`` may: they are copied before the caches are
            touched).
        cache_seqlens: the cache row where ``k``/``v`` go: an int, or a ``[batch]`` integer tensor
            (one start per row, e.g. with left padding); None means 0. A range outside
            ``[0, cache_len)`` is a ``ValueError`` before anything is written when it can be seen
            on the host (an int, or a tensor on the CPU). A CUDA tensor is checked by the kernels
            without a host sync: then nothing is written, ``out`` and the lse are NaN and
            ``write_status`` (if given) is set to 1.
        key_padding_mask: ``[batch, cache_len]`` bool, True where the key is valid.
        key_lengths: ``[batch]`` integer tensor: keys ``>= key_lengths[b]`` are invalid.
        softmax_scale: scale of ``q . k``, default ``head_dim ** -0.5``; finite in float32.
        return_softmax_lse: also return the log-sum-exp of the scaled scores.
        write_status: optional one-element int32 tensor on ``q``'s device that the CUDA kernels set
            to 1 when ``cache_seqlens`` puts a row's write outside the cache. Never reset by the
            op, so one flag can collect a whole generation and be read once.
        causal_block_size: block size ``b`` of block-causal attention: query ``i`` of row ``r``,
            at position ``p = cache_seqlens[r] + i``, sees key ``j`` iff ``j // b <= p // b``
            (prefill, decoding the current block over an exact cache, several blocks in flight).
            None: bidirectional.
        noisy_length: with ``causal_block_size``, the BD3-LM/SDAR training layout ``x_t (+) x_0``
            with ``x_t`` at positions ``[0, noisy_length)``: noisy block ``n`` sees noisy block
            ``n`` and clean blocks ``< n``, clean block ``n`` sees clean blocks ``<= n``. In
            ``[1, cache_len]``.
        store_kv: False attends over the cache plus ``k``/``v`` placed at ``cache_seqlens``
            (bitwise the result of storing them, validity by their positions) and leaves both
            caches bitwise unchanged (SDAR's ``store_kv``).

    The deprecated names ``k_new``, ``v_new``, ``write_start``, ``scale`` and ``return_lse`` (and
    the old positional order) still work for one release, with a ``DeprecationWarning``.

    All float tensors share one dtype: float16 or bfloat16 (CUDA and CPU) or float32 (CPU); the
    head dimension must be contiguous, other strides are free. CUDA supports head_dim 64 and 128.
    Gradients flow to ``q``, ``k`` and ``v`` (the backward recomputes the attention in PyTorch).

    Returns:
        ``out [batch, q_len, heads_q, head_dim]`` in q's dtype; with ``return_softmax_lse`` the
        pair ``(out, lse)`` with ``lse [batch, heads_q, q_len]`` float32.

    Examples:
        A dual-cache step: the cache holds the whole sequence, the block's 8 rows at 16 are
        rewritten and its queries attend over every key.

        >>> import torch, diffusion_kernels as dk
        >>> k_cache, v_cache = torch.randn(1, 64, 2, 64), torch.randn(1, 64, 2, 64)
        >>> q, k, v = torch.randn(1, 8, 4, 64), torch.randn(1, 8, 2, 64), torch.randn(1, 8, 2, 64)
        >>> dk.attention_with_kv_cache(q, k_cache, v_cache, k, v, cache_seqlens=16).shape
        torch.Size([1, 8, 4, 64])

        flash-attn's keys (those after the block hidden), per-row starts, and the lse:

        >>> starts = torch.tensor([16])
        >>> out, lse = dk.attention_with_kv_cache(q, k_cache, v_cache, k, v, cache_seqlens=starts,
        ...                                       key_lengths=starts + 8, return_softmax_lse=True)
        >>> lse.shape
        torch.Size([1, 4, 8])

        Block diffusion: decode the block at 32 (block size 16) over an exact cache, first
        without storing its K/V, then committing them.

        >>> q, k, v = torch.randn(1, 16, 4, 64), torch.randn(1, 16, 2, 64), torch.randn(1, 16, 2, 64)
        >>> peek = dk.attention_with_kv_cache(q, k_cache, v_cache, k, v, cache_seqlens=32,
        ...                                   causal_block_size=16, store_kv=False)
        >>> out = dk.attention_with_kv_cache(q, k_cache, v_cache, k, v, cache_seqlens=32, causal_block_size=16)
        >>> torch.equal(peek, out)
        True
    """
    if not deprecated_positional and not deprecated_names and not _is_compiling():
        # the options as given, in one call: None where they need the normalisation below, or
        # autograd, or a dispatcher key of their own (ops/fast_path.h)
        out = _direct(q, k_cache, v_cache, k, v, cache_seqlens, key_padding_mask, key_lengths, softmax_scale,
                      return_softmax_lse, write_status, causal_block_size, noisy_length, store_kv)
        if out is not None:
            return out
    return _attention_with_op(
        _op, q, k_cache, v_cache, k, v,
        *deprecated_positional, cache_seqlens=cache_seqlens, key_padding_mask=key_padding_mask,
        key_lengths=key_lengths, softmax_scale=softmax_scale, return_softmax_lse=return_softmax_lse,
        write_status=write_status, causal_block_size=causal_block_size, noisy_length=noisy_length, store_kv=store_kv,
        **deprecated_names)


def _attention_with_op(op, q, k_cache, v_cache, k=None, v=None, *deprecated_positional, cache_seqlens=None,
                       key_padding_mask=None, key_lengths=None, softmax_scale=None, return_softmax_lse=False,
                       write_status=None, causal_block_size=None, noisy_length=None, store_kv=True,
                       **deprecated_names) -> AttentionResult:
    """:func:`attention_with_kv_cache` run by ``op`` (the registered op, or its emulated twin)."""
    a = dict(k=k, v=v, cache_seqlens=cache_seqlens, key_padding_mask=key_padding_mask, key_lengths=key_lengths,
             softmax_scale=softmax_scale, return_softmax_lse=return_softmax_lse)
    if deprecated_positional or deprecated_names:
        _apply_deprecated_names(a, deprecated_positional, deprecated_names)
    k, v = a["k"], a["v"]
    if not isinstance(q, torch.Tensor):
        raise TypeError(f"diffusion_kernels: argument 'q' must be a tensor, got {type(q).__name__}")
    key_lengths = _key_lengths_arg(a["key_lengths"])
    device = q.device
    for name, t in (("k_cache", k_cache), ("v_cache", v_cache), ("k", k), ("v", v),
                    ("key_padding_mask", a["key_padding_mask"]), ("key_lengths", key_lengths),
                    ("write_status", write_status)):
        if t is None:
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"diffusion_kernels: argument '{name}' must be a tensor, got {type(t).__name__}")
        if t.device != device:  # before any value is read (a meta tensor has none)
            raise ValueError(f"diffusion_kernels: argument '{name}' must be on the same device as 'q' ({device}), "
                             f"got {t.device}")
    start, starts = _cache_seqlens_arg(a["cache_seqlens"], q, k_cache, k)
    scale = _softmax_scale_arg(a["softmax_scale"])
    block, noisy = _block_rule_args(causal_block_size, noisy_length, k_cache)
    if not isinstance(store_kv, bool):
        raise TypeError(f"diffusion_kernels: argument 'store_kv' must be a bool, got {type(store_kv).__name__}")
    return_lse = bool(a["return_softmax_lse"])
    if needs_grad(q, k, v, k_cache, v_cache):
        for name, t in (("k_cache", k_cache), ("v_cache", v_cache)):
            if t.requires_grad:
                raise ValueError(f"diffusion_kernels: argument '{name}' must not require grad: it is written in "
                                 "place; pass the differentiable new rows as 'k'/'v'")
        out, lse = AttentionWithGrad.apply(q, k, v, k_cache, v_cache, start, starts, a["key_padding_mask"],
                                           key_lengths, scale, write_status, op, block, noisy, store_kv)
    else:
        out, lse = op(q, k_cache, v_cache, k, v, start, starts, a["key_padding_mask"], key_lengths, scale,
                      return_lse, write_status, block, noisy, store_kv)
    return (out, lse) if return_lse else out


def _apply_deprecated_names(a: dict, positional: tuple, names: dict) -> None:
    """Moves the old positional options and the old keyword names into ``a`` (new names), with a
    DeprecationWarning each; an option given twice is a TypeError."""
    if len(positional) > len(_OLD_POSITIONAL):
        raise TypeError(f"attention_with_kv_cache() takes at most {5 + len(_OLD_POSITIONAL)} positional arguments "
                        f"({5 + len(positional)} given)")
    given = [(old, value, f"passing '{old}' positionally is deprecated: pass "
                          f"{_RENAMED.get(old, old)}= as a keyword") for old, value in zip(_OLD_POSITIONAL, positional)]
    for old, value in names.items():
        if old not in _RENAMED:
            raise TypeError(f"attention_with_kv_cache() got an unexpected keyword argument '{old}'")
        given.append((old, value, f"argument '{old}' is deprecated: use '{_RENAMED[old]}'"))
    for old, value, message in given:
        new = _RENAMED.get(old, old)
        default = False if new == "return_softmax_lse" else None
        if a[new] is not default:
            raise TypeError(f"attention_with_kv_cache() got '{new}' twice: as '{new}' and as the deprecated "
                            f"'{old}'" + (" (positional)" if old not in names else ""))
        warnings.warn(f"diffusion_kernels.attention_with_kv_cache: {message}", DeprecationWarning, stacklevel=4)
        a[new] = value


def _cache_seqlens_arg(value, q, k_cache, k) -> Tuple[int, Optional[torch.Tensor]]:
    """``(start, starts)`` for the op: an int start, or an int64 ``[batch]`` tensor on q's device.
    Ranges that can be seen on the host are checked here, before anything is written."""
    new_len = k.shape[1] if isinstance(k, torch.Tensor) and k.dim() == 4 else 0
    cache_len = k_cache.shape[1] if k_cache.dim() == 4 else None
    if not isinstance(value, torch.Tensor):
        start = 0 if value is None else int64_arg(value, "cache_seqlens")
        if new_len and cache_len is not None and not 0 <= start <= cache_len - new_len:
            raise ValueError(f"diffusion_kernels: argument 'cache_seqlens' puts the write range [{start}, "
                             f"{start + new_len}) outside the cache rows [0, {cache_len})")
        return start, None
    if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
        raise TypeError(f"diffusion_kernels: argument 'cache_seqlens' must be an int or an integer [batch] tensor, "
                        f"got a {value.dtype} tensor")
    if value.dim() > 1:
        raise ValueError(f"diffusion_kernels: argument 'cache_seqlens' must be an int or a [batch] tensor, got shape "
                         f"{tuple(value.shape)}")
    if value.device != q.device and value.device.type != "cpu":
        raise ValueError(f"diffusion_kernels: argument 'cache_seqlens' must be on the device of 'q' ({q.device}) or "
                         f"on the CPU, got {value.device}")
    if q.dim() == 4 and value.dim() == 0:
        value = value.expand(q.shape[0])
    elif q.dim() == 4 and value.shape[0] != q.shape[0]:
        raise ValueError(f"diffusion_kernels: argument 'cache_seqlens' must have shape [batch] = [{q.shape[0]}], got "
                         f"{tuple(value.shape)}")
    if new_len and cache_len is not None and host_readable(value):
        bad = [(row, s) for row, s in enumerate(value.tolist()) if not 0 <= s <= cache_len - new_len]
        if bad:
            row, s = bad[0]
            raise ValueError(f"diffusion_kernels: argument 'cache_seqlens' puts the write range [{s}, {s + new_len}) "
                             f"of batch row {row} outside the cache rows [0, {cache_len}); nothing was written")
    return 0, value.to(device=q.device, dtype=torch.int64).contiguous()


def _block_rule_args(causal_block_size, noisy_length, k_cache) -> Tuple[int, int]:
    """``(causal_block_size, noisy_length)`` for the op, 0 where off."""
    block = noisy = 0
    if causal_block_size is not None:
        block = int64_arg(causal_block_size, "causal_block_size")
        if block < 1:
            raise ValueError(f"diffusion_kernels: argument 'causal_block_size' must be a positive int (or None), got "
                             f"{block}")
    if noisy_length is not None:
        noisy = int64_arg(noisy_length, "noisy_length")
        if not block:
            raise ValueError("diffusion_kernels: argument 'noisy_length' needs 'causal_block_size' (the block size of "
                             "the x_t (+) x_0 layout)")
        cache_len = k_cache.shape[1] if isinstance(k_cache, torch.Tensor) and k_cache.dim() == 4 else None
        if noisy < 1 or (cache_len is not None and noisy > cache_len):
            raise ValueError(f"diffusion_kernels: argument 'noisy_length' must lie in [1, cache_len = {cache_len}] (the "
                             f"x_t half of x_t (+) x_0), got {noisy}")
    return block, noisy


def _key_lengths_arg(value) -> Optional[torch.Tensor]:
    if value is None:
        return None
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"diffusion_kernels: argument 'key_lengths' must be an integer [batch] tensor, got "
                        f"{type(value).__name__}")
    if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
        raise TypeError(f"diffusion_kernels: argument 'key_lengths' must be an integer tensor, got {value.dtype}")
    return value.to(torch.int64)


def _softmax_scale_arg(value) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, torch.Tensor)):
        raise TypeError(f"diffusion_kernels: argument 'softmax_scale' must be a number, got {type(value).__name__}")
    if isinstance(value, torch.Tensor) and (value.numel() != 1 or value.dtype == torch.bool or value.is_complex()):
        raise TypeError(f"diffusion_kernels: argument 'softmax_scale' must be a number, got a {value.dtype} tensor "
                        f"of shape {tuple(value.shape)}")
    scale = float(value)
    if not math.isfinite(scale) or abs(scale) > _FLOAT32_MAX:
        raise ValueError(f"diffusion_kernels: argument 'softmax_scale' must be finite in float32, got {scale}")
    return scale


@torch.library.register_fake("diffusion_kernels::attention_with_kv_cache")
def _attention_with_kv_cache_fake(q, k_cache, v_cache, k_new, v_new, write_start, write_starts,
                                  key_padding_mask, key_lengths, scale, return_lse, write_status=None,
                                  causal_block_size=0, noisy_length=0, store_kv=True):
    def check(cond, name, message):
        torch._check_with(ValueError, cond, lambda: f"diffusion_kernels: argument '{name}' {message}")

    check(q.dim() == 4, "q", f"must have 4 dimensions [batch, q_len, heads_q, head_dim], got shape {tuple(q.shape)}")
    check(q.dtype in (torch.float32, torch.float16, torch.bfloat16), "q",
          f"must be float32, float16 or bfloat16, got {q.dtype}")
    for name, t in (("k_cache", k_cache), ("v_cache", v_cache), ("k", k_new), ("v", v_new)):
        if t is not None:
            check(t.dim() == 4, name, f"must have 4 dimensions [batch, seq, heads, head_dim], got shape {tuple(t.shape)}")
            check(t.dtype == q.dtype, name, f"must have the dtype of 'q' ({q.dtype}), got {t.dtype}")
            check(t.device == q.device, name, f"must be on the same device as 'q' ({q.device}), got {t.device}")
    b, lq, hq, d = q.shape
    check(k_cache.shape[0] == b and k_cache.shape[3] == d, "k_cache",
          f"must have shape [batch, cache_len, heads_kv, head_dim] with batch = {b} and head_dim = {d} from 'q', "
          f"got {tuple(k_cache.shape)}")
    check(v_cache.shape == k_cache.shape, "v_cache", f"must have the shape of 'k_cache', got {tuple(v_cache.shape)}")
    check(k_cache.shape[2] >= 1 and hq % k_cache.shape[2] == 0, "k_cache",
          f"must have a number of heads that divides heads_q = {hq}, got {k_cache.shape[2]}")
    check((k_new is None) == (v_new is None), "v" if v_new is None else "k",
          "must be given together with '" + ("k'" if v_new is None else "v'"))
    if k_new is not None:
        check(k_new.shape[0] == b and k_new.shape[2] == k_cache.shape[2] and k_new.shape[3] == d, "k",
              f"must have shape [batch, new_len, heads_kv, head_dim], got {tuple(k_new.shape)}")
        check(v_new.shape == k_new.shape, "v", f"must have the shape of 'k', got {tuple(v_new.shape)}")
    lc = k_cache.shape[1]
    for name, t, shape in (("cache_seqlens", write_starts, (b,)), ("key_padding_mask", key_padding_mask, (b, lc)),
                           ("key_lengths", key_lengths, (b,))):
        if t is not None:
            check(tuple(t.shape) == shape, name, f"must have shape {list(shape)}, got {tuple(t.shape)}")
            check(t.device == q.device, name, f"must be on the same device as 'q' ({q.device}), got {t.device}")
    if write_status is not None:
        check(write_status.numel() == 1 and write_status.dtype == torch.int32, "write_status",
              f"must be a one-element int32 tensor, got a {write_status.dtype} tensor of shape {tuple(write_status.shape)}")
    if key_padding_mask is not None:
        check(key_padding_mask.dtype == torch.bool, "key_padding_mask", f"must be bool, got {key_padding_mask.dtype}")
    check(causal_block_size >= 0, "causal_block_size", f"must be a positive int (or None), got {causal_block_size}")
    if noisy_length != 0:
        check(causal_block_size > 0, "noisy_length", "needs 'causal_block_size' (the block size of the layout)")
        check(0 < noisy_length <= lc, "noisy_length", f"must lie in [1, cache_len = {lc}], got {noisy_length}")
    out = q.new_empty((b, lq, hq, d))
    lse = q.new_empty((b if return_lse else 0, hq, lq), dtype=torch.float32)
    return out, lse
