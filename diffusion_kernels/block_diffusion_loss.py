"""The block-diffusion training objective (BD3-LM, SDAR): each block of ``x0`` is noised with its
own time, the noisy sequence and the clean one are run together (``x_t ⊕ x_0``, length ``2L``) with
the training layout of the block-causal attention (noisy block ``n`` sees noisy block ``n`` and the
clean blocks before it; clean block ``n`` sees the clean blocks up to ``n``), and the masked
cross-entropy is taken on the noisy half. One forward trains every block as if it were decoded
after its clean prefix, which is what the exact-cache sampler feeds the model.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Optional, Union

import torch

from .fused_linear_loss import fused_linear_masked_diffusion_loss
from .loss import masked_diffusion_loss
from .ops.forward_mask import forward_mask

__all__ = ["BlockDiffusionBatch", "block_diffusion_inputs", "block_diffusion_loss"]


@dataclass
class BlockDiffusionBatch:
    """``inputs [B, 2L]``: ``x_t ⊕ x_0``; ``noisy [B, L]``: ``x_t``; ``masked [B, L]`` bool;
    ``p_mask [B, L]`` float32: the mask probability of each position (its block's)."""
    inputs: torch.Tensor
    noisy: torch.Tensor
    masked: torch.Tensor
    p_mask: torch.Tensor


def _block_size(block_size, L: int) -> int:
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"diffusion_kernels: argument 'block_size' must be an int >= 1, got {block_size!r}")
    if L % block_size:
        raise ValueError(f"diffusion_kernels: the sequence length of 'x0' ({L}) must be a multiple of 'block_size' "
                         f"({block_size})")
    return block_size


def block_diffusion_inputs(x0: torch.Tensor, mask_id: int, block_size: int, *, eps: float = 1e-3,
                           t: Optional[Union[float, torch.Tensor]] = None, seed: int = 0, offset: int = 0,
                           prompt_lengths: Optional[Union[int, torch.Tensor]] = None) -> BlockDiffusionBatch:
    """Noise every block of ``x0`` with its own time and lay out ``x_t ⊕ x_0``.

    Block ``n`` of row ``b`` is masked token by token with probability ``p = (1 - eps) t + eps``,
    ``t ~ U(0, 1)`` drawn per (row, block) (BD3-LM samples one time per block); the draws are
    :func:`~diffusion_kernels.forward_mask`'s, with the ``[B * L / block_size, block_size]`` view
    of ``x0`` as its rows, so a ``(seed, offset)`` key reproduces them on every device.

    Args:
        x0: ``[B, L]`` int64 clean tokens, ``L`` a multiple of ``block_size``.
        mask_id: the ``[MASK]`` id.
        block_size: the model's block size.
        eps: minimum mask probability, in (0, 1).
        t: ``None`` (drawn), a number in ``[0, 1]``, or ``[B, L / block_size]`` times.
        seed, offset: the Philox key (a new offset per training step).
        prompt_lengths: ``None``, an int or ``[B]``: the first positions of each row stay clean (SFT).

    Returns:
        :class:`BlockDiffusionBatch`.

    Examples:
        >>> x0 = torch.randint(0, 100, (2, 8))
        >>> batch = block_diffusion_inputs(x0, 99, 4, seed=0)
        >>> batch.inputs.shape, bool((batch.inputs[:, 8:] == x0).all())
        (torch.Size([2, 16]), True)
    """
    if not isinstance(x0, torch.Tensor) or x0.dim() != 2:
        raise ValueError(f"diffusion_kernels: argument 'x0' must be a [batch, seq] tensor, got "
                         f"{tuple(x0.shape) if isinstance(x0, torch.Tensor) else type(x0).__name__}")
    B, L = x0.shape
    b = _block_size(block_size, L)
    nb = L // b
    if isinstance(t, torch.Tensor):
        if t.dim() != 2 or tuple(t.shape) != (B, nb):
            raise ValueError(f"diffusion_kernels: argument 't' must be a number or [batch, blocks] = [{B}, {nb}], got "
                             f"{tuple(t.shape)}")
        t = t.reshape(B * nb)
    if prompt_lengths is not None:
        if isinstance(prompt_lengths, bool) or not isinstance(prompt_lengths, (int, torch.Tensor)):
            raise TypeError(f"diffusion_kernels: argument 'prompt_lengths' must be an int or a [batch] tensor, got "
                            f"{type(prompt_lengths).__name__}")
        pl = torch.as_tensor(prompt_lengths, device=x0.device).to(torch.int64).reshape(-1).expand(B)
        if x0.device.type == "cpu" and ((pl < 0) | (pl > L)).any():
            raise ValueError(f"diffusion_kernels: argument 'prompt_lengths' must lie in [0, {L}]")
        starts = torch.arange(nb, device=x0.device) * b
        prompt_lengths = (pl[:, None] - starts[None, :]).clamp(0, b).reshape(B * nb)
    x_t, masked, p_mask = forward_mask(x0.reshape(B * nb, b), mask_id, eps=eps, t=t, seed=seed, offset=offset,
                                       prompt_lengths=prompt_lengths)
    x_t, masked, p_mask = x_t.view(B, L), masked.view(B, L), p_mask.view(B, L)
    return BlockDiffusionBatch(inputs=torch.cat([x_t, x0], dim=1), noisy=x_t, masked=masked, p_mask=p_mask)


