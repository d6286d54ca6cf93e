"""masked_confidence's sampling, filtering, confidence kinds and restrictions on every backend
against the float64 reference with the same Philox draws; the CUDA kernels (emulated or on a GPU)
also give the CPU op's tokens for the same seed (only documented near-ties may differ) and, under
the emulator, bitwise-identical results in every fiber resume order. Both CUDA paths are covered:
one block per row (general kernel) and the split vocabulary (few rows, vocab >= 4096: filters
through per-row histograms summed over the slices). Plus statistical tests of the sampler."""
import pytest
import torch

import diffusion_kernels as dk
from confidence_cases import make_tokens
from diffusion_kernels import reference
from diffusion_kernels.testing import emulated
from sampling_cases import (MASK_ID, OFFSET, SEED, assert_same_tokens_as_cpu, backends, device_op, make_case,
                            on_backends, run_and_compare, safe_top_p)

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
KINDS = ["prob", "margin", "neg_entropy", "random"]
ORDERS = [("forward", 0), ("reverse", 0), ("random", 1), ("random", 2), ("random", 3)]
FILTERS = [dict(top_k=1), dict(top_k=5), dict(top_k=1001), dict(top_p=0.0), dict(top_p=0.9), dict(top_p=1.0),
           dict(top_p=0.8, top_k=40), dict(top_p=0.5, top_k=3)]
# vocab not a multiple of 4, 16 or 64 (the CPU's vector and Philox blocks); under the emulator
# 5003 ids over 3 rows take the split path (2 slices), the smaller rows the general kernel.
KIND_SHAPES = {"cpu": [(2, 4, 1), (2, 3, 3), (3, 4, 1001)],
               "emulated": [(2, 3, 1), (1, 3, 3), (2, 3, 1001), (1, 3, 5003)],
               "cuda": [(2, 4, 1), (2, 3, 3), (3, 4, 1001), (1, 3, 5003)]}


def check_tokens(backend, logits, x, x0, **opts):
    """The CUDA kernels' tokens equal the CPU op's (near-ties aside)."""
    if backend.name != "cpu":
        assert_same_tokens_as_cpu(logits, x, x0, **opts)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("source", ["sampling", "logits"])
@pytest.mark.parametrize("backend,shape", on_backends(KIND_SHAPES), indirect=["backend"])
def test_kinds_match_reference(backend, shape, source, dtype):
    logits, x = make_case(*shape, dtype)
    for kind in KINDS:
        for temperature in (0.0, 0.7):
            opts = dict(temperature=temperature, confidence=kind, confidence_from=source)
            (x0, _, _), _ = run_and_compare(device_op(backend), logits, x, return_lse=True, **opts)
            check_tokens(backend, logits, x, x0, **opts)


@pytest.mark.parametrize("backend,kind", on_backends({"cpu": KINDS, "emulated": KINDS[:3], "cuda": KINDS}),
                         indirect=["backend"])
def test_llada_vocabulary(backend, kind):
    """LLaDA's vocabulary (the float64 reference is slow there: bf16 only). Under CUDA, 2 rows
    give 61 slices per row; the second row's max sits in a late slice, so the earlier slices'
    margin/entropy sums are rescaled, and the runner-up in another slice merges across slices."""
    logits, x = make_case(1, 2 if backend.emulated else 3, 126464, torch.bfloat16)
    logits[0, 1, 120000] = 25.0
    logits[0, 1, 3] = 24.0
    for source in ("sampling",) if backend.name == "cpu" else ("sampling", "logits"):
        opts = dict(temperature=0.7, confidence=kind, confidence_from=source, return_lse=True)
        (x0, _, _), _ = run_and_compare(device_op(backend), logits, x, **opts)
        check_tokens(backend, logits, x, x0, **opts)


@pytest.mark.parametrize("filt", FILTERS, ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()))
@pytest.mark.parametrize("backend,dtype", on_backends({"cpu": DTYPES, "emulated": [torch.float32, torch.bfloat16],
                                                       "cuda": DTYPES}), indirect=["backend"])
