"""select_transfer on every backend (the CPU kernel, the CUDA kernels under the SIMT emulator, a
GPU) against the pure-PyTorch reference and against the research code's own selections; under the
emulator also bitwise-identical results in every fiber resume order (a missing barrier or a race
between warps shows up as an order-dependent result)."""
import pytest
import torch

import diffusion_kernels as dk
from diffusion_kernels import reference
from diffusion_kernels.testing import emulated
from sampling_cases import backends, device_op, on_backends
from transfer_cases import (NEG_INF, RULES, SHAPES, assert_matches_reference, make_confidence, make_tokens,
                            per_row_k, per_row_threshold, rule_id)

ORDERS = [("forward", 0), ("reverse", 0), ("random", 1), ("random", 2), ("random", 3)]


def st(backend):
    """select_transfer on ``backend``, CPU tensors in and out (sampling_cases.device_op)."""
    return device_op(backend, "select_transfer")


@pytest.mark.parametrize("rule", RULES, ids=rule_id)
@pytest.mark.parametrize("backend,shape", on_backends(SHAPES), indirect=["backend"])
def test_matches_reference(backend, shape, rule):
    assert_matches_reference(st(backend), make_confidence(*shape), **rule)


@backends("emulated", "cuda")
@pytest.mark.parametrize("rule", [dict(k=700), dict(factor=1.0), dict(k=9, alg_temp=0.4, seed=2)], ids=rule_id)
@pytest.mark.parametrize("seq", [4097, 9000])
def test_rows_longer_than_shared_memory(backend, seq, rule):
    """The CUDA multi-block path: 2 (4097) or 4 (9000) chunk sorts per row, then 1 or 2 merge
    passes (each direction of the scratch ping-pong), then the finishing block."""
    conf = make_confidence(2, seq)
    conf[0, 3000:6000:7] = 0.625  # ties spanning chunk boundaries
    assert_matches_reference(st(backend), conf, **rule)


@backends("cpu", "cuda")
@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (5, 33), (4, 257), (2, 1000), (3, 5000)],
                         ids=lambda s: "x".join(map(str, s)))
def test_topk_is_the_set_of_torch_topk(backend, shape):
    """Distinct values, every position a candidate: exactly torch.topk's set, per-row k."""
    b, l = shape
    conf = torch.randperm(b * l).reshape(b, l).float() / (b * l)
    k = per_row_k(b, l)
    mask = st(backend)(conf, k=k)
    for row in range(b):
        want = torch.zeros(l, dtype=torch.bool)
        want[torch.topk(conf[row], k=min(int(k[row]), l)).indices] = True
        assert torch.equal(mask[row], want), f"row {row}, k={int(k[row])}"


@backends("cpu", "cuda")
def test_ties_go_to_lowest_index(backend):
    conf = torch.tensor([[0.5, 0.7, 0.5, 0.7, 0.5, 0.7],
                         [0.0, -0.0, 0.0, -0.0, NEG_INF, -0.0]])
    mask = st(backend)(conf, k=torch.tensor([4, 3]))
    assert mask[0].tolist() == [True, True, False, True, False, True]
    assert mask[1].tolist() == [True, True, True, False, False, False]  # -0.0 ties with +0.0
    # Ties spanning a long row (several shared-memory chunks on the GPU, many nth_element pivots).
    conf = torch.zeros(2, 3001)
    conf[1, 2000:] = 1.0
    mask = st(backend)(conf, k=1500)
    assert torch.equal(torch.nonzero(mask[0]).flatten(), torch.arange(1500))
    assert torch.equal(torch.nonzero(mask[1]).flatten(), torch.cat([torch.arange(499), torch.arange(2000, 3001)]))


@backends("cpu", "cuda")
@pytest.mark.parametrize("levels", [1, 3, 1000])
def test_topk_with_few_distinct_values_matches_reference(backend, levels):
    """Confidences drawn from a few levels (ties everywhere: the CPU radix select then separates
    keys only by their index bytes), mixed with -inf, NaN and +inf, every k from 0 to past the end."""
    g = torch.Generator().manual_seed(levels)
    b, l = 24, 300
    conf = torch.randint(0, levels, (b, l), generator=g).float() / levels
    special = torch.rand(b, l, generator=g)
    conf[special < 0.3] = NEG_INF
    conf[(special >= 0.3) & (special < 0.32)] = float("nan")
    conf[(special >= 0.32) & (special < 0.33)] = float("inf")
    conf[::5] *= -1.0  # negative values and -0.0
    for k in [0, 1, 2, 37, 150, 299, 300, 400]:
        assert_matches_reference(st(backend), conf, k=k)
    assert_matches_reference(st(backend), conf, k=torch.randint(0, l + 2, (b,), generator=g))


