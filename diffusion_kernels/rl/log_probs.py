"""Policy log-probabilities of diffusion LM outputs for RL: TraceRL's trajectory estimate and d1's
one-step (diffu-GRPO) estimate, on logits or on hidden states + LM head (docs/rl.md)."""
from __future__ import annotations

from typing import Any, Callable, Optional, Union

import torch

from .._philox import philox_uniform
from ..ops._args import int64_arg
from ._rows import RowScorer
from .trajectory import Trajectory

__all__ = ["trajectory_log_probs", "one_step_log_probs", "fused_linear_trajectory_log_probs",
           "fused_linear_one_step_log_probs", "one_step_input"]

Model = Callable[..., Any]


def _trajectory(scorer: RowScorer, trajectory: Trajectory, group_size: int) -> torch.Tensor:
    if not isinstance(trajectory, Trajectory):
        raise TypeError(f"diffusion_kernels: argument 'trajectory' must be a Trajectory, got {type(trajectory).__name__}")
    groups = trajectory.groups(group_size)  # checks group_size
    seq, step, am = trajectory.sequences, trajectory.step, trajectory.attention_mask
    B, L = seq.shape
    flat_index, values = [], []
    for first, end in groups:
        in_group = (step >= first) & (step < end)
        rows = in_group.any(dim=1).nonzero().squeeze(1)
        if rows.numel() == 0:  # no row commits a token in these steps: no forward
            continue
        x = trajectory.state_before(first).index_select(0, rows)
        positions = in_group.index_select(0, rows).reshape(-1).nonzero().squeeze(1)
        targets = seq.index_select(0, rows).reshape(-1).index_select(0, positions)
        values.append(scorer(x, None if am is None else am.index_select(0, rows), positions, targets))
        flat_index.append(rows.index_select(0, positions // L) * L + positions % L)
    if not values:
        return torch.zeros(B, L, dtype=torch.float32, device=seq.device)
    vals = torch.cat(values)
    out = torch.zeros(B * L, dtype=vals.dtype, device=vals.device)
    return out.index_copy(0, torch.cat(flat_index), vals).view(B, L)


def _ids(t, name: str, device=None) -> None:
    if not isinstance(t, torch.Tensor) or t.dim() != 2 or t.dtype != torch.int64:
        got = f"{t.dtype} {list(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"diffusion_kernels: argument '{name}' must be a [B, *] int64 tensor of token ids, got {got}")
    if device is not None and t.device != device:
        raise ValueError(f"diffusion_kernels: argument '{name}' must be on the device of 'prompt' ({device}), got {t.device}")


def one_step_input(prompt: torch.Tensor, completion_length: int, prompt_mask_p: float, seed: int, *, mask_id: int,
                   offset: int = 0, attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The model input of d1's one-step estimate: ``[B, Lp + completion_length]``, the completion
    all ``mask_id``, each (non-padding) prompt token replaced by ``mask_id`` where the Philox
    uniform of ``(seed, offset)``, row ``b``, column ``l`` is below ``prompt_mask_p``.

    Args:
        prompt: ``[B, Lp]`` int64 token ids.
        completion_length: ``Lc >= 0``.
        prompt_mask_p: probability in ``[0, 1]`` of masking each prompt token.
        seed, offset: the Philox key (ints).
        mask_id: the ``[MASK]`` id.
        attention_mask: ``[B, Lp]`` (0 = left padding, never masked) or ``None``.

    Returns:
        ``[B, Lp + Lc]`` int64.

    Examples:
        >>> import torch
        >>> from diffusion_kernels.rl import one_step_input
        >>> one_step_input(torch.tensor([[5, 6, 7]]), 2, 0.0, seed=0, mask_id=9)
        tensor([[5, 6, 7, 9, 9]])
    """
    _ids(prompt, "prompt")
    completion_length = int64_arg(completion_length, "completion_length")
    if completion_length < 0:
        raise ValueError(f"diffusion_kernels: argument 'completion_length' must be >= 0, got {completion_length}")
    if isinstance(prompt_mask_p, bool) or not isinstance(prompt_mask_p, (int, float)) or not 0 <= prompt_mask_p <= 1:
        raise ValueError(f"diffusion_kernels: argument 'prompt_mask_p' must be a number in [0, 1], got {prompt_mask_p!r}")
    mask_id = int64_arg(mask_id, "mask_id")
    seed, offset = int64_arg(seed, "seed"), int64_arg(offset, "offset")
    B, Lp = prompt.shape
    dev = prompt.device
    u = philox_uniform(seed, offset, torch.arange(B, device=dev)[:, None], torch.arange(Lp, device=dev)[None, :])
    hide = u < prompt_mask_p
    if attention_mask is not None:
        if not isinstance(attention_mask, torch.Tensor) or tuple(attention_mask.shape) != (B, Lp) \
                or attention_mask.device != dev:
            got = list(attention_mask.shape) if isinstance(attention_mask, torch.Tensor) else type(attention_mask).__name__
            raise ValueError(f"diffusion_kernels: argument 'attention_mask' must be [B, Lp] = [{B}, {Lp}] on the "
                             f"prompt's device, got {got}")
        hide = hide & attention_mask.to(torch.bool)
    x = torch.full((B, Lp + completion_length), mask_id, dtype=torch.int64, device=dev)
    x[:, :Lp] = torch.where(hide, mask_id, prompt)
    return x


def _one_step(scorer: RowScorer, prompt, completion, prompt_mask_p, seed, mask_id, offset, attention_mask):
    _ids(prompt, "prompt")
    _ids(completion, "completion", prompt.device)
    if completion.shape[0] != prompt.shape[0]:
        raise ValueError(f"diffusion_kernels: argument 'completion' must have the {prompt.shape[0]} rows of 'prompt', "
                         f"got {completion.shape[0]}")
    B, Lp = prompt.shape
    Lc = completion.shape[1]
    x = one_step_input(prompt, Lc, prompt_mask_p, seed, mask_id=mask_id, offset=offset, attention_mask=attention_mask)
    full_mask = None
    if attention_mask is not None:
        full_mask = torch.cat([attention_mask.to(torch.bool),
                               torch.ones(B, Lc, dtype=torch.bool, device=prompt.device)], dim=1)
    L = Lp + Lc
    positions = (torch.arange(B, device=prompt.device)[:, None] * L + Lp
                 + torch.arange(Lc, device=prompt.device)[None, :]).reshape(-1)
    return scorer(x, full_mask, positions, completion.reshape(-1)).view(B, Lc)


def trajectory_log_probs(model: Model, trajectory: Trajectory, group_size: int = 1, *, temperature: float = 1.0,
                         shift_logits: bool = False) -> torch.Tensor:
    """TraceRL's policy log-probabilities of a denoising trajectory.

    The steps are cut into groups of ``group_size`` (:meth:`Trajectory.groups`, TraceRL's
    shrinkage ``s``); each group costs one forward on the state before its first step, and every
    token committed in the group is scored from it: ``log softmax(logits / temperature)[token]``.
    ``group_size=1`` is the exact per-step policy; ``ceil(num_steps / s)`` forwards in all. The
    log-probabilities come from the fused masked CE over the committed rows only: the group's
    ``[b, L, V]`` logits are released after the gather, and the CE keeps just the committed rows
    for its backward (no ``[positions, vocab]`` log-softmax).

    Args:
        model: ``model(x [b, L] int64, attention_mask=None | [b, L] bool) -> logits [b, L, V]``
            (or an output with ``.logits``), as for :func:`~diffusion_kernels.generate`; called
            with the trajectory's rows that commit a token in the group.
        trajectory: a :class:`Trajectory`.
        group_size: steps per forward (``>= 1``).
        temperature: the proposal temperature the tokens were sampled at (``> 0``); the policy is
            ``softmax(logits / T)``. Greedy (``T = 0``) trajectories use the untempered policy
            ``T = 1``. top-p / top-k filtering and classifier-free guidance are not modelled.
        shift_logits: Dream's convention (the logits at ``i`` predict token ``i + 1``).

    Returns:
        ``[B, L]`` float32 (float64 for float64 logits) log-probabilities at committed positions
        (``trajectory.action_mask``), 0 elsewhere; differentiable in the model's parameters. For
        PPO's ratio, compute the old policy's values with the same ``group_size`` (under
        ``torch.no_grad()``): ``trajectory.log_prob`` is the sampler's per-step value.

    Examples:
        >>> import torch
        >>> from diffusion_kernels.rl import Trajectory, trajectory_log_probs
        >>> head = torch.nn.Embedding(10, 10)
        >>> model = lambda x, attention_mask=None: head(x)         # [b, L] -> [b, L, 10] logits
        >>> step = torch.tensor([[-1, 0, 1, 1]])
        >>> traj = Trajectory(torch.tensor([[3, 4, 5, 6]]), 1, 9, step, torch.zeros(1, 4), 2)
        >>> lp = trajectory_log_probs(model, traj, group_size=2)   # one forward
        >>> lp.sum().backward()
        >>> lp.shape, bool(lp[0, 0] == 0)
        (torch.Size([1, 4]), True)
    """
    return _trajectory(RowScorer(model, temperature=temperature, shift_logits=shift_logits), trajectory, group_size)


def fused_linear_trajectory_log_probs(model: Model, lm_head_weight: torch.Tensor, trajectory: Trajectory,
                                      group_size: int = 1, *, temperature: float = 1.0, shift_logits: bool = False,
                                      chunk_size: Optional[int] = None) -> torch.Tensor:
    """:func:`trajectory_log_probs` of ``logits = hidden @ lm_head_weight.T`` without the logits.

    ``model(x, attention_mask=...)`` returns the final hidden states ``[b, L, H]``; the committed
    rows are gathered and their logits computed ``chunk_size`` rows at a time by the fused linear
    CE of :func:`~diffusion_kernels.fused_linear_masked_diffusion_loss` (recomputed in the
    backward), so nothing vocabulary-sized outlives a chunk.

    Args:
        model: ``model(x, attention_mask=None) -> hidden [b, L, H]``, dtype and device of the head.
        lm_head_weight: ``[V, H]`` (float32, bfloat16, float16; float64 on CPU).
        trajectory, group_size, temperature, shift_logits: as :func:`trajectory_log_probs`.
        chunk_size: rows per chunk of logits (default: ``2**24 // V``, 64 MB in float32).

    Returns:
        As :func:`trajectory_log_probs`; gradients flow to the hidden states and the head.

    Examples:
        >>> import torch
        >>> from diffusion_kernels.rl import Trajectory, fused_linear_trajectory_log_probs
        >>> emb, head = torch.nn.Embedding(10, 4), torch.nn.Linear(4, 10, bias=False)
        >>> step = torch.tensor([[-1, 0, 1, 1]])
        >>> traj = Trajectory(torch.tensor([[3, 4, 5, 6]]), 1, 9, step, torch.zeros(1, 4), 2)
        >>> lp = fused_linear_trajectory_log_probs(lambda x, attention_mask=None: emb(x), head.weight, traj)
        >>> lp.sum().backward()
    """
    scorer = RowScorer(model, lm_head_weight, temperature=temperature, shift_logits=shift_logits, chunk_size=chunk_size)
    return _trajectory(scorer, trajectory, group_size)


def one_step_log_probs(model: Model, prompt: torch.Tensor, completion: torch.Tensor, prompt_mask_p: float,
                       seed: int, *, mask_id: int, offset: int = 0, attention_mask: Optional[torch.Tensor] = None,
                       temperature: float = 1.0, shift_logits: bool = False) -> torch.Tensor:
    """d1's one-step policy log-probabilities (diffu-GRPO): one forward on the prompt with each
    token masked with probability ``prompt_mask_p`` and the completion fully masked; the
    log-probability of each completion token at its position.

    The prompt masking is deterministic in ``(seed, offset)`` (:func:`one_step_input`, Philox row
    ``b``, column ``l``): use one key per policy-gradient iteration and the same key for the old
    and the new policy, as d1 does. Scored by the fused masked CE over the completion rows only.

    Args:
        model: as :func:`trajectory_log_probs`.
        prompt: ``[B, Lp]`` int64, left-padded; ``attention_mask``: ``[B, Lp]`` (0 = pad, never
            masked), extended with ones over the completion.
        completion: ``[B, Lc]`` int64 sampled tokens.
        prompt_mask_p: probability in ``[0, 1]`` of masking each prompt token (d1: 0.15).
        seed, offset: Philox key of the prompt masking.
        mask_id: the ``[MASK]`` id.
        temperature, shift_logits: as :func:`trajectory_log_probs`.

    Returns:
        ``[B, Lc]`` float32 (float64 for float64 logits) log-probabilities, differentiable in
        the model's parameters; mask tokens after EOS yourself (``clipped_policy_loss(mask=)``).

    Examples:
        >>> import torch
        >>> from diffusion_kernels.rl import one_step_log_probs
        >>> head = torch.nn.Embedding(10, 10)
        >>> model = lambda x, attention_mask=None: head(x)
        >>> lp = one_step_log_probs(model, torch.tensor([[1, 2, 3]]), torch.tensor([[4, 5]]), 0.15, 0, mask_id=9)
        >>> lp.shape
        torch.Size([1, 2])
    """
    scorer = RowScorer(model, temperature=temperature, shift_logits=shift_logits)
    return _one_step(scorer, prompt, completion, prompt_mask_p, seed, mask_id, offset, attention_mask)


def fused_linear_one_step_log_probs(model: Model, lm_head_weight: torch.Tensor, prompt: torch.Tensor,
                                    completion: torch.Tensor, prompt_mask_p: float, seed: int, *, mask_id: int,
                                    offset: int = 0, attention_mask: Optional[torch.Tensor] = None,
                                    temperature: float = 1.0, shift_logits: bool = False,
                                    chunk_size: Optional[int] = None) -> torch.Tensor:
    """:func:`one_step_log_probs` of ``logits = hidden @ lm_head_weight.T`` without the logits
    (the model returns hidden states ``[b, L, H]``; see :func:`fused_linear_trajectory_log_probs`).

    Args:
        model: ``model(x, attention_mask=None) -> hidden [b, L, H]``, dtype and device of the head.
        lm_head_weight: ``[V, H]``.
        prompt, completion, prompt_mask_p, seed, mask_id, offset, attention_mask, temperature,
            shift_logits: as :func:`one_step_log_probs`.
        chunk_size: rows per chunk of logits (default: ``2**24 // V``).

    Returns:
        ``[B, Lc]`` log-probabilities, as :func:`one_step_log_probs`; gradients flow to the hidden
        states and the head.

    Examples:
        >>> import torch
        >>> from diffusion_kernels.rl import fused_linear_one_step_log_probs
        >>> emb, head = torch.nn.Embedding(10, 4), torch.nn.Linear(4, 10, bias=False)
        >>> lp = fused_linear_one_step_log_probs(lambda x, attention_mask=None: emb(x), head.weight,
        ...                                      torch.tensor([[1, 2, 3]]), torch.tensor([[4, 5]]), 0.15, 0, mask_id=9)
        >>> lp.shape
        torch.Size([1, 2])
    """
    scorer = RowScorer(model, lm_head_weight, temperature=temperature, shift_logits=shift_logits, chunk_size=chunk_size)
    return _one_step(scorer, prompt, completion, prompt_mask_p, seed, mask_id, offset, attention_mask)