def test_filters_match_reference(backend, dtype, filt):
    logits, x = make_case(2 if backend.emulated else 3, 3 if backend.emulated else 4, 1001, dtype, scale=2.0)
    logits[0, 0, 100:140] = logits[0, 0, 99]  # a tie run at the top-k boundary region
    runs = ([("prob", 0.0), ("margin", 1.3), ("neg_entropy", 1.3), ("prob", 1.3)] if backend.emulated else
            [(kind, t) for kind in ("prob", "margin", "neg_entropy") for t in (0.0, 1.3)])
    for kind, temperature in runs:
        opts = dict(filt, temperature=temperature, confidence=kind)
        if 0 < opts.get("top_p", 1) < 1:
            opts["top_p"] = safe_top_p(logits, opts["top_p"], temperature)
        (x0, _), _ = run_and_compare(device_op(backend), logits, x, **opts)
        check_tokens(backend, logits, x, x0, **opts)


@backends("emulated", "cuda")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("filt", FILTERS, ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()))
def test_filters_on_the_split_path(backend, filt, dtype):
    """Few rows of 9000 ids: the thresholds come from histograms summed over 4 slices per row."""
    logits, x = make_case(1, 3, 9000, dtype, scale=2.0)
    logits[0, 0, 2000:2040] = logits[0, 0, 1999]  # a tie run across a slice boundary region
    for kind, temperature, source in (("prob", 0.0, "sampling"), ("margin", 1.3, "sampling"),
                                      ("neg_entropy", 1.3, "sampling"), ("prob", 1.3, "sampling"),
                                      ("neg_entropy", 0.8, "logits"), ("random", 0.8, "logits")):
        opts = dict(filt, temperature=temperature, confidence=kind, confidence_from=source)
        if 0 < opts.get("top_p", 1) < 1:
            opts["top_p"] = safe_top_p(logits, opts["top_p"], temperature)
        (x0, _), _ = run_and_compare(device_op(backend), logits, x, **opts)
        check_tokens(backend, logits, x, x0, **opts)


@backends("emulated", "cuda")
def test_dream_defaults_on_the_llada_vocabulary(backend):
    """Dream's sampler (T = 0.2, top_p = 0.95, entropy) at batch 1: 61 slices per row."""
    logits, x = make_case(1, 2, 126464, torch.bfloat16)
    opts = dict(temperature=0.2, top_p=safe_top_p(logits, 0.95, 0.2), confidence="neg_entropy", return_lse=True)
    (x0, _, _), _ = run_and_compare(device_op(backend), logits, x, **opts)
    check_tokens(backend, logits, x, x0, **opts)


@backends("emulated", "cuda")
def test_split_path_per_row_filters_and_nonfinite_rows(backend):
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
    (x0, conf, _), _ = run_and_compare(device_op(backend), logits, x, **opts)
    assert x0[0, 2] == 100 and x0[1, 0] == 5000 and x0[2, 3] == 0
    assert torch.isnan(conf[[0, 1, 2], [2, 0, 3]]).all()
    check_tokens(backend, logits, x, x0, **opts)


def test_per_row_arguments_and_block_restriction(backend):
    L = 5 if backend.emulated else 9
    logits, x = make_case(4, L, 700, torch.bfloat16)
    t = torch.tensor([0.0, 0.5, 1.5, float("nan")])  # NaN: argmax
    opts = dict(temperature=t, top_k=torch.tensor([0, 3, 700, 50]), block_start=torch.tensor([0, 2, L, 1]),
                block_end=torch.tensor([L, 4, L, 100]), confidence="margin", return_lse=True)
    opts["top_p"] = safe_top_p(logits, 0.9, t)
    (x0, conf, _), _ = run_and_compare(device_op(backend), logits, x, **opts)
    assert torch.isneginf(conf[2]).all() and torch.equal(x0[2], x[2])  # empty block
    assert torch.isneginf(conf[1, :2]).all() and torch.isneginf(conf[1, 4:]).all()
    assert torch.isfinite(conf[1, [2, 3]]).all()
    scalar = device_op(backend)(logits, x, MASK_ID, block_start=3, block_end=6)
    assert torch.isneginf(scalar[1][:, :3]).all() and torch.isneginf(scalar[1][:, 6:]).all()