@backends("cpu", "cuda")
def test_threshold_ties_at_the_row_max(backend):
    conf = torch.tensor([[0.3, 0.4, 0.4, 0.2]])
    assert st(backend)(conf, threshold=0.9)[0].tolist() == [False, True, False, False]
    assert st(backend)(conf, threshold=0.9, eps=0.0)[0].tolist() == [False, True, True, False]


@backends("cpu", "emulated", "cuda")
@pytest.mark.parametrize("rule", [dict(), dict(strict=True), dict(eps=1e-5), dict(eps=0.2)], ids=rule_id)
@pytest.mark.parametrize("shape", [(9, 7), (8, 300)], ids=lambda s: "x".join(map(str, s)))
def test_per_row_threshold_matches_reference(backend, shape, rule):
    """A [batch] threshold tensor with NaN, +-inf and ordinary entries; ties at a threshold
    entry; rows without candidates; in place too."""
    conf = make_confidence(*shape)
    conf[:, 1:shape[1]:3] = 0.75  # ties exactly at the 0.75 entry
    conf[3, 0] = 0.9  # the row's best is the threshold itself (strict: kept by the fallback only)
    assert_matches_reference(st(backend), conf, threshold=per_row_threshold(shape[0]), **rule)


@backends("cpu", "cuda")
def test_per_row_threshold_is_each_rows_scalar_threshold(backend):
    conf = make_confidence(7, 40)
    tau = per_row_threshold(7)
    for rule in (dict(), dict(strict=True), dict(eps=1e-3)):
        got = st(backend)(conf, threshold=tau, **rule)
        for b in range(7):
            if torch.isnan(tau[b]):  # a Python NaN is refused; in a tensor every comparison is false
                want = (torch.zeros(40, dtype=torch.bool) if "eps" in rule else
                        reference.select_transfer(conf[b:b + 1], k=1)[0])
            else:
                want = st(backend)(conf[b:b + 1], threshold=float(tau[b]), **rule)[0]
            assert torch.equal(got[b], want), (b, rule)


@backends("cpu", "cuda")
def test_per_row_threshold_forms(backend):
    """[batch], [batch, 1], one element, float64 and strided tensors all mean the same rows."""
    conf = make_confidence(4, 30)
    tau = torch.tensor([0.9, 0.6, 0.99, 0.3])
    want = reference.select_transfer(conf, threshold=tau)
    for form in (tau[:, None], tau.double(), torch.stack([tau, -tau], 1)[:, 0]):
        assert torch.equal(st(backend)(conf, threshold=form), want)
    for one in (torch.tensor(0.8), torch.tensor([0.8]), torch.tensor([[0.8]])):
        assert torch.equal(st(backend)(conf, threshold=one), reference.select_transfer(conf, threshold=0.8))


@backends("cpu", "cuda")
def test_strict_threshold_hand_computed(backend):
    conf = torch.tensor([[0.9, 0.95, 0.5, 0.9],         # equal to tau: not committed
                         [0.3, 0.9, 0.9, NEG_INF],       # best == tau: the fallback commits its first
                         [0.2, 0.1, 0.3, 0.25]])         # nothing passes: the best only
    assert st(backend)(conf, threshold=0.9, strict=True).tolist() == [[False, True, False, False],
                                                                       [False, True, False, False],
                                                                       [False, False, True, False]]
    assert st(backend)(conf, threshold=0.9).tolist() == [[True, True, False, True],
                                                         [False, True, True, False],
                                                         [False, False, True, False]]


