"""select_transfer on CPU: ours vs the research code's per-row Python loops (LLaDA top-k,
Fast-dLLM threshold and factor), each including the write of x0 into x.

    pytest bench/bench_transfer.py --benchmark-json=bench/results/transfer.json
    python bench/summarize.py bench/results/transfer.json
"""
import pytest
import torch

import diffusion_kernels as dk
from research_baselines import fast_dllm_factor_transfer, fast_dllm_threshold_transfer, llada_topk_transfer

MASK_ID = 126336


def step_inputs(batch, seq):
    """One sampler step: about half the positions still masked, softmax-like confidences there,
    -inf elsewhere; LLaDA's count is seq / 8 per row (e.g. 8 steps per block)."""
    g = torch.Generator().manual_seed(batch * 10007 + seq)
    conf = torch.rand(batch, seq, generator=g) ** 0.25
    masked = torch.rand(batch, seq, generator=g) < 0.5
    conf = torch.where(masked, conf.double(), torch.tensor(float("-inf"), dtype=torch.float64))
    x = torch.where(masked, torch.full((batch, seq), MASK_ID), torch.randint(0, 1000, (batch, seq), generator=g))
    x0 = torch.randint(0, 1000, (batch, seq), generator=g)
    k = torch.full((batch,), max(1, seq // 8), dtype=torch.int64)
    return conf, x, x0, k


CASES = {
    # name: (ours, research way); the research code works on float64 confidences (Fast-dLLM) and
    # our op on float32, so each side gets its own dtype.
    "topk": (lambda c, x, x0, k: dk.select_transfer(c, k=k, x=x, x0=x0),
             lambda c, x, x0, k: llada_topk_transfer(c, k, x, x0)),
    "threshold": (lambda c, x, x0, k: dk.select_transfer(c, threshold=0.9, x=x, x0=x0),
                  lambda c, x, x0, k: fast_dllm_threshold_transfer(c, 0.9, x, x0)),
    "factor": (lambda c, x, x0, k: dk.select_transfer(c, factor=1.0, x=x, x0=x0),
               lambda c, x, x0, k: fast_dllm_factor_transfer(c, 1.0, x, x0)),
}
IMPL_NAMES = {"topk": "llada_loop", "threshold": "fast_dllm_loop", "factor": "fast_dllm_loop"}


@pytest.mark.parametrize("impl", ["ours", "research"])
@pytest.mark.parametrize("rule", list(CASES))
@pytest.mark.parametrize("seq", [32, 256, 1024])
@pytest.mark.parametrize("batch", [1, 8, 64])
def test_select_transfer(benchmark, impl, rule, seq, batch):
    conf64, x, x0, k = step_inputs(batch, seq)
    ours, research = CASES[rule]
    fn, conf = (ours, conf64.float()) if impl == "ours" else (research, conf64)
    fn(conf, x.clone(), x0, k)  # warm-up
    name = "ours" if impl == "ours" else IMPL_NAMES[rule]
    benchmark.group = f"select_transfer {rule} B={batch} L={seq}"
    benchmark.extra_info.update(impl=name, batch=batch, seq=seq, rule=rule)
    slow = impl != "ours"
    benchmark.pedantic(fn, args=(conf, x, x0, k), rounds=7 if slow else 200, iterations=1, warmup_rounds=1)
