"""LLaDA's architecture (LLaMA-style bidirectional transformer) on the package's attention op,
with Fast-dLLM's prefix and dual KV caches.

Parameter names follow the Hugging Face LLaDA checkpoints (``model.transformer.blocks.{i}.q_proj``
...), so :meth:`LLaDAModel.from_pretrained` loads a LLaDA-8B directory (``config.json`` +
``*.safetensors``) without a name table. Keys enter the cache *after* RoPE: a cached key is
never re-rotated (Fast-dLLM caches pre-RoPE keys and re-rotates all of them every step).
"""
from __future__ import annotations

import json
import os
import math
from dataclasses import asdict, dataclass, fields
from typing import ClassVar, Optional, Tuple

import torch
from torch import nn

from ..ops import attention_with_kv_cache

__all__ = ["LLaDAConfig", "LLaDAModel", "KVCache"]


def _check_int(value, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"diffusion_kernels: LLaDAConfig: '{name}' must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"diffusion_kernels: LLaDAConfig: '{name}' must be >= {minimum}, got {value}")


@dataclass
class LLaDAConfig:
    vocab_size: int = 64
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: Optional[int] = None   # None: = n_heads (LLaDA-8B is MHA)
    mlp_hidden_size: int = 128         # SwiGLU width (LLaDA-8B: 12288)
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    weight_tying: bool = False
    mask_token_id: int = 63

    # keys a LLaDA config.json must have: defaulting any of them would build a different model
    REQUIRED_HF_KEYS: ClassVar[Tuple[str, ...]] = ("d_model", "n_layers", "n_heads", "mlp_hidden_size",
                                                   "mask_token_id", "rope_theta")

    def __post_init__(self):
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "mlp_hidden_size"):
            _check_int(getattr(self, name), name, minimum=1)
        if self.n_kv_heads is not None:
            _check_int(self.n_kv_heads, "n_kv_heads", minimum=1)
        _check_int(self.mask_token_id, "mask_token_id", minimum=0)
        if self.d_model % self.n_heads:
            raise ValueError(f"diffusion_kernels: LLaDAConfig: 'n_heads' ({self.n_heads}) must divide 'd_model' "
                             f"({self.d_model})")
        if self.head_dim % 2:
            raise ValueError(f"diffusion_kernels: LLaDAConfig: the head dim d_model / n_heads = {self.head_dim} "
                             "must be even (RoPE rotates pairs)")
        if self.n_heads % self.kv_heads:
            raise ValueError(f"diffusion_kernels: LLaDAConfig: 'n_kv_heads' ({self.n_kv_heads}) must divide "
                             f"'n_heads' ({self.n_heads})")
        if self.mask_token_id >= self.vocab_size:
            raise ValueError(f"diffusion_kernels: LLaDAConfig: 'mask_token_id' ({self.mask_token_id}) must be < "
                             f"'vocab_size' ({self.vocab_size})")
        for name in ("rope_theta", "rms_norm_eps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"diffusion_kernels: LLaDAConfig: '{name}' must be a finite number > 0, got {value!r}")

    @classmethod
    def from_hf(cls, cfg: dict, source: str = "config.json") -> "LLaDAConfig":
        """From a LLaDA ``config.json`` (OLMo-style keys; ``embedding_size`` wins over
        ``vocab_size`` when the embedding is padded). ``source`` names the file in errors."""
        if not isinstance(cfg, dict):
            raise ValueError(f"diffusion_kernels: {source}: expected a JSON object, got {type(cfg).__name__}")
        missing = [k for k in cls.REQUIRED_HF_KEYS if cfg.get(k) is None]
        if cfg.get("embedding_size") is None and cfg.get("vocab_size") is None:
            missing.append("vocab_size")
        if missing:
            raise ValueError(f"diffusion_kernels: {source} lacks {', '.join(repr(k) for k in missing)} "
                             "(a LLaDA config.json has them)")
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in cfg.items() if k in names}
        kw["vocab_size"] = cfg.get("embedding_size") or cfg["vocab_size"]
        if cfg.get("n_kv_heads") is None:
            kw["n_kv_heads"] = None
        try:
            return cls(**kw)
        except (TypeError, ValueError) as e:
            raise ValueError(f"diffusion_kernels: {source}: {e}") from None

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads


def _read_json(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"diffusion_kernels: {path} is not valid JSON: {e}") from None


class KVCache:
    """Per-layer ``[B, L, Hkv, D]`` K (post-RoPE) and V buffers, written in place by the attention op."""

    def __init__(self, config: LLaDAConfig, batch: int, length: int, dtype, device):
        shape = (batch, length, config.kv_heads, config.head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.n_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.n_layers)]
        self.length = length


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return (h * self.weight.float()).to(x.dtype)