@backends("cpu", "cuda")
def test_strict_matches_sglang_low_confidence(backend):
    """SGLang LowConfidence per block row: transfer = confidence > threshold over the masked
    positions, and when nothing passes the argmax is committed (written here from that rule)."""
    g = torch.Generator().manual_seed(5)
    conf = (torch.randint(0, 20, (16, 32), generator=g).float() / 20)  # many ties, some at tau
    masked = torch.rand(16, 32, generator=g) < 0.7
    conf = torch.where(masked, conf, torch.full_like(conf, NEG_INF))
    tau = torch.tensor([0.9, 0.5, 0.95, 0.0])[torch.arange(16) % 4]
    want = (conf > tau[:, None]) & masked
    best = torch.argmax(conf, dim=1)
    none = ~want.any(1) & masked.any(1)
    want[none, best[none]] = True
    assert torch.equal(st(backend)(conf, threshold=tau, strict=True), want)


@backends("cpu", "cuda")
def test_k_zero_and_k_at_least_candidates(backend):
    conf = make_confidence(4, 50)
    assert not st(backend)(conf, k=0).any()
    cand = torch.isfinite(conf)
    for k in (int(cand.sum(1).max()), 50, 51, 2**62):
        assert torch.equal(st(backend)(conf, k=k), cand)


@backends("cpu", "cuda")
@pytest.mark.parametrize("form", ["list", "column", "int32", "scalar_tensor", "strided"])
def test_per_row_k_forms(backend, form):
    conf = make_confidence(5, 40)
    k = torch.tensor([3, 0, 40, 7, 1])
    want = reference.select_transfer(conf, k=k)
    arg = {"list": k, "column": k[:, None], "int32": k.int(), "scalar_tensor": None,
           "strided": torch.stack([k, -k], 1)[:, 0]}[form]
    if form == "scalar_tensor":
        assert torch.equal(st(backend)(conf, k=torch.tensor(7)), reference.select_transfer(conf, k=7))
        return
    assert torch.equal(st(backend)(conf, k=arg), want)


@backends("cpu", "cuda")
@pytest.mark.parametrize("rule", RULES, ids=rule_id)
def test_rows_without_candidates_transfer_nothing(backend, rule):
    conf = torch.full((3, 9), NEG_INF)
    conf[1, 4] = float("nan")
    conf[2, 2] = float("inf")  # +inf is not finite: not a candidate either
    x, x0 = make_tokens(3, 9)
    before = x.clone()
    assert not st(backend)(conf, x=x, x0=x0, **rule).any()
    assert torch.equal(x, before)


@backends("cpu", "cuda")
def test_nan_and_inf_are_not_candidates(backend):
    conf = torch.tensor([[float("nan"), 0.2, float("inf"), 0.1, NEG_INF]])
    assert st(backend)(conf, k=5)[0].tolist() == [False, True, False, True, False]
    assert st(backend)(conf, threshold=0.0)[0].tolist() == [False, True, False, True, False]


