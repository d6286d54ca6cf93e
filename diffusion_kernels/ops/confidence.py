"""Masked softmax-confidence with sampling: the per-step proposal of a dLLM sampler."""
import torch

from ._args import float_row_arg, int64_arg, int_row_arg, key_arg

__all__ = ["masked_confidence"]

_KINDS = ("prob", "margin", "neg_entropy", "random")


def masked_confidence(logits: torch.Tensor, x: torch.Tensor, mask_id: int, *, temperature=0.0, top_p=None,
                      top_k=None, confidence: str = "prob", confidence_from: str = "sampling", block_start=0,
                      block_end=None, suppress_ids=None, seed=0, offset=0, return_lse: bool = False, _op=None):
    """Token proposal and confidence at the masked positions, in one pass over the vocabulary.

    The per-step work of every dLLM sampler (LLaDA, Fast-dLLM, Dream, dInfer), computed only for the
    rows that need it: masked (``x == mask_id``) and inside ``[block_start, block_end)``.

    For each such row, with logits ``l`` (float32 math; ``suppress_ids`` set to ``-inf`` first):

    1. **Distribution** ``z = l / T`` when ``T > 0``, else ``z = l`` (a ``T`` whose reciprocal
       overflows float32 counts as 0).
    2. **Filters, Dream's order and semantics**: ``top_p < 1`` keeps the smallest set of largest
       ``z`` whose probability exceeds ``top_p`` (always at least the maximum); then ``top_k`` in
       ``(0, vocab)`` keeps the ``top_k`` largest. Both keep every token tied with the last kept
       value (Dream's sort would keep an arbitrary subset of a tie). ``q`` = softmax of ``z`` over
       the kept set. Thresholds are found by a radix select over the float bits, never a sort.
    3. **Proposal** ``x0``: ``T == 0``: argmax of ``l`` (lowest index on ties). ``T > 0``: an
       exact sample of ``q`` by Gumbel-max, ``argmax(z_j + G(seed, offset, row, j))`` with Philox
       noise indexed by row ``b * seq + l`` and vocabulary id ``j`` (csrc/kernels/philox.cuh,
       mirrored in ``diffusion_kernels._philox``): the same seed gives the same tokens on CPU and
       CUDA, except where two perturbed scores lie within a few float32 ulps (different ``log``
       implementations); re-running with the same seed is bitwise reproducible.
    4. **Confidence** (``confidence=``), from ``q`` (``confidence_from="sampling"``, Dream's
       ``sample_tokens``) or from the plain ``softmax(l)`` (``"logits"``, LLaDA's
       ``low_confidence`` which gathers the untempered softmax):

       - ``"prob"``: probability of ``x0`` (LLaDA low_confidence / Dream maskgit_plus; at ``T == 0``
         without filters this is the max probability, the greedy pilot);
       - ``"margin"``: top-1 minus top-2 probability (Dream topk_margin);
       - ``"neg_entropy"``: ``sum p log p`` (Dream entropy; Dream adds 1e-10 inside the log, which
         changes the value by at most ``vocab * 1e-10 * 23``);
       - ``"random"``: a uniform (0, 1) draw from the same generator (column 2**33 of the row's
         stream; LLaDA's random remasking).

    Args:
        logits: ``[batch, seq, vocab]`` float32/float16/bfloat16, any batch/row strides, vocabulary
            contiguous.
        x: ``[batch, seq]`` int64 current tokens.
        mask_id: the ``[MASK]`` id.
        temperature, top_p, top_k, block_start, block_end: a number or a ``[batch]`` tensor on the
            logits' device (read by the kernel: CUDA-graph safe). Tensor values outside the ranges
            mean "off": ``T <= 0`` or NaN is the argmax, ``top_p >= 1`` or NaN and ``top_k <= 0``
            or ``>= vocab`` do not filter. Numbers must satisfy ``T >= 0``, ``0 <= top_p <= 1``,
            ``top_k >= 0``. ``block_end=None`` is the end of the sequence.
        confidence: ``"prob"``, ``"margin"``, ``"neg_entropy"`` or ``"random"``.
        confidence_from: ``"sampling"`` (Dream) or ``"logits"`` (LLaDA).
        suppress_ids: vocabulary ids whose logits count as ``-inf`` (LLaDA's ``logits_eos_inf``);
            a sequence of ints or a 1-D int64 tensor. On CUDA, ids outside ``[0, vocab)`` are
            ignored rather than checked (that would synchronise).
        seed, offset: Philox key, ints or one-element int64 tensors (CUDA-graph safe); advance
            ``offset`` between steps.
        return_lse: also return the per-row log-sum-exp of ``l`` (for likelihoods).

    Returns:
        ``(x0, confidence)`` or ``(x0, confidence, lse)``: ``x0`` int64 (``x`` at rows not
        computed), ``confidence`` float32 (``-inf`` at rows not computed), ``lse`` float32 (``-inf`` at
        rows not computed). A computed row whose logits are not all finite follows ``torch.argmax``
        and ``softmax`` whatever the options: with a NaN, the first NaN's index; all ``-inf``,
        index 0; a ``+inf`` maximum, the first ``+inf``; confidence NaN in all three cases.
    """
    batch = logits.shape[0]
    if confidence not in _KINDS:
        raise ValueError(f"diffusion_kernels: argument 'confidence' must be one of {_KINDS}, got {confidence!r}")
    if confidence_from not in ("sampling", "logits"):
        raise ValueError(f"diffusion_kernels: argument 'confidence_from' must be 'sampling' or 'logits', got {confidence_from!r}")
    t, t_val = float_row_arg(temperature, "temperature", batch)
    p, p_val = float_row_arg(1.0 if top_p is None else top_p, "top_p", batch)
    k, k_val = int_row_arg(0 if top_k is None else top_k, "top_k", batch)
    bs, bs_val = int_row_arg(block_start, "block_start", batch)
    be, be_val = int_row_arg(2**63 - 1 if block_end is None else block_end, "block_end", batch)
    if suppress_ids is not None and not isinstance(suppress_ids, torch.Tensor):
        suppress_ids = torch.tensor(list(suppress_ids), dtype=torch.int64, device=logits.device)
    s, s_val = key_arg(seed, "seed")
    o, o_val = key_arg(offset, "offset")
    op = torch.ops.diffusion_kernels.masked_confidence.default if _op is None else _op  # _op: the emulated twin
    x0, conf, lse = op(
        logits, x, int64_arg(mask_id, "mask_id"), temperature=t, temperature_value=t_val, top_p=p,
        top_p_value=p_val, top_k=k, top_k_value=k_val, confidence=confidence,
        confidence_from_logits=confidence_from == "logits", block_start=bs, block_start_value=bs_val,
        block_end=be, block_end_value=be_val, suppress_ids=suppress_ids, seed=s, seed_value=s_val, offset=o,
        offset_value=o_val, return_lse=return_lse)
    return (x0, conf, lse) if return_lse else (x0, conf)


