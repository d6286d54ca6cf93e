"""attention_with_kv_cache on every backend (CPU paths, the CUDA kernels under the emulator, a real
GPU) against the float64 reference; the cache write; argument names and bad inputs."""
import os
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch

import diffusion_kernels as dk
from attention_cases import (CASES, CUDA_CASES, EMULATED_CASES, Case, check_call, clone_args, dense_block_mask,
                             make_inputs, reference_attention, sdpa_with_mask)
from diffusion_kernels import reference
from diffusion_kernels.testing import emulated
from backends import backends, on_backends
from tolerance import assert_within_torch_error

CPU_DTYPES = [torch.float32, torch.float16, torch.bfloat16]
GPU_DTYPES = [torch.bfloat16, torch.float16]

# CPU paths: the op picks the GEMM kernel (few rows per kv head, or a mask), ATen's CPU flash
# attention (every key valid) or the native kernel; DK_CPU_ATTENTION forces one where it applies
# (gemm: AVX-512 with float32, bfloat16 on AMX or widened to float32 without it; AVX2 with every
# dtype widened to float32; aten: every key valid).
# gemm-widened: bfloat16 widened to float32 GEMMs even on AMX; gemm-staged: float32 chunks of
# consecutive keys staged rather than read in place. CUDA kernels: split-KV (as the launcher
# picks: the emulator reports 132 SMs, so most small cases split) or one pass.
CPU_PATHS = ["auto", "native", "aten", "gemm", "gemm-widened", "gemm-staged"]
SPLITS = ["split", "nosplit"]
VARIANT_ENV = {
    "auto": {"DK_CPU_ATTENTION": "auto"}, "native": {"DK_CPU_ATTENTION": "native"},
    "aten": {"DK_CPU_ATTENTION": "aten"}, "gemm": {"DK_CPU_ATTENTION": "gemm"},
    "gemm-widened": {"DK_CPU_ATTENTION": "gemm", "DK_CPU_ATTENTION_WIDEN": "1"},
    "gemm-staged": {"DK_CPU_ATTENTION": "gemm", "DK_CPU_ATTENTION_STAGE": "1"},
    "split": {"DK_ATTENTION_SPLITS": None}, "nosplit": {"DK_ATTENTION_SPLITS": "1"}, "default": {},
}


GPU_SPLITS = {"emulated": SPLITS, "cuda": SPLITS}
EVERY_BACKEND = {"cpu": ["default"], **GPU_SPLITS}
INDIRECT = ["backend", "variant"]


@pytest.fixture
def variant(request, monkeypatch):
    """Sets the environment of a CPU path or a split mode (see VARIANT_ENV)."""
    for name, value in VARIANT_ENV[request.param].items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    return request.param


def masks_reach(variant):
    """Whether calls with a mask or lengths run the path under test (ATen's has no mask)."""
    return variant != "aten"


def on(backend, case, dtype):
    return make_inputs(case, dtype, device=backend.device)


# ------------------------------------------------------------------------------ vs the reference --

CASES_OF = {"cpu": (CASES, CPU_DTYPES), "emulated": (EMULATED_CASES, GPU_DTYPES), "cuda": (CUDA_CASES, GPU_DTYPES)}


@pytest.mark.parametrize("backend,variant,case,dtype", on_backends(
    {"cpu": CPU_PATHS, **GPU_SPLITS}, lambda name: [(c, d) for c in CASES_OF[name][0] for d in CASES_OF[name][1]]),
    indirect=INDIRECT)
def test_matches_reference(backend, variant, case, dtype):
    if masks_reach(variant) or case.mask == "none":
        check_call(backend.attention_with_kv_cache, on(backend, case, dtype))


@pytest.mark.parametrize("backend,variant", on_backends({"cpu": CPU_PATHS, **GPU_SPLITS}), indirect=INDIRECT)
def test_custom_scale(backend, variant):
    """CPU: one task (batch 1, one kv head, 7 rows) whose keys are split across threads and merged."""
    if backend.name == "cpu":
        case = Case(1, 7, 2, 1, 128, 3000, 7, 5, "random" if masks_reach(variant) else "none")
        check_call(backend.attention_with_kv_cache, on(backend, case, torch.float32), softmax_scale=0.3)
    else:
        case = Case(1, 9, 2, 2, 64, 130, 9, 60, "random")
        check_call(backend.attention_with_kv_cache, on(backend, case, torch.bfloat16), softmax_scale=-0.3)


@pytest.mark.parametrize("backend,variant", on_backends(EVERY_BACKEND), indirect=INDIRECT)
def test_rows_without_a_valid_key(backend, variant):
    """Row 0: length 0; row 1: mask all False; row 2: only key 130 valid (the last split)."""
    args = make_inputs(Case(3, 10, 2, 2, 64, 140, 0, 0), torch.bfloat16)
    args["key_lengths"] = torch.tensor([0, 140, 140])
    mask = torch.zeros(3, 140, dtype=torch.bool)
    mask[0] = True
    mask[2, 130] = True
    args["key_padding_mask"] = mask
    out, lse, _, _ = check_call(backend.attention_with_kv_cache, {k: v.to(backend.device) if isinstance(v, torch.Tensor)
                                                                   else v for k, v in args.items()})
    assert (out[:2] == 0).all() and torch.isneginf(lse[:2]).all()
    assert torch.isfinite(lse[2]).all()


@pytest.mark.parametrize("backend,variant,case", on_backends(EVERY_BACKEND, lambda name: [
    (Case(2, 12, 2, 2, 128, 160, 12, [40, 100], "both"),)] + ([(Case(2, 12, 4, 4, 128, 700, 0, 0, "left_pad"),)]
                                                              if name == "cuda" else [])), indirect=INDIRECT)
def test_nan_in_masked_keys_never_leaks(backend, variant, case):
    """Masked cache rows never reach the math (on CUDA they are zero-filled on their way to shared
    memory, where 0 * NaN would be NaN): NaN there gives bitwise the clean result."""
    args = on(backend, case, torch.float16)
    clean = backend.attention_with_kv_cache(**clone_args(args), return_softmax_lse=True)
    dirty = clone_args(args)
    invalid = ~args["key_padding_mask"]
    if args["key_lengths"] is not None:
        invalid |= torch.arange(case.cache_len, device=backend.device)[None, :] >= args["key_lengths"][:, None]
    if case.new_len:
        for b in range(case.batch):  # the rows about to be overwritten by k/v stay as they are
            s = args["cache_seqlens"][b]
            invalid[b, s:s + case.new_len] = False
    dirty["k_cache"][invalid] = float("nan")
    dirty["v_cache"][invalid] = float("nan")
    got = backend.attention_with_kv_cache(**dirty, return_softmax_lse=True)
    assert torch.equal(got[0], clean[0]) and torch.equal(got[1], clean[1])


