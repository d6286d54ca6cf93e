"""Transfer selection: which masked positions a dLLM sampler commits at this step."""
from typing import Optional, Union

import torch

from .. import _C
from ._args import INT64_MAX, INT64_MIN, float_arg, float_row_arg, int64_arg, key_arg, token_ids_arg, written_arg

__all__ = ["select_transfer"]

_op = torch.ops.diffusion_kernels.select_transfer.default  # resolved once: called every step
_direct = _C.select_transfer_direct
_is_compiling = torch.compiler.is_compiling
_FLOAT32, _FLOAT16, _BFLOAT16 = torch.float32, torch.float16, torch.bfloat16


def select_transfer(
    confidence: torch.Tensor,
    *,
    k: Optional[Union[int, torch.Tensor]] = None,
    threshold: Optional[Union[float, torch.Tensor]] = None,
    eps: Optional[float] = None,
    factor: Optional[float] = None,
    alg_temp: Optional[float] = None,
    seed: Union[int, torch.Tensor] = 0,
    offset: Union[int, torch.Tensor] = 0,
    x: Optional[torch.Tensor] = None,
    x0: Optional[torch.Tensor] = None,
    strict: bool = False,
) -> torch.Tensor:
    """Pick the positions to commit (transfer) in each row, in one launch and without host sync.

    Candidates are the positions with finite ``confidence`` (the samplers put ``-inf`` at positions
    that are not masked or outside the current block). Exactly one rule is chosen: ``k`` (the ``k``
    best candidates, or with ``alg_temp > 0`` ``k`` drawn by Gumbel-top-k: LLaDA, Dream),
    ``threshold`` (every candidate ``>= threshold`` plus the row's best: Fast-dLLM; with
    ``strict=True`` every candidate ``> threshold`` plus the row's best: SGLang), ``threshold``
    with ``eps`` (every candidate ``>= min(threshold, rowmax - eps)``: dInfer) or ``factor``
    (Fast-dLLM's factor-based rule). Ties go to the lowest index. The rules' exact statements and
    the kernels' algorithms are in docs/sampling.md; ``reference.select_transfer`` is the
    specification.

    Args:
        confidence: ``[batch, seq]`` float32 (float16/bfloat16 are upcast exactly), any strides.
        k: transfer count, an int ``>= 0`` or an integer ``[batch]`` (or ``[batch, 1]``) tensor;
            ``k >=`` the number of candidates transfers all of them. On CUDA a negative entry of
            a tensor transfers nothing (a check would synchronise); elsewhere it is an error.
        threshold: confidence threshold (rounded to float32, as torch compares a float32 tensor
            with a Python float), not NaN; or a real ``[batch]`` (or ``[batch, 1]``, or one-element)
            tensor on the device of ``confidence``, one threshold per row, rounded to float32 and
            read where the kernel runs (no host sync, CUDA-graph safe). A tensor's entries are not
            checked: every comparison with a NaN entry is false, so that row commits only its
            best (rule ``threshold``) or nothing (with ``eps``); ``+inf`` commits only the best
            (with ``eps``: the candidates within ``eps`` of it); ``-inf`` commits every candidate.
        eps: with ``threshold``, the dInfer rule's distance to the row maximum, finite and ``>= 0``.
        factor: Fast-dLLM's factor, finite and ``> 0``.
        alg_temp: with ``k``, the temperature of Dream's Gumbel-top-k draw (``None`` or 0: the
            ``k`` best), finite and ``>= 0``.
        seed: Philox key of the ``alg_temp`` draws, an int in ``[-2**63, 2**64)`` or a
            one-element int64 tensor read where the kernel runs (no host sync; a captured CUDA
            graph sees its new value).
        offset: Philox offset, likewise; advance it every step.
        x: optional ``[batch, seq]`` int64 tokens, written in place: ``x[b, i] = x0[b, i]`` at the
            transferred positions and nowhere else. Its elements must not share memory.
        x0: the ``[batch, seq]`` int64 proposals, required with ``x``.
        strict: with ``threshold`` (and no ``eps``), commit ``confidence > threshold`` instead of
            ``>= threshold``; the row's best is still always committed.

    Returns:
        The ``[batch, seq]`` bool transfer mask.

    Examples:
        >>> import torch, diffusion_kernels as dk
        >>> conf = torch.tensor([[0.9, 0.2, float("-inf"), 0.95], [0.1, 0.3, 0.2, 0.4]])
        >>> dk.select_transfer(conf, k=2).tolist()
        [[True, False, False, True], [False, True, False, True]]
        >>> dk.select_transfer(conf, threshold=0.92).tolist()  # each row keeps at least its best
        [[False, False, False, True], [False, False, False, True]]
        >>> dk.select_transfer(conf, threshold=torch.tensor([0.9, 0.25]), strict=True).tolist()
        [[False, False, False, True], [False, True, False, True]]
        >>> x, x0 = torch.full((2, 4), 99), torch.arange(8).reshape(2, 4)
        >>> _ = dk.select_transfer(conf, k=1, x=x, x0=x0)
        >>> x.tolist()
        [[99, 99, 99, 3], [99, 99, 99, 7]]
    """
    if not _is_compiling():
        # the arguments as given, in one call: None where they need the normalisation below, or
        # where the dispatcher could route the call elsewhere (ops/fast_path.h)
        mask = _direct(confidence, k, threshold, eps, factor, alg_temp, seed, offset, x, x0, strict)
        if mask is not None:
            return mask
    return _op(*select_transfer_args(confidence, k=k, threshold=threshold, eps=eps, factor=factor,
                                     alg_temp=alg_temp, seed=seed, offset=offset, x=x, x0=x0, strict=strict))


