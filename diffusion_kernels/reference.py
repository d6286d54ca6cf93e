"""Pure-PyTorch references of every op: short, obviously correct, and the executable spec the
native kernels are tested against."""
import torch

__all__ = ["masked_confidence"]


def masked_confidence(logits: torch.Tensor, x: torch.Tensor, mask_id: int):
    """Reference of :func:`diffusion_kernels.masked_confidence` (greedy form).

    argmax and softmax in float32 over the vocabulary (float64 for float64 logits, which the tests
    use as the high-precision reference); torch.argmax returns the first maximal index, and its
    NaN/inf behaviour is the policy the kernels reproduce.
    """
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    masked = x == mask_id
    argmax = logits.argmax(dim=-1)
    prob = torch.softmax(logits, dim=-1).gather(-1, argmax.unsqueeze(-1)).squeeze(-1)
    x0 = torch.where(masked, argmax, x)
    confidence = torch.where(masked, prob, torch.full_like(prob, float("-inf")))
    return x0, confidence