def test_empty_shapes(backend):
    for b, lq, lc in [(0, 4, 6), (2, 0, 6), (2, 3, 0)]:
        q = torch.randn(b, lq, 2, 64, device=backend.device).bfloat16()
        kc = torch.randn(b, lc, 2, 64, device=backend.device).bfloat16()
        out, lse = backend.attention_with_kv_cache(q, kc, kc.clone(), return_softmax_lse=True)
        assert out.shape == q.shape and lse.shape == (b, 2, lq)
        assert (out == 0).all() and torch.isneginf(lse).all()


def test_cache_rows_outside_write_bitwise_unchanged(backend):
    args = on(backend, Case(3, 6, 2, 2, 64, 40, 6, [0, 34, 11]), torch.bfloat16)
    k0, v0 = args["k_cache"].clone(), args["v_cache"].clone()
    backend.attention_with_kv_cache(**args)
    for i, s in enumerate([0, 34, 11]):
        keep = torch.ones(40, dtype=torch.bool, device=backend.device)
        keep[s:s + 6] = False
        assert torch.equal(args["k_cache"][i, keep].view(torch.int16), k0[i, keep].view(torch.int16))
        assert torch.equal(args["v_cache"][i, keep].view(torch.int16), v0[i, keep].view(torch.int16))
        assert torch.equal(args["k_cache"][i, s:s + 6], args["k"][i])


# ------------------------------------------------------------------------------------ block rules --

@pytest.mark.parametrize("dtype", CPU_DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["decode", "in-flight", "training"])
def test_block_rules_match_sdpa_with_a_dense_mask(dtype, layout, cpu_path):
    """Every CPU path against SDPA given the mask as an explicit boolean tensor (float64, and at
    the dtype for PyTorch's own error)."""
    b, hq, hkv, d = 2, 4, 2, 64
    if layout == "training":
        lc, lq, starts, block, noisy, new = 64, 64, [0, 0], 8, 32, 64
    elif layout == "decode":      # the current block over the exact cache, rows at different blocks
        lc, lq, starts, block, noisy, new = 96, 16, [32, 64], 16, None, 16
    else:                          # three blocks in flight from an unaligned start, read only
        lc, lq, starts, block, noisy, new = 96, 40, [20, 50], 16, None, 0
    g = torch.Generator().manual_seed(len(layout))
    q = torch.randn(b, lq, hq, d, generator=g).to(dtype)
    kc, vc = (torch.randn(b, lc, hkv, d, generator=g).to(dtype) for _ in range(2))
    k, v = ((torch.randn(b, new, hkv, d, generator=g).to(dtype) if new else None) for _ in range(2))
    full_k, full_v = kc.clone(), vc.clone()
    for r, s in enumerate(starts):
        if new:
            full_k[r, s:s + new], full_v[r, s:s + new] = k[r], v[r]
    mask = dense_block_mask(starts, lq, lc, block, noisy)
    out = dk.attention_with_kv_cache(q, kc, vc, k, v, cache_seqlens=torch.tensor(starts), causal_block_size=block,
                                     noisy_length=noisy)
    assert torch.equal(kc, full_k) and torch.equal(vc, full_v)
    want = sdpa_with_mask(q.double(), full_k.double(), full_v.double(), mask)
    pt = sdpa_with_mask(q, full_k, full_v, mask)
    assert_within_torch_error(out, pt, want, what=f"{layout} ({dtype})")


def test_block_causal_cache_equals_recompute(cpu_path):
    """Exact KV reuse: prefill the (block-aligned) prompt block-causally, then decode each block over the cache
    (first without storing, then committing its K/V): every block's rows equal the rows of one
    block-causal pass over the whole sequence, and the cache ends equal to its K/V."""
    b, length, prompt, block, hq, hkv, d = 2, 80, 32, 16, 4, 2, 64
    q, k, v = torch.randn(b, length, hq, d), torch.randn(b, length, hkv, d), torch.randn(b, length, hkv, d)
    full = dk.attention_with_kv_cache(q, torch.zeros_like(k), torch.zeros_like(v), k, v, causal_block_size=block)
    kc = torch.full_like(k, float("nan"))  # rows not written yet hold garbage: never read
    vc = torch.full_like(v, float("nan"))
    pre = dk.attention_with_kv_cache(q[:, :prompt], kc, vc, k[:, :prompt], v[:, :prompt], causal_block_size=block)
    torch.testing.assert_close(pre, full[:, :prompt], rtol=1e-5, atol=1e-6)
    for s in range(prompt, length, block):
        e = min(s + block, length)
        rows = [t[:, s:e] for t in (q, k, v)]
        before = kc.clone()
        peek = dk.attention_with_kv_cache(*rows[:1], kc, vc, *rows[1:], cache_seqlens=s, causal_block_size=block,
                                          store_kv=False)
        assert torch.equal(kc.isnan(), before.isnan()) and torch.equal(kc.nan_to_num(), before.nan_to_num())
        step = dk.attention_with_kv_cache(*rows[:1], kc, vc, *rows[1:], cache_seqlens=s, causal_block_size=block)
        assert torch.equal(peek, step)
        torch.testing.assert_close(step, full[:, s:e], rtol=1e-5, atol=1e-6)
    assert torch.equal(kc, k) and torch.equal(vc, v)


def test_store_kv_false_leaves_caches_bitwise(backend):
    """store_kv=False: out and lse bitwise those of the storing call, both caches bitwise unchanged
    (NaN payloads and -0.0 included), with and without a block rule."""
    dtype = torch.bfloat16
    for block in (None, 16):
        args = on(backend, Case(2, 16, 4, 2, 64, 100, 16, [16, 70], "random"), dtype)
        args["k_cache"][0, 20] = float("nan")  # in the rows the new ones replace: restored bitwise
        args["v_cache"][1, 75] = -0.0
        if block:
            args["causal_block_size"] = block
        stored = backend.attention_with_kv_cache(**clone_args(args), return_softmax_lse=True)
        mine = clone_args(args)
        got = backend.attention_with_kv_cache(**mine, store_kv=False, return_softmax_lse=True)
        assert torch.equal(got[0], stored[0]) and torch.equal(got[1], stored[1])
        for name in ("k_cache", "v_cache", "k", "v"):
            assert torch.equal(mine[name].view(torch.int16), args[name].view(torch.int16)), name


