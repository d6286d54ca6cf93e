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
from dataclasses import asdict, dataclass, fields
from typing import ClassVar, Optional, Tuple, Union

import torch
from torch import nn

from ..decoding.graph import static_step_active
from ..ops import attention_with_kv_cache
from .kv_cache import KVCache
from .layers import (RMSNorm, apply_rope, check_bool_flags, check_cache_args, check_int, check_positive_number,
                     check_token_ids, rope_angles, rope_inv_freq, self_attention, swiglu)
from .loading import config_from_dict, load_checkpoint, read_config, require_keys

__all__ = ["LLaDAConfig", "LLaDAModel"]


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
            check_int(getattr(self, name), name, 1, "LLaDAConfig")
        if self.n_kv_heads is not None:
            check_int(self.n_kv_heads, "n_kv_heads", 1, "LLaDAConfig")
        check_int(self.mask_token_id, "mask_token_id", 0, "LLaDAConfig")
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
            check_positive_number(getattr(self, name), name, "LLaDAConfig")

    @classmethod
    def from_hf(cls, cfg: dict, source: str = "config.json") -> "LLaDAConfig":
        """From a LLaDA ``config.json`` (OLMo-style keys; ``embedding_size`` wins over
        ``vocab_size`` when the embedding is padded). ``source`` names the file in errors."""
        if not isinstance(cfg, dict):
            raise ValueError(f"diffusion_kernels: {source}: expected a JSON object, got {type(cfg).__name__}")
        required = cls.REQUIRED_HF_KEYS + (() if cfg.get("embedding_size") is not None else ("vocab_size",))
        require_keys(cfg, required, source, "LLaDA")
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in cfg.items() if k in names}
        kw["vocab_size"] = cfg.get("embedding_size") or cfg["vocab_size"]
        if cfg.get("n_kv_heads") is None:
            kw["n_kv_heads"] = None
        return config_from_dict(cls, kw, source)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads


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
        q = apply_rope(self.q_proj(a).view(B, T, c.n_heads, c.head_dim), cos, sin)
        k = apply_rope(self.k_proj(a).view(B, T, c.kv_heads, c.head_dim), cos, sin)
        v = self.v_proj(a).view(B, T, c.kv_heads, c.head_dim)
        if k_cache is None:
            o = self_attention(q, k, v, key_mask)
        else:
            o = attention_with_kv_cache(q, k_cache, v_cache, k, v, cache_seqlens=start, key_padding_mask=key_mask)
        h = h + self.attn_out(o.reshape(B, T, c.n_heads * c.head_dim))  # explicit: B or T may be 0
        f = self.ff_norm(h)
        return h + swiglu(f, self.ff_proj, self.up_proj, self.ff_out)


def _tensor_start(start: torch.Tensor, x: torch.Tensor, kv_cache) -> torch.Tensor:
    """A tensor ``start``: one integer element on x's device, with a cache (a shape check only)."""
    if kv_cache is None:
        raise ValueError("diffusion_kernels: LLaDAModel: a tensor 'start' needs a 'kv_cache'")
    if start.numel() != 1 or start.is_floating_point() or start.is_complex() or start.dtype == torch.bool:
        raise ValueError(f"diffusion_kernels: LLaDAModel: argument 'start' must be an int or a one-element integer "
                         f"tensor, got a {start.dtype} tensor of shape {tuple(start.shape)}")
    if start.device != x.device:
        raise ValueError(f"diffusion_kernels: LLaDAModel: argument 'start' must be on the device of 'x' ({x.device}), "
                         f"got {start.device}")
    return start.reshape(1).to(torch.int64)


