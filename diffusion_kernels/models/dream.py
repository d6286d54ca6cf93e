"""Dream's architecture (Qwen2-style: RMSNorm, RoPE, GQA, q/k/v biases, SwiGLU) on the package's
attention op, with the prefix and dual KV caches of :class:`~diffusion_kernels.models.LLaDAModel`.

Dream is initialised from an autoregressive model and keeps its convention: the logits at
position ``i`` predict token ``i + 1`` (``generate(..., shift_logits=True)``). Attention is
bidirectional. Position ids follow Dream's ``tok_idx``: with an attention mask they count the
valid tokens (``cumsum(mask) - 1``), so a left-padded row gets the positions it has alone.
Parameter names are those of the Hugging Face Dream checkpoints (``model.layers.{i}.self_attn.q_proj``
...), so :meth:`DreamModel.from_pretrained` reads a Dream-v0-7B directory without a name table.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from typing import ClassVar, Optional, Tuple

import torch
from torch import nn

from ..ops import attention_with_kv_cache
from .hf_decoder import HFDecoderModel
from .kv_cache import KVCache
from .layers import (RMSNorm, SwiGLU, apply_rope, check_bool_flags, check_cache_args, check_int, check_positive_number,
                     check_token_ids, rope_angles, rope_inv_freq, self_attention)
from .loading import config_from_dict, load_checkpoint, read_config, require_keys

__all__ = ["DreamConfig", "DreamModel"]


@dataclass
class DreamConfig:
    """Sizes of a Dream model, with the Hugging Face ``config.json`` key names (Dream-v0-7B:
    hidden 3584, intermediate 18944, 28 layers, 28 heads, 4 KV heads, vocab 152064, rope_theta
    1e6, mask 151666)."""
    vocab_size: int = 64
    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    mask_token_id: int = 63
    pad_token_id: Optional[int] = None

    # keys a Dream config.json must have: defaulting any of them would build a different model
    REQUIRED_HF_KEYS: ClassVar[Tuple[str, ...]] = (
        "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
        "num_key_value_heads", "rope_theta", "mask_token_id")

    def __post_init__(self):
        owner = "DreamConfig"
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                     "num_key_value_heads"):
            check_int(getattr(self, name), name, 1, owner)
        check_int(self.mask_token_id, "mask_token_id", 0, owner)
        for name in ("rope_theta", "rms_norm_eps"):
            check_positive_number(getattr(self, name), name, owner)
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"diffusion_kernels: {owner}: 'num_attention_heads' ({self.num_attention_heads}) must "
                             f"divide 'hidden_size' ({self.hidden_size})")
        if self.head_dim % 2:
            raise ValueError(f"diffusion_kernels: {owner}: the head dim hidden_size / num_attention_heads = "
                             f"{self.head_dim} must be even (RoPE rotates pairs)")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"diffusion_kernels: {owner}: 'num_key_value_heads' ({self.num_key_value_heads}) must "
                             f"divide 'num_attention_heads' ({self.num_attention_heads})")
        if self.mask_token_id >= self.vocab_size:
            raise ValueError(f"diffusion_kernels: {owner}: 'mask_token_id' ({self.mask_token_id}) must be < "
                             f"'vocab_size' ({self.vocab_size})")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_hf(cls, cfg: dict, source: str = "config.json") -> "DreamConfig":
        """From a Dream ``config.json``; ``source`` names the file in errors. Options this model
        does not implement (``rope_scaling``, sliding windows, another activation) are refused."""
        require_keys(cfg, cls.REQUIRED_HF_KEYS, source, "Dream")
        if cfg.get("rope_scaling") is not None:
            raise ValueError(f"diffusion_kernels: {source}: 'rope_scaling' = {cfg['rope_scaling']!r} is not "
                             "supported (plain RoPE only)")
        if cfg.get("use_sliding_window"):
            raise ValueError(f"diffusion_kernels: {source}: 'use_sliding_window' is not supported")
        if cfg.get("hidden_act", "silu") != "silu":
            raise ValueError(f"diffusion_kernels: {source}: 'hidden_act' = {cfg['hidden_act']!r} is not supported "
                             "(SwiGLU with silu only)")
        names = {f.name for f in fields(cls)}
        return config_from_dict(cls, {k: v for k, v in cfg.items() if k in names}, source)


class DreamAttention(nn.Module):
    def __init__(self, c: DreamConfig):
        super().__init__()
        self.c = c
        hd = c.head_dim
        self.q_proj = nn.Linear(c.hidden_size, c.num_attention_heads * hd, bias=True)
        self.k_proj = nn.Linear(c.hidden_size, c.num_key_value_heads * hd, bias=True)
        self.v_proj = nn.Linear(c.hidden_size, c.num_key_value_heads * hd, bias=True)
        self.o_proj = nn.Linear(c.num_attention_heads * hd, c.hidden_size, bias=False)

    def forward(self, a, cos, sin, key_mask, k_cache, v_cache, start):
        B, T, _ = a.shape
        c = self.c
        q = apply_rope(self.q_proj(a).view(B, T, c.num_attention_heads, c.head_dim), cos, sin)
        k = apply_rope(self.k_proj(a).view(B, T, c.num_key_value_heads, c.head_dim), cos, sin)
        v = self.v_proj(a).view(B, T, c.num_key_value_heads, c.head_dim)
        if k_cache is None:
            o = self_attention(q, k, v, key_mask)
        else:
            o = attention_with_kv_cache(q, k_cache, v_cache, k, v, cache_seqlens=start, key_padding_mask=key_mask)
        return self.o_proj(o.reshape(B, T, c.num_attention_heads * c.head_dim))


class DreamLayer(nn.Module):
    def __init__(self, c: DreamConfig):
        super().__init__()
        self.self_attn = DreamAttention(c)
        self.mlp = SwiGLU(c.hidden_size, c.intermediate_size)
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)

    def forward(self, h, cos, sin, key_mask, k_cache, v_cache, start):
        h = h + self.self_attn(self.input_layernorm(h), cos, sin, key_mask, k_cache, v_cache, start)
        return h + self.mlp(self.post_attention_layernorm(h))


class DreamModel(HFDecoderModel):
    """``model(x, attention_mask=None, kv_cache=None, start=0) -> logits [B, T, vocab]`` (shifted:
    position ``i`` predicts token ``i + 1``).

    The cache protocol is :class:`~diffusion_kernels.models.LLaDAModel`'s: without ``kv_cache``,
    ``x`` is the whole sequence; with a cache from :meth:`init_cache`, ``x`` holds positions
    ``[start, start + T)``, whose K/V overwrite those cache rows before its queries attend over
    the whole cache (prefix mode when ``x`` runs to the end, dual mode for one block).
    ``attention_mask`` is ``[B, L]`` over the whole sequence (0/False: left pad).

    Args:
        config: the sizes (:class:`DreamConfig`).

    Examples:
        >>> import torch
        >>> from diffusion_kernels.models import DreamConfig, DreamModel
        >>> model = DreamModel(DreamConfig()).eval()
        >>> x = torch.randint(0, 63, (2, 10))
        >>> with torch.no_grad():
        ...     kv = model.init_cache(2, 10)
        ...     full = model(x, kv_cache=kv, start=0)    # writes every K/V
        ...     block = model(x[:, 4:8], kv_cache=kv, start=4)  # dual-cache step on one block
        >>> full.shape, block.shape
        (torch.Size([2, 10, 64]), torch.Size([2, 4, 64]))

        Decoding with Dream's shifted logits and a cache: ``generate(model, prompt, ...,
        mask_id=model.mask_id, shift_logits=True, cache="dual")``.
    """

    def __init__(self, config: DreamConfig):
        super().__init__(config, (DreamLayer(config) for _ in range(config.num_hidden_layers)))

    def _positions(self, attention_mask: Optional[torch.Tensor], start: int, T: int, device) -> torch.Tensor:
        """Dream's ``tok_idx``: ``cumsum(mask) - 1`` over the whole sequence (pads get 0: they are
        never attended), sliced to ``[start, start + T)``; ``arange`` without a mask."""
        if attention_mask is None:
            return torch.arange(start, start + T, device=device)
        pos = attention_mask.to(torch.long).cumsum(-1) - 1
        return pos.clamp_(min=0)[:, start:start + T]

    def forward(self, x: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                kv_cache: Optional[KVCache] = None, start: int = 0, *, return_hidden: bool = False) -> torch.Tensor:
        """Shifted logits ``[B, T, vocab]`` (see the class), or with ``return_hidden=True`` the
        final normed hidden states ``[B, T, hidden]`` (``logits = hidden @ lm_head_weight.T``).

        Examples:
            >>> import torch
            >>> from diffusion_kernels.models import DreamConfig, DreamModel
            >>> model = DreamModel(DreamConfig())
            >>> x = torch.randint(0, 63, (1, 6))
            >>> hidden = model(x, return_hidden=True)
            >>> torch.allclose(hidden @ model.lm_head_weight.T, model(x))
            True
        """
        check_token_ids(x, self.config.vocab_size, "DreamModel")
        check_bool_flags("DreamModel", return_hidden=return_hidden)
        check_cache_args(x, attention_mask, kv_cache, start, "DreamModel")
        T = x.shape[1]
        inv_freq = rope_inv_freq(self.config.head_dim, self.config.rope_theta, device=x.device)
        cos, sin = rope_angles(self._positions(attention_mask, start, T, x.device), inv_freq)
        key_mask = None if attention_mask is None else attention_mask.to(torch.bool)
        if key_mask is not None and key_mask.all():
            key_mask = None  # lets the op take its all-keys-valid path
        h = self.model.embed_tokens(x)
        for i, layer in enumerate(self.model.layers):
            kc = vc = None
            if kv_cache is not None:
                kc, vc = kv_cache.k[i], kv_cache.v[i]
            h = layer(h, cos, sin, key_mask, kc, vc, start)
        if kv_cache is not None:
            kv_cache.wrote(start, start + T)
        h = self.model.norm(h)
        return h if return_hidden else nn.functional.linear(h, self.lm_head_weight)

    # -- checkpoints -------------------------------------------------------------------------
    def save_pretrained(self, directory: str) -> None:
        """``config.json`` + ``model.safetensors`` with Dream's Hugging Face names and keys."""
        from safetensors.torch import save_file

        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, "config.json"), "w") as f:
            json.dump({**asdict(self.config), "model_type": "Dream", "hidden_act": "silu"}, f, indent=1)
        state = {k: v.contiguous() for k, v in self.state_dict().items()}
        save_file(state, os.path.join(directory, "model.safetensors"))

    @classmethod
    def from_pretrained(cls, directory: str, dtype: Optional[torch.dtype] = None, device=None) -> "DreamModel":
        """Load a Dream checkpoint directory (``config.json`` and ``*.safetensors`` shards, e.g.
        Dream-org/Dream-v0-Instruct-7B downloaded by the user). Nothing is downloaded.

        Args:
            directory: the checkpoint directory.
            dtype: cast the weights to it (default: as stored, bfloat16 for Dream-7B).
            device: where the weights go (default CPU).

        Returns:
            The model in eval mode.

        Raises:
            FileNotFoundError: no config.json or no shard. ValueError: a config key missing (named
            with the file), or a tensor missing, extra or misshaped (named).

        Examples:
            >>> model = DreamModel.from_pretrained("/path/to/Dream-v0-Instruct-7B", dtype=torch.bfloat16,
            ...                                    device="cuda")  # doctest: +SKIP
        """
        config_dict, config_path = read_config(directory)
        config = DreamConfig.from_hf(config_dict, source=config_path)
        with torch.device("meta"):
            model = cls(config)
        table = {name: [name] for name in model.state_dict()}
        ignored = ("lm_head.weight",) if config.tie_word_embeddings else ()
        load_checkpoint(model, directory, table, dtype=dtype, device=device, ignored=ignored)
        return model.eval()