@pytest.mark.parametrize("backend,variant", on_backends(EVERY_BACKEND), indirect=INDIRECT)
def test_keys_past_the_visible_blocks_are_never_read(backend, variant):
    """Cache rows after the last block a query of the call can see (not written yet) may hold
    NaN: bitwise the clean result."""
    args = on(backend, Case(2, 24, 2, 2, 64, 200, 24, [40, 100], "left_pad", block=32), torch.bfloat16)
    clean = backend.attention_with_kv_cache(**clone_args(args), return_softmax_lse=True)
    dirty = clone_args(args)
    for r, s in enumerate([40, 100]):
        end = (s + 24 + 31) // 32 * 32
        dirty["k_cache"][r, end:] = float("nan")
        dirty["v_cache"][r, end:] = float("nan")
    got = backend.attention_with_kv_cache(**dirty, return_softmax_lse=True)
    assert torch.equal(got[0], clean[0]) and torch.equal(got[1], clean[1])


# ------------------------------------------------------------------------------------ CUDA kernels --

GPU_ONLY = backends("emulated", "cuda")


@GPU_ONLY
def test_unaligned_rows_match_contiguous(backend):
    """Rows that are not 16-byte aligned (a head_dim window of a wider buffer) go through aligned
    copies after the write; the write itself lands in the caller's buffer."""
    b, lq, h, d, lc = 2, 9, 2, 64, 80
    dev = backend.device
    big_q = torch.randn(b, lq, h, d + 4, device=dev).bfloat16()
    big_k = torch.randn(b, lc, h, d + 4, device=dev).bfloat16()
    big_v = torch.randn(b, lc, h, d + 12, device=dev).bfloat16()
    q, kc, vc = big_q[..., 4:], big_k[..., 4:], big_v[..., 4:4 + d]
    k, v = torch.randn(b, lq, h, d, device=dev).bfloat16(), torch.randn(b, lq, h, d, device=dev).bfloat16()
    want = backend.attention_with_kv_cache(q.contiguous(), kc.contiguous(), vc.contiguous(), k, v, cache_seqlens=30,
                                           return_softmax_lse=True)
    before = big_k.clone()
    got = backend.attention_with_kv_cache(q, kc, vc, k, v, cache_seqlens=30, return_softmax_lse=True)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert torch.equal(big_k[:, 30:39, :, 4:], k) and torch.equal(big_v[:, 30:39, :, 4:4 + d], v)
    untouched = torch.ones_like(big_k, dtype=torch.bool)
    untouched[:, 30:39, :, 4:] = False
    assert torch.equal(big_k[untouched], before[untouched])


