"""Pure-PyTorch references of every op: short, obviously correct, and the executable spec the
native kernels are tested against."""
import torch

__all__ = ["masked_confidence", "forward_mask", "masked_cross_entropy", "masked_diffusion_loss"]


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


def forward_mask(x0: torch.Tensor, mask_id: int, eps: float = 1e-3, t=None, seed: int = 0, offset: int = 0,
                 prompt_lengths=None, antithetic: bool = False):
    """Reference of :func:`diffusion_kernels.forward_mask`: LLaDA's ``forward_process`` with the
    Philox draws of the kernels (bitwise the same result)."""
    from ._philox import philox_uniform

    b, l = x0.shape
    rows = torch.arange(b, device=x0.device)
    if t is None:
        t = philox_uniform(seed, offset, rows, 2**33)
        if antithetic:
            t = (t / b + torch.arange(b, device=x0.device) / b) % 1
    t = torch.as_tensor(t, dtype=torch.float32, device=x0.device).expand(b)
    p = (1 - eps) * t + eps
    u = philox_uniform(seed, offset, rows[:, None], torch.arange(l, device=x0.device)[None, :])
    masked = u < p[:, None]
    if prompt_lengths is not None:
        pl = torch.as_tensor(prompt_lengths, device=x0.device).to(torch.int64).expand(b)
        masked &= torch.arange(l, device=x0.device)[None, :] >= pl[:, None]
    x_t = torch.where(masked, mask_id, x0)
    return x_t, masked, p[:, None].expand(b, l).contiguous()


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, masked: torch.Tensor):
    """Reference of :func:`diffusion_kernels.masked_cross_entropy` (float32, or float64 for
    float64 logits; rows not masked give 0)."""
    x = logits.to(torch.promote_types(logits.dtype, torch.float32))
    lse = torch.logsumexp(x, dim=-1)
    safe_t = torch.where(masked, targets, 0)
    ce = torch.nn.functional.cross_entropy(x, safe_t, reduction="none")
    zero = torch.zeros((), dtype=x.dtype)
    return torch.where(masked, ce, zero), torch.where(masked, lse, zero)


def masked_diffusion_loss(logits, targets, masked, p_mask, normalize="pretrain", reduction="mean",
                          prompt_lengths=None):
    """Reference of :func:`diffusion_kernels.masked_diffusion_loss`, written as LLaDA's
    GUIDELINES.md (gather masked rows, ``F.cross_entropy(..., reduction='none') / p_mask``)."""
    x = logits.to(torch.promote_types(logits.dtype, torch.float32))
    p = torch.as_tensor(p_mask, device=logits.device)
    if p.dim() == 1 and masked.dim() == 2 and p.shape[0] == masked.shape[0]:
        p = p[:, None]
    p = torch.broadcast_to(p, masked.shape).to(x.dtype)
    token_loss = torch.nn.functional.cross_entropy(x[masked], targets[masked], reduction="none") / p[masked]
    if reduction == "none":
        out = torch.zeros(masked.shape, dtype=x.dtype, device=x.device)
        out[masked] = token_loss
        return out
    if reduction == "sum":
        return token_loss.sum()
    if normalize == "pretrain":
        return token_loss.sum() / masked.numel()
    if normalize == "sft":
        b, l = masked.shape
        pl = torch.as_tensor(prompt_lengths, device=x.device).to(torch.int64).expand(b)
        answer_lengths = (l - pl)[:, None].repeat(1, l)
        return torch.sum(token_loss / answer_lengths[masked]) / b
    if normalize == "masked_tokens":
        return token_loss.sum() / max(int(masked.sum()), 1)
    raise ValueError(normalize)
