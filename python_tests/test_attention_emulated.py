"""The CUDA kernels of attention_with_kv_cache (cache write, FA2-style tile loop, split-KV merge)
executed on CPU tensors by the SIMT emulator: flash-attn's tolerance rule against the float64
reference, the caches after the call, and bitwise-identical results in every fiber resume order.
Sizes stay small (every warp-level mma is emulated); the emulator reports 132 SMs, so most cases
here take the split-KV path, and DK_ATTENTION_SPLITS=1 forces the single-pass one."""
import pytest
import torch

from attention_cases import Case, check_call, clone_args, make_inputs
from diffusion_kernels.testing import emulated

pytestmark = pytest.mark.emulated

DTYPES = [torch.bfloat16, torch.float16]
ORDERS = [("forward", 0), ("reverse", 0), ("random", 1), ("random", 2), ("random", 3)]

# q_len and cache_len off the 64-row/64-key tiles, GQA and MQA (query heads packed into one tile),
# writes at the start, middle and end, per-row starts, masks of every kind, both head dims.
CASES = [
    Case(1, 32, 4, 4, 128, 256, 32, 96),                          # dual cache, LLaDA block
    Case(2, 33, 2, 1, 64, 200, 33, [0, 167], "random"),           # GQA, per-row starts, 2 row tiles
    Case(1, 7, 4, 1, 128, 256, 7, 249, "lengths"),                # MQA, write at the end
    Case(2, 70, 2, 2, 64, 70, 70, 0),                             # no cache, rows past a tile
    Case(2, 16, 2, 2, 64, 150, 0, 0, "left_pad"),                 # read only, left padding
    Case(1, 5, 2, 2, 128, 100, 5, 95, "both"),                    # mask and lengths
]


@pytest.fixture(params=["auto", "1"], ids=["split", "nosplit"])
def splits(request, monkeypatch):
    if request.param == "auto":
        monkeypatch.delenv("DK_ATTENTION_SPLITS", raising=False)
    else:
        monkeypatch.setenv("DK_ATTENTION_SPLITS", request.param)
    return request.param


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES, ids=Case.id)
def test_matches_reference(case, dtype, splits):
    check_call(emulated.attention_with_kv_cache, make_inputs(case, dtype))


def test_custom_scale(splits):
    check_call(emulated.attention_with_kv_cache, make_inputs(Case(1, 9, 2, 2, 64, 130, 9, 60, "random"),
                                                             torch.bfloat16), scale=-0.3)


def test_rows_without_a_valid_key(splits):
    """Row 0: length 0; row 1: mask all False; row 2: only key 130 valid (the last split)."""
    args = make_inputs(Case(3, 10, 2, 2, 64, 140, 0, 0), torch.bfloat16)
    args["key_lengths"] = torch.tensor([0, 140, 140])
    mask = torch.ones(3, 140, dtype=torch.bool)
    mask[1] = False
    mask[2] = False
    mask[2, 130] = True
    args["key_padding_mask"] = mask
    out, lse, _, _ = check_call(emulated.attention_with_kv_cache, args)
    assert (out[:2] == 0).all() and torch.isneginf(lse[:2]).all()
    assert torch.isfinite(lse[2]).all()


def test_empty_cache_and_empty_query():
    q = torch.randn(2, 3, 2, 64).bfloat16()
    kc = torch.empty(2, 0, 2, 64, dtype=torch.bfloat16)
    out, lse = emulated.attention_with_kv_cache(q, kc, kc.clone(), return_lse=True)
    assert (out == 0).all() and torch.isneginf(lse).all()
    q0 = torch.empty(2, 0, 2, 64, dtype=torch.bfloat16)
    kc = torch.randn(2, 5, 2, 64).bfloat16()
    assert emulated.attention_with_kv_cache(q0, kc, kc.clone()).shape == (2, 0, 2, 64)


def test_nan_in_masked_keys_never_leaks(splits):
    """Masked cache rows are zero-filled on their way to shared memory, so NaN there (as in
    uninitialised padding) cannot reach the mma (0 * NaN = NaN): bitwise the clean result."""
    args = make_inputs(Case(2, 12, 2, 2, 128, 160, 12, [40, 100], "both"), torch.float16)
    clean = emulated.attention_with_kv_cache(**clone_args(args), return_lse=True)
    dirty = clone_args(args)
    invalid = ~args["key_padding_mask"] | (torch.arange(160)[None, :] >= args["key_lengths"][:, None])
    for b in range(2):  # the rows about to be overwritten by k_new/v_new stay as they are
        s = args["write_start"][b]
        invalid[b, s:s + 12] = False
    dirty["k_cache"][invalid] = float("nan")
    dirty["v_cache"][invalid] = float("nan")
    got = emulated.attention_with_kv_cache(**dirty, return_lse=True)
    assert torch.equal(got[0], clean[0]) and torch.equal(got[1], clean[1])