def test_block_restriction_and_lse(backend):
    logits, x = make_case(3, 6, 1001, torch.bfloat16)[0], make_tokens(3, 6)
    run_and_compare(device_op(backend), logits, x, block_start=torch.tensor([0, 2, 6]), block_end=4, return_lse=True)


@pytest.mark.parametrize("backend,vocab", on_backends({"cpu": [300], "emulated": [300, 6000], "cuda": [300, 6000]}),
                         indirect=["backend"])
def test_suppressed_ids_never_proposed(backend, vocab):
    logits, x = make_case(2, 5 if backend.name == "cpu" else 3, vocab, torch.float32)
    top = logits.argmax(-1)
    logits[..., 17] = 50.0  # would win every row
    for temperature in (0.0, 1.0):
        (x0, _), _ = run_and_compare(device_op(backend), logits, x, temperature=temperature,
                                     suppress_ids=[17, vocab - 1])
        assert not ((x0 == 17) | (x0 == vocab - 1))[x == MASK_ID].any()
    x0, _ = device_op(backend)(logits, x, MASK_ID, suppress_ids=torch.tensor([17]))
    assert torch.equal(x0[x == MASK_ID], top[x == MASK_ID])


@backends("cuda")
def test_out_of_range_suppressed_ids_in_a_cuda_tensor_are_ignored(backend):
    """The ids of a CUDA tensor are not checked (that would synchronise); a list or a CPU tensor
    is checked on every backend (TestBadInputs)."""
    logits, x = make_case(2, 3, 300, torch.float32)
    op = device_op(backend)
    got = op(logits, x, MASK_ID, suppress_ids=torch.tensor([17, -4, 300, 10**9]), temperature=0.5, seed=3)
    want = op(logits, x, MASK_ID, suppress_ids=torch.tensor([17]), temperature=0.5, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(got, want))


@pytest.mark.parametrize("backend,vocab", on_backends({"cpu": [2100], "emulated": [2100, 4100],
                                                       "cuda": [2100, 4100]}), indirect=["backend"])
def test_nonfinite_rows_with_sampling(backend, vocab):
    """Under CUDA the general kernel (top_p, entropy) at 2100 ids, the split path (prob) at 4100."""
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
    (x0, conf, lse), _ = run_and_compare(device_op(backend), logits, x, **opts)
    assert x0[0, [0, 2, 3]].tolist() == [50, 60, 0]
    assert torch.isnan(conf[0, [0, 2, 3]]).all() and torch.isfinite(conf[0, [1, 4, 5]]).all()
    assert torch.isnan(lse[0, 0]) and lse[0, 2] == float("inf") and lse[0, 3] == float("-inf")


@backends("emulated", "cuda")
@pytest.mark.parametrize("kind", ["margin", "neg_entropy"])
def test_split_path_with_empty_and_nonfinite_slices(backend, kind):
    """Slices that are all -inf add nothing to the merged margin/entropy statistics; a NaN or
    +inf anywhere gives the non-finite policy, as in the general kernel."""
    logits, x = make_case(1, 4, 9000, torch.float32)
    logits[0, 0, :6000] = float("-inf")   # the first slices are empty
    logits[0, 2, 8000] = float("nan")
    logits[0, 3, 50] = float("inf")
    for temperature in (0.0, 0.9):
        (x0, conf), _ = run_and_compare(device_op(backend), logits, x, temperature=temperature, confidence=kind)
        assert x0[0, 2] == 8000 and x0[0, 3] == 50
        assert torch.isfinite(conf[0, 0]) and torch.isnan(conf[0, 2:]).all()


