"""The proposal half of a step: a token and a confidence for every masked position of the block."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple, Union

import torch

from ..ops import masked_confidence

__all__ = ["Proposal", "propose"]

_CONFIDENCES = ("prob", "margin", "neg_entropy", "random")


@dataclass(frozen=True)
class Proposal:
    """How tokens and confidences are proposed (the options of :func:`~diffusion_kernels.masked_confidence`).

    Attributes:
        temperature, top_p, top_k: proposal sampling (0: argmax). LLaDA ``add_gumbel_noise``
            (Gumbel-max, here with the package's Philox generator); Dream ``sample_tokens``'s
            ``top_p_logits``/``top_k_logits`` filters.
        confidence: ``'prob'`` (LLaDA ``low_confidence``, Dream ``maskgit_plus``), ``'margin'``
            (Dream ``topk_margin``), ``'neg_entropy'`` (Dream ``entropy``) or ``'random'`` (LLaDA
            ``remasking='random'``).
        confidence_from: ``'logits'`` (LLaDA: the untempered softmax) or ``'sampling'`` (Dream: the
            tempered, filtered distribution); ``None``: LLaDA's for ``'prob'``, Dream's otherwise.
        suppress_ids: ids never proposed (LLaDA ``logits_eos_inf``).
        renormalize_without: ids removed from the confidence softmax only (LLaDA
            ``confidence_eos_eot_inf``): a position proposing one gets confidence 0, the others
            ``p(x0) / (1 - p(ids))``. Needs ``confidence='prob'`` from the logits.
        positions: ``'masked'`` (only masked positions are proposed) or ``'all'`` (every position
            of the block, whatever it holds: token-to-token editing, LLaDA2.1 / SGLang
            ``JointThreshold``).
        prev_token_penalty: SGLang's ``penalty_lambda``: the logit of the token at the previous
            position is lowered by this much (a number ``>= 0``, 0: off, or a ``[batch]`` tensor).
    """

    temperature: Union[float, torch.Tensor] = 0.0
    top_p: Optional[Union[float, torch.Tensor]] = None
    top_k: Optional[Union[int, torch.Tensor]] = None
    confidence: str = "prob"
    confidence_from: Optional[str] = None
    suppress_ids: Optional[Tuple[int, ...]] = None
    renormalize_without: Optional[Tuple[int, ...]] = None
    positions: str = "masked"
    prev_token_penalty: Union[float, torch.Tensor] = 0.0

    def __post_init__(self):
        _check_number(self.temperature, "temperature", lambda t: t >= 0, ">= 0")
        if self.top_p is not None:
            _check_number(self.top_p, "top_p", lambda p: 0 <= p <= 1, "in [0, 1]")
        if self.top_k is not None and not isinstance(self.top_k, torch.Tensor):
            if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
                raise ValueError(f"diffusion_kernels: argument 'top_k' must be an int >= 0, got {self.top_k!r}")
        if self.confidence not in _CONFIDENCES:
            raise ValueError(f"diffusion_kernels: argument 'confidence' must be one of {_CONFIDENCES}, got {self.confidence!r}")
        if self.confidence_from is None:
            object.__setattr__(self, "confidence_from", "logits" if self.confidence == "prob" else "sampling")
        if self.confidence_from not in ("logits", "sampling"):
            raise ValueError(f"diffusion_kernels: argument 'confidence_from' must be 'logits' or 'sampling', "
                             f"got {self.confidence_from!r}")
        if self.positions not in ("masked", "all"):
            raise ValueError(f"diffusion_kernels: argument 'positions' must be 'masked' or 'all', got {self.positions!r}")
        _check_number(self.prev_token_penalty, "prev_token_penalty", lambda v: 0 <= v < float("inf"), "finite and >= 0")
        for name in ("suppress_ids", "renormalize_without"):
            ids = getattr(self, name)
            if ids is not None:
                object.__setattr__(self, name, tuple(ids))
        if self.renormalize_without and (self.confidence != "prob" or self.confidence_from != "logits"):
            raise ValueError("diffusion_kernels: argument 'renormalize_without' (LLaDA's confidence_eos_eot_inf) "
                             "needs confidence='prob' from the logits")


def _check_number(value, name: str, ok, bounds: str) -> None:
    """A per-call number (a tensor holds per-row values the op reads on the device: unchecked here)."""
    if isinstance(value, torch.Tensor):
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"diffusion_kernels: argument '{name}' must be a number or a [batch] tensor, got {type(value).__name__}")
    if not ok(value):  # NaN fails every bound
        raise ValueError(f"diffusion_kernels: argument '{name}' must be {bounds}, got {value}")


_ID_TENSORS: Dict[Tuple[Tuple[int, ...], torch.device], torch.Tensor] = {}


def ids_tensor(ids: Sequence[int], device: torch.device) -> torch.Tensor:
    """The int64 tensor of ``ids`` on ``device``, made once: a step copies nothing from the host
    (a copy would stall the stream, and cannot be captured in a CUDA graph)."""
    key = (tuple(ids), torch.device(device))
    t = _ID_TENSORS.get(key)
    if t is None:
        with torch.inference_mode(False):  # an ordinary tensor, usable outside inference mode too
            t = _ID_TENSORS[key] = torch.tensor(key[0], dtype=torch.int64, device=device)
    return t


def propose(logits: torch.Tensor, x: torch.Tensor, mask_id: int, proposal: Proposal = Proposal(), *,
            block_start: Union[int, torch.Tensor] = 0, block_end: Optional[Union[int, torch.Tensor]] = None,
            seed: Union[int, torch.Tensor] = 0, offset: Union[int, torch.Tensor] = 0
            ) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(x0, confidence)`` at the masked positions of ``x`` (every position with
    ``positions='all'``) in ``[block_start, block_end)`` (``x`` and ``-inf`` elsewhere), in one pass
    over the vocabulary; see :class:`Proposal`."""
    p = proposal
    vocab = logits.shape[-1]
    for i in tuple(p.suppress_ids or ()) + tuple(p.renormalize_without or ()):
        if not 0 <= i < vocab:  # generate() fills these from eos_id / eot_id
            raise ValueError(f"diffusion_kernels: token id {i} of the proposal's suppress_ids / renormalize_without "
                             f"(generate's 'eos_id' / 'eot_id') is outside the logits' vocabulary [0, {vocab})")
    suppress = ids_tensor(p.suppress_ids, logits.device) if p.suppress_ids else None
    out = masked_confidence(logits, x, mask_id, temperature=p.temperature, top_p=p.top_p, top_k=p.top_k,
                            confidence=p.confidence, confidence_from=p.confidence_from, block_start=block_start,
                            block_end=block_end, suppress_ids=suppress, seed=seed, offset=offset,
                            return_lse=bool(p.renormalize_without), positions=p.positions,
                            prev_token_penalty=p.prev_token_penalty)
    if not p.renormalize_without:
        return out
    x0, conf, lse = out
    return x0, _renormalised_confidence(logits, x0, conf, lse, p.renormalize_without, p.suppress_ids or ())


def _renormalised_confidence(logits: torch.Tensor, x0: torch.Tensor, conf: torch.Tensor, lse: torch.Tensor,
                             ids: Sequence[int], suppressed: Sequence[int]) -> torch.Tensor:
    """conf = p(x0) of the full softmax, turned into the probability under the softmax without
    ``ids``: 0 where x0 is one of them, else p(x0) / (1 - sum of their p). Only two vocabulary
    columns are read: the op's lse gives their probabilities."""
    ids_t = ids_tensor(ids, logits.device)
    picked = logits.index_select(-1, ids_t).reshape(*lse.shape, -1).double()  # flat logits too
    if suppressed:  # already out of the op's softmax (and lse)
        picked = picked.masked_fill(torch.isin(ids_t, ids_tensor(suppressed, ids_t.device)), float("-inf"))
    removed = torch.exp(picked - lse.double()[..., None]).sum(-1)
    renorm = (conf.double() / (1.0 - removed)).to(conf.dtype)
    is_removed = torch.isin(x0, ids_t)
    return torch.where(torch.isfinite(conf), torch.where(is_removed, torch.zeros_like(conf), renorm), conf)
