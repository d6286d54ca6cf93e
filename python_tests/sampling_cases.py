"""Inputs and checks shared by the sampling-family tests (masked_confidence, select_transfer): the
backend subsets a test runs on, the device wrapper, and masked_confidence's sampling checks
against the float64 reference with the same Philox draws."""
import pytest
import torch

from diffusion_kernels import _philox, reference
from backends import backends, on_backends  # noqa: F401  (re-exported for the sampling tests)
from tolerance import assert_within_torch_error

MASK_ID = 3
SEED, OFFSET = 1234, 5
def device_op(backend, name="masked_confidence"):
    """``backend``'s op with tensor arguments moved to its device and the results brought back to
    the CPU; an in-place ``x`` is copied back into the caller's tensor."""
    fn = getattr(backend, name)
    if backend.device.type == "cpu":
        return fn

    def move(v):
        return v.to(backend.device) if isinstance(v, torch.Tensor) else v

    def run(*args, **kw):
        moved = {k: move(v) for k, v in kw.items()}
        out = fn(*map(move, args), **moved)
        if isinstance(kw.get("x"), torch.Tensor) and moved["x"] is not kw["x"]:
            kw["x"].copy_(moved["x"].cpu())
        return tuple(t.cpu() for t in out) if isinstance(out, tuple) else out.cpu()

    return run


def make_case(batch, seq, vocab, dtype, scale=3.0, generator=None):
    logits = (torch.randn(batch, seq, vocab, generator=generator) * scale).to(dtype)
    x = torch.full((batch, seq), MASK_ID)
    if seq > 2:
        x[:, 1] = 7  # one unmasked position per row
    return logits, x


def safe_top_p(logits, p, temperature=1.0, margin=1e-4):
    """A top_p near `p` for every batch row whose cumulative masses stay at least `margin` away from
    the cut in every position of that row, so float32 rounding cannot move the kept set (the
    kernels sum in a different order than the sort)."""
    out = []
    for b in range(logits.shape[0]):
        t = temperature[b].item() if isinstance(temperature, torch.Tensor) else temperature
        z = logits[b].double() / (t if t > 0 else 1.0)
        cum = torch.softmax(z.sort(-1, descending=True).values, -1).cumsum(-1)
        q = p
        while (cum - q).abs().min() < margin:
            q -= margin / 3
        out.append(q)
    return torch.tensor(out)


def run_and_compare(op, logits, x, **opts):
    """Runs op and the float64 reference; tokens equal except documented near-ties (the two
    candidates' perturbed scores within a few float32 ulps); confidence and lse within 2x
    PyTorch's own float32 error (python_tests/tolerance.py) plus a small slack."""
    opts.setdefault("seed", SEED)
    opts.setdefault("offset", OFFSET)
    got = op(logits, x, MASK_ID, **opts)
    want = reference.masked_confidence(logits.double(), x, MASK_ID, **opts)
    want32 = reference.masked_confidence(logits.float(), x, MASK_ID, **opts)
    x0, conf = got[0], got[1]
    assert x0.dtype == torch.int64 and conf.dtype == torch.float32 and x0.shape == x.shape
    differ = x0 != want[0]
    if differ.any():
        _assert_near_ties(logits, x, differ, x0, want[0], opts)
    same = ~differ
    # Where PyTorch's float32 run drew another token its confidence says nothing about float32
    # error: the float64 value stands in for it there.
    torch32 = torch.where(x0 == want32[0], want32[1].double(), want[1])
    assert_within_torch_error(conf[same], torch32[same], want[1][same], atol=2e-6, rtol=2e-6, what="confidence")
    if opts.get("return_lse"):
        assert_within_torch_error(got[2], want32[2], want[2], atol=1e-5, rtol=1e-5, what="lse")
    return got, want


def _assert_near_ties(logits, x, differ, got, want, opts):
    B, L, V = logits.shape
    T = opts.get("temperature", 0.0)
    for b, l in differ.nonzero().tolist():
        t = T[b].item() if isinstance(T, torch.Tensor) else T
        assert t > 0, f"greedy token differs at {(b, l)}: {got[b, l].item()} vs {want[b, l].item()}"
        z = logits[b, l].double() / min(t, 2.0**126)
        g = _philox.philox_gumbel(opts["seed"], opts["offset"], b * L + l, torch.tensor([got[b, l], want[b, l]]))
        s = z[[got[b, l], want[b, l]]] + g
        assert (s[0] - s[1]).abs() <= 4e-6 * (1 + s.abs().max()), f"not a near-tie at {(b, l)}: scores {s.tolist()}"


def assert_same_tokens_as_cpu(logits, x, got, **opts):
    """The CPU op's tokens for the same seed; a difference must be a near-tie of the two perturbed
    scores (the CPU's vector log vs the CUDA logf)."""
    import diffusion_kernels as dk

    want = dk.masked_confidence(logits, x, MASK_ID, seed=SEED, offset=OFFSET, **opts)[0]
    t = opts.get("temperature", 0.0)
    L = x.shape[1]
    for b, l in (got != want).nonzero().tolist():
        tb = t[b].item() if isinstance(t, torch.Tensor) else t
        assert tb > 0, f"greedy token differs from the CPU at {(b, l)}"
        pair = torch.tensor([got[b, l], want[b, l]])
        s = logits[b, l, pair].double() / tb + _philox.philox_gumbel(SEED, OFFSET, b * L + l, pair)
        assert (s[0] - s[1]).abs() <= 4e-6 * (1 + s.abs().max()), f"CPU and CUDA tokens differ at {(b, l)}: {s.tolist()}"
