"""The sampler: LLaDA's semi-autoregressive blocks with Dream's proposal options, Fast-dLLM's caches
and adaptive rules, CFG and EOS handling. The parts live in :mod:`diffusion_kernels.decoding`; this
module checks the arguments and assembles them."""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

import torch

from ._progress import progress_bar
from .decoding import BlockLoop, DreamPlan, Factor, LLaDAPlan, ModelForward, Proposal, Rule, StepInfo, StepPlan
from .decoding import Threshold
from .decoding import UntilDone
from .decoding.cache import check_cache_policy
from .decoding.block_diffusion import BlockDiffusionLoop, decoded_blocks
from .decoding.dynamic_threshold import SDARPlan
from .decoding.editing import JointThreshold
from .decoding.graph import GRAPH_RULES
from .decoding.random_transfer import DreamOriginPlan
from .decoding.remasking import CommittedRemasking, ReMDM, RemaskLowConfidence

if TYPE_CHECKING:
    from .rl.trajectory import Trajectory

__all__ = ["generate", "GenerateOutput", "StepInfo", "ReMDM", "RemaskLowConfidence"]


@dataclass
class GenerateOutput:
    sequences: torch.Tensor   # [B, gen_length] generated tokens
    order: torch.Tensor       # [B, gen_length] int64: step that committed each token (-1: EOS fill)
    nfe: int                  # forward passes (function evaluations), CFG counting once
    trajectory: Optional["Trajectory"] = None  # with return_trajectory: diffusion_kernels.rl.Trajectory


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"diffusion_kernels: argument '{name}' must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"diffusion_kernels: argument '{name}' must be >= 1, got {value}")
    return value


def _optional_int(value, name: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"diffusion_kernels: argument '{name}' must be an int, got {type(value).__name__}")


def _real(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"diffusion_kernels: argument '{name}' must be a number, got {type(value).__name__}")
    return float(value)


def _num_blocks(gen_length, block_length, steps, adaptive: bool) -> int:
    _positive_int(gen_length, "gen_length")
    _positive_int(block_length, "block_length")
    _positive_int(steps, "steps")
    if gen_length % block_length:
        raise ValueError(f"diffusion_kernels: 'gen_length' ({gen_length}) must be a multiple of 'block_length' "
                         f"({block_length})")
    num_blocks = gen_length // block_length
    if not adaptive and steps % num_blocks:
        raise ValueError(f"diffusion_kernels: 'steps' ({steps}) must be a multiple of the number of blocks "
                         f"({num_blocks} = gen_length / block_length)")
    return num_blocks


def _full_attention_mask(attention_mask, prompt_ids: torch.Tensor, gen_length: int) -> Optional[torch.Tensor]:
    """The ``[B, Lp]`` prompt mask extended with ones over the answer, as bool."""
    if attention_mask is None:
        return None
    if not isinstance(attention_mask, torch.Tensor):
        raise TypeError(f"diffusion_kernels: argument 'attention_mask' must be a tensor, got {type(attention_mask).__name__}")
    if attention_mask.shape != prompt_ids.shape:
        raise ValueError(f"diffusion_kernels: argument 'attention_mask' must have the shape of 'prompt_ids' "
                         f"{tuple(prompt_ids.shape)}, got {tuple(attention_mask.shape)}")
    if attention_mask.is_complex():
        raise TypeError(f"diffusion_kernels: argument 'attention_mask' must be bool or 0/1 numbers, got {attention_mask.dtype}")
    if attention_mask.device.type == "meta":
        raise ValueError("diffusion_kernels: argument 'attention_mask' is on the meta device: it has no values")
    if attention_mask.dtype != torch.bool and not bool(((attention_mask == 0) | (attention_mask == 1)).all()):
        raise ValueError("diffusion_kernels: argument 'attention_mask' must hold only 0 (pad) and 1 (token)")
    B, device = prompt_ids.shape[0], prompt_ids.device
    return torch.cat([attention_mask.to(device=device, dtype=torch.bool),
                      torch.ones(B, gen_length, dtype=torch.bool, device=device)], dim=1)


