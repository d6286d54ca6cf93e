"""Argument checks and the loss normalisations shared by masked_diffusion_loss and
fused_linear_masked_diffusion_loss (dllm_algorithms.md §6)."""
import torch

NORMALIZE = ("pretrain", "sft", "masked_tokens")
REDUCTION = ("mean", "sum", "none")


def check_choices(normalize, reduction, prompt_lengths, token_shape):
    if reduction not in REDUCTION:
        raise ValueError(f"diffusion_kernels: argument 'reduction' must be one of {REDUCTION}, got {reduction!r}")
    if normalize not in NORMALIZE:
        raise ValueError(f"diffusion_kernels: argument 'normalize' must be one of {NORMALIZE}, got {normalize!r}")
    if reduction == "mean" and normalize == "sft":
        if prompt_lengths is None:
            raise ValueError("diffusion_kernels: argument 'prompt_lengths' is required by normalize='sft' "
                             "(the answer length of row b is seq - prompt_lengths[b])")
        if len(token_shape) != 2:
            raise ValueError("diffusion_kernels: normalize='sft' needs [batch, seq] tokens, got token shape "
                             f"{tuple(token_shape)}")


def row_p_mask(p_mask, token_shape, device):
    """p_mask as a float32 tensor of the tokens' shape ([batch] broadcasts over positions)."""
    p = torch.as_tensor(p_mask, device=device)
    if not p.dtype.is_floating_point:
        raise ValueError(f"diffusion_kernels: argument 'p_mask' must be floating point, got {p.dtype}")
    if p.dim() == 1 and len(token_shape) == 2 and p.shape[0] == token_shape[0]:
        p = p[:, None]
    try:
        return torch.broadcast_to(p, token_shape).to(torch.float32)
    except RuntimeError:
        raise ValueError(f"diffusion_kernels: argument 'p_mask' must be [batch], [batch, seq] or a scalar, "
                         f"got shape {tuple(p.shape)} for tokens of shape {tuple(token_shape)}") from None


def answer_lengths(prompt_lengths, batch, seq, device):
    pl = torch.as_tensor(prompt_lengths, device=device).to(torch.int64)
    pl = pl.expand(batch) if pl.dim() == 0 else pl
    if pl.shape != (batch,):
        raise ValueError(f"diffusion_kernels: argument 'prompt_lengths' must be [batch] = [{batch}], got {tuple(pl.shape)}")
    return (seq - pl).to(torch.float32)


def reduce(token_loss, masked, normalize, reduction, prompt_lengths):
    """token_loss: CE / p_mask at masked positions and 0 elsewhere, in the tokens' shape.

    pretrain (LLaDA):      sum / (B * L)
    sft (LLaDA SFT):       sum over masked tokens of loss / answer_length(row), then / B
    masked_tokens:         sum / number of masked tokens (0 when nothing is masked)
    """
    if reduction == "none":
        return token_loss
    if reduction == "sum":
        return token_loss.sum()
    if normalize == "pretrain":
        return token_loss.sum() / token_loss.numel()
    if normalize == "sft":
        b, l = token_loss.shape
        ans = answer_lengths(prompt_lengths, b, l, token_loss.device)[:, None]
        # A row whose prompt fills it has no masked token: keep its 0 / 0 out of the sum.
        return torch.where(masked, token_loss / ans, 0.0).sum() / b
    return token_loss.sum() / masked.sum().clamp_min(1)


def row_weights(p_rows, masked_rows_batch, token_shape, normalize, reduction, prompt_lengths, n_masked):
    """d(loss)/d(ce) of each masked row for the scalar reductions, in float64."""
    w = 1.0 / p_rows.to(torch.float64)
    if reduction == "sum":
        return w
    if normalize == "pretrain":
        n = 1
        for s in token_shape:
            n *= s
        return w / n
    if normalize == "sft":
        b, l = token_shape
        ans = answer_lengths(prompt_lengths, b, l, p_rows.device).to(torch.float64)
        return w / ans[masked_rows_batch] / b
    return w / max(n_masked, 1)
