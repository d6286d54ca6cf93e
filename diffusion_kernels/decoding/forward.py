"""Logits for one step: the model call with classifier-free guidance, the cache's query range and
Dream's shifted logits."""
from __future__ import annotations

from typing import Optional, Tuple, Union

import torch

from .cache import query_range

__all__ = ["ModelForward"]


def _logits_of(out) -> torch.Tensor:
    return out.logits if hasattr(out, "logits") else out


class ModelForward:
    """``forward(step_in_block, start, end) -> (logits, q0)``: logits ``[B, n, vocab]`` of the
    positions ``[q0, q0 + n)`` of ``x`` that this step decodes.

    Args:
        model: ``model(x, attention_mask=None[, kv_cache=, start=]) -> logits`` or an object with ``.logits``.
        x: ``[B, L]`` the sequence being decoded (read at every call; the prompt is ``x != mask_id``
            when this object is made).
        cache: ``None``, ``'prefix'`` or ``'dual'`` (:func:`query_range`).
        cfg_scale: LLaDA's guidance ``un + (w + 1) (cond - un)``, the unconditional rows with the
            prompt masked, run as one doubled batch (and a cache of ``2B`` rows).
        attention_mask: ``[B, L]`` bool key mask of the whole sequence, or ``None``.
        shift_logits: Dream's convention (the logits at ``i`` predict token ``i + 1``).
    """

    def __init__(self, model, x: torch.Tensor, *, mask_id: int, cache: Optional[str] = None, cfg_scale: float = 0.0,
                 attention_mask: Optional[torch.Tensor] = None, shift_logits: bool = False):
        B, L = x.shape
        self.model, self.x, self.mask_id, self.cache = model, x, mask_id, cache
        self.cfg_scale, self.shift_logits = cfg_scale, shift_logits
        self.prompt_index = x != mask_id
        self.kv = model.init_cache(2 * B if cfg_scale else B, L) if cache is not None else None
        if attention_mask is not None and cfg_scale:
            attention_mask = torch.cat([attention_mask, attention_mask])
        self.attention_mask = attention_mask

    def logits_for(self, lo: int, hi: int) -> torch.Tensor:
        """Logits ``[B, hi - lo, V]`` of positions ``[lo, hi)`` (with a cache: of the positions run)."""
        return self.logits_of(self.x[:, lo:hi], self.prompt_index[:, lo:hi], lo if self.kv is not None else None)

    def logits_of(self, xs: torch.Tensor, prompt: torch.Tensor, start: Optional[Union[int, torch.Tensor]]
                  ) -> torch.Tensor:
        """Logits of the tokens ``xs [B, n]`` at positions ``[start, start + n)`` (``prompt``: which
        of them are prompt tokens, masked in CFG's unconditional rows); ``start``: an int or a
        one-element tensor with a cache, None without."""
        if self.cfg_scale:
            xs = torch.cat([xs, torch.where(prompt, self.mask_id, xs)])
        if self.kv is not None:
            out = _logits_of(self.model(xs, attention_mask=self.attention_mask, kv_cache=self.kv, start=start))
        else:
            out = _logits_of(self.model(xs, attention_mask=self.attention_mask))
        if self.cfg_scale:
            cond, un = out.chunk(2)
            out = un + (self.cfg_scale + 1) * (cond - un)
        return out

    def __call__(self, step_in_block: int, start: int, end: int) -> Tuple[torch.Tensor, int]:
        q0, q1 = query_range(self.cache, step_in_block, start, end, self.x.shape[1])
        if not self.shift_logits:
            return self.logits_for(q0, q1), q0
        # Dream: the logits at i predict token i + 1, so the run starts one position earlier (with
        # a cache that position's K/V are rewritten from the same committed token).
        if q0 == 0:
            logits = self.logits_for(0, q1)
            return torch.cat([logits[:, :1], logits[:, :-1]], dim=1), 0
        return self.logits_for(q0 - 1, q1)[:, :-1], q0
