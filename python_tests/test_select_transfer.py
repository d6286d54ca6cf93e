"""select_transfer on CPU (the native kernel) against the pure-PyTorch reference and against the
research code's own selections."""
import pytest
import torch

import diffusion_kernels as dk
from diffusion_kernels import reference
from transfer_cases import (NEG_INF, RULES, SHAPES, assert_matches_reference, make_confidence, make_tokens,
                            per_row_k, rule_id)


@pytest.mark.parametrize("rule", RULES, ids=rule_id)
@pytest.mark.parametrize("shape", SHAPES + [(2, 4097)], ids=lambda s: "x".join(map(str, s)))
def test_matches_reference(shape, rule):
    assert_matches_reference(dk.select_transfer, make_confidence(*shape), **rule)


@pytest.mark.parametrize("shape", SHAPES + [(3, 5000)], ids=lambda s: "x".join(map(str, s)))
def test_topk_is_the_set_of_torch_topk(shape):
    """Distinct values, every position a candidate: exactly torch.topk's set, per-row k."""
    b, l = shape
    conf = torch.randperm(b * l).reshape(b, l).float() / (b * l)
    k = per_row_k(b, l)
    mask = dk.select_transfer(conf, k=k)
    for row in range(b):
        want = torch.zeros(l, dtype=torch.bool)
        want[torch.topk(conf[row], k=min(int(k[row]), l)).indices] = True
        assert torch.equal(mask[row], want), f"row {row}, k={int(k[row])}"


def test_ties_go_to_lowest_index():
    conf = torch.tensor([[0.5, 0.7, 0.5, 0.7, 0.5, 0.7],
                         [0.0, -0.0, 0.0, -0.0, NEG_INF, -0.0]])
    mask = dk.select_transfer(conf, k=torch.tensor([4, 3]))
    assert mask[0].tolist() == [True, True, False, True, False, True]
    assert mask[1].tolist() == [True, True, True, False, False, False]  # -0.0 ties with +0.0
    # Ties spanning a long row (several shared-memory chunks on the GPU, many nth_element pivots).
    conf = torch.zeros(2, 3001)
    conf[1, 2000:] = 1.0
    mask = dk.select_transfer(conf, k=1500)
    assert torch.equal(torch.nonzero(mask[0]).flatten(), torch.arange(1500))
    assert torch.equal(torch.nonzero(mask[1]).flatten(), torch.cat([torch.arange(499), torch.arange(2000, 3001)]))


@pytest.mark.parametrize("levels", [1, 3, 1000])
def test_topk_with_few_distinct_values_matches_reference(levels):
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
        assert_matches_reference(dk.select_transfer, conf, k=k)
    assert_matches_reference(dk.select_transfer, conf, k=torch.randint(0, l + 2, (b,), generator=g))


def test_threshold_ties_at_the_row_max():
    conf = torch.tensor([[0.3, 0.4, 0.4, 0.2]])
    assert dk.select_transfer(conf, threshold=0.9)[0].tolist() == [False, True, False, False]
    assert dk.select_transfer(conf, threshold=0.9, eps=0.0)[0].tolist() == [False, True, True, False]


def test_k_zero_and_k_at_least_candidates():
    conf = make_confidence(4, 50)
    assert not dk.select_transfer(conf, k=0).any()
    cand = torch.isfinite(conf)
    for k in (int(cand.sum(1).max()), 50, 51, 2**62):
        assert torch.equal(dk.select_transfer(conf, k=k), cand)


@pytest.mark.parametrize("form", ["list", "column", "int32", "scalar_tensor", "strided"])
def test_per_row_k_forms(form):
    conf = make_confidence(5, 40)
    k = torch.tensor([3, 0, 40, 7, 1])
    want = reference.select_transfer(conf, k=k)
    arg = {"list": k, "column": k[:, None], "int32": k.int(), "scalar_tensor": None,
           "strided": torch.stack([k, -k], 1)[:, 0]}[form]
    if form == "scalar_tensor":
        assert torch.equal(dk.select_transfer(conf, k=torch.tensor(7)), reference.select_transfer(conf, k=7))
        return
    assert torch.equal(dk.select_transfer(conf, k=arg), want)


@pytest.mark.parametrize("rule", RULES, ids=rule_id)
def test_rows_without_candidates_transfer_nothing(rule):
    conf = torch.full((3, 9), NEG_INF)
    conf[1, 4] = float("nan")
    conf[2, 2] = float("inf")  # +inf is not finite: not a candidate either
    x, x0 = make_tokens(3, 9)
    before = x.clone()
    assert not dk.select_transfer(conf, x=x, x0=x0, **rule).any()
    assert torch.equal(x, before)