def _check_prompt(prompt_ids) -> None:
    if not isinstance(prompt_ids, torch.Tensor):
        raise TypeError(f"diffusion_kernels: argument 'prompt_ids' must be a tensor, got {type(prompt_ids).__name__}")
    if prompt_ids.dim() != 2:
        raise ValueError(f"diffusion_kernels: argument 'prompt_ids' must be [batch, prompt_len], got {tuple(prompt_ids.shape)}")
    if prompt_ids.is_floating_point() or prompt_ids.is_complex() or prompt_ids.dtype == torch.bool:
        raise TypeError(f"diffusion_kernels: argument 'prompt_ids' must hold integer token ids, got {prompt_ids.dtype}")
    if prompt_ids.device.type == "meta":
        raise ValueError("diffusion_kernels: argument 'prompt_ids' is on the meta device: it has no values")


def _check_ids_in_vocab(model, prompt_ids: torch.Tensor, ids: dict) -> None:
    """Token ids within ``[0, vocab)`` when the model tells its vocabulary (``model.config.vocab_size``),
    else non-negative: one read of the prompt's extremes, before any forward."""
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    vocab = vocab if isinstance(vocab, int) and not isinstance(vocab, bool) else None
    bounds = f"[0, {vocab})" if vocab is not None else ">= 0"
    for name, value in ids.items():
        if value is not None and (value < 0 or (vocab is not None and value >= vocab)):
            raise ValueError(f"diffusion_kernels: argument '{name}' = {value} is not a token id {bounds} of the model")
    if prompt_ids.numel():
        lo, hi = (int(v) for v in torch.stack([prompt_ids.min(), prompt_ids.max()]).tolist())
        if lo < 0 or (vocab is not None and hi >= vocab):
            raise ValueError(f"diffusion_kernels: argument 'prompt_ids' holds token id {lo if lo < 0 else hi}, "
                             f"not in {bounds} of the model")


def _check_cfg_scale(cfg_scale) -> float:
    cfg_scale = _real(cfg_scale, "cfg_scale")
    if not (math.isfinite(cfg_scale) and cfg_scale >= 0):
        raise ValueError(f"diffusion_kernels: argument 'cfg_scale' must be a finite number >= 0, got {cfg_scale}")
    return cfg_scale


def _plan(steps_per_block: int, threshold, factor, rule, schedule: str, alg_temp, schedule_eps,
          remasking: str, block_length: int = 0) -> StepPlan:
    """The rule of every step: a fixed schedule's top-k, or an adaptive rule until the block is done."""
    if sum(a is not None for a in (threshold, factor, rule)) > 1:
        raise ValueError("diffusion_kernels: give at most one of 'threshold', 'factor' and 'rule'")
    if rule is not None and not isinstance(rule, Rule):
        raise TypeError(f"diffusion_kernels: argument 'rule' must be a diffusion_kernels.decoding rule, got "
                        f"{type(rule).__name__}")
    if rule is not None and not rule.adaptive:  # a fixed count per step comes from 'schedule' and 'steps'
        raise ValueError(f"diffusion_kernels: argument 'rule' must be an adaptive rule (Threshold, Factor, "
                         f"DInferThreshold), got {type(rule).__name__}")
    if schedule not in ("llada", "dream", "sdar"):
        raise ValueError(f"diffusion_kernels: argument 'schedule' must be 'llada', 'dream' or 'sdar', got {schedule!r}")
    eps = _real(schedule_eps, "schedule_eps")
    if not 0 < eps < 1:
        raise ValueError(f"diffusion_kernels: argument 'schedule_eps' must be in (0, 1), got {schedule_eps}")
    if alg_temp is not None and not _real(alg_temp, "alg_temp") >= 0:
        raise ValueError(f"diffusion_kernels: argument 'alg_temp' must be >= 0, got {alg_temp}")
    adaptive = threshold is not None or factor is not None or rule is not None
    if alg_temp and (adaptive or remasking != "low_confidence"):
        raise ValueError("diffusion_kernels: argument 'alg_temp' draws the k positions of a fixed schedule: it "
                         "cannot be combined with 'threshold'/'factor' or remasking='random'")
    if remasking == "origin":  # Dream alg='origin': random counts, no confidence
        if factor is not None or rule is not None or threshold is not None or alg_temp:
            raise ValueError("diffusion_kernels: remasking='origin' draws its own counts: it cannot be combined with "
                             "'threshold'/'factor'/'rule'/'alg_temp'")
        return DreamOriginPlan(steps_per_block, eps)
    if schedule == "sdar":  # SDAR / LLaDA2: counts of the block length, raised by a threshold
        return SDARPlan(steps_per_block, block_length, threshold=threshold)
    if threshold is not None:
        return UntilDone(Threshold(threshold))
    if factor is not None:
        return UntilDone(Factor(factor))
    if rule is not None:
        return UntilDone(rule)
    if schedule == "dream":
        return DreamPlan(steps_per_block, eps, alg_temp)
    return LLaDAPlan(steps_per_block, alg_temp)


