"""The Hugging Face decoder layout that Dream and the block-diffusion model share."""
from __future__ import annotations

from typing import Iterable, Optional

import torch
from torch import nn

from .kv_cache import KVCache
from .layers import RMSNorm


class HFDecoderModel(nn.Module):
    """``model.embed_tokens``, ``model.layers``, ``model.norm`` and ``lm_head`` unless tied: the
    parameter names of the public Qwen2/Qwen3-style checkpoints, so loaders map names one to one.
    ``config`` needs ``vocab_size``, ``hidden_size``, ``num_hidden_layers``, ``num_key_value_heads``,
    ``head_dim``, ``rms_norm_eps``, ``tie_word_embeddings`` and ``mask_token_id``."""

    def __init__(self, config, layers: Iterable[nn.Module]):
        super().__init__()
        self.config = c = config
        self.model = nn.Module()
        self.model.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.model.layers = nn.ModuleList(layers)
        self.model.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        if not c.tie_word_embeddings:
            self.lm_head = nn.Linear(c.hidden_size, c.vocab_size, bias=False)

    @property
    def mask_id(self) -> Optional[int]:
        return self.config.mask_token_id

    def init_cache(self, batch: int, length: int) -> KVCache:
        """Zeroed K/V buffers for ``batch`` rows of ``length`` positions, in the weights' dtype and device."""
        c, p = self.config, self.model.embed_tokens.weight
        return KVCache(c.num_hidden_layers, batch=batch, length=length, kv_heads=c.num_key_value_heads,
                       head_dim=c.head_dim, dtype=p.dtype, device=p.device)

    @property
    def lm_head_weight(self) -> torch.Tensor:
        """The output head ``[vocab, hidden]`` (the embedding when tied): with ``return_hidden=True``,
        ``logits = hidden @ lm_head_weight.T`` (the fused-head losses and log-probabilities take it)."""
        return self.model.embed_tokens.weight if self.config.tie_word_embeddings else self.lm_head.weight
