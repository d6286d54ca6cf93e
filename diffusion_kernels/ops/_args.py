"""Argument normalisation shared by the op wrappers: the one place that turns Python numbers and
tensors into what the registered ops take, with errors that name the argument.

Row and key helpers return ``(tensor or None, number)``: the op reads the tensor when one is given
(on the device, CUDA-graph safe) and the number otherwise.
"""
from typing import Optional, Sequence, Tuple, Union

import torch

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_TENSOR, _INT64 = torch.Tensor, torch.int64


def int64_arg(value, name: str) -> int:
    """A Python int that fits the kernels' int64, with an error that names the argument."""
    if value.__class__ is int and INT64_MIN <= value <= INT64_MAX:
        return value
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
    if value.__class__ is float:
        return None, value
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
    if value.__class__ is int and INT64_MIN <= value <= INT64_MAX:
        return None, value
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


def float_arg(value: Union[float, torch.Tensor], name: str) -> float:
    """A real number (a Python number or a one-element real tensor, read on the host)."""
    if value.__class__ is float:
        return value
    if isinstance(value, torch.Tensor):
        if value.dtype == torch.bool or value.is_complex():
            raise TypeError(f"diffusion_kernels: argument '{name}' must be a real number, got a {value.dtype} tensor")
        if value.numel() != 1 or value.device.type == "meta":
            raise ValueError(f"diffusion_kernels: argument '{name}' must be a number or a one-element tensor with a "
                             f"value, got a {value.device.type} tensor of shape {tuple(value.shape)}")
        return float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"diffusion_kernels: argument '{name}' must be a real number, got {type(value).__name__}")
    return float(value)


def token_ids_arg(t: torch.Tensor, name: str) -> torch.Tensor:
    """A tensor of token ids: float, complex and bool tensors are refused (never truncated)."""
    if t.__class__ is _TENSOR and t.dtype is _INT64:  # the usual case, in two attribute reads
        return t
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"diffusion_kernels: argument '{name}' must be an int64 tensor of token ids, got {type(t).__name__}")
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"diffusion_kernels: argument '{name}' must be an int64 tensor of token ids, got {t.dtype}")
    return t


def suppress_ids_arg(ids: Optional[Union[Sequence[int], torch.Tensor]], name: str, vocab: int,
                     device: torch.device) -> Optional[torch.Tensor]:
    """Vocabulary ids as a 1-D int64 tensor on ``device``. Ids given as Python ints are checked to
    lie in ``[0, vocab)`` here; a tensor's values are left to the op (the CPU kernel checks them,
    the CUDA kernel ignores ids outside the vocabulary: a check would synchronise)."""
    if ids is None:
        return None
    if isinstance(ids, torch.Tensor):
        if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            raise TypeError(f"diffusion_kernels: argument '{name}' must hold integer ids, got a {ids.dtype} tensor")
        return ids if ids.dtype == torch.int64 else ids.to(torch.int64)
    if isinstance(ids, (str, bytes)) or not hasattr(ids, "__iter__"):
        raise TypeError(f"diffusion_kernels: argument '{name}' must be a sequence of ints or a 1-D integer tensor, "
                        f"got {type(ids).__name__}")
    values = []
    for i in ids:
        if isinstance(i, bool) or not isinstance(i, int):
            raise TypeError(f"diffusion_kernels: argument '{name}' must hold integer ids, got {type(i).__name__} {i!r}")
        if not 0 <= i < vocab:
            raise ValueError(f"diffusion_kernels: argument '{name}' must hold ids in [0, {vocab}), got {i}")
        values.append(i)
    return torch.tensor(values, dtype=torch.int64, device=device)


def _element_offsets(t: torch.Tensor) -> torch.Tensor:
    """The storage offsets of every element of ``t`` (from its sizes and strides only)."""
    off = torch.zeros((), dtype=torch.int64)
    for size, stride in zip(t.shape, t.stride()):
        off = off[..., None] + torch.arange(size, dtype=torch.int64) * stride
    return off.flatten() + t.storage_offset()


def written_arg(t: torch.Tensor, name: str, *reads: Tuple[str, torch.Tensor]) -> None:
    """An in-place output: no element may share memory with another element of it (an expanded
    view with stride 0, overlapping strides) nor, partially, with a tensor it is computed from
    (``reads``: (name, tensor) pairs; the very same view is allowed). Sizes, strides and
    addresses only: no device sync."""
    if torch.compiler.is_compiling() or t.numel() == 0:
        return
    if not t.is_contiguous():
        status = torch._debug_has_internal_overlap(t)  # 0: no overlap, 1: overlap, 2: too hard to tell
        if status == 1 or (status == 2 and _element_offsets(t).unique().numel() < t.numel()):
            raise ValueError(f"diffusion_kernels: argument '{name}' is written in place, so its elements must not "
                             f"share memory (an expanded view with stride 0?), got shape {tuple(t.shape)} and "
                             f"strides {t.stride()}")
    if t.device.type == "meta":
        return
    for other_name, other in reads:
        if (other.device != t.device or other.element_size() != t.element_size()
                or other.untyped_storage().data_ptr() != t.untyped_storage().data_ptr()):
            continue
        if other.data_ptr() == t.data_ptr() and other.shape == t.shape and other.stride() == t.stride():
            continue
        if torch.isin(_element_offsets(other), _element_offsets(t)).any():
            raise ValueError(f"diffusion_kernels: argument '{other_name}' must not partially overlap '{name}', which "
                             f"is written in place")


def cpu_tensors_arg(**tensors) -> None:
    """The emulated CUDA kernels run on CPU tensors only: any other device is named as an error."""
    for name, t in tensors.items():
        if isinstance(t, torch.Tensor) and t.device.type != "cpu":
            raise RuntimeError(f"diffusion_kernels: argument '{name}' must be a CPU tensor for the emulated CUDA "
                               f"kernels, got a {t.device.type} tensor")


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