def _proposal(temperature, top_p, top_k, remasking, confidence, confidence_from, eos_id, eot_id, suppress_eos,
              confidence_eos_eot_inf) -> Proposal:
    if remasking == "origin":
        remasking = "low_confidence"
    if remasking not in ("low_confidence", "random"):
        raise ValueError(f"diffusion_kernels: argument 'remasking' must be 'low_confidence' or 'random', got {remasking!r}")
    if confidence_from is None:
        confidence_from = "logits" if confidence == "prob" else "sampling"
    if confidence_from not in ("logits", "sampling"):
        raise ValueError(f"diffusion_kernels: argument 'confidence_from' must be 'logits' or 'sampling', got {confidence_from!r}")
    renorm = None
    if confidence_eos_eot_inf:
        if eos_id is None or eot_id is None:
            raise ValueError("diffusion_kernels: 'confidence_eos_eot_inf' needs 'eos_id' and 'eot_id'")
        if confidence != "prob" or confidence_from != "logits" or remasking != "low_confidence":
            raise ValueError("diffusion_kernels: 'confidence_eos_eot_inf' is LLaDA's option: it needs "
                             "confidence='prob', confidence_from='logits' and remasking='low_confidence'")
        # LLaDA removes EOS and EoT from the confidence softmax at T = 0, only EoT at T > 0.
        renorm = (eos_id, eot_id) if temperature == 0 else (eot_id,)
    if confidence not in ("prob", "margin", "neg_entropy"):
        raise ValueError(f"diffusion_kernels: argument 'confidence' must be 'prob', 'margin' or 'neg_entropy', "
                         f"got {confidence!r}")
    return Proposal(temperature=temperature, top_p=top_p, top_k=top_k,
                    confidence="random" if remasking == "random" else confidence, confidence_from=confidence_from,
                    suppress_ids=(eos_id,) if suppress_eos else None, renormalize_without=renorm)


def _check_remasking(remask_committed, adaptive: bool, return_trajectory: bool, stop_at_eos: bool) -> None:
    if not isinstance(return_trajectory, bool):
        raise TypeError(f"diffusion_kernels: argument 'return_trajectory' must be a bool, got "
                        f"{type(return_trajectory).__name__}")
    if remask_committed is not None:
        if not isinstance(remask_committed, CommittedRemasking):
            raise TypeError(f"diffusion_kernels: argument 'remask_committed' must be ReMDM(...) or "
                            f"RemaskLowConfidence(...), got {type(remask_committed).__name__}")
        if adaptive:
            raise ValueError("diffusion_kernels: argument 'remask_committed' needs a fixed schedule ('steps' per "
                             "block): it cannot be combined with 'threshold', 'factor' or 'rule'")
        if return_trajectory:
            raise ValueError("diffusion_kernels: 'return_trajectory' cannot record a run with 'remask_committed': "
                             "a Trajectory keeps one commit step per position, and remasked tokens are committed "
                             "more than once")
    if return_trajectory and stop_at_eos:
        raise ValueError("diffusion_kernels: 'return_trajectory' cannot record a run with 'stop_at_eos': the EOS "
                         "filled after the stop were never decoded, so no state of the run could be rebuilt")


def _check_cuda_graph(cuda_graph, model, cache, remasking, remask_committed, schedule, threshold, rule) -> None:
    """The options whose steps read per-step values on the host cannot be captured: a ValueError
    naming the option (never a silent eager run)."""
    if not isinstance(cuda_graph, bool):
        raise TypeError(f"diffusion_kernels: argument 'cuda_graph' must be a bool, got {type(cuda_graph).__name__}")
    if not cuda_graph:
        return
    refused = None
    if cache in ("exact", "block"):
        refused = f"cache={cache!r} (block-diffusion steps)"
    elif remask_committed is not None:
        refused = "'remask_committed' (its draws are keyed on the host)"
    elif remasking == "origin":
        refused = "remasking='origin' (its draws are keyed on the host)"
    elif schedule == "sdar" and threshold is not None:
        refused = "schedule='sdar' with 'threshold' (a per-step count in a DynamicThreshold)"
    elif rule is not None and type(rule) not in GRAPH_RULES:
        refused = f"rule={type(rule).__name__}(...) (only Threshold, Factor and DInferThreshold are captured)"
    elif cache is not None and not getattr(model, "accepts_tensor_start", False):
        refused = (f"cache={cache!r} with a model without 'accepts_tensor_start' (one captured step serves every "
                   "block through a tensor 'start', e.g. models.LLaDAModel)")
    if refused:
        raise ValueError(f"diffusion_kernels: argument 'cuda_graph' cannot be combined with {refused}; use "
                         "cuda_graph=False")


