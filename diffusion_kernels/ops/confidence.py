"""Masked softmax-confidence: the per-step proposal of a dLLM sampler."""
import torch

from ._args import int64_arg

__all__ = ["masked_confidence"]


def masked_confidence(logits: torch.Tensor, x: torch.Tensor, mask_id: int):
    """Greedy proposal and confidence at the masked positions, in one pass over the vocabulary.

    Args:
        logits: ``[batch, seq, vocab]`` float32, float16 or bfloat16; any batch/row strides, the
            vocabulary dimension contiguous.
        x: ``[batch, seq]`` int64 current tokens; positions equal to ``mask_id`` are masked.
        mask_id: the ``[MASK]`` token id.

    Returns:
        ``(x0, confidence)``: ``x0 [batch, seq]`` int64 is the argmax over the vocabulary at masked
        positions (lowest index on ties) and ``x`` elsewhere; ``confidence [batch, seq]`` float32 is
        the softmax probability of ``x0`` at masked positions (accumulated in float32) and ``-inf``
        elsewhere. Non-finite rows follow ``torch.argmax``/``torch.softmax``: a row with a NaN
        gives the first NaN's index and NaN; an all ``-inf`` row gives index 0 and NaN; a row whose
        maximum is ``+inf`` gives the first ``+inf`` index and NaN.
    """
    return torch.ops.diffusion_kernels.masked_confidence.default(logits, x, int64_arg(mask_id, "mask_id"))


@torch.library.register_fake("diffusion_kernels::masked_confidence")
def _masked_confidence_fake(logits, x, mask_id):
    torch._check(logits.dim() == 3, lambda: f"'logits' must be [batch, seq, vocab], got {tuple(logits.shape)}")
    torch._check(x.dim() == 2, lambda: f"'x' must be [batch, seq], got {tuple(x.shape)}")
    torch._check(x.device == logits.device,
                 lambda: f"'x' must be on the same device as 'logits' ({logits.device}), got {x.device}")
    torch._check(x.dtype == torch.int64, lambda: f"'x' must be int64, got {x.dtype}")
    torch._check(logits.dtype in (torch.float32, torch.float16, torch.bfloat16),
                 lambda: f"'logits' must be float32, float16 or bfloat16, got {logits.dtype}")
    torch._check(x.shape[0] == logits.shape[0] and x.shape[1] == logits.shape[1],
                 lambda: "'x' must match logits' [batch, seq]")
    return torch.empty_like(x), torch.empty(x.shape, dtype=torch.float32, device=x.device)
