"""LLaDA's Monte Carlo estimate of log p(answer | prompt) (the LLaDA paper's likelihood evaluation)."""
from typing import Any, Callable

import torch

from ._philox import philox_uniform
from .ops._args import int64_arg
from .ops.masked_ce import masked_cross_entropy

__all__ = ["monte_carlo_log_likelihood"]

_COUNT_COLUMN = 1 << 33  # Philox column of each MC batch's count draw; positions use columns < 2**33


def mc_masks(answer_len: int, batch_size: int, batch_index: int, seed: int, offset: int, device=None):
    """Masks of one MC batch: stratified counts (LLaDA's shifted linspace over [1, T]), then for
    each sample a uniformly random subset of exactly that many answer positions.

    Returns ``(is_mask [batch_size, T] bool, counts [batch_size] int64)``. Philox streams: the
    batch's random start uses row ``batch_index``, column ``2**33``; sample ``i`` of the batch
    orders the positions by the uniforms of row ``batch_index * batch_size + i``, columns ``0..T-1``.
    """
    t = answer_len
    u = philox_uniform(seed, offset, torch.tensor(batch_index, device=device), _COUNT_COLUMN)
    k = min(int(float(u) * t) + 1, t)  # k ~ U{1..T}
    counts = torch.round(torch.linspace(float(k), k + (batch_size - 1) * (t / batch_size), steps=batch_size,
                                        device=device)).long()
    counts = ((counts - 1) % t) + 1
    rows = torch.arange(batch_size, device=device)[:, None] + batch_index * batch_size
    keys = philox_uniform(seed, offset, rows, torch.arange(t, device=device)[None, :])
    order = torch.argsort(keys, dim=1, stable=True)
    chosen = torch.arange(t, device=device)[None, :] < counts[:, None]
    is_mask = torch.zeros(batch_size, t, dtype=torch.bool, device=device).scatter_(1, order, chosen)
    return is_mask, counts


