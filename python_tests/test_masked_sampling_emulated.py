"""masked_confidence's sampling options in the CUDA kernels, executed by the SIMT emulator: every
option against the float64 reference, the same tokens as the CPU op for the same seed (only
documented near-ties may differ), and bitwise-identical results in every fiber resume order. Both
CUDA paths are covered: one block per row (general kernel) and the split vocabulary (few rows,
vocab >= 4096; every option, filters through per-row histograms summed over the slices)."""
import pytest
import torch

import diffusion_kernels as dk
from diffusion_kernels import _philox
from diffusion_kernels.testing import emulated
from sampling_cases import MASK_ID, OFFSET, SEED, make_case, run_and_compare, safe_top_p

pytestmark = pytest.mark.emulated

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
KINDS = ["prob", "margin", "neg_entropy", "random"]
ORDERS = [("forward", 0), ("reverse", 0), ("random", 1), ("random", 2), ("random", 3)]
op = emulated.masked_confidence


def assert_same_tokens_as_cpu(logits, x, got, **opts):
    """The CPU op's tokens for the same seed; a difference must be a near-tie of the two perturbed
    scores (the CPU's vector log vs the CUDA logf)."""
    want = dk.masked_confidence(logits, x, MASK_ID, seed=SEED, offset=OFFSET, **opts)[0]
    t = opts.get("temperature", 0.0)
    L = x.shape[1]
    for b, l in (got != want).nonzero().tolist():
        tb = t[b].item() if isinstance(t, torch.Tensor) else t
        assert tb > 0, f"greedy token differs from the CPU at {(b, l)}"
        pair = torch.tensor([got[b, l], want[b, l]])
        s = logits[b, l, pair].double() / tb + _philox.philox_gumbel(SEED, OFFSET, b * L + l, pair)
        assert (s[0] - s[1]).abs() <= 4e-6 * (1 + s.abs().max()), f"CPU and CUDA tokens differ at {(b, l)}: {s.tolist()}"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("source", ["sampling", "logits"])
@pytest.mark.parametrize("shape", [(2, 3, 1), (1, 3, 3), (2, 3, 1001), (1, 3, 5003)], ids=lambda s: "x".join(map(str, s)))
def test_kinds_match_reference_and_cpu(shape, source, dtype):
    """5003 ids over 3 rows takes the split path (2 slices), the smaller rows the general kernel."""
    logits, x = make_case(*shape, dtype)
    for kind in KINDS:
        for temperature in (0.0, 0.7):
            opts = dict(temperature=temperature, confidence=kind, confidence_from=source)
            (x0, _, _), _ = run_and_compare(op, logits, x, return_lse=True, **opts)
            assert_same_tokens_as_cpu(logits, x, x0, **opts)


FILTERS = [dict(top_k=1), dict(top_k=5), dict(top_k=1001), dict(top_p=0.0), dict(top_p=0.9), dict(top_p=1.0),
           dict(top_p=0.8, top_k=40), dict(top_p=0.5, top_k=3)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("filt", FILTERS, ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()))
def test_filters_match_reference(filt, dtype):
    logits, x = make_case(2, 3, 1001, dtype, scale=2.0)
    logits[0, 0, 100:140] = logits[0, 0, 99]  # a tie run at the top-k boundary region
    for kind, temperature in (("prob", 0.0), ("margin", 1.3), ("neg_entropy", 1.3), ("prob", 1.3)):
        opts = dict(filt, temperature=temperature, confidence=kind)
        if 0 < opts.get("top_p", 1) < 1:
            opts["top_p"] = safe_top_p(logits, opts["top_p"], temperature)
        (x0, _), _ = run_and_compare(op, logits, x, **opts)
        assert_same_tokens_as_cpu(logits, x, x0, **opts)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("filt", FILTERS, ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()))
