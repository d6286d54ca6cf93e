"""Masked softmax-confidence with sampling: the per-step proposal of a dLLM sampler."""
from typing import Optional, Sequence, Tuple, Union

import torch

from .. import _C
from ._args import INT64_MAX, INT64_MIN, float_row_arg, int64_arg, int_row_arg, key_arg, suppress_ids_arg, token_ids_arg

__all__ = ["masked_confidence"]

_KINDS = ("prob", "margin", "neg_entropy", "random")
_Tensor = torch.Tensor
_is_compiling = torch.compiler.is_compiling
_op = torch.ops.diffusion_kernels.masked_confidence.default  # resolved once: called every step
_direct = _C.masked_confidence_direct


def masked_confidence(
    logits: torch.Tensor,
    x: torch.Tensor,
    mask_id: int,
    *,
    temperature: Union[float, torch.Tensor] = 0.0,
    top_p: Optional[Union[float, torch.Tensor]] = None,
    top_k: Optional[Union[int, torch.Tensor]] = None,
    confidence: str = "prob",
    confidence_from: str = "sampling",
    block_start: Union[int, torch.Tensor] = 0,
    block_end: Optional[Union[int, torch.Tensor]] = None,
    suppress_ids: Optional[Union[Sequence[int], torch.Tensor]] = None,
    seed: Union[int, torch.Tensor] = 0,
    offset: Union[int, torch.Tensor] = 0,
    return_lse: bool = False,
    positions: str = "masked",
    prev_token_penalty: Union[float, torch.Tensor] = 0.0,
) -> Union[Tuple[torch.Tensor, torch.Tensor], Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Token proposal and confidence at the masked positions, in one pass over the vocabulary.

    The per-step work of every dLLM sampler (LLaDA, Fast-dLLM, Dream, dInfer), computed only for
    the positions that need it: masked (``x == mask_id``; every position with ``positions="all"``)
    and inside ``[block_start, block_end)``. Each such position gets the argmax (``temperature == 0``) or a Gumbel-max sample of the
    tempered, top-p/top-k filtered softmax (Philox noise keyed by ``seed``, ``offset``: the same
    tokens on CPU and CUDA), and a confidence of that proposal. The exact semantics, non-finite
    logits and the CPU/CUDA algorithms are in docs/sampling.md; ``reference.masked_confidence`` is
    the specification.

    Args:
        logits: ``[batch, seq, vocab]`` float32, float16 or bfloat16; any batch/row strides, the
            vocabulary contiguous. Or the engines' flat layout ``[batch * seq, vocab]`` (row
            ``b * seq + l`` is position ``(b, l)`` of ``x``), read in place through its row stride.
        x: ``[batch, seq]`` int64 current tokens.
        mask_id: the ``[MASK]`` token id.
        temperature: ``T >= 0`` (0: argmax), a number or a ``[batch]`` tensor. A ``T`` above 2**126
            (``+inf`` in a tensor included) counts as 2**126; in a tensor, ``T <= 0`` or NaN is the
            argmax.
        top_p: nucleus filter in ``[0, 1]`` (``None`` or 1: off), a number or a ``[batch]``
            tensor; in a tensor NaN is off and values below 0 count as 0 (keep the maximum).
        top_k: keep the ``top_k`` largest (``None``, 0 or ``>= vocab``: off), an int or an integer
            ``[batch]`` tensor.
        confidence: ``"prob"`` (probability of the proposal), ``"margin"`` (top-1 minus top-2),
            ``"neg_entropy"`` (``sum p log p``) or ``"random"`` (a uniform draw).
        confidence_from: ``"sampling"`` (the filtered, tempered distribution: Dream) or
            ``"logits"`` (the plain softmax: LLaDA).
        block_start: first computed position, an int or an integer ``[batch]`` tensor.
        block_end: end of the computed positions (``None``: the sequence end), likewise.
        suppress_ids: vocabulary ids whose logits count as ``-inf`` (LLaDA's ``logits_eos_inf``):
            a sequence of ints in ``[0, vocab)`` or a 1-D integer tensor (on CUDA, tensor ids
            outside ``[0, vocab)`` are ignored rather than checked, which would synchronise).
        seed: Philox key, an int in ``[-2**63, 2**64)`` or a one-element int64 tensor read on the
            device (CUDA-graph safe).
        offset: Philox offset, likewise; advance it between steps.
        return_lse: also return the per-position log-sum-exp of the logits.
        positions: ``"masked"`` (only ``x == mask_id``) or ``"all"``: every position of the block
            gets a proposal and a confidence whatever ``x`` holds (token-to-token editing:
            LLaDA2.1, SGLang ``JointThreshold``).
        prev_token_penalty: ``lambda``, a finite number ``>= 0`` (0: off) or a real ``[batch]``
            tensor: at a computed position ``l >= 1`` of row ``b`` the logit of token ``x[b, l -
            1]`` is lowered by ``lambda`` (in float32) before anything reads it (proposal,
            confidence, filters, lse); the logits are not written (SGLang's ``penalty_lambda``).
            In a tensor an entry that is not ``> 0`` (negative, NaN) is off, as is a previous token
            outside ``[0, vocab)``; ``+inf`` removes the token (its logit becomes ``-inf``).

    Returns:
        ``(x0, confidence)``, or ``(x0, confidence, lse)`` with ``return_lse``, each ``[batch,
        seq]``: ``x0`` int64 (``x`` where not computed), ``confidence`` float32 and ``lse``
        float32 (``-inf`` where not computed).

    Examples:
        >>> import torch, diffusion_kernels as dk
        >>> logits, x = torch.randn(2, 8, 100), torch.full((2, 8), 99)
        >>> x0, conf = dk.masked_confidence(logits, x, 99)  # LLaDA greedy
        >>> bool((x0 == logits.argmax(-1)).all())
        True
        >>> x0, conf = dk.masked_confidence(logits, x, 99, temperature=0.2, top_p=0.95,
        ...                                 confidence="neg_entropy", seed=1234, offset=0)  # Dream
        >>> tuple(conf.shape)
        (2, 8)
        >>> flat = logits.reshape(16, 100)  # SGLang's [batch * block, vocab], every position
        >>> x0, conf = dk.masked_confidence(flat, x0, 99, positions="all", prev_token_penalty=1.0)
        >>> tuple(x0.shape), bool(torch.isfinite(conf).all())
        ((2, 8), True)
    """
    if not _is_compiling():
        # the options as given, in one call: None where they need the normalisation below
        out = _direct(logits, x, mask_id, temperature, top_p, top_k, confidence, confidence_from, block_start,
                      block_end, suppress_ids, seed, offset, return_lse, positions, prev_token_penalty)
        if out is not None:
            return out
    return _masked_confidence(
        _op, logits, x, mask_id, temperature=temperature, top_p=top_p, top_k=top_k, confidence=confidence,
        confidence_from=confidence_from, block_start=block_start, block_end=block_end, suppress_ids=suppress_ids,
        seed=seed, offset=offset, return_lse=return_lse, positions=positions, prev_token_penalty=prev_token_penalty,
        direct=_direct)


def _masked_confidence(op, logits, x, mask_id, *, temperature=0.0, top_p=None, top_k=None, confidence="prob",
                       confidence_from="sampling", block_start=0, block_end=None, suppress_ids=None, seed=0,
                       offset=0, return_lse=False, positions="masked", prev_token_penalty=0.0, direct=None):
    """:func:`masked_confidence` run by ``op`` (the registered op, or its emulated CUDA twin), or by
    ``direct`` (``_C.masked_confidence_direct``: the op without the dispatcher, see ops/fast_path.h)
    where that does not decline. The options are normalised here (tensors of other dtypes or
    shapes, lists of ids, keys past int64) with errors naming them; the op checks their values."""
    if logits.__class__ is not _Tensor and not isinstance(logits, _Tensor):
        raise TypeError(f"diffusion_kernels: argument 'logits' must be a tensor, got {type(logits).__name__}")
    token_ids_arg(x, "x")
    if confidence not in _KINDS:
        raise ValueError(f"diffusion_kernels: argument 'confidence' must be one of {_KINDS}, got {confidence!r}")
    if confidence_from != "sampling" and confidence_from != "logits":
        raise ValueError(f"diffusion_kernels: argument 'confidence_from' must be 'sampling' or 'logits', got {confidence_from!r}")
    if positions != "masked" and positions != "all":
        raise ValueError(f"diffusion_kernels: argument 'positions' must be 'masked' or 'all', got {positions!r}")
    rows = lambda: x.shape[0] if x.dim() > 0 else 0  # noqa: E731  only tensor options need x's batch
    if prev_token_penalty.__class__ is float:
        pen, pen_val = None, prev_token_penalty
    else:
        pen, pen_val = float_row_arg(prev_token_penalty, "prev_token_penalty", rows())
    if temperature.__class__ is float:
        t, t_val = None, temperature
    else:
        t, t_val = float_row_arg(temperature, "temperature", rows())
    if top_p is None:
        p, p_val = None, 1.0
    else:
        p, p_val = float_row_arg(top_p, "top_p", rows())
    if top_k is None:
        k, k_val = None, 0
    else:
        k, k_val = int_row_arg(top_k, "top_k", rows())
    if block_start.__class__ is int and INT64_MIN <= block_start <= INT64_MAX:
        bs, bs_val = None, block_start
    else:
        bs, bs_val = int_row_arg(block_start, "block_start", rows())
    if block_end is None:
        be, be_val = None, INT64_MAX
    elif block_end.__class__ is int and INT64_MIN <= block_end <= INT64_MAX:
        be, be_val = None, block_end
    else:
        be, be_val = int_row_arg(block_end, "block_end", rows())
    if seed.__class__ is int and INT64_MIN <= seed <= INT64_MAX:
        s, s_val = None, seed
    else:
        s, s_val = key_arg(seed, "seed")
    if offset.__class__ is int and INT64_MIN <= offset <= INT64_MAX:
        o, o_val = None, offset
    else:
        o, o_val = key_arg(offset, "offset")
    if suppress_ids is None:
        ids = None
    else:
        ids = suppress_ids_arg(suppress_ids, "suppress_ids", logits.shape[-1] if logits.dim() > 0 else 0,
                               logits.device)
    if mask_id.__class__ is not int or not INT64_MIN <= mask_id <= INT64_MAX:
        mask_id = int64_arg(mask_id, "mask_id")
    from_logits, all_positions = confidence_from == "logits", positions == "all"
    out = None
    if direct is not None and not _is_compiling():
        out = direct(logits, x, mask_id, t_val if t is None else t, p_val if p is None else p,
                     k_val if k is None else k, confidence, confidence_from, bs_val if bs is None else bs,
                     be_val if be is None else be, ids, s_val if s is None else s, o_val if o is None else o,
                     return_lse, positions, pen_val if pen is None else pen)
        if out is not None:
            return out
    if out is None:
        out = op(logits, x, mask_id, temperature=t, temperature_value=t_val, top_p=p, top_p_value=p_val, top_k=k,
                 top_k_value=k_val, confidence=confidence, confidence_from_logits=from_logits, block_start=bs,
                 block_start_value=bs_val, block_end=be, block_end_value=be_val, suppress_ids=ids, seed=s,
                 seed_value=s_val, offset=o, offset_value=o_val, return_lse=return_lse,
                 all_positions=all_positions, prev_token_penalty=pen, prev_token_penalty_value=pen_val)
    return out if return_lse else out[:2]


@torch.library.register_fake("diffusion_kernels::masked_confidence")
def _masked_confidence_fake(logits, x, mask_id, *, temperature=None, temperature_value=0.0, top_p=None,
                            top_p_value=1.0, top_k=None, top_k_value=0, confidence="prob",
                            confidence_from_logits=False, block_start=None, block_start_value=0, block_end=None,
                            block_end_value=2**63 - 1, suppress_ids=None, seed=None, seed_value=0, offset=None,
                            offset_value=0, return_lse=False, all_positions=False, prev_token_penalty=None,
                            prev_token_penalty_value=0.0):
    torch._check(logits.dim() in (2, 3),
                 lambda: f"'logits' must be [batch, seq, vocab] or [batch * seq, vocab], got {tuple(logits.shape)}")
    torch._check(x.dim() == 2, lambda: f"'x' must be [batch, seq], got {tuple(x.shape)}")
    torch._check(x.device == logits.device,
                 lambda: f"'x' must be on the same device as 'logits' ({logits.device}), got {x.device}")
    torch._check(x.dtype == torch.int64, lambda: f"'x' must be int64, got {x.dtype}")
    torch._check(logits.dtype in (torch.float32, torch.float16, torch.bfloat16),
                 lambda: f"'logits' must be float32, float16 or bfloat16, got {logits.dtype}")
    if logits.dim() == 2:
        torch._check(logits.shape[0] == x.shape[0] * x.shape[1],
                     lambda: "flat 'logits' must have one row per element of 'x'")
    else:
        torch._check(x.shape[0] == logits.shape[0] and x.shape[1] == logits.shape[1],
                     lambda: "'x' must match logits' [batch, seq]")
    for name, t in (("prev_token_penalty", prev_token_penalty), ("temperature", temperature), ("top_p", top_p), ("top_k", top_k), ("block_start", block_start),
                    ("block_end", block_end), ("suppress_ids", suppress_ids), ("seed", seed), ("offset", offset)):
        torch._check(t is None or t.device == logits.device,
                     lambda: f"'{name}' must be on the same device as 'logits' ({logits.device}), got {t.device}")
    conf = torch.empty(x.shape, dtype=torch.float32, device=x.device)
    lse = torch.empty(x.shape if return_lse else (0,), dtype=torch.float32, device=x.device)
    return torch.empty_like(x), conf, lse