@torch.no_grad()
def monte_carlo_log_likelihood(model: Callable[[torch.Tensor], Any], prompt: torch.Tensor, answer: torch.Tensor,
                               mask_id: int, *, n_samples: int = 128, batch_size: int = 16, seed: int = 0,
                               offset: int = 0) -> torch.Tensor:
    """LLaDA's Monte Carlo estimate of ``log p(answer | prompt)`` (``get_log_likelihood`` of the
    LLaDA paper's code): for each of ``n_samples`` draws, mask ``l`` answer tokens (stratified ``l``
    in ``[1, T]``, a random subset; the prompt stays clean) and average ``-Σ_masked CE / (l / T)``.
    The CE is the fused :func:`masked_cross_entropy` over the masked rows only. No
    classifier-free guidance.

    Args:
        model: callable ``[b, L] int64 -> [b, L, V]`` logits (or an object with ``.logits``). When
            it has ``config.vocab_size``, the token ids are checked against it before the first
            call; otherwise against ``V`` after it.
        prompt: 1-D int64 token ids on the model's device (may be empty).
        answer: 1-D int64 token ids on the same device, non-empty.
        mask_id: the ``[MASK]`` token id (LLaDA: 126336).
        n_samples: number of MC samples, a positive multiple of ``batch_size``.
        batch_size: samples per model call.
        seed: Philox seed of the masks (int64; see :func:`mc_masks`).
        offset: Philox offset of the masks (int64).

    Returns:
        0-d float32 tensor: the estimate of ``log p(answer | prompt)`` (a lower bound in
        expectation).

    Examples:
        >>> import torch, diffusion_kernels as dk
        >>> emb = torch.randn(8, 8)
        >>> model = lambda x: emb[x]  # [b, L] -> [b, L, 8]
        >>> ll = dk.monte_carlo_log_likelihood(model, torch.tensor([1, 2]), torch.tensor([3, 4]), 7,
        ...                                    n_samples=8, batch_size=4)
        >>> ll.shape
        torch.Size([])
    """
    if not callable(model):
        raise TypeError(f"diffusion_kernels: argument 'model' must be callable, got {type(model).__name__}")
    _check_ids(prompt, "prompt", answer)
    _check_ids(answer, "answer", prompt)
    if answer.numel() == 0:
        raise ValueError("diffusion_kernels: argument 'answer' must be non-empty")
    mask_id = int64_arg(mask_id, "mask_id")
    n_samples, batch_size = int64_arg(n_samples, "n_samples"), int64_arg(batch_size, "batch_size")
    if batch_size < 1:
        raise ValueError(f"diffusion_kernels: argument 'batch_size' must be positive, got {batch_size}")
    if n_samples < batch_size or n_samples % batch_size:
        raise ValueError(f"diffusion_kernels: argument 'n_samples' ({n_samples}) must be a positive multiple of "
                         f"'batch_size' ({batch_size})")
    seed, offset = int64_arg(seed, "seed"), int64_arg(offset, "offset")
    seq = torch.cat([prompt, answer])
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    if isinstance(vocab, int):
        _check_vocab(seq, prompt.numel(), mask_id, vocab)
    lp, t = prompt.numel(), answer.numel()
    clean = torch.zeros(batch_size, lp, dtype=torch.bool, device=seq.device)
    targets = seq.repeat(batch_size)
    total = torch.zeros((), dtype=torch.float64, device=seq.device)
    n_batches = n_samples // batch_size
    for j in range(n_batches):
        is_mask, counts = mc_masks(t, batch_size, j, seed, offset, seq.device)
        masked = torch.cat([clean, is_mask], dim=1)
        x = torch.where(masked, mask_id, seq)
        out = model(x)
        logits = getattr(out, "logits", out)
        if not isinstance(logits, torch.Tensor) or logits.dim() != 3 or logits.shape[:2] != x.shape \
                or logits.shape[2] == 0:
            raise ValueError(f"diffusion_kernels: argument 'model' must return [b, L, V] logits for [b, L] = "
                             f"{list(x.shape)} tokens, got {tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__}")
        if j == 0 and not isinstance(vocab, int):
            _check_vocab(seq, lp, mask_id, logits.shape[2])
        ce, _ = masked_cross_entropy(logits.reshape(-1, logits.shape[-1]), targets, masked.reshape(-1))
        p_mask = (counts.to(torch.float32) / t)[:, None]
        loss = torch.where(masked, ce.view(batch_size, -1) / p_mask, 0.0).sum() / batch_size
        total += loss.to(torch.float64)
    return (-total / n_batches).to(torch.float32)


def _check_ids(ids, name, other):
    if not isinstance(ids, torch.Tensor) or ids.dim() != 1:
        raise ValueError(f"diffusion_kernels: argument '{name}' must be a 1-D tensor of token ids, got "
                         f"{tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__}")
    if ids.dtype != torch.int64:
        raise ValueError(f"diffusion_kernels: argument '{name}' must be int64 token ids, got {ids.dtype}")
    if isinstance(other, torch.Tensor) and ids.device != other.device:
        raise ValueError(f"diffusion_kernels: arguments 'prompt' and 'answer' must be on one device, got "
                         f"{ids.device} and {other.device}")


def _check_vocab(seq, prompt_len, mask_id, vocab):
    """Token ids in [0, vocab), named by the argument that holds them (a model's embedding would
    fail with an anonymous index error)."""
    if not 0 <= mask_id < vocab:
        raise ValueError(f"diffusion_kernels: argument 'mask_id' must lie in [0, vocab = {vocab}), got {mask_id}")
    bad = ((seq < 0) | (seq >= vocab)).nonzero()
    if bad.numel():
        i = int(bad[0, 0])
        name, pos = ("prompt", i) if i < prompt_len else ("answer", i - prompt_len)
        raise ValueError(f"diffusion_kernels: argument '{name}' must hold token ids in [0, vocab = {vocab}), got "
                         f"{int(seq[i])} at position {pos}")