@backends("cpu", "cuda")
class TestHandComputed:
    def test_threshold_fast_dllm(self, backend):
        conf = torch.tensor([[0.95, 0.5, 0.9, NEG_INF, 0.91],   # >= tau, tau itself included
                             [0.3, 0.6, 0.5, 0.1, NEG_INF],     # nothing >= tau: the argmax only
                             [0.9, 0.2, 0.3, 0.4, 0.5]])        # conf == float32(0.9) counts
        got = st(backend)(conf, threshold=0.9)
        assert got.tolist() == [[True, False, True, False, True],
                                [False, True, False, False, False],
                                [True, False, False, False, False]]

    def test_threshold_dinfer(self, backend):
        conf = torch.tensor([[0.3, 0.6, 0.5999995, 0.1],    # within eps of the max
                             [0.95, 0.91, 0.89, 0.2]])       # tau binds: >= 0.9
        got = st(backend)(conf, threshold=0.9, eps=1e-5)
        assert got.tolist() == [[False, True, True, False], [True, True, False, False]]

    def test_factor(self, backend):
        # Exact binary fractions. Sorted: 0.96875, 0.875, 0.75, 0.5; (n+1)(1-c_n) for n = 2, 3, 4
        # is 0.375, 1.0, 2.5, and the comparison is strict.
        conf = torch.tensor([[0.75, 0.96875, 0.5, 0.875]])
        assert st(backend)(conf, factor=1.01)[0].tolist() == [True, True, False, True]
        assert st(backend)(conf, factor=1.0)[0].tolist() == [False, True, False, True]
        assert st(backend)(conf, factor=0.375)[0].tolist() == [False, True, False, False]  # n >= 1
        assert st(backend)(conf, factor=2.6)[0].tolist() == [True, True, True, True]
        # The rule can stop inside a run of equal confidences (the lowest indices go first).
        conf = torch.tensor([[0.5, 0.96875, 0.5, 0.5]])
        assert st(backend)(conf, factor=2.1)[0].tolist() == [True, True, True, False]

    def test_factor_long_prefix(self, backend):
        """Hundreds of ranks pass: the CPU kernel orders the row in several growing slices."""
        conf = 1 - torch.rand(2, 3000) * 1e-6
        conf[1, ::3] = NEG_INF
        mask = assert_matches_reference(st(backend), conf, factor=1e-3)
        assert 100 < mask.sum(1).min() and mask.sum(1).max() < 2000

    def test_factor_differs_from_fast_dllm_only_at_the_last_rank(self, backend):
        """Fast-dLLM transfers the last-ranked candidate even when it alone fails the rule."""
        def fast_dllm_count(sorted_conf, factor):
            threshs = [1 - factor / (n + 1) for n in range(1, len(sorted_conf) + 1)]
            threshs[0] = -1
            for top_i in range(len(threshs)):
                if sorted_conf[top_i] < threshs[top_i]:
                    break
            if top_i == 0 or top_i == len(threshs) - 1:
                top_i += 1
            return top_i

        torch.manual_seed(1)
        for _ in range(200):
            n = int(torch.randint(1, 9, ()))
            c = torch.sort(torch.rand(n) ** 0.1, descending=True).values
            f = float(torch.rand(()) * 2)
            ours = int(st(backend)(c[None], factor=f).sum())
            theirs = fast_dllm_count(c.double().tolist(), f)
            last_only_fails = n >= 2 and (n + 1) * (1 - c[-1].item()) >= f and \
                all((m + 1) * (1 - c[m - 1].item()) < f for m in range(2, n))
            assert ours == theirs - (1 if last_only_fails else 0)


@backends("cpu", "cuda")
def test_matches_fast_dllm_threshold_loop(backend):
    """Fast-dLLM's get_transfer_index loop (topk over every masked position, then drop < tau
    except the first), on float32 confidences with distinct values."""
    conf = make_confidence(6, 32)
    tau = 0.9
    want = torch.zeros_like(conf, dtype=torch.bool)
    for j in range(conf.shape[0]):
        n = int(torch.isfinite(conf[j]).sum())
        _, idx = torch.topk(conf[j], k=n)
        want[j, idx] = True
        for r in range(1, n):
            if conf[j, idx[r]] < tau:
                want[j, idx[r]] = False
    assert torch.equal(st(backend)(conf, threshold=tau), want)


@backends("cpu", "cuda")
def test_matches_dinfer_vectorised_threshold(backend):
    conf = make_confidence(6, 32)
    conf[-1, 3] = 0.2  # dInfer's clamp(-1000, tau) only differs for bounds below -1000
    bound = (conf.max(dim=1).values - 1e-5).clamp(-1000, 0.8).unsqueeze(-1)
    assert torch.equal(st(backend)(conf, threshold=0.8, eps=1e-5), conf >= bound)