def block_diffusion_loss(model, x0: torch.Tensor, *, mask_id: int, block_size: Optional[int] = None,
                         eps: float = 1e-3, t: Optional[Union[float, torch.Tensor]] = None, seed: int = 0,
                         offset: int = 0, prompt_lengths: Optional[Union[int, torch.Tensor]] = None,
                         normalize: str = "pretrain", reduction: str = "mean",
                         lm_head_weight: Optional[torch.Tensor] = None, chunk_size: Optional[int] = None
                         ) -> torch.Tensor:
    """The block-diffusion loss: Σ over the masked noisy positions of ``CE / p_mask``, normalised
    as :func:`~diffusion_kernels.masked_diffusion_loss`, from one forward over ``x_t ⊕ x_0``.

    Args:
        model: called as ``model(inputs, noisy_length=L)`` on the ``[B, 2L]`` layout, positions
            ``i mod L``, the training-layout attention; returns logits ``[B, 2L or L, V]`` (or an
            output with ``.logits``), or with ``lm_head_weight`` the final hidden states
            ``[B, 2L or L, H]``. Only the first ``L`` rows (the noisy half) are read. A model
            whose forward names the keywords (:class:`~diffusion_kernels.models.BlockDiffusionModel`)
            also gets ``noisy_only=True`` (the clean half skips the head) and, with
            ``lm_head_weight``, ``return_hidden=True``.
        x0: ``[B, L]`` int64 clean tokens.
        mask_id, block_size: the ``[MASK]`` id; the block size (default ``model.config.block_size``).
        eps, t, seed, offset, prompt_lengths: the noising, see :func:`block_diffusion_inputs`.
        normalize, reduction: as :func:`~diffusion_kernels.masked_diffusion_loss` (``'sft'``
            divides by ``L - prompt_lengths``).
        lm_head_weight: ``[V, H]``: take the loss through
            :func:`~diffusion_kernels.fused_linear_masked_diffusion_loss` (no ``[tokens, V]``
            logits); ``chunk_size`` its rows per chunk.

    Returns:
        The loss (a scalar, or per-token ``[B, L]`` for ``reduction='none'``).

    Examples:
        >>> import torch
        >>> from diffusion_kernels.block_diffusion_loss import block_diffusion_loss
        >>> from diffusion_kernels.models import BlockDiffusionConfig, BlockDiffusionModel
        >>> model = BlockDiffusionModel(BlockDiffusionConfig(block_size=4, mask_token_id=63))
        >>> x0 = torch.randint(0, 63, (2, 8))
        >>> loss = block_diffusion_loss(model, x0, mask_id=63)
        >>> fused = block_diffusion_loss(model, x0, mask_id=63, lm_head_weight=model.lm_head_weight)
        >>> torch.allclose(loss, fused, atol=1e-5)
        True
        >>> loss.backward()

        Any model of the layout works, e.g. a stand-in without attention:

        >>> emb = torch.nn.Embedding(100, 100)
        >>> loss = block_diffusion_loss(lambda x, noisy_length: emb(x), torch.randint(0, 99, (2, 8)), mask_id=99,
        ...                             block_size=4)
    """
    if block_size is None:
        block_size = getattr(getattr(model, "config", None), "block_size", None)
        if block_size is None:
            raise ValueError("diffusion_kernels: argument 'block_size' is required for a model without config.block_size")
    batch = block_diffusion_inputs(x0, mask_id, block_size, eps=eps, t=t, seed=seed, offset=offset,
                                   prompt_lengths=prompt_lengths)
    L = x0.shape[1]
    named = _named_keywords(model)
    options = {k: True for k in ("noisy_only", "return_hidden") if k in named}
    if lm_head_weight is None:
        options.pop("return_hidden", None)
    out = model(batch.inputs, noisy_length=L, **options)
    out = out.logits if hasattr(out, "logits") else out
    if not isinstance(out, torch.Tensor) or out.dim() != 3 or out.shape[0] != x0.shape[0] or out.shape[1] not in (L, 2 * L):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"diffusion_kernels: the model must return [batch, 2L or L, features] = "
                         f"[{x0.shape[0]}, {2 * L} or {L}, *] on the x_t ⊕ x_0 layout, got {got}")
    noisy_out = out[:, :L]
    if lm_head_weight is None:
        return masked_diffusion_loss(noisy_out, x0, batch.masked, batch.p_mask, normalize=normalize,
                                     reduction=reduction, prompt_lengths=prompt_lengths)
    return fused_linear_masked_diffusion_loss(noisy_out, lm_head_weight, x0, batch.masked, batch.p_mask,
                                              normalize=normalize, reduction=reduction,
                                              prompt_lengths=prompt_lengths, chunk_size=chunk_size)


def _named_keywords(model) -> frozenset:
    """The keyword parameters the model's call names explicitly (none when it cannot be inspected)."""
    call = model.forward if isinstance(model, torch.nn.Module) else model  # a Module's __call__ takes *args
    try:
        params = inspect.signature(call).parameters.values()
    except (TypeError, ValueError):
        return frozenset()
    return frozenset(p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
