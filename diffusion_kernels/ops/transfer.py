"""Transfer selection: which masked positions a dLLM sampler commits at this step."""
import torch

from ._args import INT64_MAX, INT64_MIN, int64_arg, key_arg

__all__ = ["select_transfer"]

_UPCAST = (torch.float16, torch.bfloat16)
_op = torch.ops.diffusion_kernels.select_transfer.default  # resolved once: called every step


def _count_arg(k, batch: int):
    """k as (tensor or None, int): a Python int, a 0-d tensor, or a [batch] / [batch, 1] tensor."""
    if isinstance(k, torch.Tensor):
        if k.dim() == 2 and k.shape[1] == 1:  # Fast-dLLM's mask_index.sum(dim=1, keepdim=True)
            k = k[:, 0]
        if k.dim() == 0:
            k = k.expand(batch)
        if k.dtype in (torch.int8, torch.int16, torch.int32, torch.uint8):
            k = k.to(torch.int64)
        return k, 0
    return None, int64_arg(k, "k")


def select_transfer(confidence: torch.Tensor, *, k=None, threshold=None, eps=None, factor=None,
                    alg_temp=None, seed: int = 0, offset: int = 0, x=None, x0=None) -> torch.Tensor:
    """Pick the positions to commit (transfer) in each row, in one launch and without host sync.

    Candidates are the positions with finite ``confidence`` (the samplers put ``-inf`` at
    positions that are not masked or outside the current block). Exactly one rule is chosen:

    * ``k=`` (int or ``[batch]`` int tensor): the ``k`` best candidates of each row (LLaDA
      low-confidence and random remasking, Dream ``maskgit_plus``/``topk_margin``/``entropy``).
      ``k = 0`` transfers none; ``k >=`` the number of candidates transfers all of them. Ties go
      to the lowest index. With ``alg_temp > 0`` (Dream) the ``k`` positions are instead drawn
      without replacement from ``softmax(confidence / alg_temp)`` over the candidates, by
      Gumbel-top-k with the package's Philox generator keyed by ``(seed, offset)``: row ``b``,
      position ``i`` uses the draw at (row ``b``, column ``i``), so CPU and CUDA draw alike.
    * ``threshold=tau`` (Fast-dLLM): every candidate with confidence ``>= tau``, plus the row's
      best candidate, so each row that has a candidate transfers at least one. ``tau`` is rounded
      to float32, as when torch compares a float32 tensor with a Python float. (Fast-dLLM's code
      removes candidates ``< tau``, i.e. keeps ``>= tau``; we follow the code.)
    * ``threshold=tau, eps=e`` (dInfer): every candidate with confidence
      ``>= min(tau, rowmax - e)`` in float32 arithmetic (dInfer uses ``e = 1e-5``), which keeps
      everything within ``e`` of the row maximum. dInfer also clamps the bound below at -1000,
      a guard for rows without candidates that this rule does not need.
    * ``factor=f`` (Fast-dLLM factor-based decoding, the rule as written in the paper): with the
      candidates sorted by confidence ``c_1 >= c_2 >= ...``, transfer the first ``n`` where ``n``
      is the largest with ``(n + 1) * (1 - c_n) < f``, and at least 1 when the row has a
      candidate; computed in float64 (``c_n`` exact from float32). For ``f > 0`` the left-hand
      side, once ``>= f``, stays ``>= f`` for every later rank, so the kernels scan for the first
      failing rank.
      Fast-dLLM's code (``get_transfer_index_dynamic``) differs in one case: when only the
      last-ranked candidate fails, it transfers it anyway (an off-by-one); we do not.

    Args:
        confidence: ``[batch, seq]`` float32 (float16/bfloat16 are upcast exactly), any strides.
        x, x0: optional ``[batch, seq]`` int64. When given, ``x[b, i] = x0[b, i]`` is written in
            place at the transferred positions and nowhere else.
        seed, offset: Philox key of the ``alg_temp`` draws (advance ``offset`` every step): ints,
            or one-element int64 tensors on the confidence's device, read by the kernel where it
            runs (no host sync; a captured CUDA graph picks up their new values).

    Returns:
        ``[batch, seq]`` bool transfer mask.

    On CUDA, negative entries of a ``k`` tensor transfer nothing (checking them would need a host
    sync); on CPU they raise.
    """
    return _op(*select_transfer_args(confidence, k=k, threshold=threshold, eps=eps, factor=factor,
                                     alg_temp=alg_temp, seed=seed, offset=offset, x=x, x0=x0))


