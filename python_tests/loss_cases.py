"""Inputs and comparison rules shared by the masked-CE and loss tests."""
import torch
import torch.nn.functional as F

LOW_PRECISION = [torch.bfloat16, torch.float16]
# Slack (forward, backward) on top of tolerance.assert_within_torch_error's bound (CCE's values).
TOL = {torch.float32: (1e-5, 5e-4), torch.bfloat16: (1e-2, 1e-2), torch.float16: (1e-3, 1e-3)}


def make_logits(rows, vocab, dtype=torch.float32, peaked=True):
    """Scaled normal logits; some rows get one large logit so their softmax is peaked."""
    x = torch.randn(rows, vocab, dtype=torch.float32) * 2
    if peaked and vocab > 1:
        hot = torch.randint(0, vocab, (rows,))
        x[torch.arange(rows)[::3], hot[::3]] += 12
    return x.to(dtype)


def make_mask(rows, frac=0.4, both=True):
    m = torch.rand(rows) < frac
    if both and rows >= 2:
        m[0], m[-1] = True, False
    return m


def torch_masked_ce(logits, targets, masked):
    """PyTorch's way at the logits' precision: gather masked rows, F.cross_entropy; per-row CE."""
    ce = torch.zeros(logits.shape[0], dtype=logits.dtype)
    ce = ce.masked_scatter(masked, F.cross_entropy(logits[masked], targets[masked], reduction="none"))
    return ce

