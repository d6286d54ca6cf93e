"""masked_confidence's sampling, filtering, confidence kinds and restrictions on CPU, against the
float64 reference with the same Philox draws, plus statistical tests of the sampler."""
import pytest
import torch

import diffusion_kernels as dk
from diffusion_kernels import reference
from sampling_cases import MASK_ID, make_case, run_and_compare, safe_top_p

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
KINDS = ["prob", "margin", "neg_entropy", "random"]
# vocab not a multiple of 4, 16 or 64 (the CPU's vector and Philox blocks); LLaDA's size below.
SHAPES = [(2, 4, 1), (2, 3, 3), (3, 4, 1001)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("source", ["sampling", "logits"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_kinds_match_reference(shape, kind, source, dtype):
    logits, x = make_case(*shape, dtype)
    for temperature in (0.0, 0.7):
        run_and_compare(dk.masked_confidence, logits, x, temperature=temperature, confidence=kind,
                        confidence_from=source, return_lse=True)


@pytest.mark.parametrize("kind", KINDS)
def test_llada_vocabulary(kind):
    """One row set at LLaDA's vocabulary (the float64 reference is slow there: bf16 only)."""
    logits, x = make_case(1, 3, 126464, torch.bfloat16)
    run_and_compare(dk.masked_confidence, logits, x, temperature=0.7, confidence=kind, return_lse=True)


FILTERS = [dict(top_k=1), dict(top_k=5), dict(top_k=1001), dict(top_p=0.0), dict(top_p=0.9), dict(top_p=1.0),
           dict(top_p=0.8, top_k=40), dict(top_p=0.5, top_k=3)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kind", ["prob", "margin", "neg_entropy"])
@pytest.mark.parametrize("filt", FILTERS, ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()))
def test_filters_match_reference(filt, kind, dtype):
    logits, x = make_case(3, 4, 1001, dtype, scale=2.0)
    for temperature in (0.0, 1.3):
        opts = dict(filt)
        if 0 < opts.get("top_p", 1) < 1:
            opts["top_p"] = safe_top_p(logits, opts["top_p"], temperature)
        run_and_compare(dk.masked_confidence, logits, x, temperature=temperature, confidence=kind, **opts)


def test_per_row_arguments_and_block_restriction():
    logits, x = make_case(4, 9, 700, torch.bfloat16)
    t = torch.tensor([0.0, 0.5, 1.5, float("nan")])  # NaN: argmax
    opts = dict(temperature=t, top_k=torch.tensor([0, 3, 700, 50]), block_start=torch.tensor([0, 2, 9, 4]),
                block_end=torch.tensor([9, 5, 9, 100]), confidence="margin")
    opts["top_p"] = safe_top_p(logits, 0.9, t)
    (x0, conf), _ = run_and_compare(dk.masked_confidence, logits, x, **opts)
    assert torch.isneginf(conf[2]).all() and torch.equal(x0[2], x[2])  # empty block
    assert torch.isneginf(conf[1, :2]).all() and torch.isneginf(conf[1, 5:]).all()
    assert torch.isfinite(conf[1, [2, 3, 4]]).all()
    scalar = dk.masked_confidence(logits, x, MASK_ID, block_start=3, block_end=6)
    assert torch.isneginf(scalar[1][:, :3]).all() and torch.isneginf(scalar[1][:, 6:]).all()


def test_suppressed_ids_never_proposed():
    logits, x = make_case(2, 5, 300, torch.float32)
    top = logits.argmax(-1)
    logits[..., 17] = 50.0  # would win every row
    for temperature in (0.0, 1.0):
        (x0, _), _ = run_and_compare(dk.masked_confidence, logits, x, temperature=temperature, suppress_ids=[17, 299])
        assert not ((x0 == 17) | (x0 == 299))[x == MASK_ID].any()
    x0, _ = dk.masked_confidence(logits, x, MASK_ID, suppress_ids=torch.tensor([17]))
    assert torch.equal(x0[x == MASK_ID], top[x == MASK_ID])


def test_lse_and_nonfinite_rows_with_sampling():
    logits, x = make_case(1, 6, 2100, torch.float32)
    logits[0, 0, [50, 2090]] = float("nan")
    logits[0, 2, 60] = float("inf")
    logits[0, 3] = float("-inf")
    logits[0, 4, :2000] = float("-inf")
    logits[0, 5, [7, 8]] = float("-inf")
    x[0, 1] = MASK_ID
    (x0, conf, lse), _ = run_and_compare(dk.masked_confidence, logits, x, temperature=0.8, top_p=0.9,
                                         confidence="neg_entropy", return_lse=True, suppress_ids=[9])
    assert x0[0, :4].tolist() == [50, x0[0, 1].item(), 60, 0]
    assert torch.isnan(conf[0, [0, 2, 3]]).all() and torch.isfinite(conf[0, [1, 4, 5]]).all()
    assert torch.isnan(lse[0, 0]) and lse[0, 2] == float("inf") and lse[0, 3] == float("-inf")


def test_all_suppressed_is_an_all_minus_inf_row():
    logits = torch.randn(1, 2, 3)
    x0, conf = dk.masked_confidence(logits, torch.full((1, 2), MASK_ID), MASK_ID, suppress_ids=[0, 1, 2], temperature=1.0)
    assert x0.tolist() == [[0, 0]] and torch.isnan(conf).all()


class TestRandomness:
    logits, x = make_case(2, 64, 500, torch.bfloat16, scale=1.0)

    def draw(self, **kw):
        return dk.masked_confidence(self.logits, self.x, MASK_ID, temperature=1.0, confidence="random", **kw)

    def test_same_seed_same_output_bitwise(self):
        a, b = self.draw(seed=7, offset=3), self.draw(seed=7, offset=3)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1].view(torch.int32), b[1].view(torch.int32))

    def test_seed_and_offset_change_the_draws(self):
        a = self.draw(seed=7, offset=3)
        for other in (self.draw(seed=8, offset=3), self.draw(seed=7, offset=4), self.draw(seed=7 + 2**32, offset=3),
                      self.draw(seed=7, offset=3 + 2**32)):
            assert (a[0] != other[0]).float().mean() > 0.5
            assert (a[1] != other[1])[self.x == MASK_ID].all()

    def test_tensor_key_equals_int_key(self):
        a = self.draw(seed=2**64 - 5, offset=2**40)
        b = self.draw(seed=torch.tensor(-5), offset=torch.tensor([2**40]))
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])

    def test_random_confidence_is_the_philox_uniform(self):
        _, conf = self.draw(seed=11)
        masked = self.x == MASK_ID
        assert ((conf > 0) & (conf < 1))[masked].all()
        assert conf[masked].std() > 0.2


