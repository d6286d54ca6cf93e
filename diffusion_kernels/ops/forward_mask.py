"""Masked-diffusion forward noising (LLaDA / MDLM) with the package's Philox stream."""
import torch

from ._args import int64_arg

__all__ = ["forward_mask"]


def forward_mask(x0: torch.Tensor, mask_id: int, eps: float = 1e-3, t=None, seed: int = 0, offset: int = 0,
                 prompt_lengths=None, antithetic: bool = False):
    """Masks each token of ``x0`` independently with probability ``p = (1 - eps) * t + eps``.

    LLaDA pre-training draws ``t ~ U(0, 1)`` per row; with ``prompt_lengths`` (LLaDA SFT) the first
    ``prompt_lengths[b]`` positions of row ``b`` are never masked; ``antithetic=True`` draws MDLM's
    stratified times ``t_b = (u_b / B + b / B) mod 1``. All draws come from Philox keyed by
    ``(seed, offset)`` (``csrc/kernels/philox.cuh``): position ``(b, l)`` uses stream row ``b``,
    column ``l``; the time of row ``b`` uses column ``2**33``. CPU, emulated CUDA and CUDA give the
    same result for the same key, and ``diffusion_kernels.reference.forward_mask`` reproduces it
    bit for bit.

    Args:
        x0: ``[batch, seq]`` int64 clean tokens.
        mask_id: the ``[MASK]`` token id (LLaDA: 126336).
        eps: minimum mask probability, in ``[0, 1]``.
        t: ``None`` (drawn), a float, or a ``[batch]`` tensor of times (cast to float32).
        seed, offset: the Philox key (int64 each; use a new offset per training step).
        prompt_lengths: ``None``, an int, or a ``[batch]`` int64 tensor.
        antithetic: stratified times; not allowed together with ``t``.

    Returns:
        ``(x_t, masked, p_mask)``: ``x_t [batch, seq]`` int64 with ``mask_id`` at masked positions,
        ``masked [batch, seq]`` bool, ``p_mask [batch, seq]`` float32 (each row's ``p``, as LLaDA's
        ``forward_process`` returns it).
    """
    if not isinstance(x0, torch.Tensor) or x0.dim() != 2:
        raise ValueError(f"diffusion_kernels: argument 'x0' must be a [batch, seq] tensor, got "
                         f"{tuple(x0.shape) if isinstance(x0, torch.Tensor) else type(x0).__name__}")
    batch = x0.shape[0]
    if t is not None:
        t = torch.as_tensor(t, dtype=torch.float32, device=x0.device)
        t = t.expand(batch) if t.dim() == 0 else t
    if prompt_lengths is not None:
        prompt_lengths = torch.as_tensor(prompt_lengths, device=x0.device)
        if prompt_lengths.dtype.is_floating_point or prompt_lengths.dtype == torch.bool:
            raise ValueError(f"diffusion_kernels: argument 'prompt_lengths' must be integers, got {prompt_lengths.dtype}")
        prompt_lengths = prompt_lengths.to(torch.int64)
        prompt_lengths = prompt_lengths.expand(batch) if prompt_lengths.dim() == 0 else prompt_lengths
    return torch.ops.diffusion_kernels.forward_mask.default(
        x0, int64_arg(mask_id, "mask_id"), float(eps), t, prompt_lengths, int64_arg(seed, "seed"),
        int64_arg(offset, "offset"), bool(antithetic))


@torch.library.register_fake("diffusion_kernels::forward_mask")
def _forward_mask_fake(x0, mask_id, eps, t, prompt_lengths, seed, offset, antithetic):
    torch._check(x0.dim() == 2, lambda: f"'x0' must be [batch, seq], got {tuple(x0.shape)}")
    torch._check(x0.dtype == torch.int64, lambda: f"'x0' must be int64, got {x0.dtype}")
    return (torch.empty_like(x0), torch.empty(x0.shape, dtype=torch.bool, device=x0.device),
            torch.empty(x0.shape, dtype=torch.float32, device=x0.device))