@backends("cpu", "cuda")
class TestAlgTemp:
    def test_deterministic_in_seed_and_offset(self, backend):
        conf = make_confidence(4, 64)
        a = st(backend)(conf, k=8, alg_temp=0.3, seed=5, offset=11)
        assert torch.equal(a, st(backend)(conf, k=8, alg_temp=0.3, seed=5, offset=11))
        assert not torch.equal(a, st(backend)(conf, k=8, alg_temp=0.3, seed=5, offset=12))
        assert not torch.equal(a, st(backend)(conf, k=8, alg_temp=0.3, seed=6, offset=11))
        b = st(backend)(conf, k=8, alg_temp=0.3, seed=2**64 - 1, offset=2**63)
        assert torch.equal(b, st(backend)(conf, k=8, alg_temp=0.3, seed=-1, offset=-(2**63)))

    def test_tensor_seed_and_offset_match_ints(self, backend):
        """One-element int64 tensors (read by the kernel: CUDA-graph safe) draw exactly as ints."""
        conf = make_confidence(4, 64)
        want = st(backend)(conf, k=8, alg_temp=0.3, seed=5, offset=11)
        for seed, offset in [(torch.tensor(5), torch.tensor([11])), (5, torch.tensor(11)), (torch.tensor([[5]]), 11)]:
            assert torch.equal(st(backend)(conf, k=8, alg_temp=0.3, seed=seed, offset=offset), want)
        wrapped = st(backend)(conf, k=8, alg_temp=0.3, seed=2**64 - 1, offset=0)
        assert torch.equal(st(backend)(conf, k=8, alg_temp=0.3, seed=torch.tensor(-1), offset=0), wrapped)

    def test_only_candidates_are_drawn(self, backend):
        conf = make_confidence(4, 64)
        mask = st(backend)(conf, k=20, alg_temp=5.0, seed=1)
        assert not (mask & ~torch.isfinite(conf)).any()
        assert torch.equal(mask.sum(1), torch.isfinite(conf).sum(1).clamp(max=20))

    def test_first_draw_follows_softmax(self, backend):
        """k = 1 over one confidence row broadcast to many rows (each row its own Philox stream):
        the pick frequencies are softmax(confidence / alg_temp)."""
        row = torch.tensor([0.9, 0.5, NEG_INF, 0.7, 0.1, 0.85])
        rows, temp = 40000, 0.2
        mask = st(backend)(row.expand(rows, -1), k=1, alg_temp=temp, seed=3)
        freq = mask.double().mean(0)
        p = torch.softmax(row.double() / temp, 0)
        assert (freq - p).abs().max() < 5 * (p * (1 - p) / rows).sqrt().max() + 1e-9
        assert freq[2] == 0

    def test_second_draw_is_without_replacement(self, backend):
        """k = 2: P(i and j drawn) = p_i p_j / (1 - p_i) + p_j p_i / (1 - p_j) (Plackett-Luce)."""
        row = torch.tensor([1.0, 0.6, 0.3])
        rows, temp = 40000, 0.25
        mask = st(backend)(row.expand(rows, -1), k=2, alg_temp=temp, seed=9, offset=1)
        p = torch.softmax(row.double() / temp, 0)
        pair_01 = p[0] * p[1] / (1 - p[0]) + p[1] * p[0] / (1 - p[1])
        got = (mask[:, 0] & mask[:, 1]).double().mean()
        assert abs(got - pair_01) < 5 * (pair_01 * (1 - pair_01) / rows).sqrt()


def test_tensor_seed_and_offset_are_read_by_the_kernel(backend):
    conf = make_confidence(3, 50)
    want = reference.select_transfer(conf, k=7, alg_temp=0.5, seed=9, offset=4)
    got = st(backend)(conf, k=7, alg_temp=0.5, seed=torch.tensor(9), offset=torch.tensor([4]))
    assert torch.equal(got, want)


@backends("emulated", "cuda")
def test_per_row_k_and_ties_across_warps(backend):
    conf = make_confidence(6, 300)
    conf[1, 100:200] = 0.5  # a tie run across warps
    k = per_row_k(6, 300)
    k[1] = 150
    assert torch.equal(st(backend)(conf, k=k), reference.select_transfer(conf, k=k))
    conf = torch.tensor([[0.0, -0.0, 0.0, -0.0, NEG_INF, -0.0]])
    assert st(backend)(conf, k=3)[0].tolist() == [True, True, True, False, False, False]


@backends("emulated", "cuda")
def test_negative_k_in_a_tensor_transfers_nothing_without_a_check(backend):
    """The CUDA kernels do not synchronise to validate a k tensor; negative counts select none
    (the CPU op refuses them: TestBadInputs)."""
    mask = st(backend)(make_confidence(3, 20), k=torch.tensor([-5, 2, -1]))
    assert mask.sum(1).tolist() == [0, 2, 0]


@backends("cuda")
def test_per_row_k_tensor_repeatable_and_equal_to_cpu(backend):
    conf = make_confidence(16, 700).cuda()
    k = per_row_k(16, 700).cuda()
    a = dk.select_transfer(conf, k=k, alg_temp=0.5, seed=4, offset=2)
    for _ in range(3):
        assert torch.equal(a, dk.select_transfer(conf, k=k, alg_temp=0.5, seed=4, offset=2))
    assert torch.equal(a.cpu(), dk.select_transfer(conf.cpu(), k=k.cpu(), alg_temp=0.5, seed=4, offset=2))