class LLaDAModel(nn.Module):
    """``model(x, attention_mask=None, kv_cache=None, start=0) -> logits [B, T, vocab]``.

    Without ``kv_cache``, ``x`` is the whole sequence. With a :class:`KVCache` from
    :meth:`init_cache`, ``x`` holds positions ``[start, start + T)``: their K/V overwrite those
    cache rows and their queries attend over the whole cache (Fast-dLLM's prefix mode when
    ``x`` runs to the end, dual mode when it is one block). ``attention_mask`` is ``[B, L]``
    over the whole sequence (False: left pad). Positions are ``arange`` over the padded
    sequence, as in LLaDA (RoPE is relative, so left padding keeps distances).

    ``start`` may be a one-element int64 tensor on x's device (``generate(cuda_graph=True)``:
    one captured step serves every block): then nothing is read on the host, except its range
    on the CPU, and ``kv_cache.filled`` is left to the caller.
    """

    accepts_tensor_start: ClassVar[bool] = True  # generate(cuda_graph=True) with a cache relies on it

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

    @property
    def mask_id(self) -> int:
        return self.config.mask_token_id

    def init_cache(self, batch: int, length: int) -> KVCache:
        """Zeroed K/V buffers for ``batch`` rows of ``length`` positions, in the weights' dtype and device."""
        c, p = self.config, self.transformer["wte"].weight
        return KVCache(c.n_layers, batch=batch, length=length, kv_heads=c.kv_heads, head_dim=c.head_dim,
                       dtype=p.dtype, device=p.device)

    @property
    def lm_head_weight(self) -> torch.Tensor:
        """The output head ``[vocab, d_model]`` (the embedding when tied): with ``return_hidden=True``,
        ``logits = hidden @ lm_head_weight.T`` (the fused-head losses and log-probabilities take it)."""
        return self.transformer["wte"].weight if self.config.weight_tying else self.transformer["ff_out"].weight

    def forward(self, x, attention_mask=None, kv_cache: Optional[KVCache] = None,
                start: Union[int, torch.Tensor] = 0, *, return_hidden: bool = False) -> torch.Tensor:
        """Logits ``[B, T, vocab]`` (see the class), or with ``return_hidden=True`` the final normed
        hidden states ``[B, T, d_model]`` (``logits = hidden @ lm_head_weight.T``).

        Examples:
            >>> import torch
            >>> from diffusion_kernels.models import LLaDAConfig, LLaDAModel
            >>> model = LLaDAModel(LLaDAConfig())
            >>> x = torch.randint(0, 63, (1, 6))
            >>> hidden = model(x, return_hidden=True)
            >>> torch.allclose(hidden @ model.lm_head_weight.T, model(x))
            True
        """
        check_token_ids(x, self.config.vocab_size, "LLaDAModel")
        check_bool_flags("LLaDAModel", return_hidden=return_hidden)
        B, T = x.shape
        start_t = None
        if isinstance(start, torch.Tensor):
            start_t, start = _tensor_start(start, x, kv_cache), 0
            if start_t.device.type == "cpu":
                start = int(start_t)  # for the range check: readable without a device sync
        check_cache_args(x, attention_mask, kv_cache, start, "LLaDAModel")
        inv_freq = rope_inv_freq(self.config.head_dim, self.config.rope_theta, device=x.device)
        positions = torch.arange(start, start + T, device=x.device) if start_t is None else \
            start_t + torch.arange(T, device=x.device)
        cos, sin = rope_angles(positions, inv_freq)
        key_mask = None if attention_mask is None else attention_mask.to(torch.bool)
        # a static decode step is never host-synchronised: generate() drops an all-True mask before it
        if key_mask is not None and not static_step_active() and key_mask.all():
            key_mask = None  # lets the op take its all-keys-valid path
        if start_t is not None:
            start = start_t.reshape(())
        h = self.transformer["wte"](x)
        for i, blk in enumerate(self.transformer["blocks"]):
            kc = vc = None
            if kv_cache is not None:
                kc, vc = kv_cache.k[i], kv_cache.v[i]
            h = blk(h, cos, sin, key_mask, kc, vc, start)
        if kv_cache is not None and start_t is None:
            kv_cache.wrote(start, start + T)
        h = self.transformer["ln_f"](h)
        return h if return_hidden else nn.functional.linear(h, self.lm_head_weight)

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
        config_dict, config_path = read_config(directory)
        config = LLaDAConfig.from_hf(config_dict, source=config_path)
        with torch.device("meta"):
            model = cls(config)
        # the Hugging Face files prefix every name with "model."; names without it are accepted too
        table = {"model." + name: [name] for name in model.state_dict()}
        load_checkpoint(model, directory, table, dtype=dtype, device=device,
                        rename=lambda n: n if n.startswith("model.") else "model." + n)
        return model.eval()