def _count_arg(k, batch: int):
    """k as (tensor or None, int): a Python int, a 0-d tensor, or a [batch] / [batch, 1] tensor."""
    if isinstance(k, torch.Tensor):
        if k.is_floating_point() or k.is_complex() or k.dtype == torch.bool:
            raise TypeError(f"diffusion_kernels: argument 'k' must be an int or an integer [batch] tensor, got {k.dtype}")
        if k.dim() == 2 and k.shape[1] == 1:  # Fast-dLLM's mask_index.sum(dim=1, keepdim=True)
            k = k[:, 0]
        if k.dim() == 0:
            k = k.expand(batch)
        if k.dtype != torch.int64:
            k = k.to(torch.int64)
        return k, 0
    return None, int64_arg(k, "k")


def select_transfer_args(confidence, *, k=None, threshold=None, eps=None, factor=None, alg_temp=None,
                         seed=0, offset=0, x=None, x0=None, strict=False) -> tuple:
    """The op's positional arguments for :func:`select_transfer`'s keyword form, every form the
    function takes normalised, with errors naming the argument (the op itself checks the values)."""
    if not isinstance(confidence, torch.Tensor):
        raise TypeError(f"diffusion_kernels: argument 'confidence' must be a tensor, got {type(confidence).__name__}")
    dtype = confidence.dtype
    if dtype is not _FLOAT32 and (dtype is _FLOAT16 or dtype is _BFLOAT16):  # `is`: `in` a tuple calls dtype __eq__
        confidence = confidence.float()
    seed_t = offset_t = None
    if seed.__class__ is not int or not INT64_MIN <= seed <= INT64_MAX:
        seed_t, seed = key_arg(seed, "seed")
    if offset.__class__ is not int or not INT64_MIN <= offset <= INT64_MAX:
        offset_t, offset = key_arg(offset, "offset")
    if x is not None:
        token_ids_arg(x, "x")
        if x0 is not None:
            token_ids_arg(x0, "x0")
        # contiguous x and x0: the op checks their overlap itself, exactly and without Python calls
        if not x.is_contiguous() or x0 is None or not x0.is_contiguous():
            written_arg(x, "x", *(() if x0 is None else (("x0", x0),)))
    elif x0 is not None:
        token_ids_arg(x0, "x0")
    if strict is not False and (strict is not True or threshold is None or eps is not None):
        if strict.__class__ is not bool:
            raise TypeError(f"diffusion_kernels: argument 'strict' must be a bool, got {type(strict).__name__}")
        raise ValueError("diffusion_kernels: argument 'strict' is only used with 'threshold' (without 'eps')")
    if k is not None and threshold is None and factor is None:
        if eps is not None:
            raise ValueError("diffusion_kernels: argument 'eps' is only used with 'threshold'")
        if k.__class__ is int and INT64_MIN <= k <= INT64_MAX:
            k_tensor, k_value = None, k
        else:
            k_tensor, k_value = _count_arg(k, confidence.shape[0] if confidence.dim() > 0 else 0)
        return (confidence, "topk", k_tensor, k_value, 0.0, 0.0, 0.0,
                0.0 if alg_temp is None else float_arg(alg_temp, "alg_temp"), seed, offset, x, x0, seed_t, offset_t,
                None, False)
    given = [name for name, v in (("k", k), ("threshold", threshold), ("factor", factor)) if v is not None]
    if len(given) != 1:
        raise ValueError("diffusion_kernels: select_transfer takes exactly one of 'k', 'threshold' or 'factor', "
                         f"got {given or 'none'}")
    if alg_temp is not None:
        raise ValueError("diffusion_kernels: argument 'alg_temp' is only used with 'k'")
    if threshold is not None:
        threshold_t = None
        if isinstance(threshold, torch.Tensor):
            threshold_t, threshold = _threshold_rows(threshold, confidence.shape[0] if confidence.dim() > 0 else 0)
        else:
            threshold = float_arg(threshold, "threshold")
        if eps is None:
            return (confidence, "threshold", None, 0, threshold, 0.0, 0.0, 0.0, seed, offset, x, x0, seed_t, offset_t,
                    threshold_t, strict)
        return (confidence, "threshold_rowmax", None, 0, threshold, float_arg(eps, "eps"), 0.0, 0.0, seed, offset, x,
                x0, seed_t, offset_t, threshold_t, False)
    if eps is not None:
        raise ValueError("diffusion_kernels: argument 'eps' is only used with 'threshold'")
    return (confidence, "factor", None, 0, 0.0, 0.0, float_arg(factor, "factor"), 0.0, seed, offset, x, x0, seed_t,
            offset_t, None, False)


