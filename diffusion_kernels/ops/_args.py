"""Argument normalisation shared by the op wrappers: the one place that turns Python numbers and
tensors into what the registered ops take, with errors that name the argument.

Row and key helpers return ``(tensor or None, number)``: the op reads the tensor when one is given
(on the device, CUDA-graph safe) and the number otherwise.
"""
from typing import Optional, Tuple, Union

import torch

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def int64_arg(value, name: str) -> int:
    """A Python int that fits the kernels' int64, with an error that names the argument."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"diffusion_kernels: argument '{name}' must be an int, got a tensor of shape {tuple(value.shape)}")
        if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"diffusion_kernels: argument '{name}' must be an int, got a {value.dtype} tensor")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"diffusion_kernels: argument '{name}' must be an int, got {type(value).__name__}")
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"diffusion_kernels: argument '{name}' = {value} is outside the int64 range")
    return value


def float_row_arg(value: Union[float, torch.Tensor], name: str, batch: int) -> Tuple[Optional[torch.Tensor], float]:
    """A per-row float option: a number, or a one-element / ``[batch]`` tensor made float32 contiguous."""
    if isinstance(value, torch.Tensor):
        if value.dtype == torch.bool or value.is_complex():
            raise TypeError(f"diffusion_kernels: argument '{name}' must be a number or a real [batch] tensor, got {value.dtype}")
        if value.numel() == 1:
            value = value.reshape(1).expand(batch)
        return value.to(torch.float32).contiguous(), 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"diffusion_kernels: argument '{name}' must be a number or a [batch] tensor, got {type(value).__name__}")
    return None, float(value)


def int_row_arg(value: Union[int, torch.Tensor], name: str, batch: int) -> Tuple[Optional[torch.Tensor], int]:
    """A per-row integer option: an int, or a one-element / ``[batch]`` integer tensor made int64 contiguous."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"diffusion_kernels: argument '{name}' must be an int or an integer [batch] tensor, got {value.dtype}")
        if value.numel() == 1:
            value = value.reshape(1).expand(batch)
        return value.to(torch.int64).contiguous(), 0
    return None, int64_arg(value, name)


def key_arg(value: Union[int, torch.Tensor], name: str) -> Tuple[Optional[torch.Tensor], int]:
    """A Philox seed/offset: an int in ``[-2**63, 2**64)``, passed as the int64 with the same 64 bits,
    or a one-element integer tensor the kernel reads where it runs (CUDA-graph safe)."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"diffusion_kernels: argument '{name}' must be an int or a one-element int64 tensor, got a {value.dtype} tensor")
        if value.numel() != 1:
            raise ValueError(f"diffusion_kernels: argument '{name}' must be an int or a one-element int64 tensor, got shape {tuple(value.shape)}")
        return (value.reshape(1) if value.dim() != 1 else value), 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"diffusion_kernels: argument '{name}' must be an int or a one-element int64 tensor, got {type(value).__name__}")
    if not INT64_MIN <= value < 2**64:
        raise ValueError(f"diffusion_kernels: argument '{name}' = {value} is outside [-2**63, 2**64)")
    return None, value - 2**64 if value > INT64_MAX else value


def host_readable(t: torch.Tensor) -> bool:
    """Whether a tensor's values can be checked without a device sync or a graph break: on the CPU,
    not a meta or fake tensor, and not under torch.compile."""
    return t.device.type == "cpu" and not torch.compiler.is_compiling()


def same_device_or_cpu(t: torch.Tensor, name: str, device: torch.device) -> None:
    """A per-row tensor option may live on the op's device or on the CPU (then it is copied over)."""
    if t.device != device and t.device.type != "cpu":
        raise ValueError(f"diffusion_kernels: argument '{name}' must be on the device of the other tensors ({device}) "
                         f"or on the CPU, got {t.device}")


def lengths_arg(value: Optional[Union[int, torch.Tensor]], name: str, batch: int, upper: int,
                device: torch.device) -> Optional[torch.Tensor]:
    """Per-row lengths (an int or an integer ``[batch]`` tensor) as int64 ``[batch]`` on ``device``,
    each in ``[0, upper]``; a tensor's values are checked where :func:`host_readable`."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"diffusion_kernels: argument '{name}' must be an int or an integer [batch] tensor, "
                            f"got {value.dtype}")
        if value.dim() > 1 or (value.dim() == 1 and value.shape[0] != batch):
            raise ValueError(f"diffusion_kernels: argument '{name}' must be an int or a [batch] = [{batch}] tensor (one "
                             f"entry per row), got shape {tuple(value.shape)}")
        same_device_or_cpu(value, name, device)
        if host_readable(value) and value.numel() and not ((value >= 0) & (value <= upper)).all():
            raise ValueError(f"diffusion_kernels: argument '{name}' must lie in [0, {upper}], got "
                             f"{value.min().item()}..{value.max().item()}")
        value = value.to(device=device, dtype=torch.int64)
        return value.expand(batch) if value.dim() == 0 else value
    value = int64_arg(value, name)
    if not 0 <= value <= upper:
        raise ValueError(f"diffusion_kernels: argument '{name}' must lie in [0, {upper}], got {value}")
    return torch.full((batch,), value, dtype=torch.int64, device=device)