@backends("emulated")
@pytest.mark.parametrize("rule", RULES, ids=rule_id)
def test_bitwise_identical_across_resume_orders(backend, rule):
    conf = make_confidence(3, 520)
    conf[0, 200:260] = 0.75
    results = []
    for order, seed in ORDERS:
        x = make_tokens(3, 520)[0]
        x0 = torch.arange(3 * 520).reshape(3, 520)
        with emulated.resume_order(order, seed):
            mask = backend.select_transfer(conf, x=x, x0=x0, **rule)
        results.append((mask, x))
    for (order, seed), (mask, x) in zip(ORDERS[1:], results[1:]):
        assert torch.equal(mask, results[0][0]), f"mask differs in order {order}/{seed}"
        assert torch.equal(x, results[0][1]), f"x differs in order {order}/{seed}"


@backends("cpu", "cuda")
def test_in_place_write_touches_only_transferred_positions(backend):
    """Non-contiguous x and x0 on the device; x holds values that differ from x0 everywhere, so
    any stray write shows; the rest of x's storage (the gaps of its stride) stays bitwise unchanged."""
    conf = make_confidence(4, 37).to(backend.device)
    storage = torch.randint(-2**62, 2**62, (4, 80)).to(backend.device)
    x = storage[:, 1:75:2]
    assert x.shape == conf.shape and not x.is_contiguous()
    x0 = torch.randint(0, 100, (37, 4)).to(backend.device).t()
    before = storage.clone()
    for rule in RULES:
        storage.copy_(before)
        mask = backend.select_transfer(conf, x=x, x0=x0, **rule)
        want = before.clone()
        want[:, 1:75:2] = torch.where(mask, x0, before[:, 1:75:2])
        assert torch.equal(storage.cpu(), want.cpu()), rule_id(rule)


@backends("cpu", "cuda")
def test_x_equal_to_x0_is_a_no_op(backend):
    conf = make_confidence(2, 10)
    x = torch.randint(0, 100, (2, 10))
    before = x.clone()
    st(backend)(conf, k=4, x=x, x0=x)
    assert torch.equal(x, before)


@backends("cpu", "cuda")
def test_non_contiguous_confidence(backend):
    big = make_confidence(9, 6)
    conf = big.t()[:, ::1]
    assert not conf.is_contiguous()
    for rule in RULES:
        assert_matches_reference(st(backend), conf, **rule)
    half = make_confidence(3, 20).to(torch.bfloat16)
    assert torch.equal(st(backend)(half, k=4), reference.select_transfer(half.float(), k=4))


@backends("cpu", "cuda")
def test_empty(backend):
    for shape in [(0, 5), (3, 0)]:
        for rule in RULES:
            assert st(backend)(torch.zeros(shape), **rule).shape == shape


