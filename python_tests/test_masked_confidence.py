"""masked_confidence's greedy path (temperature 0, no filters) on every backend (the CPU kernel,
the CUDA kernels under the SIMT emulator, a GPU) against the pure-PyTorch reference; under the
emulator also bitwise-identical results in every fiber resume order (a missing barrier or a race
between warps shows up as an order-dependent result). The sampling options: test_masked_sampling.py."""
import pytest
import torch

import diffusion_kernels as dk
from confidence_cases import (DTYPES, MASK_ID, SHAPES, assert_matches_reference, make_editing_case, make_logits,
                              make_tokens)
from diffusion_kernels import reference
from diffusion_kernels.testing import emulated
from sampling_cases import backends, device_op, on_backends, run_and_compare

ORDERS = [("forward", 0), ("reverse", 0), ("random", 1), ("random", 2), ("random", 3)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", list(SHAPES))
def test_matches_reference(backend, shape, dtype):
    b, l, v = SHAPES[shape][1 if backend.emulated else 0]
    assert_matches_reference(device_op(backend), make_logits(b, l, v, dtype), make_tokens(b, l))


@backends("cuda")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_matches_reference_at_llada_batch(backend, dtype):
    assert_matches_reference(device_op(backend), make_logits(8, 256, 126464, dtype), make_tokens(8, 256))


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


@pytest.mark.parametrize("backend,dtype", on_backends({"cpu": DTYPES, "emulated": [torch.bfloat16],
                                                       "cuda": [torch.float16]}), indirect=["backend"])
def test_non_contiguous_batch_and_row_strides(backend, dtype):
    """Rows strided inside a wider buffer, batch stride smaller than the row stride, a maximum
    tied across threads of different warps."""
    b, l, v = (2, 4, 600) if backend.emulated else (3, 6, 1001)
    big = make_logits(l, b, v + 37, dtype).to(backend.device)
    logits = big[:, :, 5:5 + v].transpose(0, 1)
    logits[0, 1, [5, 400]] = 50.0
    assert logits.stride(-1) == 1 and not logits.is_contiguous()
    x = make_tokens(l, b).to(backend.device).t()
    x[0, 1] = MASK_ID
    assert not x.is_contiguous()
    x0, _ = assert_matches_reference(device_op(backend), logits, x)
    assert x0[0, 1] == 5


@backends("cpu", "cuda")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_zero_row_strides_broadcast(backend, dtype):
    logits = make_logits(1, 1, 777, dtype).to(backend.device).expand(2, 5, 777)
    assert_matches_reference(device_op(backend), logits, make_tokens(2, 5))


@backends("cpu", "cuda")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_ties_resolve_to_lowest_index(backend, dtype):
    v = 5000
    logits = torch.zeros(1, 4, v, dtype=dtype)
    for row, places in enumerate([(17, 4000), (4999, 3000, 3), (2048, 2049), (0, v - 1)]):
        logits[0, row, list(places)] = 7.0
    x = torch.full((1, 4), MASK_ID)
    x0, _ = assert_matches_reference(device_op(backend), logits, x)
    assert x0[0].tolist() == [17, 3, 2048, 0]


@backends("emulated", "cuda")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("offset", [0, 1, 3, 7])
@pytest.mark.parametrize("vocab", [603, 5003], ids=["one-block", "split"])
def test_any_row_alignment_keeps_the_first_maximum(backend, vocab, offset, dtype):
    """Rows starting at any element offset (any 16-byte alignment), with maxima tied across
    threads, across the slices (5003 ids: two slices per row) and at the ragged end, give the
    lowest index: a guard for vectorised loads, which would have to keep this order."""
    logits = make_logits(2, 2, vocab + 8, dtype).to(backend.device)[:, :, offset:offset + vocab]
    ties = {(0, 0): [1, 300, vocab - 1], (0, 1): [4, 5], (1, 0): [vocab // 2 - 1, vocab // 2, vocab - 4],
            (1, 1): [vocab - 2, vocab - 1]}
    for (b, l), ids in ties.items():
        logits[b, l, ids] = 60.0
    x0, _ = assert_matches_reference(device_op(backend), logits, torch.full((2, 2), MASK_ID))
    assert x0.tolist() == [[1, 4], [vocab // 2 - 1, vocab - 2]]


@backends("cpu", "cuda")
def test_all_equal_row(backend):
    x0, conf = device_op(backend)(torch.ones(2, 3, 300), torch.full((2, 3), MASK_ID), MASK_ID)
    assert (x0 == 0).all()
    torch.testing.assert_close(conf, torch.full((2, 3), 1 / 300))


@backends("cpu", "cuda")
def test_unmasked_rows_pass_tokens_through(backend):
    logits = make_logits(2, 4, 50, torch.float32)
    x = torch.arange(8).reshape(2, 4) + 10
    x0, conf = device_op(backend)(logits, x, MASK_ID)
    assert torch.equal(x0, x)
    assert torch.isneginf(conf).all()


@pytest.mark.parametrize("backend,dtype", on_backends({"cpu": DTYPES, "emulated": [torch.float32],
                                                       "cuda": [torch.bfloat16]}), indirect=["backend"])
def test_nonfinite_policy(backend, dtype):
    """NaN and +-inf follow torch.argmax + softmax (docs/sampling.md)."""
    v = 1500 if backend.emulated else 2100  # 2100 spans two CPU chunks
    logits = make_logits(1, 7, v, dtype)
    logits[0, 0, [50, v - 10]] = float("nan")           # first NaN wins, confidence NaN
    logits[0, 1, [v - 1, 60]] = float("inf")            # first +inf wins, confidence NaN
    logits[0, 2] = float("-inf")                        # all -inf: index 0, confidence NaN
    logits[0, 3, :v - 100] = float("-inf")              # -inf entries simply have zero mass
    logits[0, 4, 7] = float("nan")
    logits[0, 4, 8] = float("inf")                      # NaN beats +inf
    logits[0, 5, 1000:] = float("-inf")
    x = torch.full((1, 7), MASK_ID)
    x0, conf = assert_matches_reference(device_op(backend), logits, x)
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


@backends("cpu", "cuda")
def test_empty_batch_and_seq(backend):
    for b, l in [(0, 4), (2, 0)]:
        x0, conf = device_op(backend)(torch.randn(b, l, 11), torch.zeros(b, l, dtype=torch.long), 0)
        assert x0.shape == (b, l) and conf.shape == (b, l)


@backends("cpu", "cuda")
def test_large_logits_no_overflow(backend):
    logits = torch.full((1, 1, 1000), 80.0)
    logits[0, 0, 500] = 85.0
    x0, conf = device_op(backend)(logits, torch.full((1, 1), MASK_ID), MASK_ID)
    assert x0.item() == 500
    expected = 1 / (1 + 999 * torch.exp(torch.tensor(-5.0, dtype=torch.float64)))
    assert abs(conf.item() - expected.item()) < 1e-6


@backends("emulated")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_bitwise_identical_across_resume_orders(backend, dtype):
    logits, x = make_logits(2, 3, 5003, dtype), make_tokens(2, 3)
    results = []
    for order, seed in ORDERS:
        with emulated.resume_order(order, seed):
            results.append(backend.masked_confidence(logits, x, MASK_ID))
    for (order, seed), (x0, conf) in zip(ORDERS[1:], results[1:]):
        assert torch.equal(x0, results[0][0]), f"x0 differs in order {order}/{seed}"
        assert torch.equal(conf.view(torch.int32), results[0][1].view(torch.int32)), f"confidence bits differ in {order}/{seed}"


# The engines' options (issue 16): every position of the block, the previous-token penalty.
PENALTY_ROWS = torch.tensor([3.0, float("nan"), -1.0, float("inf"), 0.5, 0.0])
ENGINE_OPTIONS = {
    "all-greedy": dict(positions="all"),
    "penalty-greedy": dict(prev_token_penalty=3.0, return_lse=True),
    "all-penalty-rows": dict(positions="all", prev_token_penalty=PENALTY_ROWS, block_start=1, block_end=7),
    "penalty-sampled-top_p-margin": dict(positions="all", prev_token_penalty=2.5, temperature=0.7, top_p=0.9,
                                         confidence="margin"),
    "penalty-rows-top_k-entropy-logits": dict(prev_token_penalty=PENALTY_ROWS, temperature=1.3, top_k=5,
                                              confidence="neg_entropy", confidence_from="logits", return_lse=True),
}


def _per_row(opts, batch):
    """The options with tensors cycled to `batch` rows."""
    return {k: (v[torch.arange(batch) % len(v)] if isinstance(v, torch.Tensor) else v) for k, v in opts.items()}


@pytest.mark.parametrize("options", list(ENGINE_OPTIONS))
@pytest.mark.parametrize("backend,shape", on_backends({"cpu": [(3, 9, 1000), (2, 5, 5003)],
                                                      "emulated": [(3, 9, 300), (1, 5, 5003)],
                                                      "cuda": [(64, 9, 1000), (2, 5, 50257)]}), indirect=["backend"])
def test_engine_options_match_reference(backend, shape, options):
    """positions / prev_token_penalty on every path: the greedy and general CPU rows, the CUDA
    one-block and split-vocabulary kernels (5003 ids and few rows: two slices per row); previous
    tokens that are mask_id, out of the vocabulary or the argmax of the next position."""
    b, l, v = shape
    logits, x = make_editing_case(b, l, v, torch.float32, torch.Generator().manual_seed(b * l))
    run_and_compare(device_op(backend), logits, x, **_per_row(ENGINE_OPTIONS[options], b))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_penalty_moves_the_argmax_and_never_writes_the_logits(backend, dtype):
    """A penalty on the previous token where it is the argmax: the proposal moves to the
    runner-up, the confidence and lse are the lowered row's; a penalty of 0 changes nothing
    bitwise; the logits are unchanged."""
    logits, x = make_editing_case(2, 6, 300, dtype, torch.Generator().manual_seed(1))
    before = logits.clone()
    op = device_op(backend)
    plain = op(logits, x, MASK_ID, positions="all", return_lse=True)
    lowered = op(logits, x, MASK_ID, positions="all", prev_token_penalty=3.0, return_lse=True)
    assert torch.equal(logits, before)
    prev, inside = x[:, :-1], x[:, :-1] < 300  # make_editing_case puts one token outside the vocabulary
    assert torch.equal(plain[0][:, 1::2][inside[:, ::2]], prev[:, ::2][inside[:, ::2]])
    assert not (lowered[0][:, 1::2] == prev[:, ::2]).any()
    work = logits.float().clone()
    work[:, 1:].scatter_add_(-1, prev.clamp(max=299)[..., None], torch.where(inside, -3.0, 0.0)[..., None])
    assert torch.equal(lowered[0], work.argmax(-1))
    torch.testing.assert_close(lowered[2], torch.logsumexp(work, -1), atol=2e-5, rtol=2e-5)
    for zero in (0.0, torch.zeros(2), torch.tensor([-1.0, float("nan")])):
        off = op(logits, x, MASK_ID, positions="all", prev_token_penalty=zero, return_lse=True)
        assert all(torch.equal(a, c) for a, c in zip(off, plain)), zero


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_all_positions_with_masked_and_committed_mix(backend, dtype):
    """positions="all" computes committed positions too (the masked ones are the same as with
    "masked"); block bounds still restrict it."""
    logits, x = make_editing_case(3, 7, 257, dtype, torch.Generator().manual_seed(2))
    op = device_op(backend)
    masked = op(logits, x, MASK_ID, block_start=torch.tensor([0, 2, 3]), block_end=6)
    every = op(logits, x, MASK_ID, positions="all", block_start=torch.tensor([0, 2, 3]), block_end=6)
    pos = torch.arange(7)[None]
    inside = (pos >= torch.tensor([0, 2, 3])[:, None]) & (pos < 6)
    is_mask = x == MASK_ID
    assert torch.equal(every[0][is_mask], masked[0][is_mask]) and torch.equal(every[1][is_mask], masked[1][is_mask])
    assert torch.equal(every[0][~inside], x[~inside]) and torch.isneginf(every[1][~inside]).all()
    assert torch.isfinite(every[1][inside]).all() and torch.isneginf(masked[1][inside & ~is_mask]).all()
    assert torch.equal(every[0][inside], logits.float().argmax(-1)[inside])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_flat_logits_are_the_same_rows(backend, dtype):
    """[batch * seq, vocab] logits (SGLang's layout) inside a wider buffer (row stride != vocab):
    bitwise the results of the [batch, seq, vocab] view, greedy and sampled, x0/conf [batch, seq]."""
    b, l, v = 3, 5, 600
    big = make_logits(b * l, 1, v + 37, dtype)[:, 0]
    flat = big[:, 5:5 + v]
    assert flat.stride() == (v + 37, 1)
    x = make_editing_case(b, l, v, dtype)[1]
    op = device_op(backend)
    for opts in (dict(), dict(positions="all", prev_token_penalty=torch.tensor([1.0, 0.0, 9.0]), return_lse=True),
                 dict(temperature=0.8, top_k=40, confidence="margin", seed=3)):
        got = op(flat, x, MASK_ID, **opts)
        want = op(flat.view(b, l, v), x, MASK_ID, **opts)
        assert got[0].shape == (b, l) and all(torch.equal(g, w) for g, w in zip(got, want)), opts
        ref = reference.masked_confidence(flat.float(), x, MASK_ID, **opts)
        assert torch.equal(got[0], ref[0]), opts


@pytest.mark.parametrize("isa", ["base", "v3", "v4"])
def test_penalty_on_every_cpu_isa_build(isa, monkeypatch):
    """The penalised greedy row runs the greedy loop over a float copy: every x86 level, with a
    non-finite row and an infinite penalty that removes a row's only finite logit."""
    monkeypatch.setenv("DK_CPU_ISA", isa)
    logits, x = make_editing_case(2, 6, 2100, torch.bfloat16, torch.Generator().manual_seed(3))
    logits[0, 2, 11] = float("nan")
    logits[1, 3] = float("-inf")
    logits[1, 3, x[1, 2]] = 5.0
    pen = torch.tensor([2.0, float("inf")])
    got, _ = run_and_compare(dk.masked_confidence, logits, x, positions="all", prev_token_penalty=pen)
    assert got[0][1, 3] == 0 and torch.isnan(got[1][1, 3])  # all -inf after the penalty: torch's policy


@backends("emulated")
def test_penalty_bitwise_identical_across_resume_orders(backend):
    logits, x = make_editing_case(1, 4, 5003, torch.bfloat16, torch.Generator().manual_seed(5))
    results = []
    for order, seed in ORDERS[:3]:
        with emulated.resume_order(order, seed):
            results.append(backend.masked_confidence(logits, x, MASK_ID, positions="all", prev_token_penalty=2.0,
                                                     temperature=0.5, top_p=0.8, seed=1))
    for x0, conf in results[1:]:
        assert torch.equal(x0, results[0][0]) and torch.equal(conf.view(torch.int32), results[0][1].view(torch.int32))


class TestBadInputs:
    """Shape, dtype and device errors name the argument on every backend (the sampling options'
    errors: test_masked_sampling.py)."""

    def call(self, backend, logits=None, x=None, mask_id=MASK_ID):
        logits = torch.randn(2, 3, 10, device=backend.device) if logits is None else logits
        x = torch.zeros(2, 3, dtype=torch.long, device=backend.device) if x is None else x
        return backend.masked_confidence(logits, x, mask_id)

    def test_logits_dtype(self, backend):
        with pytest.raises(ValueError, match="'logits'.*float32, float16 or bfloat16.*Long"):
            self.call(backend, logits=torch.zeros(2, 3, 10, dtype=torch.long, device=backend.device))
        with pytest.raises(ValueError, match="'logits'.*Double"):
            self.call(backend, logits=torch.zeros(2, 3, 10, dtype=torch.float64, device=backend.device))

    def test_x_dtype(self, backend):
        with pytest.raises(ValueError, match="'x'.*int64.*Int"):
            self.call(backend, x=torch.zeros(2, 3, dtype=torch.int32, device=backend.device))
        for dtype in (torch.float32, torch.bool):  # never truncated to ids
            with pytest.raises(TypeError, match="'x'.*int64"):
                self.call(backend, x=torch.zeros(2, 3, dtype=dtype, device=backend.device))
        with pytest.raises(TypeError, match="'x'.*tensor"):
            self.call(backend, x=[[0, 0, 0], [0, 0, 0]])

    def test_rank(self, backend):
        with pytest.raises(ValueError, match="'logits'.*3 dimensions"):
            self.call(backend, logits=torch.randn(1, 2, 3, 10, device=backend.device))
        with pytest.raises(ValueError, match="'logits'.*3 dimensions"):
            self.call(backend, logits=torch.randn(10, device=backend.device))
        with pytest.raises(ValueError, match="'logits' in the flat layout.*one row per element of 'x'.*6 rows"):
            self.call(backend, logits=torch.randn(5, 10, device=backend.device))
        with pytest.raises(ValueError, match="'x'.*2 dimensions"):
            self.call(backend, x=torch.zeros(6, dtype=torch.long, device=backend.device))

    def test_shape_mismatch(self, backend):
        with pytest.raises(ValueError, match="'x'.*\\[2, 3\\]"):
            self.call(backend, x=torch.zeros(2, 4, dtype=torch.long, device=backend.device))

    def test_empty_vocab(self, backend):
        with pytest.raises(ValueError, match="'logits'.*non-empty vocabulary"):
            self.call(backend, logits=torch.randn(2, 3, 0, device=backend.device))

    def test_last_dim_not_contiguous(self, backend):
        with pytest.raises(ValueError, match="'logits'.*contiguous last dimension"):
            self.call(backend, logits=torch.randn(2, 10, 3, device=backend.device).transpose(1, 2))

    def test_engine_options(self, backend):
        dev = backend.device
        logits, x = torch.randn(2, 3, 10, device=dev), torch.zeros(2, 3, dtype=torch.long, device=dev)
        with pytest.raises(ValueError, match="'positions' must be 'masked' or 'all'"):
            backend.masked_confidence(logits, x, MASK_ID, positions="every")
        for bad in (-0.5, float("nan"), float("inf")):
            with pytest.raises(ValueError, match="'prev_token_penalty' must be finite and >= 0"):
                backend.masked_confidence(logits, x, MASK_ID, prev_token_penalty=bad)
        with pytest.raises(ValueError, match="'prev_token_penalty' must be a number or a \\[batch\\] = \\[2\\]"):
            backend.masked_confidence(logits, x, MASK_ID, prev_token_penalty=torch.ones(3, device=dev))
        for bad in (torch.ones(2, dtype=torch.bool), "1.0"):
            with pytest.raises(TypeError, match="'prev_token_penalty' must be a number"):
                backend.masked_confidence(logits, x, MASK_ID, prev_token_penalty=bad)

    def test_mask_id(self, backend):
        with pytest.raises(ValueError, match="'mask_id'.*int64 range"):
            self.call(backend, mask_id=2**63)
        with pytest.raises(TypeError, match="'mask_id'.*int"):
            self.call(backend, mask_id=1.5)
        with pytest.raises(TypeError, match="'mask_id'.*int"):
            self.call(backend, mask_id=torch.tensor(3.0))

    def test_device_mismatch(self, backend):
        """A meta logits with CPU tokens (a GPU's logits with CPU tokens on cuda); the emulated
        kernels take CPU tensors only."""
        logits = torch.randn(2, 3, 10, device="cpu" if backend.name == "cuda" else "meta")
        x = torch.zeros(2, 3, dtype=torch.long, device=backend.device)
        with pytest.raises((RuntimeError, ValueError), match="'x'.*same device as 'logits'|'logits'.*CPU tensor"):
            self.call(backend, logits=logits, x=x)


@backends("cpu", "cuda")
def test_opcheck(backend):
    logits, x = make_logits(2, 5, 300, torch.bfloat16).to(backend.device), make_tokens(2, 5).to(backend.device)
    op = torch.ops.diffusion_kernels.masked_confidence.default
    torch.library.opcheck(op, (logits, x, MASK_ID))
    # the engines' options: flat logits, every position, a per-row penalty (fake and schema too)
    torch.library.opcheck(op, (logits.reshape(10, 300), x, MASK_ID), dict(
        all_positions=True, prev_token_penalty=torch.tensor([1.0, 0.0], device=backend.device), return_lse=True))


@backends("cpu", "cuda")
def test_torch_compile_fullgraph_matches_eager(backend):
    def step(logits, x):
        x0, conf = dk.masked_confidence(logits, x, MASK_ID)
        return x0, conf * 2

    logits, x = make_logits(2, 5, 300, torch.float32).to(backend.device), make_tokens(2, 5).to(backend.device)
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


# The greedy CUDA kernel's two variants (DK_MC_KERNEL, csrc/kernels/masked_confidence_launch.cu):
# v1 streams scalars, v2 (masked_confidence_vec.cuh) 16-byte vectors with a scalar head and tail.
GREEDY_VARIANTS = ["v1", "v2"]


@pytest.fixture(params=GREEDY_VARIANTS)
def variant(request, monkeypatch):
    monkeypatch.setenv("DK_MC_KERNEL", request.param)
    return request.param


@backends("emulated", "cuda")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("vocab,offset", [(1003, 3), (4099, 1)], ids=["one-block", "split"])
def test_greedy_variants_on_awkward_rows(backend, variant, vocab, offset, dtype):
    """Every greedy variant on rows that start off any 16-byte boundary, a vocabulary that is not a
    multiple of the vector width (4099: two slices, the second one misaligned too), ties across
    vectors and threads, NaN / +inf / all -inf rows, and masked and unmasked rows mixed."""
    logits = make_logits(2, 4, vocab + 16, dtype).to(backend.device)[:, :, offset:offset + vocab]
    logits[0, 0, [9, vocab - 2]] = float("nan")
    logits[0, 0, 5] = float("inf")                      # NaN beats an earlier +inf
    logits[0, 1, [7, 8, vocab // 2, vocab - 1]] = 40.0        # lowest id of a tie, within and across vectors
    logits[0, 2] = float("-inf")
    logits[0, 3, [vocab - 1, 700]] = float("inf")
    logits[1, 0, 1:] = float("-inf")                    # one finite id, in the scalar head
    logits[1, 1, :vocab - 1] = float("-inf")            # one finite id, in the scalar tail
    logits[1, 2, vocab - 3:] = 50.0                     # a tie at the ragged end
    x = torch.full((2, 4), MASK_ID)
    x[1, 3] = 17                                        # unmasked: passed through
    x0, conf = assert_matches_reference(device_op(backend), logits, x)
    assert x0.tolist() == [[9, 7, 0, 700], [0, vocab - 1, vocab - 3, 17]]
    assert torch.isnan(conf[0, [0, 2, 3]]).all() and torch.isneginf(conf[1, 3])
    assert torch.equal(conf[1, :2].cpu(), torch.ones(2))


@backends("emulated", "cuda")
@pytest.mark.parametrize("options", ["all-greedy", "penalty-greedy", "all-penalty-rows"])
@pytest.mark.parametrize("shape", [(2, 5, 1003), (1, 3, 4099)], ids=["one-block", "split"])
def test_greedy_variants_engine_options(backend, variant, shape, options):
    """positions="all", the previous-token penalty (a value and per-row tensors), block bounds and
    lse on every greedy variant, one-block and split-vocabulary paths; tokens equal across variants."""
    b, l, v = shape
    logits, x = make_editing_case(b, l, v, torch.bfloat16, torch.Generator().manual_seed(v))
    got, want = run_and_compare(device_op(backend), logits, x, **_per_row(ENGINE_OPTIONS[options], b))
    assert torch.equal(got[0].cpu(), want[0])


@backends("emulated")
def test_greedy_variants_bitwise_across_resume_orders(backend, variant):
    """Each variant alone is deterministic: the same bits in every fiber resume order, for the
    one-block and the split path and with a penalty."""
    for shape, opts in [((2, 3, 1003), {}), ((1, 2, 4099), dict(prev_token_penalty=1.0, return_lse=True))]:
        logits, x = make_editing_case(*shape, torch.bfloat16, torch.Generator().manual_seed(3))
        results = []
        for order, seed in ORDERS[:3]:
            with emulated.resume_order(order, seed):
                results.append(backend.masked_confidence(logits, x, MASK_ID, positions="all", **opts))
        for got in results[1:]:
            assert all(torch.equal(g.view(torch.int32) if g.is_floating_point() else g,
                                   w.view(torch.int32) if w.is_floating_point() else w)
                       for g, w in zip(got, results[0])), (shape, variant)


@backends("emulated", "cuda")
def test_unknown_greedy_variant_is_refused(backend, monkeypatch):
    monkeypatch.setenv("DK_MC_KERNEL", "v3")
    logits, x = make_logits(1, 2, 64, torch.float32), make_tokens(1, 2)
    with pytest.raises((RuntimeError, ValueError), match="DK_MC_KERNEL"):
        device_op(backend)(logits, x, MASK_ID)
