"""The CUDA Gumbel draw's two skip variants (DK_MC_SAMPLE, csrc/kernels/masked_confidence_launch.cu):
v1 skips a group of 4 ids only against the thread's own best perturbed score, v2 against the
row's (split path: the slice's) argmax's perturbed score from the start. Skipping must never
change a decision: under the emulator both give bitwise the same tokens, confidences and lse on
the one-block and split paths, with filters, ties, non-finite rows, suppressed and penalised
argmaxes, and rows built so that the winner is not the argmax and sits exactly at the skip
test's edge."""
import pytest
import torch

from diffusion_kernels import _philox
from diffusion_kernels.testing import emulated
from sampling_cases import MASK_ID, OFFSET, SEED, assert_same_tokens_as_cpu, backends, make_case, run_and_compare

pytestmark = backends("emulated")

ORDERS = [("reverse", 0), ("random", 1), ("random", 2)]


def _bits(t):
    return t.view(torch.int32) if t.is_floating_point() else t


def run_both(backend, monkeypatch, logits, x, **opts):
    """v1's and v2's outputs, asserted bitwise equal; returns v2's."""
    opts = dict(opts)
    opts.setdefault("seed", SEED)
    opts.setdefault("offset", OFFSET)
    out = {}
    for variant in ("v1", "v2"):
        monkeypatch.setenv("DK_MC_SAMPLE", variant)
        out[variant] = backend.masked_confidence(logits, x, MASK_ID, **opts)
    for a, b in zip(out["v1"], out["v2"]):
        assert torch.equal(_bits(a), _bits(b)), (opts, a, b)
    return out["v2"]


def peaked(batch, seq, vocab, dtype, generator):
    """N(0, 2.5) plus 50 ids 10-25 higher: the v2 floor skips nearly every group."""
    logits = torch.randn(batch, seq, vocab, generator=generator) * 2.5
    hot = torch.randint(0, vocab, (batch, seq, 50), generator=generator)
    logits.scatter_add_(-1, hot, 10 + 15 * torch.rand(batch, seq, 50, generator=generator))
    return logits.to(dtype)


# (batch, seq, vocab): 1001 ids take the one-block kernel, 5003 / 9000 over <= 3 rows the split path.
SHAPES = {"one-block": (2, 3, 1001), "split": (1, 3, 9000)}
OPTIONS = {
    "T0.7": dict(temperature=0.7, return_lse=True),
    "T1-margin": dict(temperature=1.0, confidence="margin"),
    "T0.7-top_p0.9-top_k50": dict(temperature=0.7, top_p=0.9, top_k=50, return_lse=True),
    "T1.3-top_k5-entropy-logits": dict(temperature=1.3, top_k=5, confidence="neg_entropy", confidence_from="logits"),
    "T0.9-top_p0.5-penalty-suppress": dict(temperature=0.9, top_p=0.5, prev_token_penalty=4.0, suppress_ids=[0, 5],
                                           positions="all"),
}


@pytest.mark.parametrize("rows", ["flat", "peaked"])
@pytest.mark.parametrize("options", list(OPTIONS))
@pytest.mark.parametrize("shape", list(SHAPES))
def test_variants_bitwise_equal(backend, monkeypatch, shape, options, rows):
    """Flat rows (randn * 0.5: the winner is rarely the argmax) and peaked ones (most groups
    skipped), filters and confidence kinds; v2 also matches the reference and the CPU op's tokens."""
    b, l, v = SHAPES[shape]
    g = torch.Generator().manual_seed(v + len(options))
    logits = (torch.randn(b, l, v, generator=g) * 0.5).to(torch.bfloat16) if rows == "flat" else \
        peaked(b, l, v, torch.bfloat16, g)
    x = torch.full((b, l), MASK_ID)
    opts = OPTIONS[options]
    if "prev_token_penalty" in opts:  # penalise each row's argmax: the next best becomes the argmax
        x[:, :-1] = logits[:, 1:].float().argmax(-1)
        x[:, 1] = MASK_ID
    got = run_both(backend, monkeypatch, logits, x, **opts)
    run_and_compare(lambda *a, **k: got, logits, x, **opts)
    assert_same_tokens_as_cpu(logits, x, got[0], **opts)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("vocab", [1001, 5003], ids=["one-block", "split"])