class TestBadInputs:
    """Every refused call names the argument on every backend and writes nothing; float tensors
    where integers are meant are refused, never truncated."""

    def test_rule_choice(self, backend):
        conf = torch.rand(2, 5, device=backend.device)
        with pytest.raises(ValueError, match="exactly one of 'k', 'threshold' or 'factor'"):
            backend.select_transfer(conf)
        with pytest.raises(ValueError, match="exactly one"):
            backend.select_transfer(conf, k=1, threshold=0.5)
        with pytest.raises(ValueError, match="'eps' is only used with 'threshold'"):
            backend.select_transfer(conf, k=1, eps=0.1)
        with pytest.raises(ValueError, match="'alg_temp' is only used with 'k'"):
            backend.select_transfer(conf, factor=1.0, alg_temp=0.1)
        if backend.name != "emulated":
            with pytest.raises(ValueError, match="'rule' must be one of"):
                torch.ops.diffusion_kernels.select_transfer(conf, "top", None, 1, 0.0, 0.0, 0.0, 0.0, 0, 0, None, None)

    def test_confidence(self, backend):
        with pytest.raises(ValueError, match="'confidence' must be float32.*Double"):
            backend.select_transfer(torch.rand(2, 5, dtype=torch.float64, device=backend.device), k=1)
        with pytest.raises(ValueError, match="'confidence' must have 2 dimensions"):
            backend.select_transfer(torch.rand(2, 5, 3, device=backend.device), k=1)
        with pytest.raises(TypeError, match="'confidence' must be a tensor"):
            backend.select_transfer([[0.5, 0.2]], k=1)

    def test_k(self, backend):
        conf = torch.rand(3, 5, device=backend.device)
        with pytest.raises(ValueError, match="'k' must be >= 0, got -1"):
            backend.select_transfer(conf, k=-1)
        if backend.name == "cpu":  # the CUDA kernels do not read a k tensor on the host
            with pytest.raises(ValueError, match="'k' must be >= 0, got -2 for row 1"):
                backend.select_transfer(conf, k=torch.tensor([1, -2, 3]))
        with pytest.raises(ValueError, match="'k' must have one count per row \\(3\\)"):
            backend.select_transfer(conf, k=torch.tensor([1, 2], device=backend.device))
        for k in (torch.tensor([1.0, 2.0, 3.0]), torch.tensor([True, False, True])):
            with pytest.raises(TypeError, match="'k' must be an int or an integer \\[batch\\] tensor"):
                backend.select_transfer(conf, k=k.to(backend.device))
        for k in (1.5, 2.0, True, "2"):
            with pytest.raises(TypeError, match="'k' must be an int"):
                backend.select_transfer(conf, k=k)
        with pytest.raises(RuntimeError, match="'k' must be (on the same device as 'confidence'|a CPU tensor)"):
            backend.select_transfer(conf, k=torch.tensor([1, 2, 3], device="meta"))

    def test_rule_parameters(self, backend):
        conf = torch.rand(3, 5, device=backend.device)
        with pytest.raises(ValueError, match="'threshold' must not be NaN"):
            backend.select_transfer(conf, threshold=float("nan"))
        with pytest.raises(ValueError, match="'eps' must be finite and >= 0"):
            backend.select_transfer(conf, threshold=0.5, eps=-1.0)
        with pytest.raises(ValueError, match="'factor' must be finite and > 0"):
            backend.select_transfer(conf, factor=0.0)
        with pytest.raises(ValueError, match="'alg_temp' must be finite and >= 0"):
            backend.select_transfer(conf, k=1, alg_temp=-0.5)
        for name, rule in (("threshold", dict(threshold="0.5")), ("factor", dict(factor="1")),
                           ("eps", dict(threshold=0.5, eps="0.1")), ("alg_temp", dict(k=1, alg_temp=True))):
            with pytest.raises(TypeError, match=f"'{name}' must be a real number"):
                backend.select_transfer(conf, **rule)
        with pytest.raises(ValueError, match="'threshold' must have shape \\[batch\\] = \\[3\\]"):
            backend.select_transfer(conf, threshold=torch.full((2,), 0.5))
        with pytest.raises(TypeError, match="'threshold' must be a number or a real \\[batch\\] tensor"):
            backend.select_transfer(conf, threshold=torch.ones(3, dtype=torch.bool))
        with pytest.raises(RuntimeError, match="'threshold' must be (on the same device as 'confidence'|a CPU tensor)"):
            backend.select_transfer(conf, threshold=torch.full((3,), 0.5, device="meta"))
        for rule in (dict(k=1), dict(factor=1.0), dict(threshold=0.5, eps=0.1)):
            with pytest.raises(ValueError, match="'strict' is only used with 'threshold'"):
                backend.select_transfer(conf, strict=True, **rule)
        with pytest.raises(TypeError, match="'strict' must be a bool"):
            backend.select_transfer(conf, threshold=0.5, strict=1)
        with pytest.raises(ValueError, match="'seed' must be an int or a one-element int64 tensor"):
            backend.select_transfer(conf, k=1, alg_temp=0.5, seed=torch.tensor([1, 2]))
        for bad in (1.5, torch.tensor([1.0])):
            with pytest.raises(TypeError, match="'seed' must be an int or a one-element int64 tensor"):
                backend.select_transfer(conf, k=1, alg_temp=0.5, seed=bad)
        with pytest.raises(TypeError, match="'offset' must be an int or a one-element int64 tensor"):
            backend.select_transfer(conf, k=1, alg_temp=0.5, offset=torch.tensor(1.0))
        with pytest.raises(ValueError, match="'offset'.*outside"):
            backend.select_transfer(conf, k=1, alg_temp=0.5, offset=2**64)

    def test_x_x0(self, backend):
        dev = backend.device
        conf = torch.rand(2, 5, device=dev)
        x, x0 = (t.to(dev) for t in make_tokens(2, 5))
        with pytest.raises(ValueError, match="'x0' must be given together with 'x'"):
            backend.select_transfer(conf, k=1, x=x)
        with pytest.raises(ValueError, match="'x' must be given together with 'x0'"):
            backend.select_transfer(conf, k=1, x0=x0)
        with pytest.raises(ValueError, match="'x' must be int64 token ids, got Int"):
            backend.select_transfer(conf, k=1, x=x.int(), x0=x0)
        with pytest.raises(TypeError, match="'x0' must be an int64 tensor of token ids"):
            backend.select_transfer(conf, k=1, x=x, x0=x0.float())
        with pytest.raises(TypeError, match="'x' must be an int64 tensor of token ids"):
            backend.select_transfer(conf, k=1, x=x.double(), x0=x0)
        with pytest.raises(ValueError, match="'x0' must have the shape of 'confidence'"):
            backend.select_transfer(conf, k=1, x=x, x0=x0[:, :4])
        with pytest.raises(RuntimeError, match="'x' must be (on the same device as 'confidence'|a CPU tensor)"):
            backend.select_transfer(conf, k=1, x=x.to("meta"), x0=x0)
        before = x.clone()
        with pytest.raises(ValueError):
            backend.select_transfer(conf, k=-1, x=x, x0=x0)
        assert torch.equal(x, before), "a rejected call must not write"

    def test_x_sharing_memory(self, backend):
        """x is written in place: an expanded view (stride 0), rows overlapping through their
        strides, or an x0 partially overlapping x would make the result depend on the write order."""
        dev = backend.device
        conf = torch.rand(3, 6, device=dev)
        buf = torch.arange(40, device=dev)
        x0 = torch.randint(0, 9, (3, 6), device=dev)
        for name, x, proposals in (("x", torch.full((3, 1), 99, device=dev).expand(3, 6), x0),
                                   ("x", torch.full((6,), 99, device=dev).expand(3, 6), x0),
                                   ("x", buf.as_strided((3, 6), (2, 1)), x0),
                                   ("x0", buf[:18].view(3, 6), buf[1:19].view(3, 6))):
            before = buf.clone(), x0.clone()
            with pytest.raises(ValueError, match=f"'{name}'.*(share memory|overlap)"):
                backend.select_transfer(conf, k=2, x=x, x0=proposals)
            assert torch.equal(buf, before[0]) and torch.equal(x0, before[1]), "a rejected call must not write"
        # Interleaved views that share a storage but no element are fine.
        x, proposals = buf[:36].view(3, 12)[:, ::2], buf[:36].view(3, 12)[:, 1::2]
        want = torch.where(reference.select_transfer(conf.cpu(), k=2), proposals.cpu(), x.cpu())
        backend.select_transfer(conf, k=2, x=x, x0=proposals)
        assert torch.equal(x.cpu(), want)


