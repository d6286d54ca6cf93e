"""Inputs and checks for masked_confidence's sampling options, shared by the CPU, emulated and
CUDA tests. The reference is diffusion_kernels.reference in float64 with the same Philox draws."""
import torch

from diffusion_kernels import _philox, reference

MASK_ID = 3
SEED, OFFSET = 1234, 5


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
    candidates' perturbed scores within a few float32 ulps); confidence within 2x PyTorch's own
    float32 error plus a small slack; lse likewise."""
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
    ref, ref32 = want[1], want32[1]
    assert torch.equal(torch.isnan(conf[same]), torch.isnan(ref[same])), "NaN pattern differs"
    inf = torch.isinf(ref) & same
    assert torch.equal(conf[inf].double(), ref[inf]), "-inf pattern differs"
    fin = torch.isfinite(ref) & same & (x0 == want32[0])
    if fin.any():
        torch_err = (ref32.double() - ref)[fin].abs().max().item()
        err = (conf.double() - ref)[fin].abs()
        bound = 2 * torch_err + 2e-6 + 2e-6 * ref[fin].abs()
        assert (err <= bound).all(), f"confidence error {err.max().item():.3g} vs torch float32 error {torch_err:.3g}"
    if opts.get("return_lse"):
        lse, ref_lse, ref_lse32 = got[2], want[2], want32[2]
        assert torch.equal(torch.isnan(lse), torch.isnan(ref_lse)), "lse NaN pattern differs"
        fin = torch.isfinite(ref_lse)
        assert torch.equal(lse[~fin & ~torch.isnan(ref_lse)].double(), ref_lse[~fin & ~torch.isnan(ref_lse)])
        torch_err = (ref_lse32.double() - ref_lse)[fin].abs().max().item() if fin.any() else 0
        err = (lse.double() - ref_lse)[fin].abs()
        assert (err <= 2 * torch_err + 1e-5 * (1 + ref_lse[fin].abs())).all(), f"lse error {err.max().item():.3g}"
    return got, want


def _assert_near_ties(logits, x, differ, got, want, opts):
    B, L, V = logits.shape
    T = opts.get("temperature", 0.0)
    for b, l in differ.nonzero().tolist():
        t = T[b].item() if isinstance(T, torch.Tensor) else T
        assert t > 0, f"greedy token differs at {(b, l)}: {got[b, l].item()} vs {want[b, l].item()}"
        z = logits[b, l].double() / t
        g = _philox.philox_gumbel(opts["seed"], opts["offset"], b * L + l, torch.tensor([got[b, l], want[b, l]]))
        s = z[[got[b, l], want[b, l]]] + g
        assert (s[0] - s[1]).abs() <= 4e-6 * (1 + s.abs().max()), f"not a near-tie at {(b, l)}: scores {s.tolist()}"