def _rope(x, cos, sin):
    """Rotate-half RoPE (LLaDA/OLMo layout: the two halves of the head dim pair up)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half].float(), x[..., half:].float()
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(x.dtype)


def _sdpa_for_training(q, k, v, key_mask):
    """Differentiable attention for training: the package's attention op has no backward yet."""
    rep = q.shape[2] // k.shape[2]
    k, v = k.repeat_interleave(rep, 2), v.repeat_interleave(rep, 2)
    mask = None if key_mask is None else key_mask[:, None, None, :]
    o = nn.functional.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                   attn_mask=mask)
    return o.transpose(1, 2)


class Block(nn.Module):
    def __init__(self, c: LLaDAConfig):
        super().__init__()
        d, hd = c.d_model, c.head_dim
        self.c = c
        self.attn_norm = RMSNorm(d, c.rms_norm_eps)
        self.ff_norm = RMSNorm(d, c.rms_norm_eps)
        self.q_proj = nn.Linear(d, c.n_heads * hd, bias=False)
        self.k_proj = nn.Linear(d, c.kv_heads * hd, bias=False)
        self.v_proj = nn.Linear(d, c.kv_heads * hd, bias=False)
        self.attn_out = nn.Linear(c.n_heads * hd, d, bias=False)
        self.ff_proj = nn.Linear(d, c.mlp_hidden_size, bias=False)   # gate (SiLU)
        self.up_proj = nn.Linear(d, c.mlp_hidden_size, bias=False)
        self.ff_out = nn.Linear(c.mlp_hidden_size, d, bias=False)

    def forward(self, h, cos, sin, key_mask, k_cache, v_cache, start):
        B, T, _ = h.shape
        c = self.c
        a = self.attn_norm(h)
        q = _rope(self.q_proj(a).view(B, T, c.n_heads, c.head_dim), cos, sin)
        k = _rope(self.k_proj(a).view(B, T, c.kv_heads, c.head_dim), cos, sin)
        v = self.v_proj(a).view(B, T, c.kv_heads, c.head_dim)
        if k_cache is None and torch.is_grad_enabled() and q.requires_grad:
            o = _sdpa_for_training(q, k, v, key_mask)
        elif k_cache is None:  # no cache: attend over the fresh K/V themselves, no write
            o = attention_with_kv_cache(q, k, v, key_padding_mask=key_mask)
        else:
            o = attention_with_kv_cache(q, k_cache, v_cache, k, v, write_start=start, key_padding_mask=key_mask)
        h = h + self.attn_out(o.reshape(B, T, c.n_heads * c.head_dim))  # explicit: B or T may be 0
        f = self.ff_norm(h)
        return h + self.ff_out(nn.functional.silu(self.ff_proj(f)) * self.up_proj(f))