def generate(model, prompt_ids: torch.Tensor, gen_length: int = 128, block_length: int = 128, steps: int = 128,
             *, mask_id: int, temperature: float = 0.0, remasking: str = "low_confidence",
             confidence: str = "prob", confidence_from: Optional[str] = None, threshold: Optional[float] = None,
             factor: Optional[float] = None, rule: Optional[Rule] = None, schedule: str = "llada", alg_temp: Optional[float] = None,
             schedule_eps: float = 1e-3, cache: Optional[str] = None, cfg_scale: float = 0.0,
             top_p: Optional[float] = None, top_k: Optional[int] = None, eos_id: Optional[int] = None,
             suppress_eos: bool = False, stop_at_eos: bool = False, confidence_eos_eot_inf: bool = False,
             eot_id: Optional[int] = None, attention_mask: Optional[torch.Tensor] = None,
             shift_logits: bool = False, seed: Optional[int] = None, callback: Optional[Callable[[StepInfo], None]] = None,
             progress: Optional[bool] = None, return_dict: bool = False,
             remask_committed: Optional[CommittedRemasking] = None, return_trajectory: bool = False,
             sub_block: Optional[int] = None, editing: Optional[JointThreshold] = None, cuda_graph: bool = False):
    """Generate ``gen_length`` tokens after ``prompt_ids`` with a masked diffusion LM.

    The answer starts fully masked and is decoded in ``gen_length // block_length`` blocks, left to
    right. Each step runs the model, proposes a token and a confidence at every masked position of
    the block, and commits some of them for good: a schedule's count (``steps // num_blocks`` steps
    per block), or with ``threshold``/``factor`` Fast-dLLM's adaptive rules (``steps`` ignored).
    How it works, option by option: ``docs/generate.md``.

    Args:
        model: ``model(x, attention_mask=None) -> logits [B, L, vocab]`` (or an output with
            ``.logits``); ``cache`` needs a model with ``init_cache`` (:class:`~diffusion_kernels.models.LLaDAModel`).
        prompt_ids: ``[B, Lp]`` integer ids, left-padded; ``attention_mask``: ``[B, Lp]`` (0 = pad).
        gen_length, block_length, steps: answer length, block length (divides ``gen_length``),
            total steps (a multiple of the number of blocks).
        mask_id: the ``[MASK]`` id (LLaDA 126336, Dream 151666).
        temperature, top_p, top_k, seed: proposal sampling (0 = argmax), Philox-keyed by ``seed``.
        remasking, confidence, confidence_from: ``'low_confidence'``, ``'random'`` or ``'origin'``
            (Dream: each masked position committed with probability ``1 - s/t``); ``'prob'``,
            ``'margin'`` or ``'neg_entropy'``; ``'logits'`` (LLaDA) or ``'sampling'`` (Dream).
        threshold, factor: Fast-dLLM's threshold (``>= threshold``, at least one) or factor rule.
        rule: any adaptive rule of :mod:`diffusion_kernels.decoding` instead, e.g.
            ``Factor(1.0, variant="fastdllm_code")`` or ``DInferThreshold(0.9)``.
        schedule, schedule_eps, alg_temp: ``'llada'``, ``'dream'`` or ``'sdar'`` counts (SDAR /
            LLaDA2: the block's counts, raised by ``threshold`` when given); Dream's ``eps`` in
            (0, 1) and ``alg_temp`` (positions drawn from ``softmax(confidence / alg_temp)``).
        cache: ``None``, ``'prefix'`` or ``'dual'`` (Fast-dLLM's block-wise KV caches); for a
            block-diffusion model (:class:`~diffusion_kernels.models.BlockDiffusionModel`)
            ``'exact'`` (block-causal, committed blocks' K/V exact) or ``'block'`` (Fast-dLLM v2's
            cache of the current block); docs/block_diffusion.md.
        cfg_scale: LLaDA's classifier-free guidance weight (finite, >= 0; 0 = off).
        eos_id, suppress_eos, stop_at_eos: never propose EOS; stop after the first block at whose
            end every row has an EOS (the rest filled with EOS).
        confidence_eos_eot_inf, eot_id: LLaDA's option: confidence from the softmax without EOS/EoT.
        shift_logits: Dream's convention (the logits at ``i`` predict token ``i + 1``).
        callback: called with a :class:`StepInfo` after every step; ``progress``: show a bar.
        return_dict: return a :class:`GenerateOutput` (sequences, order, nfe).
        remask_committed: self-correction, committed tokens of the block put back to ``[MASK]``
            and decoded again: :class:`ReMDM` (its ``'cap'``, ``'rescale'``, ``'conf'``, ``'loop'``
            schedules) or :class:`RemaskLowConfidence` (below a probability under the current
            model). Fixed schedules only; the committed count of every step stays the schedule's.
        return_trajectory: also record a :class:`~diffusion_kernels.rl.Trajectory` (the step and
            the proposal's log-probability of every committed token) in the returned
            :class:`GenerateOutput`; not with ``remask_committed`` or ``stop_at_eos``.
        sub_block: with ``cache='exact'``/``'block'``, Fast-dLLM v2's sub-blocks of the block.
        editing: with ``cache='exact'``/``'block'``, LLaDA2.1's token editing: a
            :class:`~diffusion_kernels.decoding.JointThreshold` (replaces the schedule/threshold).
        cuda_graph: run every step on static buffers and, on a CUDA device, capture it as a CUDA
            graph once per step shape and replay it (the same tokens; ``docs/generate.md``). On
            other devices the same steps run eagerly. Not with ``cache='exact'``/``'block'``,
            ``remask_committed``, ``remasking='origin'``, ``schedule='sdar'`` with ``threshold`` or
            a ``rule`` other than Threshold/Factor/DInferThreshold (a ValueError); with a cache the
            model must take a tensor ``start`` (``accepts_tensor_start``, e.g. LLaDAModel).

    Returns:
        ``[B, gen_length]`` int64 tokens, or a :class:`GenerateOutput` (``return_dict`` or
        ``return_trajectory``).

    Raises:
        TypeError, ValueError: a bad argument (the message names it).
        RuntimeError: a row cannot progress (the model's logits are NaN or +inf at its masked
            positions, or it proposes ``mask_id``); never a hang or a silently masked answer.

    Examples:
        >>> from diffusion_kernels import generate
        >>> from diffusion_kernels.demo import load_model, task
        >>> model, prompt = load_model(), task.parse("503912748160293847561029")
        >>> task.render(generate(model, prompt, 24, 8, 24, mask_id=task.MASK, progress=False)[0])
        '000111222334455667788999'
        >>> out = generate(model, prompt, 24, 8, 24, mask_id=task.MASK, threshold=0.9, cache="dual",
        ...                progress=False, return_dict=True)   # Fast-dLLM: fewer forwards
        >>> out.nfe < 24
        True
    """
    _check_prompt(prompt_ids)
    if mask_id is None:
        raise TypeError("diffusion_kernels: argument 'mask_id' must be an int, got None")
    for name, value in (("mask_id", mask_id), ("eos_id", eos_id), ("eot_id", eot_id), ("top_k", top_k)):
        _optional_int(value, name)
    if seed is not None and not isinstance(seed, (int, torch.Tensor)) or isinstance(seed, bool):
        raise TypeError(f"diffusion_kernels: argument 'seed' must be an int, got {type(seed).__name__}")
    if callback is not None and not callable(callback):
        raise TypeError(f"diffusion_kernels: argument 'callback' must be callable, got {type(callback).__name__}")
    _check_ids_in_vocab(model, prompt_ids, {"mask_id": mask_id, "eos_id": eos_id, "eot_id": eot_id})
    adaptive = (threshold is not None and schedule != "sdar") or factor is not None or rule is not None \
        or editing is not None
    block_mode = cache in ("exact", "block")
    if block_mode:
        b = getattr(getattr(model, "config", None), "block_size", None)
        if not isinstance(b, int) or not hasattr(model, "init_cache"):
            raise ValueError(f"diffusion_kernels: cache={cache!r} needs a block-diffusion model (config.block_size, "
                             "init_cache; e.g. models.BlockDiffusionModel)")
        if cfg_scale or remask_committed is not None or return_trajectory:
            raise ValueError(f"diffusion_kernels: cache={cache!r} does not take 'cfg_scale', 'remask_committed' or "
                             "'return_trajectory'")
        _positive_int(steps, "steps")
        num_blocks = decoded_blocks(prompt_ids.shape[1], prompt_ids.shape[1] + gen_length, block_length)
        if not adaptive and steps % num_blocks:
            raise ValueError(f"diffusion_kernels: 'steps' ({steps}) must be a multiple of the {num_blocks} blocks "
                             "decoded on the model's grid")
    else:
        if editing is not None or sub_block is not None:
            raise ValueError("diffusion_kernels: 'editing' and 'sub_block' need cache='exact' or 'block'")
        num_blocks = _num_blocks(gen_length, block_length, steps, adaptive)
        check_cache_policy(cache, model)
    if (suppress_eos or stop_at_eos) and eos_id is None:
        raise ValueError("diffusion_kernels: 'suppress_eos'/'stop_at_eos' need 'eos_id'")
    _check_remasking(remask_committed, adaptive, return_trajectory, stop_at_eos)
    if isinstance(remask_committed, ReMDM) and remask_committed.schedule == "loop" and schedule != "llada":
        raise ValueError("diffusion_kernels: ReMDM('loop') sets the step counts itself: use schedule='llada'")
    _check_cuda_graph(cuda_graph, model, cache, remasking, remask_committed, schedule, threshold, rule)
    plan = None if editing is not None else _plan(steps // num_blocks, threshold, factor, rule, schedule, alg_temp,
                                                  schedule_eps, remasking, block_length)
    proposal = _proposal(temperature, top_p, top_k, remasking, confidence, confidence_from, eos_id, eot_id,
                         suppress_eos, confidence_eos_eot_inf)
    cfg_scale = _check_cfg_scale(cfg_scale)
    full_mask = _full_attention_mask(attention_mask, prompt_ids, gen_length)
    if cuda_graph and full_mask is not None and getattr(model, "accepts_tensor_start", False) and bool(full_mask.all()):
        full_mask = None  # what the model does at every forward, read once here: a static step reads nothing

    B, Lp = prompt_ids.shape
    device = prompt_ids.device
    x = torch.full((B, Lp + gen_length), mask_id, dtype=torch.int64, device=device)
    x[:, :Lp] = prompt_ids
    order = torch.full_like(x, -1)
    log_prob = torch.zeros(x.shape, dtype=torch.float32, device=device) if return_trajectory else None
    show = sys.stderr.isatty() if progress is None else progress
    bar = progress_bar(total=None if adaptive else steps, enabled=show, unit="step")
    try:
        with torch.inference_mode():
            if block_mode:
                loop = BlockDiffusionLoop(model, plan, proposal, mask_id=mask_id, prompt_length=Lp,
                                          block_size=block_length, sub_block=sub_block, cache=cache,
                                          shift_logits=shift_logits, attention_mask=full_mask,
                                          seed=0 if seed is None else seed, eos_id=eos_id, stop_at_eos=stop_at_eos,
                                          callback=callback, bar=bar, editing=editing)
            else:
                forward = ModelForward(model, x, mask_id=mask_id, cache=cache, cfg_scale=cfg_scale,
                                       attention_mask=full_mask, shift_logits=shift_logits)
                loop = BlockLoop(forward, plan, proposal, mask_id=mask_id, prompt_length=Lp, block_length=block_length,
                                 seed=0 if seed is None else seed, eos_id=eos_id, stop_at_eos=stop_at_eos,
                                 callback=callback, bar=bar, remasking=remask_committed, log_prob=log_prob,
                                 cuda_graph=cuda_graph)
            nfe = loop.run(x, order)
    finally:
        bar.close()
    seq = x[:, Lp:]
    if return_trajectory:
        from .rl.trajectory import Trajectory

        trajectory = Trajectory(sequences=x, prompt_length=Lp, mask_id=mask_id, step=order, log_prob=log_prob,
                                num_steps=nfe, attention_mask=full_mask)
        return GenerateOutput(sequences=seq, order=order[:, Lp:], nfe=nfe, trajectory=trajectory)
    if return_dict:
        return GenerateOutput(sequences=seq, order=order[:, Lp:], nfe=nfe)
    return seq