def test_filters_on_the_split_path(filt, dtype):
    """Few rows of 9000 ids: the thresholds come from histograms summed over 4 slices per row."""
    logits, x = make_case(1, 3, 9000, dtype, scale=2.0)
    logits[0, 0, 2000:2040] = logits[0, 0, 1999]  # a tie run across a slice boundary region
    for kind, temperature, source in (("prob", 0.0, "sampling"), ("margin", 1.3, "sampling"),
                                      ("neg_entropy", 1.3, "sampling"), ("prob", 1.3, "sampling"),
                                      ("neg_entropy", 0.8, "logits"), ("random", 0.8, "logits")):
        opts = dict(filt, temperature=temperature, confidence=kind, confidence_from=source)
        if 0 < opts.get("top_p", 1) < 1:
            opts["top_p"] = safe_top_p(logits, opts["top_p"], temperature)
        (x0, _), _ = run_and_compare(op, logits, x, **opts)
        assert_same_tokens_as_cpu(logits, x, x0, **opts)


def test_dream_defaults_on_the_llada_vocabulary():
    """Dream's sampler (T = 0.2, top_p = 0.95, entropy) at batch 1: 61 slices per row."""
    logits, x = make_case(1, 2, 126464, torch.bfloat16)
    opts = dict(temperature=0.2, top_p=safe_top_p(logits, 0.95, 0.2), confidence="neg_entropy", return_lse=True)
    (x0, _, _), _ = run_and_compare(op, logits, x, **opts)
    assert_same_tokens_as_cpu(logits, x, x0, **opts)


def test_split_path_per_row_filters_and_nonfinite_rows():
    """Per-row temperature / top-p / top-k tensors (some rows unfiltered, one greedy) on the split
    path, with NaN, +inf and all -inf rows among them."""
    logits, x = make_case(3, 4, 6000, torch.float32)
    logits[0, 2, 100] = float("nan")
    logits[1, 0, 5000] = float("inf")
    logits[2, 3] = float("-inf")
    t = torch.tensor([0.7, 0.0, 1.5])
    opts = dict(temperature=t, top_p=safe_top_p(logits, 0.8, t), top_k=torch.tensor([0, 7, 6000]),
                confidence="margin", return_lse=True)
    opts["top_p"][2] = 1.0
    (x0, conf, _), _ = run_and_compare(op, logits, x, **opts)
    assert x0[0, 2] == 100 and x0[1, 0] == 5000 and x0[2, 3] == 0
    assert torch.isnan(conf[[0, 1, 2], [2, 0, 3]]).all()
    assert_same_tokens_as_cpu(logits, x, x0, **opts)


def test_per_row_arguments_and_block_restriction():
    logits, x = make_case(4, 5, 700, torch.bfloat16)
    t = torch.tensor([0.0, 0.5, 1.5, float("nan")])
    opts = dict(temperature=t, top_k=torch.tensor([0, 3, 700, 50]), block_start=torch.tensor([0, 2, 5, 1]),
                block_end=torch.tensor([5, 4, 5, 100]), confidence="margin", return_lse=True)
    opts["top_p"] = safe_top_p(logits, 0.9, t)
    (x0, conf, _), _ = run_and_compare(op, logits, x, **opts)
    assert torch.isneginf(conf[2]).all() and torch.equal(x0[2], x[2])
    assert torch.isneginf(conf[1, :2]).all() and torch.isneginf(conf[1, 4:]).all()


@pytest.mark.parametrize("vocab", [300, 6000])
def test_suppressed_ids_never_proposed(vocab):
    logits, x = make_case(2, 3, vocab, torch.float32)
    logits[..., 17] = 50.0  # would win every row
    for temperature in (0.0, 1.0):
        (x0, _), _ = run_and_compare(op, logits, x, temperature=temperature, suppress_ids=[17, vocab - 1])
        assert not ((x0 == 17) | (x0 == vocab - 1))[x == MASK_ID].any()