def _threshold_rows(threshold: torch.Tensor, batch: int):
    """A per-row threshold tensor: [batch], [batch, 1] or one element, as float32 [batch]."""
    if threshold.dim() == 2 and threshold.shape[1] == 1 and threshold.numel() != 1:
        threshold = threshold[:, 0]
    return float_row_arg(threshold, "threshold", batch)


@torch.library.register_fake("diffusion_kernels::select_transfer")
def _select_transfer_fake(confidence, rule, k, k_value, threshold, eps, factor, alg_temp, seed, offset, x, x0,
                          seed_tensor=None, offset_tensor=None, threshold_tensor=None, strict=False):
    torch._check(confidence.dim() == 2, lambda: f"'confidence' must be [batch, seq], got {tuple(confidence.shape)}")
    torch._check(confidence.dtype == torch.float32, lambda: f"'confidence' must be float32, got {confidence.dtype}")
    torch._check(rule in ("topk", "threshold", "threshold_rowmax", "factor"), lambda: f"unknown rule '{rule}'")
    if k is not None:
        torch._check(k.dim() == 1 and k.shape[0] == confidence.shape[0], lambda: "'k' must be [batch]")
        torch._check(k.device == confidence.device, lambda: "'k' must be on the same device as 'confidence'")
    if threshold_tensor is not None:
        torch._check(threshold_tensor.shape == (confidence.shape[0],) and threshold_tensor.dtype == torch.float32,
                     lambda: "'threshold' must be a float32 [batch] tensor")
        torch._check(threshold_tensor.device == confidence.device,
                     lambda: "'threshold' must be on the same device as 'confidence'")
    torch._check(not strict or rule == "threshold", lambda: "'strict' is only used by rule 'threshold'")
    torch._check((x is None) == (x0 is None), lambda: "'x' and 'x0' go together")
    for name, t in (("seed", seed_tensor), ("offset", offset_tensor)):
        if t is not None:
            torch._check(t.numel() == 1 and t.dtype == torch.int64, lambda: f"'{name}' must be a one-element int64 tensor")
    for name, t in (("x", x), ("x0", x0)):
        if t is not None:
            torch._check(t.shape == confidence.shape, lambda: f"'{name}' must match 'confidence'")
            torch._check(t.dtype == torch.int64, lambda: f"'{name}' must be int64")
            torch._check(t.device == confidence.device, lambda: f"'{name}' must be on the same device as 'confidence'")
    return torch.empty(confidence.shape, dtype=torch.bool, device=confidence.device)
