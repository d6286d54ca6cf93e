"""Argument normalisation shared by the op wrappers."""
import torch

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def int64_arg(value, name: str) -> int:
    """A Python int that fits the kernels' int64, with an error that names the argument."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"diffusion_kernels: argument '{name}' must be an int, got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"diffusion_kernels: argument '{name}' must be an int, got {type(value).__name__}")
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError(f"diffusion_kernels: argument '{name}' = {value} is outside the int64 range")
    return value
