"""The record of one generate() run that RL needs: which step committed each token, and the
proposal's log-probability of it (TraceRL's "trajectory"), without storing every state."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch

__all__ = ["Trajectory"]


def _int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"diffusion_kernels: Trajectory: argument '{name}' must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"diffusion_kernels: Trajectory: argument '{name}' must be >= {minimum}, got {value}")
    return value


def _tensor(t, name: str, shape, dtypes, device=None) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"diffusion_kernels: Trajectory: field '{name}' must be a tensor, got {type(t).__name__}")
    if shape is not None and tuple(t.shape) != tuple(shape):
        raise ValueError(f"diffusion_kernels: Trajectory: field '{name}' must be {list(shape)} (the shape of "
                         f"'sequences'), got {list(t.shape)}")
    if t.dtype not in dtypes:
        names = " or ".join(str(d) for d in dtypes)
        raise ValueError(f"diffusion_kernels: Trajectory: field '{name}' must be {names}, got {t.dtype}")
    if device is not None and t.device != device:
        raise ValueError(f"diffusion_kernels: Trajectory: field '{name}' must be on the device of 'sequences' "
                         f"({device}), got {t.device}")


@dataclass(eq=False)  # field-wise == would compare tensors elementwise
class Trajectory:
    """One batch of denoising trajectories: the final tokens, the step that committed each of
    them and the proposal's log-probability of it at commit time.

    The state before step ``s`` (the model's input at that step) is rebuilt from these fields:
    every position committed at a step ``>= s`` is ``[MASK]`` again (:meth:`state_before`).
    Positions with ``step == -1`` (the prompt, left padding, tokens given rather than sampled)
    hold their token in every state.

    Attributes:
        sequences: ``[B, L]`` int64 final tokens, prompt included.
        prompt_length: ``Lp``, the prompt's length (left-padded rows share it), in ``[0, L]``.
        mask_id: the ``[MASK]`` token id.
        step: ``[B, L]`` int64, the 0-based step that committed each position, in
            ``[0, num_steps)``; ``-1`` at the prompt (checked) and at positions never masked.
        log_prob: ``[B, L]`` float32 log-probability of the committed token under the proposal
            distribution at commit time; 0 where ``step == -1`` (checked).
        num_steps: the number of steps (forwards) of the run, ``> step.max()``.
        attention_mask: ``[B, L]`` bool (0/1 accepted, stored as bool) or ``None``; False marks left
            padding, which must lie in the prompt.

    Raises:
        TypeError, ValueError: a field of the wrong type, shape, dtype, device or value (the
            message names the field). The checks read the tensors on the host (one sync on CUDA).

    Examples:
        >>> import torch
        >>> from diffusion_kernels.rl import Trajectory
        >>> seq = torch.tensor([[1, 2, 7, 8, 9]])      # prompt [1, 2], answer [7, 8, 9]
        >>> step = torch.tensor([[-1, -1, 1, 0, 1]])    # 8 committed at step 0, 7 and 9 at step 1
        >>> traj = Trajectory(seq, 2, 0, step, torch.zeros(1, 5).masked_fill(step >= 0, -0.5), 2)
        >>> traj.state_before(1)
        tensor([[1, 2, 0, 8, 0]])
        >>> traj.groups(1), traj.groups(2)
        ([(0, 1), (1, 2)], [(0, 2)])
    """

    sequences: torch.Tensor
    prompt_length: int
    mask_id: int
    step: torch.Tensor
    log_prob: torch.Tensor
    num_steps: int
    attention_mask: Optional[torch.Tensor] = None

    def __post_init__(self):
        seq = self.sequences
        if not isinstance(seq, torch.Tensor) or seq.dim() != 2:
            got = list(seq.shape) if isinstance(seq, torch.Tensor) else type(seq).__name__
            raise ValueError(f"diffusion_kernels: Trajectory: field 'sequences' must be a [B, L] tensor, got {got}")
        _tensor(seq, "sequences", None, (torch.int64,))
        B, L = seq.shape
        _int(self.prompt_length, "prompt_length", 0)
        if self.prompt_length > L:
            raise ValueError(f"diffusion_kernels: Trajectory: field 'prompt_length' must be <= L = {L}, "
                             f"got {self.prompt_length}")
        _int(self.mask_id, "mask_id", 0)
        _int(self.num_steps, "num_steps", 0)
        _tensor(self.step, "step", (B, L), (torch.int64,), seq.device)
        _tensor(self.log_prob, "log_prob", (B, L), (torch.float32,), seq.device)
        if seq.device.type == "meta":
            raise ValueError("diffusion_kernels: Trajectory: field 'sequences' is a meta tensor: it has no values")
        committed = self.step >= 0
        if bool((self.step < -1).any()) or bool((self.step >= self.num_steps).any()):
            raise ValueError(f"diffusion_kernels: Trajectory: field 'step' must lie in [-1, num_steps = "
                             f"{self.num_steps}), got values in [{int(self.step.min())}, {int(self.step.max())}]")
        if bool(committed[:, :self.prompt_length].any()):
            raise ValueError("diffusion_kernels: Trajectory: field 'step' must be -1 at the prompt's "
                             f"{self.prompt_length} positions")
        if bool((committed & (seq == self.mask_id)).any()):
            raise ValueError(f"diffusion_kernels: Trajectory: field 'sequences' holds mask_id = {self.mask_id} at a "
                             "committed position (step >= 0)")
        if bool((self.log_prob.masked_select(~committed) != 0).any()):
            raise ValueError("diffusion_kernels: Trajectory: field 'log_prob' must be 0 where step == -1")
        am = self.attention_mask
        if am is not None:
            if isinstance(am, torch.Tensor) and am.dtype != torch.bool and not am.is_complex() \
                    and tuple(am.shape) == (B, L) and bool(((am == 0) | (am == 1)).all()):
                am = am.to(torch.bool)
            _tensor(am, "attention_mask", (B, L), (torch.bool,), seq.device)
            if not bool(am[:, self.prompt_length:].all()):
                raise ValueError("diffusion_kernels: Trajectory: field 'attention_mask' may be False (padding) "
                                 "only inside the prompt (left padding)")
            if bool((committed & ~am).any()):
                raise ValueError("diffusion_kernels: Trajectory: field 'attention_mask' is False at a committed "
                                 "position")
            self.attention_mask = am

    @property
    def action_mask(self) -> torch.Tensor:
        """``[B, L]`` bool: the positions a step committed (``step >= 0``), the RL actions."""
        return self.step >= 0

    def state_before(self, step: int) -> torch.Tensor:
        """``[B, L]`` int64: the sequence the model saw at step ``step`` (``0 <= step <= num_steps``):
        positions committed at ``step`` or later hold ``mask_id``."""
        _int(step, "step", 0)
        if step > self.num_steps:
            raise ValueError(f"diffusion_kernels: Trajectory: argument 'step' must be <= num_steps = "
                             f"{self.num_steps}, got {step}")
        return torch.where(self.step >= step, self.mask_id, self.sequences)

    def groups(self, group_size: int) -> List[Tuple[int, int]]:
        """TraceRL's step groups: ``[(0, s), (s, 2s), ...]`` up to ``num_steps``, the last one
        shorter when ``s`` does not divide it; ``ceil(num_steps / s)`` groups."""
        _int(group_size, "group_size", 1)
        return [(first, min(first + group_size, self.num_steps)) for first in range(0, self.num_steps, group_size)]