@backends("cpu", "cuda")
def test_opcheck_with_in_place_x(backend):
    conf = make_confidence(3, 20).to(backend.device)
    x, x0 = (t.to(backend.device) for t in make_tokens(3, 20))
    op = torch.ops.diffusion_kernels.select_transfer.default
    # One rule per kernel path (the threshold and sort kernels), with and without the write.
    for args in [(conf, "topk", torch.tensor([2, 0, 30], device=backend.device), 0, 0.0, 0.0, 0.0, 0.5, 3, 4, x, x0),
                 (conf, "threshold_rowmax", None, 0, 0.9, 1e-5, 0.0, 0.0, 0, 0, x, x0),
                 (conf, "factor", None, 0, 0.0, 0.0, 1.0, 0.0, 0, 0, None, None),
                 (conf, "threshold", None, 0, 0.0, 0.0, 0.0, 0.0, 0, 0, x, x0, None, None,
                  torch.tensor([0.9, float("nan"), 0.5], device=backend.device), True)]:
        torch.library.opcheck(op, args)


def test_torch_compile_fullgraph_matches_eager():
    def step(conf, k, x, x0):
        mask = dk.select_transfer(conf, k=k, x=x, x0=x0)
        return mask, x * 1

    conf, k = make_confidence(3, 20), torch.tensor([2, 5, 0])
    x1, x0 = make_tokens(3, 20)
    x2 = x1.clone()
    got = torch.compile(step, fullgraph=True)(conf, k, x1, x0)
    want = step(conf, k, x2, x0)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1]) and torch.equal(x1, x2)