def test_nan_and_inf_are_not_candidates():
    conf = torch.tensor([[float("nan"), 0.2, float("inf"), 0.1, NEG_INF]])
    assert dk.select_transfer(conf, k=5)[0].tolist() == [False, True, False, True, False]
    assert dk.select_transfer(conf, threshold=0.0)[0].tolist() == [False, True, False, True, False]


class TestHandComputed:
    def test_threshold_fast_dllm(self):
        conf = torch.tensor([[0.95, 0.5, 0.9, NEG_INF, 0.91],   # >= tau, tau itself included
                             [0.3, 0.6, 0.5, 0.1, NEG_INF],     # nothing >= tau: the argmax only
                             [0.9, 0.2, 0.3, 0.4, 0.5]])        # conf == float32(0.9) counts
        got = dk.select_transfer(conf, threshold=0.9)
        assert got.tolist() == [[True, False, True, False, True],
                                [False, True, False, False, False],
                                [True, False, False, False, False]]

    def test_threshold_dinfer(self):
        conf = torch.tensor([[0.3, 0.6, 0.5999995, 0.1],    # within eps of the max
                             [0.95, 0.91, 0.89, 0.2]])       # tau binds: >= 0.9
        got = dk.select_transfer(conf, threshold=0.9, eps=1e-5)
        assert got.tolist() == [[False, True, True, False], [True, True, False, False]]

    def test_factor(self):
        # Exact binary fractions. Sorted: 0.96875, 0.875, 0.75, 0.5; (n+1)(1-c_n) for n = 2, 3, 4
        # is 0.375, 1.0, 2.5, and the comparison is strict.
        conf = torch.tensor([[0.75, 0.96875, 0.5, 0.875]])
        assert dk.select_transfer(conf, factor=1.01)[0].tolist() == [True, True, False, True]
        assert dk.select_transfer(conf, factor=1.0)[0].tolist() == [False, True, False, True]
        assert dk.select_transfer(conf, factor=0.375)[0].tolist() == [False, True, False, False]  # n >= 1
        assert dk.select_transfer(conf, factor=2.6)[0].tolist() == [True, True, True, True]
        # The rule can stop inside a run of equal confidences (the lowest indices go first).
        conf = torch.tensor([[0.5, 0.96875, 0.5, 0.5]])
        assert dk.select_transfer(conf, factor=2.1)[0].tolist() == [True, True, True, False]

    def test_factor_long_prefix(self):
        """Hundreds of ranks pass: the CPU kernel orders the row in several growing slices."""
        conf = 1 - torch.rand(2, 3000) * 1e-6
        conf[1, ::3] = NEG_INF
        mask = assert_matches_reference(dk.select_transfer, conf, factor=1e-3)
        assert 100 < mask.sum(1).min() and mask.sum(1).max() < 2000

    def test_factor_differs_from_fast_dllm_only_at_the_last_rank(self):
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
            ours = int(dk.select_transfer(c[None], factor=f).sum())
            theirs = fast_dllm_count(c.double().tolist(), f)
            last_only_fails = n >= 2 and (n + 1) * (1 - c[-1].item()) >= f and \
                all((m + 1) * (1 - c[m - 1].item()) < f for m in range(2, n))
            assert ours == theirs - (1 if last_only_fails else 0)


def test_matches_fast_dllm_threshold_loop():
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
    assert torch.equal(dk.select_transfer(conf, threshold=tau), want)


def test_matches_dinfer_vectorised_threshold():
    conf = make_confidence(6, 32)
    conf[-1, 3] = 0.2  # dInfer's clamp(-1000, tau) only differs for bounds below -1000
    bound = (conf.max(dim=1).values - 1e-5).clamp(-1000, 0.8).unsqueeze(-1)
    assert torch.equal(dk.select_transfer(conf, threshold=0.8, eps=1e-5), conf >= bound)


