"""The sampler: LLaDA's semi-autoregressive block schedule with Dream's proposal/confidence
options, Fast-dLLM's prefix/dual KV caches and threshold/factor decoding, CFG and EOS handling,
built from the package's ops (``masked_confidence`` + ``select_transfer``).

Host synchronisation: with a fixed schedule (``threshold`` and ``factor`` unset) the step loop
never reads a device value; the only sync is one boolean per block for EOS early stop. The
adaptive rules (threshold/factor) read one boolean per step, "is the block finished", because
the number of steps is not known in advance.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .ops import masked_confidence, select_transfer
from .schedules import dream_num_transfer_tokens, llada_num_transfer_tokens
from ._progress import progress_bar

__all__ = ["generate", "GenerateOutput", "StepInfo"]

_ALG_TEMP_OFFSET = 1 << 40  # Philox offsets of the alg_temp position draws: step s uses 2**40 + s


@dataclass
class StepInfo:
    """What a ``callback`` receives after every step (tensors are live views: copy to keep)."""
    step: int              # global step (NFE index), 0-based
    block: int             # block index
    x: torch.Tensor        # [B, L] current sequence (prompt + generation)
    transferred: torch.Tensor  # [B, L] bool: positions committed at this step
    prompt_length: int


@dataclass
class GenerateOutput:
    sequences: torch.Tensor   # [B, gen_length] generated tokens
    order: torch.Tensor       # [B, gen_length] int64: step that committed each token (-1: EOS fill)
    nfe: int                  # forward passes (function evaluations), CFG counting once


def _logits_of(out):
    return out.logits if hasattr(out, "logits") else out


def _renormalised_confidence(logits, x0, conf, lse, ids, suppressed):
    """conf = p(x0) of the full softmax, turned into the probability under the softmax without
    ``ids``: 0 where x0 is one of them, else p(x0) / (1 - sum of their p). Only two vocabulary
    columns are read: the op's lse gives their probabilities."""
    ids_t = torch.tensor(ids, device=logits.device)
    picked = logits.index_select(-1, ids_t).double()
    if suppressed:  # already out of the op's softmax (and lse)
        picked = picked.masked_fill(torch.isin(ids_t, torch.tensor(suppressed, device=ids_t.device)), float("-inf"))
    removed = torch.exp(picked - lse.double()[..., None]).sum(-1)
    renorm = (conf.double() / (1.0 - removed)).to(conf.dtype)
    is_removed = torch.isin(x0, ids_t)
    return torch.where(torch.isfinite(conf), torch.where(is_removed, torch.zeros_like(conf), renorm), conf)


