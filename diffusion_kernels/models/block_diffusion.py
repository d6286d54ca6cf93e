"""Block-diffusion LLMs (SDAR, LLaDA2.0/2.1): a Qwen3-style transformer (RMSNorm, q/k norm,
RoPE, GQA, SwiGLU or a mixture of experts) whose attention is block-causal: the sequence is cut
into blocks of ``block_size`` positions; a position sees every position of its own block and of
the blocks before it. Finished blocks' K/V therefore never change, and the KV cache is exact.

Decoding with the cache (what a block-diffusion sampler calls):

* prefill: ``model(x[:, :P], kv_cache=kv, start=0)`` writes the prompt's K/V;
* each step on the block ``[s, e)``: ``model(x[:, s:e], kv_cache=kv, start=s, store_kv=False)``
  attends over the cache and the block's fresh K/V without writing them;
* commit: ``model(x[:, s:e], kv_cache=kv, start=s)`` (``store_kv=True``) once the block is final.

Checkpoints: :meth:`BlockDiffusionModel.from_pretrained` reads SDAR's names (Qwen3's:
``model.layers.{i}.self_attn.q_proj`` ..., Qwen3-MoE's experts for SDAR-MoE) and LLaDA2's
(``model.word_embeddings``, a fused ``attention.query_key_value``, ``attention.dense``, sigmoid
routed experts with ``gate.expert_bias`` and shared experts).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Dict, List, Optional

import torch
from torch import nn

from ..ops import attention_with_kv_cache
from .hf_decoder import HFDecoderModel
from .kv_cache import KVCache
from .layers import (RMSNorm, SwiGLU, apply_rope, check_bool_flags, check_cache_args, check_int,
                     check_positive_number, check_token_ids, rope_angles, rope_inv_freq, self_attention)
from .loading import checkpoint_tensor_names, config_from_dict, load_checkpoint, read_config, require_keys
from .moe import MoE

__all__ = ["BlockDiffusionConfig", "BlockDiffusionModel"]

NAMINGS = ("sdar", "llada2")
DEFAULT_BLOCK_SIZE = {"sdar": 4, "llada2": 32}  # the block lengths their own samplers default to


@dataclass
class BlockDiffusionConfig:
    """Sizes and options of a block-diffusion model (Qwen3/SDAR key names where they exist).

    ``num_experts = 0`` is a dense model; otherwise layers ``>= first_k_dense_replace`` use a
    :class:`~diffusion_kernels.models.moe.MoE` of ``num_experts`` experts of width
    ``moe_intermediate_size``. ``partial_rotary_factor`` < 1 rotates only that leading share of
    each head (LLaDA2: 0.5). ``attention_bias``: biases on q/k/v; ``attention_out_bias``: on the
    output projection. ``naming``: the checkpoint naming (``"sdar"`` or ``"llada2"``).
    """
    vocab_size: int = 64
    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: Optional[int] = None
    rope_theta: float = 10000.0
    partial_rotary_factor: float = 1.0
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    attention_out_bias: bool = False
    qk_norm: bool = True
    block_size: int = 4
    mask_token_id: Optional[int] = None
    num_experts: int = 0
    num_experts_per_tok: int = 1
    moe_intermediate_size: Optional[int] = None
    num_shared_experts: int = 0
    first_k_dense_replace: int = 0
    router: str = "sigmoid"
    n_group: int = 1
    topk_group: int = 1
    routed_scaling_factor: float = 1.0
    norm_topk_prob: bool = True
    naming: str = "sdar"

    def __post_init__(self):
        owner = "BlockDiffusionConfig"
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                     "block_size"):
            check_int(getattr(self, name), name, 1, owner)
        if self.head_dim is None:
            if self.hidden_size % self.num_attention_heads:
                raise ValueError(f"diffusion_kernels: {owner}: 'num_attention_heads' ({self.num_attention_heads}) "
                                 f"must divide 'hidden_size' ({self.hidden_size}) when 'head_dim' is not given")
            self.head_dim = self.hidden_size // self.num_attention_heads
        check_int(self.head_dim, "head_dim", 1, owner)
        for name in ("num_experts", "num_shared_experts", "first_k_dense_replace"):
            check_int(getattr(self, name), name, 0, owner)
        if self.mask_token_id is not None:
            check_int(self.mask_token_id, "mask_token_id", 0, owner)
            if self.mask_token_id >= self.vocab_size:
                raise ValueError(f"diffusion_kernels: {owner}: 'mask_token_id' ({self.mask_token_id}) must be < "
                                 f"'vocab_size' ({self.vocab_size})")
        for name in ("rope_theta", "rms_norm_eps", "routed_scaling_factor"):
            check_positive_number(getattr(self, name), name, owner)
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"diffusion_kernels: {owner}: 'num_key_value_heads' ({self.num_key_value_heads}) must "
                             f"divide 'num_attention_heads' ({self.num_attention_heads})")
        f = self.partial_rotary_factor
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1 or self.rotary_dim % 2 \
                or self.rotary_dim != self.head_dim * f:
            raise ValueError(f"diffusion_kernels: {owner}: 'partial_rotary_factor' ({f!r}) must be in (0, 1] and "
                             f"give an even number of rotated dims of the head dim {self.head_dim}")
        if self.naming not in NAMINGS:
            raise ValueError(f"diffusion_kernels: {owner}: 'naming' must be one of {NAMINGS}, got {self.naming!r}")
        if self.router not in ("sigmoid", "softmax"):
            raise ValueError(f"diffusion_kernels: {owner}: 'router' must be 'sigmoid' or 'softmax', got "
                             f"{self.router!r}")
        if not self.num_experts or self.first_k_dense_replace:  # some layer is dense
            check_int(self.intermediate_size, "intermediate_size", 1, owner)
        if self.num_experts:
            check_int(self.moe_intermediate_size, "moe_intermediate_size", 1, owner)
            check_int(self.num_experts_per_tok, "num_experts_per_tok", 1, owner)
            check_int(self.n_group, "n_group", 1, owner)
            check_int(self.topk_group, "topk_group", 1, owner)
            if self.num_experts_per_tok > self.num_experts:
                raise ValueError(f"diffusion_kernels: {owner}: 'num_experts_per_tok' ({self.num_experts_per_tok}) "
                                 f"must be <= 'num_experts' ({self.num_experts})")
            if self.num_experts % self.n_group or self.topk_group > self.n_group:
                raise ValueError(f"diffusion_kernels: {owner}: 'n_group' ({self.n_group}) must divide 'num_experts' "
                                 f"({self.num_experts}) and be >= 'topk_group' ({self.topk_group})")
            if self.num_experts_per_tok > self.topk_group * (self.num_experts // self.n_group):
                raise ValueError(f"diffusion_kernels: {owner}: 'num_experts_per_tok' ({self.num_experts_per_tok}) "
                                 f"exceeds the experts of the 'topk_group' ({self.topk_group}) groups kept")

    @property
    def rotary_dim(self) -> int:
        return int(self.head_dim * self.partial_rotary_factor)

    def is_moe_layer(self, i: int) -> bool:
        return bool(self.num_experts) and i >= self.first_k_dense_replace

    # -- config.json --------------------------------------------------------------------------
    @classmethod
    def from_hf(cls, cfg: dict, naming: str, source: str = "config.json", **overrides) -> "BlockDiffusionConfig":
        """From an SDAR (Qwen3 / Qwen3-MoE keys) or LLaDA2 (``llada2_moe`` keys) ``config.json``.

        Args:
            cfg: the parsed config.json.
            naming: ``"sdar"`` or ``"llada2"``.
            source: the file, named in errors.
            overrides: fields set by the caller (``block_size``, ``mask_token_id``).
        """
        if naming not in NAMINGS:
            raise ValueError(f"diffusion_kernels: argument 'naming' must be one of {NAMINGS}, got {naming!r}")
        moe = bool(cfg.get("num_experts"))
        if cfg.get("rope_scaling") is not None:
            raise ValueError(f"diffusion_kernels: {source}: 'rope_scaling' = {cfg['rope_scaling']!r} is not supported "
                             "(plain RoPE only)")
        if cfg.get("hidden_act", "silu") != "silu":
            raise ValueError(f"diffusion_kernels: {source}: 'hidden_act' = {cfg['hidden_act']!r} is not supported")
        if cfg.get("use_sliding_window"):
            raise ValueError(f"diffusion_kernels: {source}: 'use_sliding_window' is not supported")
        required = ["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "rope_theta"]
        if naming == "sdar":
            required += ["num_key_value_heads"] + (["num_experts_per_tok", "moe_intermediate_size"] if moe
                                                   else ["intermediate_size"])
            if moe and (cfg.get("mlp_only_layers") or cfg.get("decoder_sparse_step", 1) != 1):
                raise ValueError(f"diffusion_kernels: {source}: 'mlp_only_layers'/'decoder_sparse_step' other than "
                                 "every layer sparse are not supported")
            kw = dict(attention_bias=bool(cfg.get("attention_bias", False)),
                      attention_out_bias=bool(cfg.get("attention_bias", False)),
                      router="softmax", norm_topk_prob=bool(cfg.get("norm_topk_prob", False)))  # Qwen3MoeConfig default
        else:
            required += ["num_experts", "num_experts_per_tok", "moe_intermediate_size"]
            if cfg.get("first_k_dense_replace"):
                required.append("intermediate_size")
            if cfg.get("norm_head"):
                raise ValueError(f"diffusion_kernels: {source}: 'norm_head' (a normalised output head) is not supported")
            if cfg.get("score_function", "sigmoid") != "sigmoid":
                raise ValueError(f"diffusion_kernels: {source}: 'score_function' = {cfg['score_function']!r} is not "
                                 "supported (LLaDA2's router is sigmoid)")
            # defaults of LLaDA2's configuration class where the file leaves a key out
            kw = dict(attention_bias=bool(cfg.get("use_qkv_bias", False)),
                      attention_out_bias=bool(cfg.get("use_bias", True)), qk_norm=bool(cfg.get("use_qk_norm", True)),
                      partial_rotary_factor=cfg.get("partial_rotary_factor", 0.5), router="sigmoid",
                      num_key_value_heads=cfg.get("num_key_value_heads") or cfg.get("num_attention_heads"),
                      n_group=cfg.get("n_group", 8), topk_group=cfg.get("topk_group", 4),
                      routed_scaling_factor=cfg.get("routed_scaling_factor", 2.5),
                      num_shared_experts=cfg.get("num_shared_experts") or 0)
        require_keys(cfg, required, source, "SDAR" if naming == "sdar" else "LLaDA2")
        names = {f.name for f in fields(cls)} - set(kw) - {"naming", "block_size", "mask_token_id", "router"}
        kw.update({k: v for k, v in cfg.items() if k in names and v is not None})
        kw["num_experts"] = cfg.get("num_experts") or 0
        block = cfg.get("block_size", cfg.get("block_length"))
        kw["block_size"] = block if block is not None else DEFAULT_BLOCK_SIZE[naming]
        kw["mask_token_id"] = cfg.get("mask_token_id")
        kw.update({k: v for k, v in overrides.items() if v is not None})
        return config_from_dict(cls, {**kw, "naming": naming}, source)


class BlockDiffusionAttention(nn.Module):
    def __init__(self, c: BlockDiffusionConfig):
        super().__init__()
        self.c = c
        hd = c.head_dim
        self.q_proj = nn.Linear(c.hidden_size, c.num_attention_heads * hd, bias=c.attention_bias)
        self.k_proj = nn.Linear(c.hidden_size, c.num_key_value_heads * hd, bias=c.attention_bias)
        self.v_proj = nn.Linear(c.hidden_size, c.num_key_value_heads * hd, bias=c.attention_bias)
        self.o_proj = nn.Linear(c.num_attention_heads * hd, c.hidden_size, bias=c.attention_out_bias)
        if c.qk_norm:
            self.q_norm = RMSNorm(hd, c.rms_norm_eps)
            self.k_norm = RMSNorm(hd, c.rms_norm_eps)

    def forward(self, a, cos, sin, key_mask, key_lengths, k_cache, v_cache, start, store_kv, noisy_length):
        B, T, _ = a.shape
        c = self.c
        q = self.q_proj(a).view(B, T, c.num_attention_heads, c.head_dim)
        k = self.k_proj(a).view(B, T, c.num_key_value_heads, c.head_dim)
        v = self.v_proj(a).view(B, T, c.num_key_value_heads, c.head_dim)
        if c.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if k_cache is None:
            o = self_attention(q, k, v, key_mask, causal_block_size=c.block_size, noisy_length=noisy_length)
        else:
            o = attention_with_kv_cache(q, k_cache, v_cache, k, v, cache_seqlens=start, key_padding_mask=key_mask,
                                        key_lengths=key_lengths, causal_block_size=c.block_size, store_kv=store_kv)
        return self.o_proj(o.reshape(B, T, c.num_attention_heads * c.head_dim))


class BlockDiffusionLayer(nn.Module):
    def __init__(self, c: BlockDiffusionConfig, i: int):
        super().__init__()
        self.self_attn = BlockDiffusionAttention(c)
        if c.is_moe_layer(i):
            self.mlp = MoE(c.hidden_size, c.moe_intermediate_size, c.num_experts, c.num_experts_per_tok,
                           router=c.router, num_shared_experts=c.num_shared_experts, n_group=c.n_group,
                           topk_group=c.topk_group, routed_scaling_factor=c.routed_scaling_factor,
                           norm_topk_prob=c.norm_topk_prob)
        else:
            self.mlp = SwiGLU(c.hidden_size, c.intermediate_size)
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)

    def forward(self, h, *attn_args):
        h = h + self.self_attn(self.input_layernorm(h), *attn_args)
        return h + self.mlp(self.post_attention_layernorm(h))


class BlockDiffusionModel(HFDecoderModel):
    """``model(x, attention_mask=None, kv_cache=None, start=0, store_kv=True) -> logits [B, T, vocab]``.

    Without ``kv_cache``, ``x`` is the whole sequence, attended block-causally (blocks of
    ``config.block_size`` from position 0). With a cache from :meth:`init_cache`, ``x`` holds
    positions ``[start, start + T)``: its queries attend, block-causally, over the cache rows
    before ``start``, x's own fresh K/V, and the cache rows after x up to the end of x's last
    block that a forward has written (``KVCache.filled``; Fast-dLLM v2's sub-block step reads the
    rest of its block from there; rows after that block are never read). ``store_kv=True`` also
    writes x's K/V into the cache (prefill, commit of a finished block), ``store_kv=False`` leaves
    the cache untouched (a decoding step). When x ends on a block boundary or nothing after it was
    written, logits equal those of the uncached forward over ``x`` up to ``start + T``.
    ``noisy_length``: the ``x_t ⊕ x_0`` training layout; ``return_hidden``: the final hidden
    states (see :meth:`forward`). ``attention_mask`` is ``[B, L]`` over the
    whole sequence (0/False: left pad); positions are ``arange`` over the padded sequence, and
    blocks are counted from its first position.

    Args:
        config: the sizes (:class:`BlockDiffusionConfig`).

    Examples:
        >>> import torch
        >>> from diffusion_kernels.models import BlockDiffusionConfig, BlockDiffusionModel
        >>> model = BlockDiffusionModel(BlockDiffusionConfig(block_size=4)).eval()
        >>> x = torch.randint(0, 64, (1, 12))
        >>> with torch.no_grad():
        ...     kv = model.init_cache(1, 12)
        ...     _ = model(x[:, :8], kv_cache=kv, start=0)                       # prefill two blocks
        ...     step = model(x[:, 8:], kv_cache=kv, start=8, store_kv=False)    # decode block 3
        ...     _ = model(x[:, 8:], kv_cache=kv, start=8)                       # commit it
        ...     full = model(x)
        >>> torch.allclose(step, full[:, 8:], atol=1e-5)
        True
    """

    def __init__(self, config: BlockDiffusionConfig):
        super().__init__(config, (BlockDiffusionLayer(config, i) for i in range(config.num_hidden_layers)))

    @property
    def block_size(self) -> int:
        return self.config.block_size

    def forward(self, x: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                kv_cache: Optional[KVCache] = None, start: int = 0, store_kv: bool = True, *,
                noisy_length: Optional[int] = None, noisy_only: bool = False,
                return_hidden: bool = False) -> torch.Tensor:
        """Logits ``[B, T, vocab]`` (see the class); the keywords:

        Args:
            noisy_length: the training layout (BD3-LM, SDAR): ``x`` is ``x_t ⊕ x_0``, ``T = 2 *
                noisy_length``, both halves at positions ``arange(noisy_length)``; noisy block
                ``n`` attends noisy block ``n`` and clean blocks ``< n``, clean block ``n`` the
                clean blocks ``<= n`` (the op's ``noisy_length`` rule, no dense mask). No
                ``kv_cache``. ``attention_mask``: ``[B, noisy_length]`` (both halves) or ``[B, T]``.
            noisy_only: with ``noisy_length``, only the noisy half's outputs (``[B, noisy_length, *]``):
                the clean half's never go through the head.
            return_hidden: the final normed hidden states ``[B, T, hidden]`` instead of the
                logits (``logits = hidden @ lm_head_weight.T``).

        Examples:
            >>> import torch
            >>> from diffusion_kernels.models import BlockDiffusionConfig, BlockDiffusionModel
            >>> model = BlockDiffusionModel(BlockDiffusionConfig(block_size=4, mask_token_id=63))
            >>> x0 = torch.randint(0, 63, (2, 8))
            >>> x_t = x0.masked_fill(torch.rand(2, 8) < 0.5, 63)
            >>> logits = model(torch.cat([x_t, x0], 1), noisy_length=8, noisy_only=True)
            >>> logits.shape
            torch.Size([2, 8, 64])
        """
        owner = "BlockDiffusionModel"
        check_token_ids(x, self.config.vocab_size, owner)
        check_bool_flags(owner, store_kv=store_kv, noisy_only=noisy_only, return_hidden=return_hidden)
        B, T = x.shape
        c = self.config
        if noisy_length is not None:
            attention_mask = _training_layout_args(x, attention_mask, kv_cache, noisy_length, owner)
            positions = torch.arange(noisy_length, device=x.device).repeat(2)
        else:
            if noisy_only:
                raise ValueError(f"diffusion_kernels: {owner}: argument 'noisy_only' needs 'noisy_length' (the "
                                 "x_t ⊕ x_0 training layout)")
            check_cache_args(x, attention_mask, kv_cache, start, owner)
            positions = torch.arange(start, start + T, device=x.device)
        inv_freq = rope_inv_freq(c.rotary_dim, c.rope_theta, device=x.device)
        cos, sin = rope_angles(positions, inv_freq)
        key_mask = None if attention_mask is None else attention_mask.to(torch.bool)
        if key_mask is not None and key_mask.all():
            key_mask = None  # lets the op take its all-keys-valid path
        key_lengths = None
        if kv_cache is not None:
            end = self._visible_end(kv_cache, start, T)
            if end < kv_cache.length:
                key_lengths = torch.full((B,), end, dtype=torch.int64, device=x.device)
        h = self.model.embed_tokens(x)
        for i, layer in enumerate(self.model.layers):
            kc = vc = None
            if kv_cache is not None:
                kc, vc = kv_cache.k[i], kv_cache.v[i]
            h = layer(h, cos, sin, key_mask, key_lengths, kc, vc, start, store_kv, noisy_length)
        if kv_cache is not None and store_kv:
            kv_cache.wrote(start, start + T)
        if noisy_only:
            h = h[:, :noisy_length]
        h = self.model.norm(h)
        return h if return_hidden else nn.functional.linear(h, self.lm_head_weight)

    def _visible_end(self, kv_cache: KVCache, start: int, T: int) -> int:
        """The end of the cache rows x's queries may read: up to the end of the block of x's last
        position (the block-causal rule decides within it), but rows after x only where some
        forward has written K/V (Fast-dLLM v2's sub-block step reads the rest of its block as last
        written; a prefill that ends inside a block reads nothing after it)."""
        end = start + T
        if T == 0:
            return end
        b = self.config.block_size
        block_end = min(-(-end // b) * b, kv_cache.length)
        return max(end, min(block_end, kv_cache.filled))

    # -- checkpoints -------------------------------------------------------------------------
    def checkpoint_names(self) -> Dict[str, List[str]]:
        """The checkpoint tensor names of this model's naming -> its parameter names (several:
        the checkpoint tensor is their concatenation along dim 0, LLaDA2's ``query_key_value``)."""
        own = list(self.state_dict())
        if self.config.naming == "sdar":
            return {n: [n] for n in own}
        table: Dict[str, List[str]] = {}
        renames = {".self_attn.q_norm.": ".attention.query_layernorm.",
                   ".self_attn.k_norm.": ".attention.key_layernorm.",
                   ".self_attn.o_proj.": ".attention.dense.", "model.embed_tokens.": "model.word_embeddings."}
        for n in own:
            for proj in ("q_proj", "k_proj", "v_proj"):
                if f".self_attn.{proj}." in n:
                    fused = n.replace(f".self_attn.{proj}.", ".attention.query_key_value.")
                    table.setdefault(fused, []).append(n)  # q, k, v in state_dict order
                    break
            else:
                public = n
                for old, new in renames.items():
                    public = public.replace(old, new)
                table[public] = [n]
        return table

    @classmethod
    def from_pretrained(cls, directory: str, *, naming: Optional[str] = None, block_size: Optional[int] = None,
                        mask_token_id: Optional[int] = None, dtype: Optional[torch.dtype] = None,
                        device=None) -> "BlockDiffusionModel":
        """Load an SDAR or LLaDA2 checkpoint directory (``config.json`` + ``*.safetensors``
        shards, downloaded by the user). Nothing is downloaded.

        Args:
            directory: the checkpoint directory.
            naming: ``"sdar"`` or ``"llada2"``; default: from config.json's ``model_type``
                (``llada2*`` or ``sdar*``/``qwen3*``), else from the tensor names.
            block_size: the block length of the block-causal attention; default: config.json's
                ``block_size``/``block_length``, else the model family's sampler default (SDAR 4,
                LLaDA2 32).
            mask_token_id: the ``[MASK]`` id if config.json lacks it (SDAR keeps it in the tokenizer).
            dtype: cast the weights to it (default: as stored). device: where they go (default CPU).

        Returns:
            The model in eval mode.

        Raises:
            FileNotFoundError: no config.json or no shard. ValueError: a config key missing (named
            with the file), an unsupported option, or a tensor missing, extra or misshaped (named).

        Examples:
            >>> model = BlockDiffusionModel.from_pretrained("/path/to/LLaDA2.0-mini", dtype=torch.bfloat16,
            ...                                             device="cuda")  # doctest: +SKIP
        """
        config_dict, config_path = read_config(directory)
        if naming is None:
            naming = _detect_naming(config_dict, directory)
        config = BlockDiffusionConfig.from_hf(config_dict, naming, source=config_path, block_size=block_size,
                                              mask_token_id=mask_token_id)
        with torch.device("meta"):
            model = cls(config)
        ignored = ("lm_head.weight",) if config.tie_word_embeddings else ()
        load_checkpoint(model, directory, model.checkpoint_names(), dtype=dtype, device=device, ignored=ignored)
        return model.eval()


def _training_layout_args(x: torch.Tensor, attention_mask: Optional[torch.Tensor], kv_cache, noisy_length,
                          owner: str) -> Optional[torch.Tensor]:
    """Checks the training layout's arguments; returns the ``[B, 2L]`` key mask (or None)."""
    B, T = x.shape
    if isinstance(noisy_length, bool) or not isinstance(noisy_length, int) or noisy_length < 1 \
            or T != 2 * noisy_length:
        raise ValueError(f"diffusion_kernels: {owner}: argument 'noisy_length' must be an int with x's length "
                         f"{T} = 2 * noisy_length (the x_t ⊕ x_0 layout), got {noisy_length!r}")
    if kv_cache is not None:
        raise ValueError(f"diffusion_kernels: {owner}: argument 'noisy_length' (the training layout) takes no "
                         "'kv_cache'")
    if attention_mask is None:
        return None
    if not isinstance(attention_mask, torch.Tensor) or tuple(attention_mask.shape) not in ((B, noisy_length), (B, T)):
        got = tuple(attention_mask.shape) if isinstance(attention_mask, torch.Tensor) else type(attention_mask).__name__
        raise ValueError(f"diffusion_kernels: {owner}: argument 'attention_mask' must be [{B}, {noisy_length}] (the "
                         f"sequence, both halves) or [{B}, {T}] with 'noisy_length', got {got}")
    return attention_mask if attention_mask.shape[1] == T else attention_mask.repeat(1, 2)


def _detect_naming(cfg: dict, directory: str) -> str:
    model_type = str(cfg.get("model_type", "")).lower()
    if model_type.startswith("llada2"):
        return "llada2"
    if model_type.startswith(("sdar", "qwen3")):
        return "sdar"
    return "llada2" if "model.word_embeddings.weight" in checkpoint_tensor_names(directory) else "sdar"
