"""The CUDA kernel of masked_confidence, executed on CPU tensors by the SIMT emulator: it must
match the reference and give bitwise-identical results in every fiber resume order (a missing
barrier or a race between warps shows up as an order-dependent result)."""
import pytest
import torch

from confidence_cases import DTYPES, MASK_ID, assert_matches_reference, make_logits, make_tokens
from diffusion_kernels.testing import emulated

pytestmark = pytest.mark.emulated

ORDERS = [("forward", 0), ("reverse", 0), ("random", 1), ("random", 2), ("random", 3)]
# Smaller than the CPU cases: every CUDA thread is a fiber here.
SHAPES = [(2, 3, 1), (2, 4, 3), (1, 3, 50257), (1, 2, 126464), (3, 5, 257)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matches_reference(shape, dtype):
    b, l, v = shape
    assert_matches_reference(emulated.masked_confidence, make_logits(b, l, v, dtype), make_tokens(b, l))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_bitwise_identical_across_resume_orders(dtype):
    logits, x = make_logits(2, 3, 5003, dtype), make_tokens(2, 3)
    results = []
    for order, seed in ORDERS:
        with emulated.resume_order(order, seed):
            results.append(emulated.masked_confidence(logits, x, MASK_ID))
    for (order, seed), (x0, conf) in zip(ORDERS[1:], results[1:]):
        assert torch.equal(x0, results[0][0]), f"x0 differs in order {order}/{seed}"
        assert torch.equal(conf.view(torch.int32), results[0][1].view(torch.int32)), f"confidence bits differ in {order}/{seed}"


def test_non_contiguous_and_ties():
    big = make_logits(4, 2, 700, torch.bfloat16)
    logits = big[:, :, 3:603].transpose(0, 1)
    logits[0, 1, [5, 400]] = 50.0  # tie across threads of different warps
    x = make_tokens(4, 2).t()
    x[0, 1] = MASK_ID
    x0, _ = assert_matches_reference(emulated.masked_confidence, logits, x)
    assert x0[0, 1] == 5


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("offset", [0, 1, 3, 7])
@pytest.mark.parametrize("vocab", [603, 5003], ids=["one-block", "split"])
def test_any_row_alignment_keeps_the_first_maximum(vocab, offset, dtype):
    """Rows starting at any element offset (any 16-byte alignment), with maxima tied across
    threads, across the slices (5003 ids: two slices per row) and at the ragged end, give the
    lowest index (kept from a 16-byte-load attempt, reverted in accedf9, as a guard for the next)."""
    logits = make_logits(2, 2, vocab + 8, dtype)[:, :, offset:offset + vocab]
    ties = {(0, 0): [1, 300, vocab - 1], (0, 1): [4, 5], (1, 0): [vocab // 2 - 1, vocab // 2, vocab - 4],
            (1, 1): [vocab - 2, vocab - 1]}
    for (b, l), ids in ties.items():
        logits[b, l, ids] = 60.0
    x0, _ = assert_matches_reference(emulated.masked_confidence, logits, torch.full((2, 2), MASK_ID))
    assert x0.tolist() == [[1, 4], [vocab // 2 - 1, vocab - 2]]


def test_nonfinite_policy():
    logits = make_logits(1, 5, 1500, torch.float32)
    logits[0, 0, [900, 30]] = float("nan")
    logits[0, 1, [1499, 700]] = float("inf")
    logits[0, 2] = float("-inf")
    logits[0, 3, :1400] = float("-inf")
    x0, conf = assert_matches_reference(emulated.masked_confidence, logits, torch.full((1, 5), MASK_ID))
    assert x0[0, :3].tolist() == [30, 700, 0]


def test_same_errors_as_the_real_op():
    with pytest.raises(ValueError, match="'x'.*int64"):
        emulated.masked_confidence(torch.randn(1, 2, 5), torch.zeros(1, 2, dtype=torch.int32), 0)


def test_block_restriction_and_lse():
    from sampling_cases import run_and_compare

    logits, x = make_logits(3, 6, 1001, torch.bfloat16), make_tokens(3, 6)
    run_and_compare(emulated.masked_confidence, logits, x, block_start=torch.tensor([0, 2, 6]), block_end=4,
                    return_lse=True)