def generate(model, prompt_ids: torch.Tensor, gen_length: int = 128, block_length: int = 128, steps: int = 128,
             *, mask_id: int, temperature: float = 0.0, remasking: str = "low_confidence",
             confidence: str = "prob", confidence_from: Optional[str] = None, threshold: Optional[float] = None,
             factor: Optional[float] = None, schedule: str = "llada", alg_temp: Optional[float] = None,
             schedule_eps: float = 1e-3, cache: Optional[str] = None, cfg_scale: float = 0.0,
             top_p: Optional[float] = None, top_k: Optional[int] = None, eos_id: Optional[int] = None,
             suppress_eos: bool = False, stop_at_eos: bool = False, confidence_eos_eot_inf: bool = False,
             eot_id: Optional[int] = None, attention_mask: Optional[torch.Tensor] = None,
             shift_logits: bool = False, seed: Optional[int] = None, callback: Optional[Callable] = None,
             progress: Optional[bool] = None, return_dict: bool = False):
    """Generate ``gen_length`` tokens after ``prompt_ids`` with a masked diffusion LM.

    The answer starts fully masked and is split into ``gen_length // block_length`` blocks
    decoded left to right (LLaDA's semi-autoregressive schedule; one block = pure diffusion).
    Each step runs the model, proposes a token and a confidence for every masked position of
    the current block (:func:`masked_confidence`), and commits some of them
    (:func:`select_transfer`): the LLaDA schedule's count (``steps // num_blocks`` steps per
    block, remainder first), or with ``threshold`` every proposal with confidence ``>= tau``
    (at least one), or with ``factor`` Fast-dLLM's factor rule. Committed tokens are final.

    Args:
        model: ``model(x, attention_mask=None) -> logits`` (or an object with ``.logits``) of
            shape ``[B, L, vocab]``; any Hugging Face LLaDA/Dream model works with ``cache=None``.
            ``cache='prefix'|'dual'`` needs a model with ``init_cache`` (e.g.
            :class:`diffusion_kernels.models.LLaDAModel`).
        prompt_ids: ``[B, Lp]`` int64, left-padded when the rows' prompts differ in length.
        mask_id: the ``[MASK]`` token id (LLaDA 126336, Dream 151666).
        temperature, top_p, top_k: proposal sampling (Gumbel-max with the package's Philox
            generator keyed by ``seed``; 0 = argmax).
        remasking: ``'low_confidence'`` (commit the most confident) or ``'random'``.
        confidence: ``'prob'`` | ``'margin'`` | ``'neg_entropy'`` (Dream's maskgit_plus /
            topk_margin / entropy).
        confidence_from: ``'logits'`` (LLaDA: probability under the untempered softmax) or
            ``'sampling'`` (Dream: under the tempered, filtered distribution). Default: LLaDA's
            for ``'prob'``, Dream's otherwise.
        threshold, factor: Fast-dLLM's adaptive parallel decoding (``steps`` is then ignored).
        schedule: how many tokens each step of a block commits: ``'llada'`` (the block's masks
            split evenly over its steps, remainder first) or ``'dream'`` (Dream's
            ``trunc(N (1 - s / t))`` of the masks ``N`` still in the block, ``t, s`` consecutive
            entries of ``linspace(1, schedule_eps, steps + 1)``, everything at the last step;
            per row, where Dream uses the batch mean, which is the same while rows have equal
            counts). Dream decodes one block: ``block_length = gen_length``.
        alg_temp: Dream's ``alg_temp``: instead of the top-k by confidence, the positions are
            drawn without replacement from ``softmax(confidence / alg_temp)`` (Gumbel-top-k with
            the Philox generator, ``seed``, offset ``2**40 + step``). ``None``/0: top-k.
        cache: ``None`` (every step runs the whole sequence), ``'prefix'`` (the K/V before the
            block are computed at the block's first step and reused; each step runs the block
            and everything after it) or ``'dual'`` (all K/V from the block's first step reused;
            each step runs only the block). Both are Fast-dLLM's approximations.
        cfg_scale: LLaDA's classifier-free guidance ``un + (w + 1) (cond - un)``; the
            unconditional input masks the prompt. Doubles the batch of each forward.
        eos_id: end-of-sequence id. ``suppress_eos`` never proposes it (LLaDA ``logits_eos_inf``);
            ``stop_at_eos`` stops after the first block at whose end every row has committed an
            EOS, and fills the rest with EOS.
        confidence_eos_eot_inf, eot_id: LLaDA's option of the same name (its Instruct evaluation
            settings): the proposal is unchanged, but the confidence is taken from the softmax
            with EOS and EoT removed (renormalised), so a position proposing EOS/EoT gets
            confidence 0 and is committed last. As in LLaDA's code, at ``temperature > 0`` only
            EoT is removed (there the EOS assignment hits the noisy copy of the logits, after
            the proposal). Needs ``confidence='prob'`` from the logits and low-confidence
            remasking.
        attention_mask: ``[B, Lp]`` (1 = token, 0 = left pad). Each row then generates what it
            would generate alone (at temperature 0 with ``low_confidence``; random draws are
            indexed by the row's position in the batch).
        shift_logits: Dream's convention (logits at ``i`` predict token ``i + 1``).
        seed: Philox key of all random draws (default 0); step ``s`` uses offset ``s``.
        callback: called with a :class:`StepInfo` after every step (streaming).
        progress: show a progress bar (default: when stderr is a terminal).
        return_dict: return a :class:`GenerateOutput` instead of the ``[B, gen_length]`` tokens.
    """
    if remasking not in ("low_confidence", "random"):
        raise ValueError(f"diffusion_kernels: argument 'remasking' must be 'low_confidence' or 'random', got {remasking!r}")
    if cache not in (None, "prefix", "dual"):
        raise ValueError(f"diffusion_kernels: argument 'cache' must be None, 'prefix' or 'dual', got {cache!r}")
    if threshold is not None and factor is not None:
        raise ValueError("diffusion_kernels: give at most one of 'threshold' and 'factor'")
    if prompt_ids.dim() != 2:
        raise ValueError(f"diffusion_kernels: argument 'prompt_ids' must be [batch, prompt_len], got {tuple(prompt_ids.shape)}")
    if gen_length < 1 or block_length < 1 or gen_length % block_length:
        raise ValueError(f"diffusion_kernels: 'gen_length' ({gen_length}) must be a positive multiple of 'block_length' ({block_length})")
    num_blocks = gen_length // block_length
    adaptive = threshold is not None or factor is not None
    if not adaptive and (steps < num_blocks or steps % num_blocks):
        raise ValueError(f"diffusion_kernels: 'steps' ({steps}) must be a positive multiple of the number of blocks ({num_blocks})")
    if cache is not None and not hasattr(model, "init_cache"):
        raise ValueError(f"diffusion_kernels: cache={cache!r} needs a model with init_cache() "
                         "(diffusion_kernels.models.LLaDAModel); use cache=None for other models")
    if (suppress_eos or stop_at_eos) and eos_id is None:
        raise ValueError("diffusion_kernels: 'suppress_eos'/'stop_at_eos' need 'eos_id'")
    if confidence_from is None:
        confidence_from = "logits" if confidence == "prob" else "sampling"
    if schedule not in ("llada", "dream"):
        raise ValueError(f"diffusion_kernels: argument 'schedule' must be 'llada' or 'dream', got {schedule!r}")
    if alg_temp is not None and alg_temp < 0:
        raise ValueError(f"diffusion_kernels: argument 'alg_temp' must be >= 0, got {alg_temp}")
    if alg_temp and (adaptive or remasking != "low_confidence"):
        raise ValueError("diffusion_kernels: argument 'alg_temp' draws the k positions of a fixed schedule: it "
                         "cannot be combined with 'threshold'/'factor' or remasking='random'")
    if confidence_eos_eot_inf:
        if eos_id is None or eot_id is None:
            raise ValueError("diffusion_kernels: 'confidence_eos_eot_inf' needs 'eos_id' and 'eot_id'")
        if confidence != "prob" or confidence_from != "logits" or remasking != "low_confidence":
            raise ValueError("diffusion_kernels: 'confidence_eos_eot_inf' is LLaDA's option: it needs "
                             "confidence='prob', confidence_from='logits' and remasking='low_confidence'")
    # LLaDA removes EOS and EoT from the confidence softmax at T = 0, only EoT at T > 0.
    renorm_ids = ([eos_id, eot_id] if temperature == 0 else [eot_id]) if confidence_eos_eot_inf else None
    conf_kind = "random" if remasking == "random" else confidence
    steps_per_block = 1 if adaptive else steps // num_blocks
    seed = 0 if seed is None else seed

    B, Lp = prompt_ids.shape
    L = Lp + gen_length
    device = prompt_ids.device
    x = torch.full((B, L), mask_id, dtype=torch.int64, device=device)
    x[:, :Lp] = prompt_ids
    full_mask = None
    if attention_mask is not None:
        full_mask = torch.cat([attention_mask.to(device=device, dtype=torch.bool),
                               torch.ones(B, gen_length, dtype=torch.bool, device=device)], dim=1)
    order = torch.full((B, L), -1, dtype=torch.int64, device=device)
    suppress = [eos_id] if suppress_eos else None
    prompt_index = x != mask_id
    # CFG runs the conditional and the unconditional (prompt masked) rows as one doubled batch,
    # with a cache of 2B rows when caching.
    kv = model.init_cache(2 * B if cfg_scale else B, L) if cache is not None else None
    model_mask = None if full_mask is None else (torch.cat([full_mask, full_mask]) if cfg_scale else full_mask)

    def logits_for(lo, hi):
        """Logits [B, hi - lo, V] of positions [lo, hi) (with the cache: of the positions run)."""
        xs = x[:, lo:hi]
        if cfg_scale:
            xs = torch.cat([xs, torch.where(prompt_index[:, lo:hi], mask_id, xs)])
        if kv is not None:
            out = _logits_of(model(xs, attention_mask=model_mask, kv_cache=kv, start=lo))
        else:
            out = _logits_of(model(xs, attention_mask=model_mask))
        if cfg_scale:
            cond, un = out.chunk(2)
            out = un + (cfg_scale + 1) * (cond - un)
        return out

    def forward(step_in_block, start, end):
        """Logits [B, q1 - q0, V] for the positions [q0, q1) of x to decode, and q0."""
        q0, q1 = 0, L  # a full forward: no cache, or the block's first step (refreshes every K/V)
        if kv is not None and step_in_block > 0:
            q0, q1 = (start, L) if cache == "prefix" else (start, end)
        if not shift_logits:
            return logits_for(q0, q1), q0
        # Dream: the logits at i predict token i + 1, so the run starts one position earlier (with
        # a cache that position's K/V are rewritten from the same committed token).
        if q0 == 0:
            logits = logits_for(0, q1)
            return torch.cat([logits[:, :1], logits[:, :-1]], dim=1), 0
        return logits_for(q0 - 1, q1)[:, :-1], q0

    show = sys.stderr.isatty() if progress is None else progress
    bar = progress_bar(total=None if adaptive else steps, enabled=show, unit="step")
    nfe = 0
    try:
        with torch.inference_mode():
            for blk in range(num_blocks):
                start, end = Lp + blk * block_length, Lp + (blk + 1) * block_length
                if not adaptive and schedule == "llada":
                    counts = llada_num_transfer_tokens(x[:, start:end] == mask_id, steps_per_block)
                i = 0
                while True:
                    logits, q0 = forward(i, start, end)
                    xq = x[:, q0:q0 + logits.shape[1]]
                    x0, conf, lse = masked_confidence(
                        logits, xq, mask_id, temperature=temperature, top_p=top_p, top_k=top_k,
                        confidence=conf_kind, confidence_from=confidence_from, block_start=start - q0,
                        block_end=end - q0, suppress_ids=suppress, seed=seed, offset=nfe, return_lse=True)
                    if renorm_ids is not None:
                        conf = _renormalised_confidence(logits, x0, conf, lse, renorm_ids, suppress)
                    if adaptive:
                        rule = {"threshold": threshold} if threshold is not None else {"factor": factor}
                    elif schedule == "dream":  # from the masks left now: a device count, no sync
                        left = (x[:, start:end] == mask_id).sum(dim=1)
                        rule = {"k": dream_num_transfer_tokens(left, i, steps_per_block, schedule_eps)}
                    else:
                        rule = {"k": counts[:, i]}
                    if alg_temp:  # its own Philox offsets: independent of the token draws' (seed, nfe)
                        rule.update(alg_temp=alg_temp, seed=seed, offset=_ALG_TEMP_OFFSET + nfe)
                    # select_transfer writes x0 into the view xq, i.e. into x, in place.
                    moved = select_transfer(conf, x=xq, x0=x0, **rule)
                    order[:, q0:q0 + logits.shape[1]].masked_fill_(moved, nfe)
                    nfe += 1
                    bar.update(1)
                    if callback is not None:
                        full_moved = torch.zeros_like(x, dtype=torch.bool)
                        full_moved[:, q0:q0 + moved.shape[1]] = moved
                        callback(StepInfo(step=nfe - 1, block=blk, x=x, transferred=full_moved, prompt_length=Lp))
                    i += 1
                    if adaptive:
                        if not bool((x[:, start:end] == mask_id).any()):  # the one sync per step
                            break
                    elif i == steps_per_block:
                        break
                if stop_at_eos and blk + 1 < num_blocks:
                    has_eos = (x[:, Lp:end] == eos_id).any(dim=1)
                    if bool(has_eos.all()):  # the one sync per block
                        x[:, end:] = eos_id
                        break
    finally:
        bar.close()
    seq = x[:, Lp:]
    if return_dict:
        return GenerateOutput(sequences=seq, order=order[:, Lp:], nfe=nfe)
    return seq