def test_all_suppressed_is_an_all_minus_inf_row(backend):
    x0, conf = device_op(backend)(torch.randn(1, 2, 3), torch.full((1, 2), MASK_ID), MASK_ID,
                                  suppress_ids=[0, 1, 2], temperature=1.0)
    assert x0.tolist() == [[0, 0]] and torch.isnan(conf).all()


@backends("cpu", "cuda")
class TestRandomness:
    logits, x = make_case(2, 64, 500, torch.bfloat16, scale=1.0)

    def draw(self, backend, **kw):
        return device_op(backend)(self.logits, self.x, MASK_ID, temperature=1.0, confidence="random", **kw)

    def test_same_seed_same_output_bitwise(self, backend):
        a, b = self.draw(backend, seed=7, offset=3), self.draw(backend, seed=7, offset=3)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1].view(torch.int32), b[1].view(torch.int32))

    def test_seed_and_offset_change_the_draws(self, backend):
        a = self.draw(backend, seed=7, offset=3)
        for seed, offset in ((8, 3), (7, 4), (7 + 2**32, 3), (7, 3 + 2**32)):
            other = self.draw(backend, seed=seed, offset=offset)
            assert (a[0] != other[0]).float().mean() > 0.5
            assert (a[1] != other[1])[self.x == MASK_ID].all()

    def test_tensor_key_equals_int_key(self, backend):
        a = self.draw(backend, seed=2**64 - 5, offset=2**40)
        b = self.draw(backend, seed=torch.tensor(-5), offset=torch.tensor([2**40]))
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])

    def test_random_confidence_is_the_philox_uniform(self, backend):
        _, conf = self.draw(backend, seed=11)
        masked = self.x == MASK_ID
        assert ((conf > 0) & (conf < 1))[masked].all()
        assert conf[masked].std() > 0.2


@backends("cpu", "cuda")
@pytest.mark.parametrize("filt", [dict(), dict(top_k=17), dict(top_p=0.7), dict(top_p=0.9, top_k=40)],
                         ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()) or "plain")
def test_sampling_distribution(backend, filt):
    """10^6 draws of one row (a stride-0 broadcast over the sequence, one Philox stream per
    position): the observed frequencies match the tempered, filtered, renormalised probabilities;
    nothing outside the support, never a zero-probability or suppressed token."""
    n, vocab, temperature = 10**6, 131, 0.8
    row = torch.randn(vocab, generator=torch.Generator().manual_seed(3)) * 2
    row[[5, 77]] = float("-inf")  # zero probability
    logits = row.view(1, 1, vocab).to(backend.device).expand(1, n, vocab)
    x = torch.full((1, n), MASK_ID)
    x0, _ = device_op(backend)(logits, x, MASK_ID, temperature=temperature, suppress_ids=[9], seed=99, **filt)
    counts = torch.bincount(x0[0], minlength=vocab).double()
    probe = row.view(1, 1, vocab).double().clone()
    probe[..., 9] = float("-inf")
    z = probe[0, 0] / temperature
    q = torch.softmax(z, -1)
    tau = torch.tensor(float("-inf"), dtype=torch.float64)
    if "top_p" in filt:
        zs = z.sort(descending=True).values
        cum = torch.softmax(zs, -1).cumsum(-1)
        tau = zs[(cum > filt["top_p"]).int().argmax()]
    if "top_k" in filt:
        tau = torch.maximum(tau, z.sort(descending=True).values[filt["top_k"] - 1])
    support = z >= tau
    q = torch.where(support, q, 0)
    q /= q.sum()
    assert counts[~support].sum() == 0 and counts[[5, 77, 9]].sum() == 0
    freq = counts / n
    assert torch.nn.functional.cosine_similarity(freq, q, dim=0) > 0.99
    sigma = (q * (1 - q) / n).sqrt()
    assert ((freq - q).abs() <= 6 * sigma + 1e-9).all(), f"max z-score {((freq - q).abs() / sigma.clamp_min(1e-12)).max():.2f}"