class TestAlgTemp:
    def test_deterministic_in_seed_and_offset(self):
        conf = make_confidence(4, 64)
        a = dk.select_transfer(conf, k=8, alg_temp=0.3, seed=5, offset=11)
        assert torch.equal(a, dk.select_transfer(conf, k=8, alg_temp=0.3, seed=5, offset=11))
        assert not torch.equal(a, dk.select_transfer(conf, k=8, alg_temp=0.3, seed=5, offset=12))
        assert not torch.equal(a, dk.select_transfer(conf, k=8, alg_temp=0.3, seed=6, offset=11))
        b = dk.select_transfer(conf, k=8, alg_temp=0.3, seed=2**64 - 1, offset=2**63)
        assert torch.equal(b, dk.select_transfer(conf, k=8, alg_temp=0.3, seed=-1, offset=-(2**63)))

    def test_tensor_seed_and_offset_match_ints(self):
        """One-element int64 tensors (read by the kernel: CUDA-graph safe) draw exactly as ints."""
        conf = make_confidence(4, 64)
        want = dk.select_transfer(conf, k=8, alg_temp=0.3, seed=5, offset=11)
        for seed, offset in [(torch.tensor(5), torch.tensor([11])), (5, torch.tensor(11)), (torch.tensor([[5]]), 11)]:
            assert torch.equal(dk.select_transfer(conf, k=8, alg_temp=0.3, seed=seed, offset=offset), want)
        wrapped = dk.select_transfer(conf, k=8, alg_temp=0.3, seed=2**64 - 1, offset=0)
        assert torch.equal(dk.select_transfer(conf, k=8, alg_temp=0.3, seed=torch.tensor(-1), offset=0), wrapped)

    def test_only_candidates_are_drawn(self):
        conf = make_confidence(4, 64)
        mask = dk.select_transfer(conf, k=20, alg_temp=5.0, seed=1)
        assert not (mask & ~torch.isfinite(conf)).any()
        assert torch.equal(mask.sum(1), torch.isfinite(conf).sum(1).clamp(max=20))

    def test_first_draw_follows_softmax(self):
        """k = 1 over one confidence row broadcast to many rows (each row its own Philox stream):
        the pick frequencies are softmax(confidence / alg_temp)."""
        row = torch.tensor([0.9, 0.5, NEG_INF, 0.7, 0.1, 0.85])
        rows, temp = 40000, 0.2
        mask = dk.select_transfer(row.expand(rows, -1), k=1, alg_temp=temp, seed=3)
        freq = mask.double().mean(0)
        p = torch.softmax(row.double() / temp, 0)
        assert (freq - p).abs().max() < 5 * (p * (1 - p) / rows).sqrt().max() + 1e-9
        assert freq[2] == 0

    def test_second_draw_is_without_replacement(self):
        """k = 2: P(i and j drawn) = p_i p_j / (1 - p_i) + p_j p_i / (1 - p_j) (Plackett-Luce)."""
        row = torch.tensor([1.0, 0.6, 0.3])
        rows, temp = 40000, 0.25
        mask = dk.select_transfer(row.expand(rows, -1), k=2, alg_temp=temp, seed=9, offset=1)
        p = torch.softmax(row.double() / temp, 0)
        pair_01 = p[0] * p[1] / (1 - p[0]) + p[1] * p[0] / (1 - p[1])
        got = (mask[:, 0] & mask[:, 1]).double().mean()
        assert abs(got - pair_01) < 5 * (pair_01 * (1 - pair_01) / rows).sqrt()


def test_in_place_write_touches_only_transferred_positions():
    """Non-contiguous x and x0; x holds values that differ from x0 everywhere, so any stray write
    shows; the rest of x's storage (the gaps of its stride) stays bitwise unchanged."""
    conf = make_confidence(4, 37)
    storage = torch.randint(-2**62, 2**62, (4, 80))
    x = storage[:, 1:75:2]
    assert x.shape == conf.shape and not x.is_contiguous()
    x0 = torch.randint(0, 100, (37, 4)).t()
    before = storage.clone()
    for rule in RULES:
        storage.copy_(before)
        mask = dk.select_transfer(conf, x=x, x0=x0, **rule)
        want = before.clone()
        want[:, 1:75:2] = torch.where(mask, x0, before[:, 1:75:2])
        assert torch.equal(storage, want), rule_id(rule)


def test_x_equal_to_x0_is_a_no_op():
    conf = make_confidence(2, 10)
    x = torch.randint(0, 100, (2, 10))
    before = x.clone()
    dk.select_transfer(conf, k=4, x=x, x0=x)
    assert torch.equal(x, before)


def test_non_contiguous_confidence():
    big = make_confidence(9, 6)
    conf = big.t()[:, ::1]
    assert not conf.is_contiguous()
    for rule in RULES:
        assert_matches_reference(dk.select_transfer, conf, **rule)
    half = make_confidence(3, 20).to(torch.bfloat16)
    assert torch.equal(dk.select_transfer(half, k=4), reference.select_transfer(half.float(), k=4))


def test_empty():
    for shape in [(0, 5), (3, 0)]:
        for rule in RULES:
            assert dk.select_transfer(torch.zeros(shape), **rule).shape == shape


