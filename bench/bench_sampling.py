"""masked_confidence with sampling on CPU (torch threads = 2, bench/conftest.py): ours vs LLaDA's
way (add_gumbel_noise in float64 + softmax + gather) and Dream's sample_tokens (top_p 0.95,
entropy), plus this machine's read bandwidth measured in the same run.

    pytest bench/bench_sampling.py --benchmark-json=bench/results/sampling.json
    python bench/summarize.py bench/results/sampling.json
"""
import pytest
import torch

import diffusion_kernels as dk
from page_faults import CountFaults, warm_up
from research_baselines import dream_sample_tokens, llada_greedy_confidence, llada_sample_confidence

MASK_ID = 126336
SHAPES = [(1, 32, 126464), (8, 32, 126464), (1, 256, 152064)]
DREAM_T = 0.2  # Dream's README example: temperature 0.2, top_p 0.95, alg="entropy"

CASES = {
    # name: {impl: callable(logits, x)}
    "greedy": {
        "ours": lambda l, x: dk.masked_confidence(l, x, MASK_ID),
        "llada": lambda l, x: llada_greedy_confidence(l, x, MASK_ID),
    },
    "T=0.7": {
        # LLaDA's semantics: Gumbel sample at T, confidence from the untempered softmax.
        "ours": lambda l, x: dk.masked_confidence(l, x, MASK_ID, temperature=0.7, confidence_from="logits", seed=1),
        "llada": lambda l, x: llada_sample_confidence(l, x, MASK_ID, 0.7),
    },
    "dream top_p=0.95 entropy": {
        "ours": lambda l, x: dk.masked_confidence(l, x, MASK_ID, temperature=DREAM_T, top_p=0.95,
                                                  confidence="neg_entropy", seed=1),
        "dream": lambda l, x: dream_sample_tokens(l, x, MASK_ID, DREAM_T, 0.95),
    },
}


@pytest.mark.parametrize("impl", ["ours", "llada", "dream"])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_sampling(benchmark, shape, case, impl):
    if impl not in CASES[case]:
        pytest.skip("not a baseline of this case")
    torch.manual_seed(0)
    logits = torch.randn(*shape).mul_(3).to(torch.bfloat16)
    x = torch.full(shape[:2], MASK_ID)  # a fresh block: every position masked
    cheap = impl == "ours" or case == "greedy"
    # Up to the steady state of a sampler's loop (page_faults.py); the sampling baselines take
    # 0.1-3 s a call, so they get two calls at most.
    warm_up(CASES[case][impl], logits, x, max_calls=10 if cheap else 2)
    fn = CountFaults(CASES[case][impl])
    benchmark.group = f"{case} {list(shape)} bf16"
    # The baselines' medians need rounds too: on a shared machine 3 rounds of a 20 ms call move by
    # 30 %. Greedy baselines are cheap enough for 9; the sampling ones get 3.
    rounds = 20 if impl == "ours" else (9 if cheap else 3)
    benchmark.pedantic(fn, args=(logits, x), rounds=rounds, iterations=1)
    benchmark.extra_info.update(impl=impl, shape=list(shape), bytes=logits.numel() * 2,
                                minor_faults_per_call=fn.per_call())


def test_read_bandwidth(benchmark):
    """Streaming read of 512 MiB (far above the caches) with the same two threads."""
    buf = torch.ones(128 * 2**20)
    buf.sum()
    benchmark.group = "read bandwidth"
    benchmark.extra_info.update(impl="read", bytes=buf.numel() * 4)
    benchmark.pedantic(buf.sum, rounds=10, iterations=1, warmup_rounds=1)