def select_transfer_args(confidence, *, k=None, threshold=None, eps=None, factor=None, alg_temp=None,
                         seed=0, offset=0, x=None, x0=None) -> tuple:
    """The op's positional arguments for :func:`select_transfer`'s keyword form. Called at every
    sampler step, so the common cases take few branches (the op itself checks the values)."""
    if confidence.dtype in _UPCAST:
        confidence = confidence.float()
    seed_t = offset_t = None
    if seed.__class__ is not int or not INT64_MIN <= seed <= INT64_MAX:
        seed_t, seed = key_arg(seed, "seed")
    if offset.__class__ is not int or not INT64_MIN <= offset <= INT64_MAX:
        offset_t, offset = key_arg(offset, "offset")
    if k is not None and threshold is None and factor is None:
        if eps is not None:
            raise ValueError("diffusion_kernels: argument 'eps' is only used with 'threshold'")
        if k.__class__ is int and INT64_MIN <= k <= INT64_MAX:
            k_tensor, k_value = None, k
        else:
            k_tensor, k_value = _count_arg(k, confidence.shape[0] if confidence.dim() > 0 else 0)
        return (confidence, "topk", k_tensor, k_value, 0.0, 0.0, 0.0, float(alg_temp) if alg_temp else 0.0,
                seed, offset, x, x0, seed_t, offset_t)
    given = [name for name, v in (("k", k), ("threshold", threshold), ("factor", factor)) if v is not None]
    if len(given) != 1:
        raise ValueError("diffusion_kernels: select_transfer takes exactly one of 'k', 'threshold' or 'factor', "
                         f"got {given or 'none'}")
    if alg_temp is not None:
        raise ValueError("diffusion_kernels: argument 'alg_temp' is only used with 'k'")
    if threshold is not None:
        if eps is None:
            return (confidence, "threshold", None, 0, float(threshold), 0.0, 0.0, 0.0, seed, offset, x, x0,
                    seed_t, offset_t)
        return (confidence, "threshold_rowmax", None, 0, float(threshold), float(eps), 0.0, 0.0, seed, offset, x, x0,
                seed_t, offset_t)
    if eps is not None:
        raise ValueError("diffusion_kernels: argument 'eps' is only used with 'threshold'")
    return (confidence, "factor", None, 0, 0.0, 0.0, float(factor), 0.0, seed, offset, x, x0, seed_t, offset_t)


@torch.library.register_fake("diffusion_kernels::select_transfer")
def _select_transfer_fake(confidence, rule, k, k_value, threshold, eps, factor, alg_temp, seed, offset, x, x0,
                          seed_tensor=None, offset_tensor=None):
    torch._check(confidence.dim() == 2, lambda: f"'confidence' must be [batch, seq], got {tuple(confidence.shape)}")
    torch._check(confidence.dtype == torch.float32, lambda: f"'confidence' must be float32, got {confidence.dtype}")
    torch._check(rule in ("topk", "threshold", "threshold_rowmax", "factor"), lambda: f"unknown rule '{rule}'")
    if k is not None:
        torch._check(k.dim() == 1 and k.shape[0] == confidence.shape[0], lambda: "'k' must be [batch]")
        torch._check(k.device == confidence.device, lambda: "'k' must be on the same device as 'confidence'")
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