@pytest.mark.parametrize("isa", ["base", "v3", "v4"])
def test_every_cpu_isa_build(isa, monkeypatch):
    monkeypatch.setenv("DK_CPU_ISA", isa)
    logits, x = make_case(2, 5, 3001, torch.bfloat16)
    run_and_compare(dk.masked_confidence, logits, x, temperature=0.6, top_p=safe_top_p(logits, 0.9, 0.6), top_k=100,
                    confidence="neg_entropy", return_lse=True)


@backends("cpu", "cuda")
def test_large_vocab_and_int64_offsets(backend):
    logits, x = make_case(1, 2, 262144, torch.bfloat16)
    run_and_compare(device_op(backend), logits, x, temperature=1.0, offset=2**63 + 12345, top_k=1000)


SAMPLING_OPTIONS = [
    dict(temperature=0.7),  # split path at few rows
    dict(temperature=0.7, confidence_from="logits", suppress_ids=[5]),
    dict(temperature=1.0, confidence="random"),
    dict(temperature=0.9, top_k=50, confidence="margin"),
    dict(temperature=0.2, top_p=0.95, confidence="neg_entropy"),
    dict(top_k=5, confidence="neg_entropy", confidence_from="logits"),
]


@backends("cuda")
@pytest.mark.parametrize("opts", SAMPLING_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
@pytest.mark.parametrize("shape", [(1, 32, 126464), (4, 64, 5003)], ids=lambda s: "x".join(map(str, s)))
def test_sampling_options_at_sampler_sizes(backend, shape, opts):
    """The shapes a sampler step sees on a GPU: reference, CPU tokens, and repeatability."""
    logits, x = make_case(*shape, torch.bfloat16)
    opts = dict(opts, return_lse=True)
    if "top_p" in opts:
        opts["top_p"] = safe_top_p(logits, opts["top_p"], opts.get("temperature", 0.0))
    (x0, _, _), _ = run_and_compare(device_op(backend), logits, x, **opts)
    cpu_x0 = dk.masked_confidence(logits, x, MASK_ID, seed=SEED, offset=OFFSET, **opts)[0]
    assert (x0 != cpu_x0).float().mean() < 0.01  # only near-ties (run_and_compare checked each one)
    again = device_op(backend)(logits, x, MASK_ID, seed=SEED, offset=OFFSET, **opts)
    assert torch.equal(again[0], x0)


RESUME_CASES = {
    "general": (2, 3, 1500, dict(temperature=0.9, top_p=0.9, top_k=50, confidence="margin", return_lse=True)),
    "general-entropy-logits": (2, 3, 1500, dict(temperature=1.1, confidence="neg_entropy", confidence_from="logits")),
    "split": (1, 3, 9000, dict(temperature=0.7, return_lse=True, suppress_ids=[4])),
    "split-random": (1, 2, 5000, dict(temperature=1.0, confidence="random", confidence_from="logits")),
    "split-margin": (1, 3, 9000, dict(temperature=0.7, confidence="margin", return_lse=True)),
    "split-entropy-logits": (1, 2, 9000, dict(temperature=1.2, confidence="neg_entropy", confidence_from="logits")),
    "split-filtered": (1, 3, 9000, dict(temperature=0.9, top_p=0.9, top_k=50, confidence="prob", return_lse=True)),
}


@backends("emulated")
@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_bitwise_identical_across_resume_orders(backend, case):
    b, l, v, opts = RESUME_CASES[case]
    logits, x = make_case(b, l, v, torch.bfloat16)
    logits[0, 0, [10, 700]] = logits[0, 0].max()  # a tie across warps
    results = []
    for order, seed in ORDERS:
        with emulated.resume_order(order, seed):
            results.append(backend.masked_confidence(logits, x, MASK_ID, seed=SEED, **opts))
    for (order, seed), got in zip(ORDERS[1:], results[1:]):
        for a, ref in zip(got, results[0]):
            assert torch.equal(a.view(torch.int32) if a.is_floating_point() else a,
                               ref.view(torch.int32) if ref.is_floating_point() else ref), f"{case} differs in {order}/{seed}"


# -- values at the edge of the ranges: one meaning on every backend (issue 19) ----------------

def test_huge_and_infinite_temperature_sample_all_but_uniformly(backend):
    """A temperature above 2**126 (+inf in a tensor, a Python float beyond float32) counts as
    2**126: the row samples, never the argmax, and -inf logits keep zero probability."""
    logits, x = make_case(3, 6, 50, torch.float32)
    logits[:, :, 40:] = float("-inf")
    capped = dict(temperature=torch.tensor([2.0**126, 2.0**126, 1e38]), suppress_ids=[3], seed=SEED, offset=OFFSET)
    op = device_op(backend)
    want = reference.masked_confidence(logits.double(), x, MASK_ID, **capped)
    for temperature in (torch.tensor([float("inf"), 1e39, 1e38], dtype=torch.float64), 1e39):
        got = op(logits, x, MASK_ID, **dict(capped, temperature=temperature))
        if not isinstance(temperature, torch.Tensor):
            want = reference.masked_confidence(logits.double(), x, MASK_ID, **dict(capped, temperature=2.0**126))
        assert torch.equal(got[0], want[0])
        assert_close = torch.testing.assert_close
        assert_close(got[1], want[1].float(), rtol=1e-6, atol=1e-7)
    masked = x == MASK_ID
    assert not ((got[0] >= 40) | (got[0] == 3))[masked].any()
    assert (got[0] != logits.argmax(-1))[masked].float().mean() > 0.5
    with pytest.raises(ValueError, match="'temperature'.*finite"):
        op(logits, x, MASK_ID, temperature=float("inf"))


def test_negative_top_p_in_a_tensor_keeps_the_maximum(backend):
    """top_p below 0 in a tensor (a number is refused) filters as top_p = 0: the maximum and its ties."""
    logits, x = make_case(2, 4, 300, torch.float32)
    logits[0, 0, 7] = logits[0, 0, 9] = logits[0, 0].max() + 1  # a tie at the maximum
    op = device_op(backend)
    for kind in ("prob", "neg_entropy"):
        opts = dict(temperature=1.0, confidence=kind)
        (x0, conf), _ = run_and_compare(op, logits, x, top_p=torch.tensor([-0.5, -2.0]), **opts)
        zero = op(logits, x, MASK_ID, top_p=0.0, seed=SEED, offset=OFFSET, **opts)
        assert torch.equal(x0, zero[0]) and torch.equal(conf, zero[1])
    assert x0[0, 0] in (7, 9)


class TestBadInputs:
    """Every refused call names the argument on every backend and leaves its inputs unchanged;
    float tensors where integers are meant are refused, never truncated."""
    logits, x = make_case(2, 3, 10, torch.float32)

    def call(self, backend, **kw):
        logits, x = self.logits.clone(), self.x.clone()
        try:
            return device_op(backend)(logits, x, MASK_ID, **kw)
        finally:
            assert torch.equal(logits, self.logits) and torch.equal(x, self.x)

    @pytest.mark.parametrize("kw, exc, pattern", [
        (dict(temperature=-0.1), ValueError, "'temperature'.*>= 0"),
        (dict(temperature=float("inf")), ValueError, "'temperature'.*finite"),
        (dict(temperature=float("nan")), ValueError, "'temperature'.*finite"),
        (dict(temperature="1"), TypeError, "'temperature'"),
        (dict(top_p=1.5), ValueError, "'top_p'.*\\[0, 1\\]"),
        (dict(top_p=-0.5), ValueError, "'top_p'.*\\[0, 1\\]"),
        (dict(top_p=float("nan")), ValueError, "'top_p'"),
        (dict(top_k=-1), ValueError, "'top_k'.*>= 0"),
        (dict(top_k=2.5), TypeError, "'top_k'.*int"),
        (dict(confidence="max"), ValueError, "'confidence'"),
        (dict(confidence_from="tempered"), ValueError, "'confidence_from'"),
        (dict(temperature=torch.ones(3)), ValueError, "'temperature'.*\\[batch\\] = \\[2\\]"),
        (dict(top_k=torch.ones(2)), TypeError, "'top_k'.*integer"),
        (dict(block_start=1.5), TypeError, "'block_start'.*int"),
        (dict(block_start=torch.tensor([1.0, 2.0])), TypeError, "'block_start'.*integer"),
        (dict(block_end=torch.tensor([True, True])), TypeError, "'block_end'.*integer"),
        (dict(block_end=torch.ones(2, 1, dtype=torch.long)), ValueError, "'block_end'.*\\[batch\\]"),
        (dict(suppress_ids=[10]), ValueError, "'suppress_ids'.*\\[0, 10\\).*10"),
        (dict(suppress_ids=[-1]), ValueError, "'suppress_ids'"),
        (dict(suppress_ids=[1.5]), TypeError, "'suppress_ids'.*integer"),
        (dict(suppress_ids=[True]), TypeError, "'suppress_ids'.*integer"),
        (dict(suppress_ids=5), TypeError, "'suppress_ids'.*sequence"),
        (dict(suppress_ids=torch.tensor([1.0, 2.0])), TypeError, "'suppress_ids'.*integer"),
        (dict(suppress_ids=torch.zeros(1, 1, dtype=torch.long)), ValueError, "'suppress_ids'.*1-D"),
        (dict(seed=torch.zeros(2, dtype=torch.long)), ValueError, "'seed'.*one-element"),
        (dict(seed=torch.tensor([1.0])), TypeError, "'seed'.*int64"),
        (dict(offset=torch.zeros(1)), TypeError, "'offset'.*int64"),
        (dict(seed=1.5, temperature=1.0), TypeError, "'seed'"),
        (dict(seed=1.0, temperature=1.0), TypeError, "'seed'"),
        (dict(offset=0.5, temperature=1.0), TypeError, "'offset'"),
        (dict(seed=2**64), ValueError, "'seed'"),
    ])
    def test_rejected(self, backend, kw, exc, pattern):
        with pytest.raises(exc, match=pattern):
            self.call(backend, **kw)

    def test_device_mismatch(self, backend):
        with pytest.raises(RuntimeError, match="'temperature'.*(same device|CPU tensor)"):
            backend.masked_confidence(self.logits.to(backend.device), self.x.to(backend.device), MASK_ID,
                                      temperature=torch.ones(2, device="meta"))

    def test_integer_suppress_ids_of_any_width(self, backend):
        want = self.call(backend, suppress_ids=[0, 2], temperature=1.0)
        got = self.call(backend, suppress_ids=torch.tensor([0, 2], dtype=torch.int32), temperature=1.0)
        assert all(torch.equal(a, b) for a, b in zip(got, want))


@backends("cpu", "cuda")
def test_opcheck_with_options(backend):
    logits, x = (t.to(backend.device) for t in make_case(2, 5, 300, torch.bfloat16))
    op = torch.ops.diffusion_kernels.masked_confidence.default
    dev = backend.device
    torch.library.opcheck(op, (logits, x, MASK_ID), dict(temperature=torch.tensor([0.5, 1.0], device=dev),
                                                         top_p_value=0.9, top_k_value=20, confidence="neg_entropy",
                                                         seed=torch.tensor([3], device=dev),
                                                         suppress_ids=torch.tensor([1, 2], device=dev), return_lse=True))


def test_torch_compile_fullgraph_with_tensor_arguments():
    def step(logits, x, t, seed):
        x0, conf, lse = dk.masked_confidence(logits, x, MASK_ID, temperature=t, top_p=0.9, seed=seed,
                                             confidence="margin", return_lse=True)
        return x0, conf * 2, lse

    logits, x = make_case(2, 5, 300, torch.float32)
    args = (logits, x, torch.tensor([0.0, 0.9]), torch.tensor([42]))
    got, want = torch.compile(step, fullgraph=True)(*args), step(*args)
    assert all(torch.equal(a, b) for a, b in zip(got, want))