class TestBadInputs:
    def test_rule_choice(self):
        conf = torch.rand(2, 5)
        with pytest.raises(ValueError, match="exactly one of 'k', 'threshold' or 'factor'"):
            dk.select_transfer(conf)
        with pytest.raises(ValueError, match="exactly one"):
            dk.select_transfer(conf, k=1, threshold=0.5)
        with pytest.raises(ValueError, match="'eps' is only used with 'threshold'"):
            dk.select_transfer(conf, k=1, eps=0.1)
        with pytest.raises(ValueError, match="'alg_temp' is only used with 'k'"):
            dk.select_transfer(conf, factor=1.0, alg_temp=0.1)
        with pytest.raises(ValueError, match="'rule' must be one of"):
            torch.ops.diffusion_kernels.select_transfer(conf, "top", None, 1, 0.0, 0.0, 0.0, 0.0, 0, 0, None, None)

    def test_confidence(self):
        with pytest.raises(ValueError, match="'confidence' must be float32.*Double"):
            dk.select_transfer(torch.rand(2, 5, dtype=torch.float64), k=1)
        with pytest.raises(ValueError, match="'confidence' must have 2 dimensions"):
            dk.select_transfer(torch.rand(2, 5, 3), k=1)

    def test_k(self):
        conf = torch.rand(3, 5)
        with pytest.raises(ValueError, match="'k' must be >= 0, got -1"):
            dk.select_transfer(conf, k=-1)
        with pytest.raises(ValueError, match="'k' must be >= 0, got -2 for row 1"):
            dk.select_transfer(conf, k=torch.tensor([1, -2, 3]))
        with pytest.raises(ValueError, match="'k' must have one count per row \\(3\\)"):
            dk.select_transfer(conf, k=torch.tensor([1, 2]))
        with pytest.raises(ValueError, match="'k' must be int64.*Float"):
            dk.select_transfer(conf, k=torch.tensor([1.0, 2.0, 3.0]))
        with pytest.raises(TypeError, match="'k' must be an int"):
            dk.select_transfer(conf, k=1.5)
        with pytest.raises(RuntimeError, match="'k' must be on the same device as 'confidence'"):
            dk.select_transfer(conf, k=torch.tensor([1, 2, 3], device="meta"))

    def test_rule_parameters(self):
        conf = torch.rand(3, 5)
        with pytest.raises(ValueError, match="'threshold' must not be NaN"):
            dk.select_transfer(conf, threshold=float("nan"))
        with pytest.raises(ValueError, match="'eps' must be finite and >= 0"):
            dk.select_transfer(conf, threshold=0.5, eps=-1.0)
        with pytest.raises(ValueError, match="'factor' must be finite and > 0"):
            dk.select_transfer(conf, factor=0.0)
        with pytest.raises(ValueError, match="'alg_temp' must be finite and >= 0"):
            dk.select_transfer(conf, k=1, alg_temp=-0.5)
        with pytest.raises(ValueError, match="'seed' must be an int or a one-element int64 tensor"):
            dk.select_transfer(conf, k=1, alg_temp=0.5, seed=torch.tensor([1, 2]))
        with pytest.raises(TypeError, match="'offset' must be an int or a one-element int64 tensor"):
            dk.select_transfer(conf, k=1, alg_temp=0.5, offset=torch.tensor(1.0))

    def test_x_x0(self):
        conf = torch.rand(2, 5)
        x, x0 = make_tokens(2, 5)
        with pytest.raises(ValueError, match="'x0' must be given together with 'x'"):
            dk.select_transfer(conf, k=1, x=x)
        with pytest.raises(ValueError, match="'x' must be given together with 'x0'"):
            dk.select_transfer(conf, k=1, x0=x0)
        with pytest.raises(ValueError, match="'x' must be int64 token ids, got Int"):
            dk.select_transfer(conf, k=1, x=x.int(), x0=x0)
        with pytest.raises(ValueError, match="'x0' must have the shape of 'confidence'"):
            dk.select_transfer(conf, k=1, x=x, x0=x0[:, :4])
        with pytest.raises(RuntimeError, match="'x' must be on the same device as 'confidence'"):
            dk.select_transfer(conf, k=1, x=x.to("meta"), x0=x0)
        before = x.clone()
        with pytest.raises(ValueError):
            dk.select_transfer(conf, k=-1, x=x, x0=x0)
        assert torch.equal(x, before), "a rejected call must not write"


def test_opcheck_with_in_place_x():
    conf = make_confidence(3, 20)
    x, x0 = make_tokens(3, 20)
    op = torch.ops.diffusion_kernels.select_transfer.default
    # One rule per kernel path (the threshold and sort kernels), with and without the write.
    for args in [(conf, "topk", torch.tensor([2, 0, 30]), 0, 0.0, 0.0, 0.0, 0.5, 3, 4, x, x0),
                 (conf, "threshold_rowmax", None, 0, 0.9, 1e-5, 0.0, 0.0, 0, 0, x, x0),
                 (conf, "factor", None, 0, 0.0, 0.0, 1.0, 0.0, 0, 0, None, None)]:
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
