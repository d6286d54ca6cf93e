"""masked_confidence (greedy) on CPU: ours vs the pure-PyTorch reference vs LLaDA's way.

    pytest bench/bench_confidence.py --benchmark-json=bench/results/confidence.json
    python bench/summarize.py bench/results/confidence.json
"""
import pytest
import torch

import diffusion_kernels as dk
from diffusion_kernels import reference
from page_faults import CountFaults, warm_up
from research_baselines import llada_greedy_confidence

MASK_ID = 126336  # LLaDA's [MASK]
VOCAB = 126464
IMPLS = {
    "ours": dk.masked_confidence,
    "reference": reference.masked_confidence,
    "llada": llada_greedy_confidence,
}


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
@pytest.mark.parametrize("seq", [32, 256])
def test_masked_confidence(benchmark, impl, dtype, seq):
    logits = torch.randn(1, seq, VOCAB).mul_(3).to(dtype)
    x = torch.full((1, seq), MASK_ID)  # a fresh block: every position masked
    warm_up(IMPLS[impl], logits, x, MASK_ID, max_calls=10)  # to a sampler loop's steady state (page_faults.py)
    fn = CountFaults(IMPLS[impl])
    benchmark.group = f"masked_confidence [1, {seq}, {VOCAB}] {dtype}".replace("torch.", "")
    benchmark.extra_info.update(impl=impl, shape=[1, seq, VOCAB], dtype=str(dtype))
    slow = impl != "ours"
    benchmark.pedantic(fn, args=(logits, x, MASK_ID), rounds=5 if slow else 50, iterations=1)
    benchmark.extra_info["minor_faults_per_call"] = fn.per_call()
