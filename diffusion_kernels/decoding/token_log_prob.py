"""Log-probability of given tokens under a step's logits, with no ``[positions, vocab]`` tensor:
the vocabulary pass is ``masked_confidence``'s log-sum-exp, the rest one logit per position."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

from ..ops import masked_confidence
from .proposal import Proposal, ids_tensor

__all__ = ["token_log_prob", "proposal_log_prob"]


def _check_ids(ids: Sequence[int], vocab: int) -> None:
    """Python ints in ``[0, vocab)`` (a tensor of them goes to the op unchecked on CUDA)."""
    for i in ids:
        if isinstance(i, bool) or not isinstance(i, int):
            raise TypeError(f"diffusion_kernels: argument 'suppress_ids' must hold integer ids, got {type(i).__name__} {i!r}")
        if not 0 <= i < vocab:
            raise ValueError(f"diffusion_kernels: argument 'suppress_ids' must hold ids in [0, {vocab}), got {i}")


def token_log_prob(logits: torch.Tensor, tokens: torch.Tensor, where: torch.Tensor, *,
                   suppress_ids: Optional[Sequence[int]] = None) -> torch.Tensor:
    """``log softmax(logits)[b, i, tokens[b, i]]`` at the positions ``where`` is True.

    Args:
        logits: ``[batch, seq, vocab]`` (any batch/row strides, the vocabulary contiguous).
        tokens: ``[batch, seq]`` int64 token ids (read only where ``where`` holds).
        where: ``[batch, seq]`` bool, the positions to compute.
        suppress_ids: ids removed from the softmax (the proposal's ``suppress_ids``): the
            distribution the sampler proposed from, at temperature 1 and without filters.

    Returns:
        ``[batch, seq]`` float32: the log-probabilities, ``0`` where ``where`` is False.

    Examples:
        >>> logits, tokens = torch.randn(1, 3, 5), torch.tensor([[4, 0, 2]])
        >>> where = torch.tensor([[True, False, True]])
        >>> lp = token_log_prob(logits, tokens, where)
        >>> bool(torch.allclose(lp[0, 2], logits.log_softmax(-1)[0, 2, 2]))
        True
    """
    # masked_confidence computes where x == mask_id: key 0 marks the wanted positions.
    key = (~where).to(torch.int64)
    suppress = None
    if suppress_ids:
        _check_ids(suppress_ids, logits.shape[-1] if isinstance(logits, torch.Tensor) and logits.dim() else 0)
        suppress = ids_tensor(suppress_ids, logits.device)
    _, _, lse = masked_confidence(logits, key, 0, confidence="prob", confidence_from="logits", suppress_ids=suppress,
                                  return_lse=True)
    picked = logits.gather(-1, torch.where(where, tokens, 0).unsqueeze(-1)).squeeze(-1).float()
    return torch.where(where, picked - lse, 0.0)


def proposal_log_prob(logits: torch.Tensor, x: torch.Tensor, where: torch.Tensor, proposal: Proposal, *,
                      seed: Union[int, torch.Tensor] = 0, offset: Union[int, torch.Tensor] = 0) -> torch.Tensor:
    """Log-probability of the tokens a step committed (``x`` at ``where``) under the distribution
    the step proposed them from.

    At ``temperature > 0``: the tempered, top-p/top-k filtered softmax the token was drawn from
    (``masked_confidence``'s ``confidence_from='sampling'`` probability, re-drawn with the step's
    Philox key, which gives the same token). At ``temperature == 0`` (argmax): the untempered
    softmax (:func:`token_log_prob`), the policy RL scores greedy runs with. ``suppress_ids``
    are outside the softmax in both cases.

    Args:
        logits: ``[batch, seq, vocab]``, the step's logits, as passed to :func:`decode_step`.
        x: ``[batch, seq]`` tokens after the step; ``where``: ``[batch, seq]`` bool, committed.
        proposal: the step's :class:`Proposal`; ``seed``, ``offset``: the step's Philox key.

    Returns:
        ``[batch, seq]`` float32, ``0`` where ``where`` is False.

    Examples:
        >>> from diffusion_kernels.decoding import TopK, decode_step
        >>> x, logits = torch.full((1, 4), 9), torch.randn(1, 4, 9)
        >>> p = Proposal(temperature=0.7)
        >>> moved = decode_step(logits, x, TopK(2), mask_id=9, proposal=p, seed=1, offset=3).transferred
        >>> lp = proposal_log_prob(logits, x, moved, p, seed=1, offset=3)
        >>> want = (logits / 0.7).log_softmax(-1).gather(-1, x.clamp(max=8)[..., None])[..., 0]
        >>> bool(torch.allclose(lp[moved], want[moved]))
        True
    """
    t = proposal.temperature
    if not isinstance(t, torch.Tensor) and t == 0:
        return token_log_prob(logits, x, where, suppress_ids=proposal.suppress_ids)
    key = (~where).to(torch.int64)
    suppress = None
    if proposal.suppress_ids:
        _check_ids(proposal.suppress_ids, logits.shape[-1] if isinstance(logits, torch.Tensor) and logits.dim() else 0)
        suppress = ids_tensor(proposal.suppress_ids, logits.device)
    _, prob = masked_confidence(logits, key, 0, temperature=t, top_p=proposal.top_p, top_k=proposal.top_k,
                                confidence="prob", confidence_from="sampling", suppress_ids=suppress, seed=seed,
                                offset=offset)
    return torch.where(where, prob.log(), 0.0)