@GPU_ONLY
def test_split_and_single_pass_agree(backend, monkeypatch):
    args = on(backend, Case(1, 20, 2, 2, 128, 256, 20, 0, "random"), torch.bfloat16)
    monkeypatch.setenv("DK_ATTENTION_SPLITS", "1")
    one = backend.attention_with_kv_cache(**clone_args(args), return_softmax_lse=True)
    monkeypatch.setenv("DK_ATTENTION_SPLITS", "4")  # one 64-key tile per split
    four = backend.attention_with_kv_cache(**clone_args(args), return_softmax_lse=True)
    # Not bitwise (different accumulation orders) but within bf16 rounding of each other.
    torch.testing.assert_close(four[0], one[0], atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(four[1], one[1], atol=1e-5, rtol=1e-5)


@GPU_ONLY
def test_unsupported_inputs_are_refused_before_any_write(backend):
    for dtype, d, match in ((torch.float32, 64, "'q' must be float16 or bfloat16 on CUDA"),
                            (torch.bfloat16, 96, "'q' must have head_dim 64 or 128 on CUDA")):
        args = on(backend, Case(1, 3, 2, 2, d, 10, 3, 2), dtype)
        before = args["k_cache"].clone()
        with pytest.raises(ValueError, match=match):
            backend.attention_with_kv_cache(**args)
        assert torch.equal(args["k_cache"], before)


# One launch per step (DK_ATTENTION_LAUNCH=fused, the default: the kernel reads the new rows from
# k/v and writes them) against the separate write/swap launches: the same math on the same bits.
FUSED_CASES = [
    Case(1, 32, 4, 4, 128, 256, 32, 96),                          # dual cache, LLaDA block
    Case(2, 33, 2, 1, 64, 200, 33, [0, 167], "random"),           # GQA, per-row starts, 2 row tiles
    Case(1, 5, 2, 2, 128, 100, 5, 95, "both"),                    # mask and lengths, write at the end
    Case(2, 40, 2, 1, 64, 200, 40, [64, 130], "left_pad", block=32),
]


@GPU_ONLY
@pytest.mark.parametrize("case", FUSED_CASES, ids=Case.id)
def test_fused_step_bitwise_equals_separate_launches(backend, case, monkeypatch):
    """out, lse and both caches bitwise (NaN payloads included) for store_kv True and False, split
    and one pass; NaN in the cache rows the new ones replace never reaches the fused kernel."""
    args = on(backend, case, torch.bfloat16)
    starts = torch.as_tensor(args["cache_seqlens"]).expand(case.batch).tolist()
    for b, s in enumerate(starts):
        args["k_cache"][b, s] = float("nan")
        args["v_cache"][b, s + case.new_len - 1] = float("nan")
    for splits, store in [(None, True), (None, False), ("1", True), ("1", False)]:
        if splits is None:
            monkeypatch.delenv("DK_ATTENTION_SPLITS", raising=False)
        else:
            monkeypatch.setenv("DK_ATTENTION_SPLITS", splits)
        got = {}
        for launch in ("fused", "separate"):
            monkeypatch.setenv("DK_ATTENTION_LAUNCH", launch)
            mine = clone_args(args)
            out, lse = backend.attention_with_kv_cache(**mine, store_kv=store, return_softmax_lse=True)
            got[launch] = (out, lse, mine["k_cache"], mine["v_cache"])
        assert torch.isfinite(got["fused"][1]).any()
        for name, x, y in zip(("out", "lse", "k_cache", "v_cache"), got["fused"], got["separate"]):
            same = torch.equal(x.view(torch.int16), y.view(torch.int16)) if x.dtype == torch.bfloat16 else \
                torch.equal(x.view(torch.int32), y.view(torch.int32))
            assert same, f"{name} differs (splits={splits}, store_kv={store})"


@GPU_ONLY
def test_unknown_launch_mode_is_refused_before_any_write(backend, monkeypatch):
    monkeypatch.setenv("DK_ATTENTION_LAUNCH", "both")
    args = on(backend, Case(1, 3, 2, 2, 64, 10, 3, 2), torch.bfloat16)
    before = args["k_cache"].clone()
    with pytest.raises((RuntimeError, ValueError), match="DK_ATTENTION_LAUNCH must be fused or separate"):
        backend.attention_with_kv_cache(**args)
    assert torch.equal(args["k_cache"], before)


ORDERS = [("forward", 0), ("reverse", 0), ("random", 1), ("random", 2), ("random", 3)]


@pytest.mark.emulated
@pytest.mark.parametrize("splits", ["auto", "1"])
def test_bitwise_identical_across_resume_orders(splits, monkeypatch):
    if splits == "1":
        monkeypatch.setenv("DK_ATTENTION_SPLITS", "1")
    else:
        monkeypatch.delenv("DK_ATTENTION_SPLITS", raising=False)
    args = make_inputs(Case(2, 17, 2, 1, 64, 150, 17, [3, 120], "both"), torch.bfloat16)
    results = []
    for order, seed in ORDERS:
        mine = clone_args(args)
        with emulated.resume_order(order, seed):
            out, lse = emulated.attention_with_kv_cache(**mine, return_softmax_lse=True)
        results.append((out, lse, mine["k_cache"], mine["v_cache"]))
    for (order, seed), got in zip(ORDERS[1:], results[1:]):
        for name, x, y in zip(("out", "lse", "k_cache", "v_cache"), got, results[0]):
            assert torch.equal(x, y), f"{name} differs in order {order}/{seed}"


@pytest.mark.cuda
def test_repeatable_bitwise():
    args = make_inputs(Case(1, 32, 32, 32, 128, 1024, 32, 512, "random"), torch.bfloat16, device="cuda")
    first = dk.attention_with_kv_cache(**clone_args(args), return_softmax_lse=True)
    for _ in range(3):
        again = dk.attention_with_kv_cache(**clone_args(args), return_softmax_lse=True)
        assert torch.equal(again[0], first[0]) and torch.equal(again[1], first[1])


# --------------------------------------------------------------------- out-of-range cache_seqlens --

@pytest.mark.parametrize("starts", [[0, 17], [-1, 0]], ids=["later-row", "first-row"])
def test_bad_row_start_writes_no_row(backend, starts):
    """One out-of-range row and no row is written, the earlier ones neither. Starts the host can
    read are refused with a ValueError; CUDA starts (checked by the kernels, no host sync) poison
    the call's outputs and set write_status, and the process stays usable."""
    args = on(backend, Case(2, 4, 2, 2, 64, 20, 4, 0), torch.bfloat16)
    k0, v0 = args["k_cache"].clone(), args["v_cache"].clone()
    args["cache_seqlens"] = torch.tensor(starts, device=backend.device)
    status = torch.zeros(1, dtype=torch.int32, device=backend.device)
    if backend.name == "cuda":
        out, lse = backend.attention_with_kv_cache(**args, return_softmax_lse=True, write_status=status)
        assert torch.isnan(out).all() and torch.isnan(lse).all() and status.item() == 1
    else:
        with pytest.raises(ValueError, match=r"'cache_seqlens' puts the write range .* of batch row "
                                             f"{0 if starts[0] < 0 else 1} outside the cache rows \\[0, 20\\)"):
            backend.attention_with_kv_cache(**args, write_status=status)
        assert status.item() == 0
    assert torch.equal(args["k_cache"], k0) and torch.equal(args["v_cache"], v0)
    args["cache_seqlens"] = torch.tensor([0, 16], device=backend.device)
    check_call(backend.attention_with_kv_cache, args)


@pytest.mark.emulated
@pytest.mark.parametrize("splits", ["auto", "1"])
@pytest.mark.parametrize("launch,store", [("fused", True), ("fused", False), ("separate", True), ("separate", False)])
def test_kernels_check_every_row_before_writing(splits, launch, store, monkeypatch):
    """The CUDA kernels themselves (the registered emulated op, without the wrapper's host check):
    a bad later row stops the earlier rows' write too, out and lse are NaN (written by the kernels:
    the debug poison is off), write_status becomes 1 and stays 1 across later good calls; with
    store_kv=False nothing is ever written. In one launch (DK_ATTENTION_LAUNCH=fused) and several."""
    monkeypatch.setenv("DK_POISON_OUTPUTS", "0")
    monkeypatch.setenv("DK_ATTENTION_LAUNCH", launch)
    if splits == "1":
        monkeypatch.setenv("DK_ATTENTION_SPLITS", "1")
    else:
        monkeypatch.delenv("DK_ATTENTION_SPLITS", raising=False)  # 4 key tiles: split, then merged
    op = torch.ops.dk_emulated.attention_with_kv_cache.default
    a = make_inputs(Case(2, 4, 2, 2, 64, 200, 4, 0), torch.bfloat16)
    k0, v0 = a["k_cache"].clone(), a["v_cache"].clone()
    status = torch.zeros(1, dtype=torch.int32)
    out, lse = op(a["q"], a["k_cache"], a["v_cache"], a["k"], a["v"], 0, torch.tensor([0, 197]), None, None, None,
                  True, status, 0, 0, store)
    assert torch.equal(a["k_cache"], k0) and torch.equal(a["v_cache"], v0)
    assert torch.isnan(out).all() and torch.isnan(lse).all() and status.item() == 1
    out, lse = op(a["q"], a["k_cache"], a["v_cache"], a["k"], a["v"], 0, torch.tensor([0, 196]), None, None, None,
                  True, status, 0, 0, store)
    assert torch.isfinite(lse).all() and status.item() == 1
    if store:
        assert torch.equal(a["k_cache"][1, 196:], a["k"][1]) and torch.equal(a["v_cache"][0, :4], a["v"][0])
    else:
        assert torch.equal(a["k_cache"], k0) and torch.equal(a["v_cache"], v0)


@pytest.mark.cuda
def test_bad_device_starts_keep_the_context_usable():
    """What used to trap (and lose the CUDA context) now poisons one call; run in a child process
    so a regression cannot take the test session's context with it."""
    code = textwrap.dedent("""
        import torch, diffusion_kernels as dk
        q = torch.randn(2, 4, 2, 64, device="cuda", dtype=torch.bfloat16)
        kc = torch.randn(2, 20, 2, 64, device="cuda", dtype=torch.bfloat16)
        vc, k0 = kc.clone(), kc.clone()
        new = torch.randn(2, 4, 2, 64, device="cuda", dtype=torch.bfloat16)
        out = dk.attention_with_kv_cache(q, kc, vc, new, new.clone(), cache_seqlens=torch.tensor([0, 17], device="cuda"))
        torch.cuda.synchronize()
        assert torch.isnan(out).all() and torch.equal(kc, k0)
        assert (torch.ones(4, device="cuda") * 2).sum().item() == 8
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


# -------------------------------------------------------------------------------- CPU kernel paths --

@pytest.fixture(params=CPU_PATHS)
def cpu_path(request, monkeypatch):
    for name, value in VARIANT_ENV[request.param].items():
        monkeypatch.setenv(name, value)
    return request.param


@pytest.mark.parametrize("isa", ["base", "v3", "v4"])
@pytest.mark.parametrize("dtype", CPU_DTYPES, ids=str)
def test_every_cpu_isa_build(dtype, isa, monkeypatch):
    monkeypatch.setenv("DK_CPU_ISA", isa)
    check_call(dk.attention_with_kv_cache, make_inputs(Case(2, 9, 4, 2, 64, 90, 9, [3, 81], "random"), dtype))


@pytest.mark.parametrize("dtype", CPU_DTYPES, ids=str)
def test_non_contiguous(dtype, cpu_path):
    """Caches as a window of a bigger buffer (head and row strides), q from a [B, H, L, D] tensor."""
    b, lq, h, d, lc = 2, 9, 4, 64, 50
    big_k = torch.randn(b, lc + 10, h + 2, d).to(dtype)
    big_v = torch.randn(b, h + 2, lc + 10, d).to(dtype)
    q = torch.randn(b, h, lq, d).to(dtype).transpose(1, 2)
    k = torch.randn(b, h, lq, d).to(dtype).transpose(1, 2)
    v = torch.randn(b, lq, h, 2 * d).to(dtype)[..., ::2].contiguous()
    args = dict(q=q, k_cache=big_k[:, 3:3 + lc, 1:1 + h], v_cache=big_v[:, 1:1 + h, 5:5 + lc].transpose(1, 2),
                k=k, v=v, cache_seqlens=20,
                key_padding_mask=(torch.rand(lc, b) < 0.8).t() if masks_reach(cpu_path) else None,
                key_lengths=None)
    assert not args["k_cache"].is_contiguous() and not args["v_cache"].is_contiguous()
    check_call(dk.attention_with_kv_cache, args)
    # The write lands in the underlying buffers, and nowhere else.
    before = big_k.clone()
    dk.attention_with_kv_cache(q, args["k_cache"], args["v_cache"], k, v, cache_seqlens=20)
    assert torch.equal(big_k[:, 23:32, 1:1 + h], k)
    untouched = torch.ones_like(big_k, dtype=torch.bool)
    untouched[:, 23:32, 1:1 + h] = False
    assert torch.equal(big_k[untouched], before[untouched])


# Each dtype's forms: float32 read in place or staged; bfloat16 as the CPU runs it (AMX, or
# widened without it) or widened.
GEMM_FORMS = [(torch.float32, "default"), (torch.float32, "stage"), (torch.bfloat16, "default"),
              (torch.bfloat16, "widen"), (torch.float16, "default")]


@pytest.mark.parametrize("dtype,form", GEMM_FORMS, ids=lambda v: str(v))
@pytest.mark.parametrize("case", [
    Case(1, 33, 8, 1, 64, 257, 33, 224),                   # 264 stacked rows (9 tiles), odd last chunk
    Case(2, 5, 4, 2, 128, 300, 5, [0, 295], "lengths"),    # a row with few or no keys
    Case(3, 31, 2, 2, 128, 600, 0, 0, "random"),           # non-consecutive keys
    Case(1, 1, 2, 2, 64, 513, 1, 512, "left_pad"),         # one query, chunk boundary + 1
    Case(2, 7, 4, 2, 20, 150, 7, [0, 100], "random"),      # head_dim not a multiple of 8 (AVX2 tails)
], ids=Case.id)
def test_gemm_kernel_edges(case, dtype, form, monkeypatch):
    """The brgemm kernel's tiles and chunks: row tiles past 32, chunks of 128 keys with a tail,
    odd key counts (AMX bf16 pairs keys), non-consecutive keys (staged even in float32), a
    negative scale; each form: bf16 widened to float32, float32 staged instead of read in place."""
    monkeypatch.setenv("DK_CPU_ATTENTION", "gemm")
    monkeypatch.setenv("DK_CPU_ATTENTION_WIDEN", "1" if form == "widen" else "0")
    monkeypatch.setenv("DK_CPU_ATTENTION_STAGE", "1" if form == "stage" else "0")
    args = make_inputs(case, dtype)
    check_call(dk.attention_with_kv_cache, args)
    check_call(dk.attention_with_kv_cache, args, softmax_scale=-0.2)


def test_no_cache_equals_prefix_equals_dual(cpu_path):
    """With caches holding the exact K/V, the three Fast-dLLM modes give the no-cache rows."""
    b, length, hq, hkv, d, start, block = 2, 96, 4, 2, 64, 40, 16
    q = torch.randn(b, length, hq, d)
    k = torch.randn(b, length, hkv, d)
    v = torch.randn(b, length, hkv, d)
    buf_k, buf_v = torch.zeros_like(k), torch.zeros_like(v)
    full = dk.attention_with_kv_cache(q, buf_k, buf_v, k, v, cache_seqlens=0)
    assert torch.equal(buf_k, k) and torch.equal(buf_v, v)

    # Prefix cache: queries = block + suffix; the cache holds the prefix, the rest is written.
    pk, pv = torch.zeros_like(k), torch.zeros_like(v)
    pk[:, :start], pv[:, :start] = k[:, :start], v[:, :start]
    prefix = dk.attention_with_kv_cache(q[:, start:], pk, pv, k[:, start:], v[:, start:], cache_seqlens=start)
    torch.testing.assert_close(prefix, full[:, start:], rtol=1e-5, atol=1e-6)

    # Dual cache: queries = the block; the cache holds everything, stale values in the block rows.
    dk_, dv_ = k.clone(), v.clone()
    dk_[:, start:start + block] = 123.0
    dual = dk.attention_with_kv_cache(q[:, start:start + block], dk_, dv_, k[:, start:start + block],
                                      v[:, start:start + block], cache_seqlens=start)
    torch.testing.assert_close(dual, full[:, start:start + block], rtol=1e-5, atol=1e-6)
    assert torch.equal(dk_, k)


def gemm_runs(dtype):
    """Whether DK_CPU_ATTENTION=gemm runs the GEMM kernel for dtype here (else it falls back)."""
    capability, isa = torch.backends.cpu.get_cpu_capability(), os.environ.get("DK_CPU_ISA")
    if isa == "base" or not capability.startswith(("AVX2", "AVX512")):
        return False
    if capability.startswith("AVX512") and isa != "v3":
        return dtype != torch.float16  # float32, and bfloat16 on AMX or widened to float32
    return True  # the AVX2 build: every dtype widened to float32


@pytest.mark.parametrize("dtype", CPU_DTYPES, ids=str)
def test_left_padding_invariance(dtype, cpu_path):
    """A row's output is unchanged when left padding (any finite values) plus its mask is added:
    bitwise on the native and brgemm kernels (the same keys in the same chunks); the unpadded call
    may take ATen's path, which rounds differently."""
    lq, h, d, length, pad = 8, 4, 64, 50, 13
    q = torch.randn(1, lq, h, d).to(dtype)
    k, v = torch.randn(1, length, h, d).to(dtype), torch.randn(1, length, h, d).to(dtype)
    kn, vn = torch.randn(1, lq, h, d).to(dtype), torch.randn(1, lq, h, d).to(dtype)
    plain = dk.attention_with_kv_cache(q, k.clone(), v.clone(), kn, vn, cache_seqlens=30)

    # Batch of two: row 0 the same sequence left-padded, row 1 something else entirely.
    pk = torch.randn(2, pad + length, h, d).mul(100).to(dtype)
    pv = torch.randn(2, pad + length, h, d).mul(100).to(dtype)
    pk[0, pad:], pv[0, pad:] = k[0], v[0]
    mask = torch.ones(2, pad + length, dtype=torch.bool)
    mask[0, :pad] = False
    padded = dk.attention_with_kv_cache(torch.cat([q, torch.randn_like(q)]), pk, pv,
                                        torch.cat([kn, torch.randn_like(kn)]), torch.cat([vn, torch.randn_like(vn)]),
                                        cache_seqlens=torch.tensor([pad + 30, 4]), key_padding_mask=mask)
    if cpu_path == "native" or (cpu_path.startswith("gemm") and gemm_runs(dtype)):
        torch.testing.assert_close(padded[0], plain[0], rtol=0, atol=0)
    else:
        # ATen's path rounds P to the dtype before P @ V, the native kernel keeps it in float32:
        # each result is within the suite's bound of the float64 truth, so they are within twice it.
        args = dict(q=q, k_cache=k, v_cache=v, k=kn, v=vn, cache_seqlens=30, key_padding_mask=None, key_lengths=None)
        ref = reference_attention(args, dtype=torch.float64)[0]
        pt = reference_attention(args, upcast=False)[0]
        assert_within_torch_error(padded[0], pt[0], ref[0])
        assert_within_torch_error(plain[0], pt[0], ref[0])


# ---------------------------------------------------------------------------------- argument names --

def _names_args():
    return make_inputs(Case(2, 4, 4, 2, 64, 12, 4, [1, 8], "both"), torch.float32)


def test_flash_attn_names_and_return_types():
    a = _names_args()
    out = dk.attention_with_kv_cache(**clone_args(a))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 4, 4, 64)
    out2, lse, _, _ = check_call(dk.attention_with_kv_cache, a, softmax_scale=0.2)  # the new names throughout
    assert lse.shape == (2, 4, 4) and out2.shape == out.shape
    with pytest.raises(TypeError, match="_op"):
        dk.attention_with_kv_cache(**clone_args(a), _op=torch.ops.diffusion_kernels.attention_with_kv_cache.default)


def test_deprecated_names_warn_and_agree():
    a = _names_args()
    new = clone_args(a)
    want = dk.attention_with_kv_cache(**new, softmax_scale=0.2, return_softmax_lse=True)
    old = clone_args(a)
    old_kw = dict(q=old["q"], k_cache=old["k_cache"], v_cache=old["v_cache"], k_new=old["k"], v_new=old["v"],
                  write_start=old["cache_seqlens"], key_padding_mask=old["key_padding_mask"],
                  key_lengths=old["key_lengths"], scale=0.2, return_lse=True)
    with pytest.warns(DeprecationWarning) as record:
        got = dk.attention_with_kv_cache(**old_kw)
    messages = " ".join(str(w.message) for w in record)
    for old_name, new_name in (("k_new", "k"), ("v_new", "v"), ("write_start", "cache_seqlens"),
                               ("scale", "softmax_scale"), ("return_lse", "return_softmax_lse")):
        assert f"'{old_name}' is deprecated: use '{new_name}'" in messages
    assert all(w.filename == __file__ for w in record), "the warning must point at the caller"
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert torch.equal(old["k_cache"], new["k_cache"]) and torch.equal(old["v_cache"], new["v_cache"])

    # Today's positional order: the 6th argument is write_start, then mask, lengths, scale, return_lse.
    old = clone_args(a)
    with pytest.warns(DeprecationWarning) as record:
        got = dk.attention_with_kv_cache(old["q"], old["k_cache"], old["v_cache"], old["k"], old["v"],
                                         old["cache_seqlens"], old["key_padding_mask"], old["key_lengths"], 0.2, True)
    assert "passing 'write_start' positionally is deprecated: pass cache_seqlens=" in str(record[0].message)
    assert len(record) == 5
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


@pytest.mark.parametrize("call", ["k", "cache_seqlens", "positional", "scale", "return_lse"])
def test_option_under_both_names_is_a_type_error(call):
    a = _names_args()
    k0 = a["k_cache"].clone()
    pos = (a["q"], a["k_cache"], a["v_cache"], a["k"], a["v"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(TypeError, match="twice"):
            if call == "k":
                dk.attention_with_kv_cache(*pos, k_new=a["k"])
            elif call == "cache_seqlens":
                dk.attention_with_kv_cache(*pos, cache_seqlens=a["cache_seqlens"], write_start=a["cache_seqlens"])
            elif call == "positional":
                dk.attention_with_kv_cache(*pos, a["cache_seqlens"], cache_seqlens=a["cache_seqlens"])
            elif call == "scale":
                dk.attention_with_kv_cache(*pos, softmax_scale=0.1, scale=0.1)
            else:
                dk.attention_with_kv_cache(*pos, return_softmax_lse=True, return_lse=True)
    assert torch.equal(a["k_cache"], k0)
    with pytest.raises(TypeError, match="at most 10 positional"):
        dk.attention_with_kv_cache(*pos, 0, None, None, None, False, None)


# -------------------------------------------------------------------------------------- bad inputs --

class TestBadInputs:
    def args(self, **over):
        a = dict(q=torch.randn(2, 4, 4, 64), k_cache=torch.randn(2, 10, 2, 64), v_cache=torch.randn(2, 10, 2, 64),
                 k=torch.randn(2, 4, 2, 64), v=torch.randn(2, 4, 2, 64), cache_seqlens=0)
        a.update(over)
        return a

    def raises(self, match, exc=ValueError, **over):
        a = self.args(**over)
        before = {n: t.clone() for n, t in a.items() if isinstance(t, torch.Tensor) and t.device.type != "meta"}
        with pytest.raises(exc, match=match):
            dk.attention_with_kv_cache(**a)
        for n, t in before.items():  # a refused call changes no input
            assert torch.equal(a[n], t), f"'{n}' changed"

    def test_write_range_outside_cache(self):
        self.raises(r"'cache_seqlens'.*\[7, 11\).*\[0, 10\)", cache_seqlens=7)
        self.raises(r"'cache_seqlens'.*\[-1, 3\)", cache_seqlens=-1)
        self.raises(r"'cache_seqlens'.*\[8, 12\) of batch row 1", cache_seqlens=torch.tensor([0, 8]))
        self.raises(r"'cache_seqlens'.*batch row 0", cache_seqlens=torch.tensor([-2, 0]))
        self.raises(r"'cache_seqlens'.*\[8, 12\) of batch row 1", cache_seqlens=torch.tensor([0, 8], dtype=torch.int32))
        self.raises(r"'cache_seqlens'.*int64 range", cache_seqlens=2**63)

    def test_non_integer_positions_are_type_errors(self):
        self.raises(r"'cache_seqlens'.*integer.*float", TypeError, cache_seqlens=torch.tensor([0.0, 1.0]))
        self.raises(r"'cache_seqlens'.*integer.*bool", TypeError, cache_seqlens=torch.tensor([True, False]))
        self.raises(r"'cache_seqlens'.*int", TypeError, cache_seqlens=1.0)
        self.raises(r"'key_lengths'.*integer", TypeError, key_lengths=torch.ones(2))
        self.raises(r"'key_lengths'.*integer", TypeError, key_lengths=[4, 4])

    def test_dtypes(self):
        self.raises(r"'q'.*float32, float16 or bfloat16.*Double", q=torch.randn(2, 4, 4, 64, dtype=torch.float64))
        self.raises(r"'k_cache'.*dtype of 'q'", k_cache=torch.randn(2, 10, 2, 64).half())
        self.raises(r"'v'.*dtype of 'q'", v=torch.randn(2, 4, 2, 64).bfloat16())
        self.raises(r"'key_padding_mask'.*bool", key_padding_mask=torch.ones(2, 10))
        self.raises(r"'write_status'.*one-element int32", write_status=torch.zeros(1))
        self.raises(r"'q' must be a tensor", TypeError, q=[1.0])

    def test_shapes(self):
        self.raises(r"'q'.*4 dimensions", q=torch.randn(4, 4, 64))
        self.raises(r"'k_cache'.*heads_kv, head_dim\].*batch = 2", k_cache=torch.randn(3, 10, 2, 64))
        self.raises(r"'v_cache'.*shape of 'k_cache'", v_cache=torch.randn(2, 11, 2, 64))
        self.raises(r"'k_cache'.*divides heads_q = 4", k_cache=torch.randn(2, 10, 3, 64), v_cache=torch.randn(2, 10, 3, 64),
                    k=None, v=None)
        self.raises(r"'k'.*new_len, heads_kv", k=torch.randn(2, 4, 1, 64))
        self.raises(r"'v'.*shape of 'k'", v=torch.randn(2, 5, 2, 64))
        self.raises(r"'key_padding_mask'.*\[2, 10\]", key_padding_mask=torch.ones(2, 9, dtype=torch.bool))
        self.raises(r"'key_lengths'.*\[2\]", key_lengths=torch.ones(3, dtype=torch.long))
        self.raises(r"'cache_seqlens'.*\[2\]", cache_seqlens=torch.tensor([0, 0, 0]))

    def test_meta_tensors_are_shape_checked(self):
        meta = dict(device="meta")
        out = dk.attention_with_kv_cache(**self.args(**{n: torch.empty(t.shape, **meta) for n, t in self.args().items()
                                                        if isinstance(t, torch.Tensor)}))
        assert out.shape == (2, 4, 4, 64) and out.device.type == "meta"
        good = {n: torch.empty(t.shape, **meta) for n, t in self.args().items() if isinstance(t, torch.Tensor)}
        for match, over in ((r"'q'.*4 dimensions", dict(q=torch.empty(4, 4, 64, **meta))),
                            (r"'k_cache'.*divides heads_q", dict(k_cache=torch.empty(2, 10, 3, 64, **meta),
                                                                 v_cache=torch.empty(2, 10, 3, 64, **meta))),
                            (r"'k'.*\[batch, new_len, heads_kv", dict(k=torch.empty(2, 4, 1, 64, **meta))),
                            (r"'v'.*shape of 'k'", dict(v=torch.empty(2, 5, 2, 64, **meta))),
                            (r"'cache_seqlens'.*\[7, 11\)", dict(cache_seqlens=7)),
                            (r"'key_padding_mask'.*\[2, 10\]", dict(key_padding_mask=torch.empty(2, 9, dtype=torch.bool,
                                                                                               **meta)))):
            with pytest.raises(ValueError, match=match):
                dk.attention_with_kv_cache(**{**good, "cache_seqlens": 0, **over})

    def test_k_missing_v(self):
        self.raises(r"'v'.*together with 'k'", v=None)

    def test_last_dim_not_contiguous(self):
        self.raises(r"'q'.*contiguous last dimension", q=torch.randn(2, 4, 64, 4).transpose(2, 3))

    def test_aliasing(self):
        kc = torch.randn(2, 10, 2, 64)
        self.raises(r"'k_cache'.*must not share memory with 'v_cache'", k_cache=kc, v_cache=kc)
        self.raises(r"'k' must not share memory with 'k_cache'", k_cache=kc, k=kc, v=torch.randn(2, 10, 2, 64))
        buf = torch.randn(2 * 10 * 2 * 64)
        self.raises(r"'q' must not share memory with 'k_cache'", q=buf[:2 * 4 * 4 * 64].view(2, 4, 4, 64),
                    k_cache=buf.view(2, 10, 2, 64))

    def test_new_rows_inside_the_cache(self):
        """k/v as views of the rows they are written into (the result would depend on the order)."""
        kc, vc = torch.randn(2, 10, 2, 64), torch.randn(2, 10, 2, 64)
        self.raises(r"'k' must not share memory with 'k_cache'", k_cache=kc, v_cache=vc, k=kc[:, 2:6], cache_seqlens=3)
        self.raises(r"'v' must not share memory with 'k_cache'", k_cache=kc, v_cache=vc, v=kc[:, 5:9], cache_seqlens=3)
        self.raises(r"'v' must not share memory with 'v_cache'", k_cache=kc, v_cache=vc, v=vc[:, :, :, :].narrow(1, 0, 4))
        # Disjoint views of one buffer are fine: rows past the cache, a fused QKV projection.
        buf = torch.randn(2, 14, 2, 64)
        dk.attention_with_kv_cache(**self.args(k_cache=buf[:, :10], k=buf[:, 10:]))
        qkv = torch.randn(2, 10, 4 + 2 + 2, 64)
        q, k, v = qkv.split([4, 2, 2], dim=2)
        want = dk.attention_with_kv_cache(q.clone(), k.clone(), v.clone())
        assert torch.equal(dk.attention_with_kv_cache(q, k, v), want)
        kv = torch.randn(2, 10, 2, 2, 64)
        dk.attention_with_kv_cache(**self.args(k_cache=kv[:, :, 0], v_cache=kv[:, :, 1]))

    def test_caches_with_overlapping_elements(self):
        self.raises(r"'k_cache'.*overlapping elements", k_cache=torch.randn(1, 10, 2, 64).expand(2, 10, 2, 64))
        self.raises(r"'v_cache'.*overlapping elements", v_cache=torch.randn(2, 10, 1, 64).expand(2, 10, 2, 64))
        self.raises(r"'k_cache'.*overlapping elements", k_cache=torch.randn(4000).as_strided((2, 10, 2, 64), (1280, 64, 1, 1)))

    def test_softmax_scale(self):
        self.raises(r"'softmax_scale'.*finite", softmax_scale=float("inf"))
        self.raises(r"'softmax_scale'.*finite", softmax_scale=float("nan"))
        self.raises(r"'softmax_scale'.*finite in float32", softmax_scale=1e39)
        self.raises(r"'softmax_scale'.*number", TypeError, softmax_scale=True)
        self.raises(r"'softmax_scale'.*number", TypeError, softmax_scale="0.1")

    def test_device_mismatch(self):
        with pytest.raises((ValueError, RuntimeError), match="'k_cache'.*same device as 'q'"):
            dk.attention_with_kv_cache(**self.args(q=torch.randn(2, 4, 4, 64, device="meta")))
        self.raises(r"'cache_seqlens' must be on the device of 'q' \(cpu\) or on the CPU, got meta",
                    cache_seqlens=torch.zeros(2, dtype=torch.long, device="meta"))
        self.raises(r"'key_lengths' must be on the same device as 'q'", key_lengths=torch.zeros(2, dtype=torch.long,
                                                                                                 device="meta"))

    @pytest.mark.emulated
    def test_emulated_device_mismatch(self):
        for name in ("q", "k_cache", "v", "key_padding_mask"):
            a = self.args(q=torch.randn(2, 4, 4, 64).bfloat16(), k_cache=torch.randn(2, 10, 2, 64).bfloat16(),
                          v_cache=torch.randn(2, 10, 2, 64).bfloat16(), k=torch.randn(2, 4, 2, 64).bfloat16(),
                          v=torch.randn(2, 4, 2, 64).bfloat16(), key_padding_mask=torch.ones(2, 10, dtype=torch.bool))
            a[name] = torch.empty(a[name].shape, dtype=a[name].dtype, device="meta")
            with pytest.raises(ValueError, match="'k_cache' must be on the same device as 'q'" if name == "q"
                               else f"'{name}' must be on the same device as 'q'"):
                emulated.attention_with_kv_cache(**a)


# ----------------------------------------------------------------------------- torch integration --

def _opcheck_args(return_lse, per_row):
    a = make_inputs(Case(2, 5, 4, 2, 64, 16, 5, [3, 11] if per_row else 4, "both"), torch.bfloat16)
    ws = a["cache_seqlens"]
    return (a["q"], a["k_cache"], a["v_cache"], a["k"], a["v"], 0 if per_row else ws, ws if per_row else None,
            a["key_padding_mask"], a["key_lengths"], None, return_lse, torch.zeros(1, dtype=torch.int32))


@pytest.mark.parametrize("per_row", [False, True])
@pytest.mark.parametrize("return_lse", [False, True])
def test_opcheck(return_lse, per_row):
    torch.library.opcheck(torch.ops.diffusion_kernels.attention_with_kv_cache.default, _opcheck_args(return_lse, per_row))


def test_torch_compile_fullgraph_matches_eager():
    def step(q, kc, vc, k, v, mask):
        out, lse = dk.attention_with_kv_cache(q, kc, vc, k, v, cache_seqlens=3, key_padding_mask=mask,
                                              return_softmax_lse=True)
        return out * 2, lse

    args = make_inputs(Case(2, 5, 4, 2, 64, 16, 5, 3, "random"), torch.float32)
    eager_args, comp_args = clone_args(args), clone_args(args)
    names = ["q", "k_cache", "v_cache", "k", "v", "key_padding_mask"]
    want = step(*[eager_args[n] for n in names])
    got = torch.compile(step, fullgraph=True)(*[comp_args[n] for n in names])
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert torch.equal(comp_args["k_cache"], eager_args["k_cache"]), "the in-place cache write was lost"
    assert torch.equal(comp_args["v_cache"], eager_args["v_cache"])


def test_reference_rejects_out_of_range_write():
    args = make_inputs(Case(1, 4, 2, 2, 64, 6, 4, 3), torch.float32)
    with pytest.raises(ValueError, match="outside the cache"):
        reference.attention_with_kv_cache(args["q"], args["k_cache"], args["v_cache"], args["k"], args["v"], 3)


# CPU: enough stacked GQA rows per kv head (g * q_len) that the op hands them to ATen's flash
# attention, whose lse comes back [batch, heads_kv, g * q_len] and not always contiguous.
# (q shape, cache shape, new rows, cache_seqlens, dtype)
FLASH_PATH_CASES = [
    ((1, 129, 4, 64), (1, 96, 2, 64), 0, 0, torch.float32),
    ((1, 129, 4, 64), (1, 96, 2, 64), 7, 10, torch.float32),
    ((2, 70, 8, 32), (2, 50, 2, 32), 5, 45, torch.float32),
    ((1, 40, 4, 64), (1, 96, 2, 64), 0, 0, torch.bfloat16),
    ((1, 40, 4, 64), (1, 96, 2, 64), 3, 0, torch.bfloat16),
]


@pytest.mark.parametrize("forced", [None, "aten"])
@pytest.mark.parametrize("q_shape,cache_shape,new_len,start,dtype", FLASH_PATH_CASES)
def test_cpu_flash_path_gqa_lse(monkeypatch, forced, q_shape, cache_shape, new_len, start, dtype):
    if forced is not None:
        monkeypatch.setenv("DK_CPU_ATTENTION", forced)
    g = torch.Generator().manual_seed(sum(q_shape) + new_len)
    b, _, hkv, d = cache_shape
    q, k_cache, v_cache = (torch.randn(s, generator=g).to(dtype) for s in (q_shape, cache_shape, cache_shape))
    k, v = ((torch.randn(b, new_len, hkv, d, generator=g).to(dtype) if new_len else None) for _ in range(2))
    kc, vc = k_cache.clone(), v_cache.clone()
    out, lse = dk.attention_with_kv_cache(q, kc, vc, k, v, cache_seqlens=start, return_softmax_lse=True)

    for cache, new in ((k_cache, k), (v_cache, v)):
        if new is not None:
            cache[:, start:start + new_len] = new
    assert torch.equal(kc, k_cache) and torch.equal(vc, v_cache)
    ref_out, ref_lse = reference.attention_with_kv_cache(q.double(), k_cache.double(), v_cache.double(), return_lse=True)
    pt_out, pt_lse = reference.attention_with_kv_cache(q, k_cache, v_cache, return_lse=True, upcast=False)
    assert lse.shape == (q_shape[0], q_shape[2], q_shape[1]) and lse.dtype == torch.float32
    assert_within_torch_error(out, pt_out, ref_out, what="out")
    assert_within_torch_error(lse, pt_lse, ref_lse, atol=1e-5, what="lse")
