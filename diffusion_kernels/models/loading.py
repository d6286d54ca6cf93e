"""Reading a Hugging Face checkpoint directory (``config.json`` + ``*.safetensors`` shards) into a
model built on the meta device, with errors that name the file, the config key or the tensor.

A model describes its checkpoint by a name table: each tensor name of the checkpoint maps to the
model's own parameter names; several names mean the checkpoint tensor is their concatenation
along dim 0 (a fused ``query_key_value``). Everything is checked (missing, extra, misshaped or
duplicated tensors) from the shard headers before any tensor data is read."""
from __future__ import annotations

import json
import os
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import torch
from torch import nn

__all__ = ["read_config", "require_keys", "config_from_dict", "checkpoint_tensor_names", "load_checkpoint"]


def read_config(directory: str) -> Tuple[dict, str]:
    """``(config dict, path)`` of ``directory/config.json``; a missing file, invalid JSON or a
    non-object is an error naming the path."""
    path = os.path.join(directory, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"diffusion_kernels: no config.json in {directory}")
    try:
        with open(path) as f:
            cfg = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"diffusion_kernels: {path} is not valid JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"diffusion_kernels: {path}: expected a JSON object, got {type(cfg).__name__}")
    return cfg, path


def require_keys(cfg: dict, keys: Iterable[str], source: str, model: str) -> None:
    """A ValueError naming ``source`` and every key of ``keys`` that ``cfg`` lacks (or holds as null):
    defaulting any of them would build a different model than the checkpoint's."""
    missing = [k for k in keys if cfg.get(k) is None]
    if missing:
        raise ValueError(f"diffusion_kernels: {source} lacks {', '.join(repr(k) for k in missing)} "
                         f"(a {model} config.json has them)")


def config_from_dict(cls, kw: dict, source: str):
    """``cls(**kw)`` with its TypeError/ValueError re-raised as a ValueError naming ``source``."""
    try:
        return cls(**kw)
    except (TypeError, ValueError) as e:
        raise ValueError(f"diffusion_kernels: {source}: {e}") from None


def _shards(directory: str) -> List[str]:
    names = sorted(n for n in os.listdir(directory) if n.endswith(".safetensors"))
    if not names:
        raise FileNotFoundError(f"diffusion_kernels: no *.safetensors file in {directory}")
    return [os.path.join(directory, n) for n in names]


def _headers(paths: List[str], rename: Callable[[str], str]) -> Dict[str, Tuple[str, str, tuple]]:
    """checkpoint name (after ``rename``) -> (name in the file, file, shape), from the headers only."""
    from safetensors import safe_open

    found: Dict[str, Tuple[str, str, tuple]] = {}
    for path in paths:
        try:
            with safe_open(path, framework="pt") as f:
                entries = [(k, tuple(f.get_slice(k).get_shape())) for k in f.keys()]
        except Exception as e:  # safetensors raises its own error types for a bad header
            raise ValueError(f"diffusion_kernels: cannot read the checkpoint shard {path} (empty, truncated or not "
                             f"safetensors): {e}") from e
        for raw, shape in entries:
            name = rename(raw)
            if name in found:
                raise ValueError(f"diffusion_kernels: tensor '{raw}' is in two checkpoint shards: {found[name][1]} "
                                 f"and {path}")
            found[name] = (raw, path, shape)
    return found


def checkpoint_tensor_names(directory: str) -> set:
    """The tensor names of ``directory``'s shards (read from the headers)."""
    return set(_headers(_shards(directory), lambda n: n))


def load_checkpoint(model: nn.Module, directory: str, table: Dict[str, List[str]], *,
                    dtype: Optional[torch.dtype] = None, device=None, ignored: Iterable[str] = (),
                    rename: Callable[[str], str] = lambda n: n) -> None:
    """Assign the tensors of ``directory``'s shards to ``model`` (built on the meta device) by ``table``.

    Args:
        model: its ``state_dict()`` names and shapes are what ``table`` maps to.
        directory: holds one or more ``*.safetensors`` shards.
        table: checkpoint tensor name -> the model's names (concatenated along dim 0 when several).
        dtype: cast floating tensors to it (default: as stored).
        device: where the tensors are read to (default CPU).
        ignored: checkpoint names skipped if present (e.g. a tied ``lm_head.weight``).
        rename: applied to each checkpoint name before the table lookup.

    Raises:
        FileNotFoundError: no shard. ValueError: an unreadable shard (named), a tensor the config
        implies but no shard holds, a tensor no config would put there, a tensor whose shape
        differs from the config's (each named with its file), or one tensor in two shards.

    Examples:
        >>> # LLaDAModel.from_pretrained, DreamModel.from_pretrained and
        >>> # BlockDiffusionModel.from_pretrained call it with their own name tables.
    """
    try:
        from safetensors import safe_open
    except ImportError as e:  # pragma: no cover
        raise ImportError("from_pretrained needs the 'safetensors' package") from e
    paths = _shards(directory)
    found = _headers(paths, rename)
    ignored = set(ignored)
    own = model.state_dict(keep_vars=True)
    config_file = os.path.join(directory, "config.json")
    missing = [name for name in table if name not in found]
    if missing:
        raise ValueError(f"diffusion_kernels: checkpoint {directory} is missing tensor(s) "
                         f"{', '.join(repr(n) for n in missing[:8])}{' ...' if len(missing) > 8 else ''} "
                         f"that {config_file} implies")
    extra = [name for name in found if name not in table and name not in ignored]
    if extra:
        raw, path, _ = found[extra[0]]
        raise ValueError(f"diffusion_kernels: checkpoint tensor '{raw}' in {path} is not part of the model that "
                         f"{config_file} describes (unexpected; {len(extra)} such tensor(s))")
    for name, targets in table.items():
        want = (sum(own[t].shape[0] for t in targets),) + tuple(own[targets[0]].shape[1:])
        raw, path, shape = found[name]
        if shape != want:
            raise ValueError(f"diffusion_kernels: checkpoint tensor '{raw}' in {path} has shape {list(shape)}, "
                             f"{config_file} implies {list(want)}")
    by_file: Dict[str, List[str]] = {}
    for name in table:
        by_file.setdefault(found[name][1], []).append(name)
    state = {}
    for path, names in by_file.items():
        with safe_open(path, framework="pt", device=str(device or "cpu")) as f:
            for name in names:
                t = f.get_tensor(found[name][0])
                if dtype is not None and t.is_floating_point():
                    t = t.to(dtype)
                targets = table[name]
                parts = t.split([own[n].shape[0] for n in targets]) if len(targets) > 1 else (t,)
                for n, part in zip(targets, parts):
                    state[n] = part.contiguous() if len(targets) > 1 else part
    model.load_state_dict(state, strict=True, assign=True)
