"""attention_with_kv_cache on a real GPU (skipped without one; run by the GPU validation script):
flash-attn's tolerance rule against the float64 reference, cache contents, split-KV, determinism."""
import subprocess
import sys
import textwrap

import pytest
import torch

import diffusion_kernels as dk
from attention_cases import CASES, Case, check_call, clone_args, make_inputs

pytestmark = pytest.mark.cuda

DTYPES = [torch.bfloat16, torch.float16]
CUDA_CASES = [c for c in CASES if c.head_dim in (64, 128)] + [
    Case(1, 32, 32, 32, 128, 1024, 32, 512),                      # LLaDA-8B dual-cache step
    Case(4, 32, 32, 8, 128, 2048, 32, [0, 32, 1000, 2016], "left_pad"),
    Case(2, 300, 8, 2, 64, 4096, 300, 3796, "both"),
]


@pytest.fixture(params=["auto", "1"], ids=["split", "nosplit"])
def splits(request, monkeypatch):
    if request.param == "auto":
        monkeypatch.delenv("DK_ATTENTION_SPLITS", raising=False)
    else:
        monkeypatch.setenv("DK_ATTENTION_SPLITS", request.param)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CUDA_CASES, ids=Case.id)
def test_matches_reference(case, dtype, splits):
    check_call(dk.attention_with_kv_cache, make_inputs(case, dtype, device="cuda"))


def test_repeatable_bitwise():
    args = make_inputs(Case(1, 32, 32, 32, 128, 1024, 32, 512, "random"), torch.bfloat16, device="cuda")
    first = dk.attention_with_kv_cache(**clone_args(args), return_lse=True)
    for _ in range(3):
        again = dk.attention_with_kv_cache(**clone_args(args), return_lse=True)
        assert torch.equal(again[0], first[0]) and torch.equal(again[1], first[1])


def test_nan_in_masked_keys_never_leaks():
    args = make_inputs(Case(2, 12, 4, 4, 128, 700, 0, 0, "left_pad"), torch.float16, device="cuda")
    clean = dk.attention_with_kv_cache(**clone_args(args))
    dirty = clone_args(args)
    dirty["k_cache"][~args["key_padding_mask"]] = float("nan")
    dirty["v_cache"][~args["key_padding_mask"]] = float("nan")
    assert torch.equal(dk.attention_with_kv_cache(**dirty), clean)


def test_bad_write_starts_trap_on_the_device():
    """Out-of-range per-row starts on the GPU trap in the cache-write kernel (the CUDA context is
    lost afterwards, so this runs in a child process)."""
    code = textwrap.dedent("""
        import torch, diffusion_kernels as dk
        q = torch.randn(2, 4, 2, 64, device="cuda", dtype=torch.bfloat16)
        kc = torch.randn(2, 20, 2, 64, device="cuda", dtype=torch.bfloat16)
        vc = kc.clone()
        new = torch.randn(2, 4, 2, 64, device="cuda", dtype=torch.bfloat16)
        dk.attention_with_kv_cache(q, kc, vc, new, new.clone(), write_start=torch.tensor([0, 17], device="cuda"))
        torch.cuda.synchronize()
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0, "an out-of-range write_starts must fail"
