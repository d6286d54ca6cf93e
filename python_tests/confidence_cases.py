"""Inputs and checks for masked_confidence, shared by the CPU, emulated and CUDA tests."""
import torch

from diffusion_kernels import reference

MASK_ID = 3
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# (batch, seq, vocab): vocab not a multiple of 4 or 128, seq not a multiple of anything.
SHAPES = [(2, 5, 1), (3, 7, 3), (2, 9, 50257), (1, 3, 126464), (4, 1, 130)]


def make_tokens(batch, seq, mask_fraction=0.6, generator=None):
    """Token ids with ~mask_fraction masked; row 0 fully masked and, when batch > 1, the last row
    unmasked, so both edge cases appear in every call."""
    x = torch.randint(4, 100, (batch, seq), generator=generator)
    masked = torch.rand(batch, seq, generator=generator) < mask_fraction
    masked[0] = True
    if batch > 1:
        masked[-1] = False
    return torch.where(masked, torch.full_like(x, MASK_ID), x)


def make_logits(batch, seq, vocab, dtype, scale=3.0):
    return (torch.randn(batch, seq, vocab) * scale).to(dtype)


def assert_matches_reference(op, logits, x, mask_id=MASK_ID):
    """x0 exactly equal; confidence within 2x PyTorch's own float32 error against a float64
    reference (flash-attn's rule), plus a tiny absolute slack."""
    x0, conf = op(logits, x, mask_id)
    ref_x0, ref64 = reference.masked_confidence(logits.double(), x, mask_id)
    _, ref32 = reference.masked_confidence(logits.float(), x, mask_id)
    assert x0.dtype == torch.int64 and conf.dtype == torch.float32
    assert x0.shape == x.shape and conf.shape == x.shape
    assert torch.equal(x0, ref_x0), f"x0 differs at {(x0 != ref_x0).nonzero()[:5].tolist()}"
    finite = torch.isfinite(ref64)
    assert torch.equal(torch.isnan(conf), torch.isnan(ref64)), "NaN pattern differs"
    assert torch.equal(conf[torch.isinf(ref64)], ref64[torch.isinf(ref64)].float())
    torch_err = (ref32.double() - ref64)[finite].abs().max().item() if finite.any() else 0.0
    err = (conf.double() - ref64)[finite].abs()
    bound = 2 * torch_err + 1e-7 + 1e-6 * ref64[finite].abs()
    assert (err <= bound).all(), f"max error {err.max().item():.3g} vs torch float32 error {torch_err:.3g}"
    return x0, conf