@pytest.mark.parametrize("vocab", [2100, 4100])
def test_nonfinite_rows_with_sampling(vocab):
    """General kernel (top_p, entropy) at 2100; split path (prob) at 4100."""
    logits, x = make_case(1, 6, vocab, torch.float32)
    logits[0, 0, [50, 2090]] = float("nan")
    logits[0, 2, 60] = float("inf")
    logits[0, 3] = float("-inf")
    logits[0, 4, :2000] = float("-inf")
    logits[0, 5, [7, 8]] = float("-inf")
    x[0, 1] = MASK_ID
    opts = dict(temperature=0.8, return_lse=True, suppress_ids=[9])
    if vocab == 2100:
        opts.update(top_p=0.9, confidence="neg_entropy")
    (x0, conf, lse), _ = run_and_compare(op, logits, x, **opts)
    assert x0[0, [0, 2, 3]].tolist() == [50, 60, 0]
    assert torch.isnan(conf[0, [0, 2, 3]]).all() and torch.isfinite(conf[0, [1, 4, 5]]).all()


@pytest.mark.parametrize("kind", ["prob", "margin", "neg_entropy"])
def test_llada_vocabulary_split_path(kind):
    """One larger case: LLaDA's vocabulary, 2 rows -> 61 slices per row; the second row's max
    sits in a late slice, so the earlier slices' margin/entropy sums are rescaled."""
    logits, x = make_case(1, 2, 126464, torch.bfloat16)
    logits[0, 1, 120000] = 25.0
    logits[0, 1, 3] = 24.0  # the runner-up in another slice: margin merges across slices
    for source in ("sampling", "logits"):
        opts = dict(temperature=0.7, confidence=kind, confidence_from=source, return_lse=True)
        (x0, _, _), _ = run_and_compare(op, logits, x, **opts)
        assert_same_tokens_as_cpu(logits, x, x0, **opts)


@pytest.mark.parametrize("kind", ["margin", "neg_entropy"])
def test_split_path_with_empty_and_nonfinite_slices(kind):
    """Slices that are all -inf add nothing to the merged margin/entropy statistics; a NaN or
    +inf anywhere gives the non-finite policy, as in the general kernel."""
    logits, x = make_case(1, 4, 9000, torch.float32)
    logits[0, 0, :6000] = float("-inf")   # the first slices are empty
    logits[0, 2, 8000] = float("nan")
    logits[0, 3, 50] = float("inf")
    for temperature in (0.0, 0.9):
        (x0, conf), _ = run_and_compare(op, logits, x, temperature=temperature, confidence=kind)
        assert x0[0, 2] == 8000 and x0[0, 3] == 50
        assert torch.isfinite(conf[0, 0]) and torch.isnan(conf[0, 2:]).all()


CASES = {
    "general": (2, 3, 1500, dict(temperature=0.9, top_p=0.9, top_k=50, confidence="margin", return_lse=True)),
    "general-entropy-logits": (2, 3, 1500, dict(temperature=1.1, confidence="neg_entropy", confidence_from="logits")),
    "split": (1, 3, 9000, dict(temperature=0.7, return_lse=True, suppress_ids=[4])),
    "split-random": (1, 2, 5000, dict(temperature=1.0, confidence="random", confidence_from="logits")),
    "split-margin": (1, 3, 9000, dict(temperature=0.7, confidence="margin", return_lse=True)),
    "split-entropy-logits": (1, 2, 9000, dict(temperature=1.2, confidence="neg_entropy", confidence_from="logits")),
    "split-filtered": (1, 3, 9000, dict(temperature=0.9, top_p=0.9, top_k=50, confidence="prob", return_lse=True)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bitwise_identical_across_resume_orders(case):
    b, l, v, opts = CASES[case]
    logits, x = make_case(b, l, v, torch.bfloat16)
    logits[0, 0, [10, 700]] = logits[0, 0].max()  # a tie across warps
    results = []
    for order, seed in ORDERS:
        with emulated.resume_order(order, seed):
            results.append(op(logits, x, MASK_ID, seed=SEED, **opts))
    for (order, seed), got in zip(ORDERS[1:], results[1:]):
        for a, ref in zip(got, results[0]):
            assert torch.equal(a.view(torch.int32) if a.is_floating_point() else a,
                               ref.view(torch.int32) if ref.is_floating_point() else ref), f"{case} differs in {order}/{seed}"
