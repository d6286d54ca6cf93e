"""LLaDA's Monte Carlo estimate of log p(answer | prompt) (dllm_algorithms.md §6.4)."""
import torch

from ._philox import philox_uniform
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
def monte_carlo_log_likelihood(model, prompt: torch.Tensor, answer: torch.Tensor, n_samples: int = 128,
                               batch_size: int = 16, mask_id: int = 126336, seed: int = 0, offset: int = 0):
    """LLaDA's estimator (``get_log_likelihood``): for each of ``n_samples`` draws, mask ``l``
    answer tokens (stratified ``l`` in ``[1, T]``, random subset; the prompt stays clean), and
    average ``-Σ_masked CE / (l / T)``. The CE is the fused :func:`masked_cross_entropy` over the
    masked rows only. No classifier-free guidance.

    Args:
        model: callable ``[b, L] int64 -> [b, L, V]`` logits (or an object with ``.logits``).
        prompt, answer: 1-D int64 token ids on the model's device; ``answer`` non-empty.
        n_samples: number of MC samples, a multiple of ``batch_size``.
        seed, offset: Philox key of the masks (see :func:`mc_masks`).

    Returns:
        0-d float32 tensor: the estimate of ``log p(answer | prompt)`` (a lower bound in
        expectation).
    """
    if prompt.dim() != 1 or answer.dim() != 1 or answer.numel() == 0:
        raise ValueError("diffusion_kernels: 'prompt' and 'answer' must be 1-D token tensors, 'answer' non-empty")
    if batch_size < 1 or n_samples < batch_size or n_samples % batch_size:
        raise ValueError(f"diffusion_kernels: argument 'n_samples' ({n_samples}) must be a positive multiple of "
                         f"'batch_size' ({batch_size})")
    seq = torch.cat([prompt, answer])
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
        ce, _ = masked_cross_entropy(logits.reshape(-1, logits.shape[-1]), targets, masked.reshape(-1))
        p_mask = (counts.to(torch.float32) / t)[:, None]
        loss = torch.where(masked, ce.view(batch_size, -1) / p_mask, 0.0).sum() / batch_size
        total += loss.to(torch.float64)
    return (-total / n_batches).to(torch.float32)