@torch.library.register_fake("diffusion_kernels::masked_confidence")
def _masked_confidence_fake(logits, x, mask_id, *, temperature=None, temperature_value=0.0, top_p=None,
                            top_p_value=1.0, top_k=None, top_k_value=0, confidence="prob",
                            confidence_from_logits=False, block_start=None, block_start_value=0, block_end=None,
                            block_end_value=2**63 - 1, suppress_ids=None, seed=None, seed_value=0, offset=None,
                            offset_value=0, return_lse=False):
    torch._check(logits.dim() == 3, lambda: f"'logits' must be [batch, seq, vocab], got {tuple(logits.shape)}")
    torch._check(x.dim() == 2, lambda: f"'x' must be [batch, seq], got {tuple(x.shape)}")
    torch._check(x.device == logits.device,
                 lambda: f"'x' must be on the same device as 'logits' ({logits.device}), got {x.device}")
    torch._check(x.dtype == torch.int64, lambda: f"'x' must be int64, got {x.dtype}")
    torch._check(logits.dtype in (torch.float32, torch.float16, torch.bfloat16),
                 lambda: f"'logits' must be float32, float16 or bfloat16, got {logits.dtype}")
    torch._check(x.shape[0] == logits.shape[0] and x.shape[1] == logits.shape[1],
                 lambda: "'x' must match logits' [batch, seq]")
    for name, t in (("temperature", temperature), ("top_p", top_p), ("top_k", top_k), ("block_start", block_start),
                    ("block_end", block_end), ("suppress_ids", suppress_ids), ("seed", seed), ("offset", offset)):
        torch._check(t is None or t.device == logits.device,
                     lambda: f"'{name}' must be on the same device as 'logits' ({logits.device}), got {t.device}")
    conf = torch.empty(x.shape, dtype=torch.float32, device=x.device)
    lse = torch.empty(x.shape if return_lse else (0,), dtype=torch.float32, device=x.device)
    return torch.empty_like(x), conf, lse