def test_unaligned_layouts_match_contiguous():
    """Rows that are not 16-byte aligned (a head_dim window of a wider buffer) go through aligned
    copies after the write; the write itself lands in the caller's buffer."""
    b, lq, h, d, lc = 2, 9, 2, 64, 80
    big_q = torch.randn(b, lq, h, d + 4).bfloat16()
    big_k = torch.randn(b, lc, h, d + 4).bfloat16()
    big_v = torch.randn(b, lc, h, d + 12).bfloat16()
    q, kc, vc = big_q[..., 4:], big_k[..., 4:], big_v[..., 4:4 + d]
    k_new, v_new = torch.randn(b, lq, h, d).bfloat16(), torch.randn(b, lq, h, d).bfloat16()
    want = emulated.attention_with_kv_cache(q.contiguous(), kc.contiguous(), vc.contiguous(), k_new, v_new,
                                            write_start=30, return_lse=True)
    before = big_k.clone()
    got = emulated.attention_with_kv_cache(q, kc, vc, k_new, v_new, write_start=30, return_lse=True)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert torch.equal(big_k[:, 30:39, :, 4:], k_new) and torch.equal(big_v[:, 30:39, :, 4:4 + d], v_new)
    untouched = torch.ones_like(big_k, dtype=torch.bool)
    untouched[:, 30:39, :, 4:] = False
    assert torch.equal(big_k[untouched], before[untouched])


def test_split_and_single_pass_agree(monkeypatch):
    args = make_inputs(Case(1, 20, 2, 2, 128, 256, 20, 0, "random"), torch.bfloat16)
    monkeypatch.setenv("DK_ATTENTION_SPLITS", "1")
    one = emulated.attention_with_kv_cache(**clone_args(args), return_lse=True)
    monkeypatch.setenv("DK_ATTENTION_SPLITS", "4")  # one 64-key tile per split
    four = emulated.attention_with_kv_cache(**clone_args(args), return_lse=True)
    # Not bitwise (different accumulation orders) but within bf16 rounding of each other.
    torch.testing.assert_close(four[0], one[0], atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(four[1], one[1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("split_env", ["auto", "1"])
def test_bitwise_identical_across_resume_orders(split_env, monkeypatch):
    if split_env == "1":
        monkeypatch.setenv("DK_ATTENTION_SPLITS", "1")
    else:
        monkeypatch.delenv("DK_ATTENTION_SPLITS", raising=False)
    args = make_inputs(Case(2, 17, 2, 1, 64, 150, 17, [3, 120], "both"), torch.bfloat16)
    results = []
    for order, seed in ORDERS:
        mine = clone_args(args)
        with emulated.resume_order(order, seed):
            out, lse = emulated.attention_with_kv_cache(**mine, return_lse=True)
        results.append((out, lse, mine["k_cache"], mine["v_cache"]))
    for (order, seed), got in zip(ORDERS[1:], results[1:]):
        for name, x, y in zip(("out", "lse", "k_cache", "v_cache"), got, results[0]):
            assert torch.equal(x, y), f"{name} differs in order {order}/{seed}"


def test_write_starts_out_of_range_is_caught_on_the_device():
    """The launcher passes a tensor of starts to the device unchecked (no host sync on CUDA); the
    cache-write kernel refuses the row whose range leaves the cache."""
    args = make_inputs(Case(2, 4, 2, 2, 64, 20, 4, [0, 17]), torch.bfloat16)
    with pytest.raises(RuntimeError, match="write_starts puts a write range outside the cache"):
        emulated.attention_with_kv_cache(**args)
    args["write_start"] = torch.tensor([-1, 0])
    with pytest.raises(RuntimeError, match="write_starts"):
        emulated.attention_with_kv_cache(**args)


def test_unsupported_inputs_are_refused_before_any_write():
    for dtype, d, match in ((torch.float32, 64, "'q' must be float16 or bfloat16 on CUDA"),
                            (torch.bfloat16, 96, "'q' must have head_dim 64 or 128 on CUDA")):
        args = make_inputs(Case(1, 3, 2, 2, d, 10, 3, 2), dtype)
        before = args["k_cache"].clone()
        with pytest.raises(ValueError, match=match):
            emulated.attention_with_kv_cache(**args)
        assert torch.equal(args["k_cache"], before)
    args = make_inputs(Case(1, 3, 2, 2, 64, 10, 3, 2), torch.bfloat16)
    with pytest.raises(ValueError, match="'write_start' puts the write range"):
        emulated.attention_with_kv_cache(**{**args, "write_start": 8})
