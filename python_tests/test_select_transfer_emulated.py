"""The CUDA kernels of select_transfer, executed on CPU tensors by the SIMT emulator: they must
match the reference (hence the CPU kernel) and give bitwise-identical results in every fiber
resume order (a missing barrier or a race between warps shows up as an order-dependent result)."""
import pytest
import torch

from diffusion_kernels import reference
from diffusion_kernels.testing import emulated
from transfer_cases import NEG_INF, RULES, assert_matches_reference, make_confidence, make_tokens, per_row_k, rule_id

pytestmark = pytest.mark.emulated

ORDERS = [("forward", 0), ("reverse", 0), ("random", 1), ("random", 2), ("random", 3)]
# Every CUDA thread is a fiber here: modest sizes, plus one row past the shared-memory sort.
SHAPES = [(1, 1), (3, 7), (5, 33), (2, 257), (2, 1000)]


@pytest.mark.parametrize("rule", RULES, ids=rule_id)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matches_reference(shape, rule):
    assert_matches_reference(emulated.select_transfer, make_confidence(*shape), **rule)


@pytest.mark.parametrize("rule", [dict(k=700), dict(factor=1.0), dict(k=9, alg_temp=0.4, seed=2)], ids=rule_id)
@pytest.mark.parametrize("seq", [4097, 9000])
def test_rows_longer_than_shared_memory(seq, rule):
    """The multi-block path: 2 (4097) or 4 (9000) chunk sorts per row, then 1 or 2 merge passes
    (each direction of the scratch ping-pong), then the finishing block."""
    conf = make_confidence(2, seq)
    conf[0, 3000:6000:7] = 0.625  # ties spanning chunk boundaries
    assert_matches_reference(emulated.select_transfer, conf, **rule)


def test_tensor_seed_and_offset_are_read_by_the_kernel():
    conf = make_confidence(3, 50)
    want = reference.select_transfer(conf, k=7, alg_temp=0.5, seed=9, offset=4)
    got = emulated.select_transfer(conf, k=7, alg_temp=0.5, seed=torch.tensor(9), offset=torch.tensor([4]))
    assert torch.equal(got, want)


def test_per_row_k_and_ties():
    conf = make_confidence(6, 300)
    conf[1, 100:200] = 0.5  # a tie run across warps
    k = per_row_k(6, 300)
    k[1] = 150
    assert torch.equal(emulated.select_transfer(conf, k=k), reference.select_transfer(conf, k=k))
    conf = torch.tensor([[0.0, -0.0, 0.0, -0.0, NEG_INF, -0.0]])
    assert emulated.select_transfer(conf, k=3)[0].tolist() == [True, True, True, False, False, False]


def test_negative_k_transfers_nothing_without_a_check():
    """The GPU path does not synchronise to validate a k tensor; negative counts select none."""
    conf = make_confidence(3, 20)
    mask = emulated.select_transfer(conf, k=torch.tensor([-5, 2, -1]))
    assert mask.sum(1).tolist() == [0, 2, 0]


@pytest.mark.parametrize("rule", RULES, ids=rule_id)
def test_bitwise_identical_across_resume_orders(rule):
    conf = make_confidence(3, 520)
    conf[0, 200:260] = 0.75
    results = []
    for order, seed in ORDERS:
        x, x0 = make_tokens(3, 520)
        x0 = torch.arange(3 * 520).reshape(3, 520)
        with emulated.resume_order(order, seed):
            mask = emulated.select_transfer(conf, x=x, x0=x0, **rule)
        results.append((mask, x))
    for (order, seed), (mask, x) in zip(ORDERS[1:], results[1:]):
        assert torch.equal(mask, results[0][0]), f"mask differs in order {order}/{seed}"
        assert torch.equal(x, results[0][1]), f"x differs in order {order}/{seed}"


def test_same_errors_as_the_real_op():
    with pytest.raises(ValueError, match="'confidence' must be float32"):
        emulated.select_transfer(torch.rand(2, 5, dtype=torch.float64), k=1)
    with pytest.raises(ValueError, match="'x0' must be given together with 'x'"):
        emulated.select_transfer(torch.rand(2, 5), k=1, x=torch.zeros(2, 5, dtype=torch.long))