@pytest.mark.parametrize("filt", [dict(), dict(top_k=17), dict(top_p=0.7), dict(top_p=0.9, top_k=40)],
                         ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()) or "plain")
def test_sampling_distribution(filt):
    """10^6 draws of one row (a stride-0 broadcast over the sequence, one Philox stream per
    position): the observed frequencies match the tempered, filtered, renormalised probabilities;
    nothing outside the support, never a zero-probability or suppressed token."""
    n, vocab, temperature = 10**6, 131, 0.8
    row = torch.randn(vocab, generator=torch.Generator().manual_seed(3)) * 2
    row[[5, 77]] = float("-inf")  # zero probability
    logits = row.view(1, 1, vocab).expand(1, n, vocab)
    x = torch.full((1, n), MASK_ID)
    x0, _ = dk.masked_confidence(logits, x, MASK_ID, temperature=temperature, suppress_ids=[9], seed=99, **filt)
    counts = torch.bincount(x0[0], minlength=vocab).double()
    probe = logits[:, :1].double().clone()
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


def test_large_vocab_and_int64_offsets():
    logits, x = make_case(1, 2, 262144, torch.bfloat16)
    run_and_compare(dk.masked_confidence, logits, x, temperature=1.0, offset=2**63 + 12345, top_k=1000)


class TestBadInputs:
    logits, x = make_case(2, 3, 10, torch.float32)

    def call(self, **kw):
        return dk.masked_confidence(self.logits, self.x, MASK_ID, **kw)

    @pytest.mark.parametrize("kw, exc, pattern", [
        (dict(temperature=-0.1), ValueError, "'temperature'.*>= 0"),
        (dict(temperature=float("inf")), ValueError, "'temperature'.*finite"),
        (dict(top_p=1.5), ValueError, "'top_p'.*\\[0, 1\\]"),
        (dict(top_p=float("nan")), ValueError, "'top_p'"),
        (dict(top_k=-1), ValueError, "'top_k'.*>= 0"),
        (dict(confidence="max"), ValueError, "'confidence'"),
        (dict(confidence_from="tempered"), ValueError, "'confidence_from'"),
        (dict(temperature=torch.ones(3)), ValueError, "'temperature'.*\\[batch\\] = \\[2\\]"),
        (dict(top_k=torch.ones(2)), TypeError, "'top_k'.*integer"),
        (dict(block_end=torch.ones(2, 1, dtype=torch.long)), ValueError, "'block_end'.*\\[batch\\]"),
        (dict(suppress_ids=[10]), ValueError, "'suppress_ids'.*\\[0, 10\\).*10"),
        (dict(suppress_ids=[-1]), ValueError, "'suppress_ids'"),
        (dict(suppress_ids=torch.zeros(1, 1, dtype=torch.long)), ValueError, "'suppress_ids'.*1-D"),
        (dict(seed=torch.zeros(2, dtype=torch.long)), ValueError, "'seed'.*one-element"),
        (dict(offset=torch.zeros(1)), TypeError, "'offset'.*int64"),
        (dict(seed=1.5), TypeError, "'seed'"),
        (dict(seed=2**64), ValueError, "'seed'"),
    ])
    def test_rejected(self, kw, exc, pattern):
        with pytest.raises(exc, match=pattern):
            self.call(**kw)

    def test_device_mismatch(self):
        with pytest.raises(RuntimeError, match="'temperature'.*same device"):
            self.call(temperature=torch.ones(2, device="meta"))


def test_opcheck_with_options():
    logits, x = make_case(2, 5, 300, torch.bfloat16)
    op = torch.ops.diffusion_kernels.masked_confidence.default
    torch.library.opcheck(op, (logits, x, MASK_ID), dict(temperature=torch.tensor([0.5, 1.0]), top_p_value=0.9,
                                                         top_k_value=20, confidence="neg_entropy", seed=torch.tensor([3]),
                                                         suppress_ids=torch.tensor([1, 2]), return_lse=True))


def test_torch_compile_fullgraph_with_tensor_arguments():
    def step(logits, x, t, seed):
        x0, conf, lse = dk.masked_confidence(logits, x, MASK_ID, temperature=t, top_p=0.9, seed=seed,
                                             confidence="margin", return_lse=True)
        return x0, conf * 2, lse

    logits, x = make_case(2, 5, 300, torch.float32)
    args = (logits, x, torch.tensor([0.0, 0.9]), torch.tensor([42]))
    got, want = torch.compile(step, fullgraph=True)(*args), step(*args)
    assert all(torch.equal(a, b) for a, b in zip(got, want))