class LLaDAModel(nn.Module):
    """``model(x, attention_mask=None, kv_cache=None, start=0) -> logits [B, T, vocab]``.

    Without ``kv_cache``, ``x`` is the whole sequence. With a :class:`KVCache` from
    :meth:`init_cache`, ``x`` holds positions ``[start, start + T)``: their K/V overwrite those
    cache rows and their queries attend over the whole cache (Fast-dLLM's prefix mode when
    ``x`` runs to the end, dual mode when it is one block). ``attention_mask`` is ``[B, L]``
    over the whole sequence (False: left pad). Positions are ``arange`` over the padded
    sequence, as in LLaDA (RoPE is relative, so left padding keeps distances).
    """

    def __init__(self, config: LLaDAConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.d_model),
            blocks=nn.ModuleList(Block(config) for _ in range(config.n_layers)),
            ln_f=RMSNorm(config.d_model, config.rms_norm_eps),
        ))
        if not config.weight_tying:
            self.transformer["ff_out"] = nn.Linear(config.d_model, config.vocab_size, bias=False)
        hd = config.head_dim
        inv = 1.0 / config.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
        self.register_buffer("inv_freq", inv.float(), persistent=False)

    @property
    def mask_id(self) -> int:
        return self.config.mask_token_id

    def _check_ids(self, x: torch.Tensor) -> None:
        """Token ids outside the vocabulary are an error naming 'x', not the embedding's "index out
        of range in self". Checked on the CPU only: on a GPU the check would synchronise every call."""
        if x.dim() != 2 or x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
            raise ValueError(f"diffusion_kernels: LLaDAModel: argument 'x' must be [batch, seq] integer token ids, "
                             f"got {x.dtype} {tuple(x.shape)}")
        if x.device.type == "cpu" and x.numel():
            lo, hi = int(x.min()), int(x.max())
            if lo < 0 or hi >= self.config.vocab_size:
                raise ValueError(f"diffusion_kernels: LLaDAModel: argument 'x' holds token id "
                                 f"{lo if lo < 0 else hi}, outside the vocabulary [0, {self.config.vocab_size})")

    def init_cache(self, batch: int, length: int) -> KVCache:
        p = self.transformer["wte"].weight
        return KVCache(self.config, batch, length, p.dtype, p.device)

    def _check_cache_args(self, x, attention_mask, kv_cache, start) -> None:
        B, T = x.shape
        length = T if kv_cache is None else kv_cache.length
        if kv_cache is not None:
            if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start <= length - T:
                raise ValueError(f"diffusion_kernels: LLaDAModel: argument 'start' must be an int in [0, "
                                 f"{length - T}] (x of {T} positions in a kv_cache of {length}), got {start!r}")
            if kv_cache.k[0].shape[0] != B:
                raise ValueError(f"diffusion_kernels: LLaDAModel: argument 'kv_cache' holds {kv_cache.k[0].shape[0]} "
                                 f"rows, x has {B}")
        if attention_mask is not None and tuple(attention_mask.shape) != (B, length):
            raise ValueError(f"diffusion_kernels: LLaDAModel: argument 'attention_mask' must be [{B}, {length}] "
                             f"(the whole sequence), got {tuple(attention_mask.shape)}")

    def forward(self, x, attention_mask=None, kv_cache: Optional[KVCache] = None, start: int = 0):
        self._check_ids(x)
        self._check_cache_args(x, attention_mask, kv_cache, start)
        B, T = x.shape
        pos = torch.arange(start, start + T, device=x.device, dtype=torch.float32)
        ang = pos[:, None] * self.inv_freq[None, :]
        cos, sin = ang.cos()[None, :, None, :], ang.sin()[None, :, None, :]
        key_mask = None if attention_mask is None else attention_mask.to(torch.bool)
        if key_mask is not None and key_mask.all():
            key_mask = None  # lets the op take its all-keys-valid path
        h = self.transformer["wte"](x)
        for i, blk in enumerate(self.transformer["blocks"]):
            kc = vc = None
            if kv_cache is not None:
                kc, vc = kv_cache.k[i], kv_cache.v[i]
            h = blk(h, cos, sin, key_mask, kc, vc, start)
        h = self.transformer["ln_f"](h)
        head = self.transformer["wte"].weight if self.config.weight_tying else self.transformer["ff_out"].weight
        return nn.functional.linear(h, head)

    # -- checkpoints -------------------------------------------------------------------------
    def save_pretrained(self, directory: str):
        """``config.json`` + ``model.safetensors`` in the Hugging Face LLaDA layout."""
        from safetensors.torch import save_file

        os.makedirs(directory, exist_ok=True)
        cfg = asdict(self.config)
        cfg["embedding_size"] = cfg["vocab_size"]
        with open(os.path.join(directory, "config.json"), "w") as f:
            json.dump(cfg, f, indent=1)
        state = {"model." + k: v.contiguous() for k, v in self.state_dict().items()}
        save_file(state, os.path.join(directory, "model.safetensors"))

    @classmethod
    def from_pretrained(cls, directory: str, dtype: Optional[torch.dtype] = None, device=None) -> "LLaDAModel":
        """Load a LLaDA checkpoint directory (``config.json`` and one or more ``*.safetensors``
        shards, e.g. GSAI-ML/LLaDA-8B-Instruct downloaded by the user). Nothing is downloaded."""
        try:
            from safetensors.torch import load_file
        except ImportError as e:  # pragma: no cover
            raise ImportError("LLaDAModel.from_pretrained needs the 'safetensors' package") from e
        config = LLaDAConfig.from_hf(_read_json(os.path.join(directory, "config.json")),
                                     source=os.path.join(directory, "config.json"))
        with torch.device("meta"):
            model = cls(config)
        shards = sorted(n for n in os.listdir(directory) if n.endswith(".safetensors"))
        if not shards:
            raise FileNotFoundError(f"diffusion_kernels: no *.safetensors file in {directory}")
        state = {}
        for name in shards:
            path = os.path.join(directory, name)
            try:
                tensors = load_file(path, device=str(device or "cpu"))
            except Exception as e:  # safetensors raises its own error types for a bad header
                raise ValueError(f"diffusion_kernels: cannot read the checkpoint shard {path} (empty, truncated "
                                 f"or not safetensors): {e}") from e
            for k, v in tensors.items():
                state[k[len("model."):] if k.startswith("model.") else k] = v if dtype is None else v.to(dtype)
        try:
            missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
        except RuntimeError as e:  # a tensor of the wrong shape
            raise ValueError(f"diffusion_kernels: checkpoint {directory} does not match its config.json: {e}") from None
        if missing or unexpected:
            raise ValueError(f"diffusion_kernels: checkpoint {directory} does not match its config.json: missing "
                             f"{missing[:5]}, unexpected {unexpected[:5]}")
        hd = config.head_dim
        inv = 1.0 / config.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
        model.inv_freq = inv.float().to(device or "cpu")
        return model.eval()
