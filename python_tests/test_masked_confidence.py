"""masked_confidence on CPU (the native kernel) against the pure-PyTorch reference."""
import pytest
import torch

import diffusion_kernels as dk
from confidence_cases import DTYPES, MASK_ID, SHAPES, assert_matches_reference, make_logits, make_tokens


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matches_reference(shape, dtype):
    b, l, v = shape
    assert_matches_reference(dk.masked_confidence, make_logits(b, l, v, dtype), make_tokens(b, l))


@pytest.mark.parametrize("isa", ["base", "v3", "v4"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_cpu_isa_build(dtype, isa, monkeypatch):
    """The row loop is built once per x86 level; DK_CPU_ISA lowers the level picked at run time
    (capped by what this CPU supports), so each build is checked here, non-finite rows included."""
    monkeypatch.setenv("DK_CPU_ISA", isa)
    logits = make_logits(2, 6, 5003, dtype)
    logits[0, 1, 77] = float("nan")
    logits[0, 2, 4000:] = float("-inf")
    logits[1, 3, 9] = float("inf")
    assert_matches_reference(dk.masked_confidence, logits, make_tokens(2, 6))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_non_contiguous_batch_and_row_strides(dtype):
    b, l, v = 3, 6, 1001
    # Rows strided inside a wider buffer, batch stride smaller than the row stride.
    big = make_logits(l, b, v + 37, dtype)
    logits = big[:, :, 5 : 5 + v].transpose(0, 1)
    assert logits.stride(-1) == 1 and not logits.is_contiguous()
    x = make_tokens(l, b).t()
    assert not x.is_contiguous()
    assert_matches_reference(dk.masked_confidence, logits, x)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_zero_row_strides_broadcast(dtype):
    logits = make_logits(1, 1, 777, dtype).expand(2, 5, 777)
    assert_matches_reference(dk.masked_confidence, logits, make_tokens(2, 5))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_ties_resolve_to_lowest_index(dtype):
    v = 5000
    logits = torch.zeros(1, 4, v, dtype=dtype)
    for row, places in enumerate([(17, 4000), (4999, 3000, 3), (2048, 2049), (0, v - 1)]):
        logits[0, row, list(places)] = 7.0
    x = torch.full((1, 4), MASK_ID)
    x0, _ = assert_matches_reference(dk.masked_confidence, logits, x)
    assert x0[0].tolist() == [17, 3, 2048, 0]


def test_all_equal_row():
    logits = torch.ones(2, 3, 300)
    x0, conf = dk.masked_confidence(logits, torch.full((2, 3), MASK_ID), MASK_ID)
    assert (x0 == 0).all()
    torch.testing.assert_close(conf, torch.full((2, 3), 1 / 300))


def test_unmasked_rows_pass_tokens_through():
    logits = make_logits(2, 4, 50, torch.float32)
    x = torch.arange(8).reshape(2, 4) + 10
    x0, conf = dk.masked_confidence(logits, x, MASK_ID)
    assert torch.equal(x0, x)
    assert torch.isneginf(conf).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_nonfinite_policy(dtype):
    """NaN and +-inf follow torch.argmax + softmax (see masked_confidence's docstring)."""
    v = 2100  # spans two CPU chunks
    logits = make_logits(1, 7, v, dtype)
    logits[0, 0, [50, 2090]] = float("nan")            # first NaN wins, confidence NaN
    logits[0, 1, [2099, 60]] = float("inf")            # first +inf wins, confidence NaN
    logits[0, 2] = float("-inf")                        # all -inf: index 0, confidence NaN
    logits[0, 3, :2000] = float("-inf")                 # -inf entries simply have zero mass
    logits[0, 4, 7] = float("nan")
    logits[0, 4, 8] = float("inf")                      # NaN beats +inf
    logits[0, 5, 1000:] = float("-inf")
    x = torch.full((1, 7), MASK_ID)
    x0, conf = assert_matches_reference(dk.masked_confidence, logits, x)
    assert x0[0, :3].tolist() == [50, 60, 0] and x0[0, 4] == 7
    assert torch.isnan(conf[0, [0, 1, 2, 4]]).all()
    assert torch.isfinite(conf[0, [3, 5, 6]]).all()


@pytest.mark.parametrize("isa", ["base", "v3", "v4"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_max_rising_across_chunks(dtype, isa, monkeypatch):
    """The CPU row loop exponentiates each chunk of 2048 against the max of the chunks before it:
    a later chunk with a larger max is rescaled afterwards (a small jump) or summed again against
    its own max (a jump past 64, whose terms would overflow). Rows whose first chunks are all
    -inf have no max to start from."""
    monkeypatch.setenv("DK_CPU_ISA", isa)
    v = 3 * 2048 + 77
    logits = make_logits(2, 8, v, dtype)
    logits[0, 0, 2048 + 5] = 20.0                       # small jump in chunk 1
    logits[0, 1, 2 * 2048 + 9] = 90.0                   # jump past 64 in chunk 2
    logits[0, 2, 2048 + 1] = 30.0                       # rises twice, the second time past 64
    logits[0, 2, 3 * 2048 + 70] = 100.0                 # ... in the ragged last chunk
    logits[0, 3, : 2 * 2048] = float("-inf")            # no max before chunk 2
    logits[0, 4, : 2 * 2048] = float("-inf")
    logits[0, 4, 100] = float("nan")                    # a NaN inside the all -inf start
    logits[0, 5, 2048 + 5] = 20.0
    logits[0, 5, 3 * 2048 + 5] = 20.0                   # an equal max later keeps the first index
    logits[1, 0] = torch.linspace(-40, 40, v)           # the max rises in every chunk
    logits[1, 1] = torch.linspace(40, -40, v)           # falls in every chunk
    x = torch.full((2, 8), MASK_ID)
    x0, conf = assert_matches_reference(dk.masked_confidence, logits, x)
    assert x0[0, :6].tolist() == [2048 + 5, 2 * 2048 + 9, 3 * 2048 + 70, x0[0, 3].item(), 100, 2048 + 5]
    assert x0[0, 3] >= 2 * 2048 and torch.isnan(conf[0, 4])
    assert x0[1, 0] >= v - 20 and x0[1, 1] == 0  # rounding to 16 bits ties the top few


def test_empty_batch_and_seq():
    for b, l in [(0, 4), (2, 0)]:
        x0, conf = dk.masked_confidence(torch.randn(b, l, 11), torch.zeros(b, l, dtype=torch.long), 0)
        assert x0.shape == (b, l) and conf.shape == (b, l)


def test_large_logits_no_overflow():
    logits = torch.full((1, 1, 1000), 80.0)
    logits[0, 0, 500] = 85.0
    x0, conf = dk.masked_confidence(logits, torch.full((1, 1), MASK_ID), MASK_ID)
    assert x0.item() == 500
    expected = 1 / (1 + 999 * torch.exp(torch.tensor(-5.0, dtype=torch.float64)))
    assert abs(conf.item() - expected.item()) < 1e-6


class TestBadInputs:
    def call(self, logits=None, x=None, mask_id=MASK_ID):
        logits = torch.randn(2, 3, 10) if logits is None else logits
        x = torch.zeros(2, 3, dtype=torch.long) if x is None else x
        return dk.masked_confidence(logits, x, mask_id)

    def test_logits_dtype(self):
        with pytest.raises(ValueError, match="'logits'.*float32, float16 or bfloat16.*Long"):
            self.call(logits=torch.zeros(2, 3, 10, dtype=torch.long))
        with pytest.raises(ValueError, match="'logits'.*Double"):
            self.call(logits=torch.zeros(2, 3, 10, dtype=torch.float64))

    def test_x_dtype(self):
        with pytest.raises(ValueError, match="'x'.*int64.*Int"):
            self.call(x=torch.zeros(2, 3, dtype=torch.int32))

    def test_rank(self):
        with pytest.raises(ValueError, match="'logits'.*3 dimensions"):
            self.call(logits=torch.randn(6, 10))
        with pytest.raises(ValueError, match="'x'.*2 dimensions"):
            self.call(x=torch.zeros(6, dtype=torch.long))

    def test_shape_mismatch(self):
        with pytest.raises(ValueError, match="'x'.*\\[2, 3\\]"):
            self.call(x=torch.zeros(2, 4, dtype=torch.long))

    def test_empty_vocab(self):
        with pytest.raises(ValueError, match="'logits'.*non-empty vocabulary"):
            self.call(logits=torch.randn(2, 3, 0))

    def test_last_dim_not_contiguous(self):
        with pytest.raises(ValueError, match="'logits'.*contiguous last dimension"):
            self.call(logits=torch.randn(2, 10, 3).transpose(1, 2))

    def test_mask_id_range(self):
        with pytest.raises(ValueError, match="'mask_id'.*int64 range"):
            self.call(mask_id=2**63)
        with pytest.raises(TypeError, match="'mask_id'.*int"):
            self.call(mask_id=1.5)

    def test_device_mismatch(self):
        with pytest.raises(RuntimeError, match="'x'.*same device as 'logits'"):
            self.call(logits=torch.randn(2, 3, 10, device="meta"))


def test_opcheck():
    logits = make_logits(2, 5, 300, torch.bfloat16)
    torch.library.opcheck(torch.ops.diffusion_kernels.masked_confidence.default, (logits, make_tokens(2, 5), MASK_ID))


def test_torch_compile_fullgraph_matches_eager():
    def step(logits, x):
        x0, conf = dk.masked_confidence(logits, x, MASK_ID)
        return x0, conf * 2

    logits, x = make_logits(2, 5, 300, torch.float32), make_tokens(2, 5)
    compiled = torch.compile(step, fullgraph=True)
    got, want = compiled(logits, x), step(logits, x)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_build_info():
    info = dk.build_info()
    assert info["version"] == dk.__version__
    assert info["torch_version"].split("+")[0] == torch.__version__.split("+")[0]
    assert isinstance(info["cuda"], bool) and isinstance(info["emulator"], bool)
    if info["cuda"]:
        assert info["cuda_archs"], "a CUDA build must report its archs"
    else:
        assert info["cuda_archs"] == []


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_subnormal_logits_are_not_flushed(dtype):
    """The CPU exponentials return 0 below 2^-126 (subnormal results cost microcode assists);
    subnormal *logits* must still order as torch orders them, greedy and sampled."""
    tiny = torch.finfo(dtype).tiny / 4  # subnormal in every dtype
    logits = torch.zeros(1, 3, 300, dtype=dtype)
    logits[0, :, 7] = tiny
    logits[0, 1, 200] = -tiny
    logits[0, 2] = -tiny
    logits[0, 2, 9] = tiny / 2
    assert torch.all(logits[0, :, 7] != 0)
    x0, _ = assert_matches_reference(dk.masked_confidence, logits, torch.full((1, 3), MASK_ID))
    assert x0.tolist() == [[7, 7, 9]]
    # the general (sampling) row loop: top_k = 1 draws the maximum
    sampled = dk.masked_confidence(logits, torch.full((1, 3), MASK_ID), MASK_ID, temperature=1.0, top_k=1, seed=3)[0]
    assert sampled.tolist() == [[7, 7, 9]]


@pytest.mark.parametrize("temperature", [0.2, 0.05])
def test_low_temperature_terms_far_below_the_max(temperature):
    """At low temperature most exponentials fall below 2^-126 (returned as 0, not subnormal):
    confidence of every kind still matches the float64 reference."""
    from sampling_cases import run_and_compare

    logits = make_logits(2, 6, 5003, torch.bfloat16) * 4
    x = torch.full((2, 6), MASK_ID)
    for kind in ("prob", "margin", "neg_entropy"):
        run_and_compare(dk.masked_confidence, logits, x, temperature=temperature, confidence=kind, return_lse=True)
    run_and_compare(dk.masked_confidence, logits, x, temperature=temperature, top_p=0.9, confidence="neg_entropy")
