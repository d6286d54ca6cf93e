"""Inputs and checks for masked_confidence's greedy path (temperature 0, no filters)."""
import torch

from diffusion_kernels import reference
from tolerance import assert_within_torch_error

MASK_ID = 3
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# name -> ((batch, seq, vocab) on the CPU and CUDA, under the emulator): vocab not a multiple of 4
# or 128, seq not a multiple of anything; the emulator runs every CUDA thread as a fiber, so its
# shapes are smaller.
SHAPES = {"vocab1": ((2, 5, 1), (2, 3, 1)), "vocab3": ((3, 7, 3), (2, 4, 3)), "gpt2": ((2, 9, 50257), (1, 3, 50257)),
          "llada": ((1, 3, 126464), (1, 2, 126464)), "small": ((4, 1, 130), (3, 5, 257))}


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
    reference (python_tests/tolerance.py), plus a tiny slack. The reference runs on CPU copies."""
    x0, conf = op(logits, x, mask_id)
    logits, x = logits.cpu(), x.cpu()
    ref_x0, ref64 = reference.masked_confidence(logits.double(), x, mask_id)
    _, ref32 = reference.masked_confidence(logits.float(), x, mask_id)
    assert x0.dtype == torch.int64 and conf.dtype == torch.float32
    assert x0.shape == x.shape and conf.shape == x.shape
    assert torch.equal(x0, ref_x0), f"x0 differs at {(x0 != ref_x0).nonzero()[:5].tolist()}"
    assert_within_torch_error(conf, ref32, ref64, atol=1e-7, rtol=1e-6, what="confidence")
    return x0, conf


def make_editing_case(batch, seq, vocab, dtype, generator=None):
    """Logits and tokens for the engine options (positions="all", prev_token_penalty): masked and
    committed positions mixed, previous tokens that are mask_id, out of the vocabulary (never
    penalised) or the next position's argmax (so a penalty has to move it)."""
    logits = torch.randn(batch, seq, vocab, generator=generator) * 3
    x = torch.randint(4, vocab, (batch, seq), generator=generator)
    x[:, 1::3] = MASK_ID
    x[0, 4 % seq] = vocab + 7  # outside the vocabulary: the next position is not penalised
    for b in range(batch):
        for l in range(1, seq, 2):  # the previous token (some mask_id) leads the next row by 2
            if 0 <= x[b, l - 1] < vocab:
                logits[b, l, x[b, l - 1]] = logits[b, l].max() + 2
    return logits.to(dtype), x