def test_variants_on_ties_and_nonfinite_rows(backend, monkeypatch, vocab, dtype):
    """Ties of the maximum inside a group, across groups and threads (and slices); NaN, +inf, all
    -inf and single-finite rows; a suppressed argmax; huge and tiny temperatures (z overflows to
    +inf at T = 1e-38)."""
    logits, x = make_case(1, 8, vocab, dtype)
    top = 30.0
    logits[0, 0, [4, 5, 7]] = top                      # tie inside one group of 4
    logits[0, 1, [3, vocab // 2 + 3, vocab - 1]] = top  # across threads and slices, one in the ragged tail
    logits[0, 2, 9] = float("nan")
    logits[0, 3, [11, vocab - 2]] = float("inf")
    logits[0, 4] = float("-inf")
    logits[0, 5, :-1] = float("-inf")                  # one finite id, in the tail
    logits[0, 6, 2] = 60.0                             # suppressed below: the next id is the argmax
    x[0, 1] = MASK_ID
    for opts in (dict(temperature=0.7, suppress_ids=[2]), dict(temperature=1.0, top_k=2, suppress_ids=[2]),
                 dict(temperature=0.5, top_p=0.3, return_lse=True), dict(temperature=1e-38),
                 dict(temperature=1e30), dict(temperature=torch.tensor([float("inf")]))):
        got = run_both(backend, monkeypatch, logits, x, **opts)
        assert_same_tokens_as_cpu(logits, x, got[0], **opts)


def _edge_row(vocab, row):
    """float32 logits on which the noise rounds away: ulp(M) = 16, so fl(M + g) = M for |g| < 8 and
    fl(M - 16 + g) = M for g > 8. The argmax a (z = M, |G_a| < 7.9) ties with a lower id w
    (z = M - 16, G_w > 8.1): w wins on the lowest index, and w's group sits exactly at the skip
    test's edge, fl(M - 16 + kGumbelMax) = M = the floor, so it must not be skipped (strict <).
    Returns (logits, w) or None when this Philox row has no such pair."""
    g = _philox.philox_gumbel(SEED, OFFSET, row, torch.arange(vocab))
    big = (g > 8.1).nonzero().flatten()
    if big.numel() == 0:
        return None
    w = big[0].item()
    calm = ((g.abs() < 7.9) & (torch.arange(vocab) > w + 4)).nonzero().flatten()
    if calm.numel() == 0:
        return None
    a = calm[0].item()  # the next group on: another thread, and the same slice on the split path
    M = 1.5 * 2.0**27
    z = torch.full((vocab,), M - 2.0**20, dtype=torch.float64)
    z[a], z[w] = M, M - 16
    return z.float(), w


@pytest.mark.parametrize("vocab", [1001, 5003], ids=["one-block", "split"])
def test_winner_below_the_argmax_at_the_skip_edge(backend, monkeypatch, vocab):
    """The adversarial rows of _edge_row, on both paths: both variants pick w, not the argmax."""
    rows, want = [], []
    for r in range(64):
        case = _edge_row(vocab, r)
        if case is not None:
            rows.append((r, case))
        if len(rows) == 2:
            break
    assert len(rows) == 2, "no Philox row with an edge pair: change SEED"
    L = rows[-1][0] + 1
    logits = torch.full((1, L, vocab), -1e30)
    x = torch.full((1, L), 7)
    for r, (z, w) in rows:
        logits[0, r], x[0, r] = z, MASK_ID
        want.append(w)
    got = run_both(backend, monkeypatch, logits, x, temperature=1.0)
    assert [got[0][0, r].item() for r, _ in rows] == want


@pytest.mark.parametrize("vocab", [1001, 5003], ids=["one-block", "split"])
def test_floor_is_the_argmax_own_score(backend, monkeypatch, vocab):
    """With seed 73, row 0: the argmax a = 147 has G_a = -0.87 while the other three ids of its
    Philox block have G >= 1.84, and w = 441 has G_w = 14.44. At z_a = 0, z_w = -15.1 (everything
    else -40) w wins by 0.21, and its group passes the skip test only against a's own score:
    fl(-15.1 + 16.75) = 1.65 >= -0.87, while any other word of a's block would skip it."""
    seed, a, w = 73, 147, 441
    g = _philox.philox_gumbel(seed, OFFSET, 0, torch.arange(vocab))
    block = g[a & ~3:(a & ~3) + 4]
    assert g[a] < -0.8 and (block[torch.arange(4) != a % 4] > 1.8).all() and g[w] > 14.4  # the row's premise
    logits = torch.full((1, 1, vocab), -40.0)
    logits[0, 0, a], logits[0, 0, w] = 0.0, -15.1
    got = run_both(backend, monkeypatch, logits, torch.full((1, 1), MASK_ID), temperature=1.0, seed=seed)
    assert got[0].item() == w


@pytest.mark.parametrize("shape", list(SHAPES))
def test_v2_bitwise_across_resume_orders(backend, monkeypatch, shape):
    """v2 alone is deterministic in every fiber resume order."""
    monkeypatch.setenv("DK_MC_SAMPLE", "v2")
    b, l, v = SHAPES[shape]
    logits = peaked(b, l, v, torch.bfloat16, torch.Generator().manual_seed(1))
    logits[0, 0, [10, 700]] = logits[0, 0].max()  # a tie across warps
    x = torch.full((b, l), MASK_ID)
    opts = dict(seed=SEED, temperature=0.7, top_p=0.9, return_lse=True)
    ref = backend.masked_confidence(logits, x, MASK_ID, **opts)
    for order, seed in ORDERS:
        with emulated.resume_order(order, seed):
            got = backend.masked_confidence(logits, x, MASK_ID, **opts)
        assert all(torch.equal(_bits(a), _bits(r)) for a, r in zip(got, ref)), (shape, order, seed)


def test_unknown_sample_variant_is_refused(backend, monkeypatch):
    monkeypatch.setenv("DK_MC_SAMPLE", "v3")
    logits, x = make_case(1, 2, 64, torch.float32)
    with pytest.raises((RuntimeError, ValueError), match="DK_MC_SAMPLE"):
        backend.masked_confidence(logits, x, MASK_ID, temperature=0.7)
