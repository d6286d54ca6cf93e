"""Fixed cost per call of each public op on CPU, at sizes where the kernel's work is negligible.

On a GPU the sampler step is host-bound, so what a call costs before any element is touched sets
the step time. Each op is timed three ways on the same tensors:

- ``wrapper``: the public function (argument checks and packing in Python, then the op);
- ``raw-op``: ``torch.ops.diffusion_kernels.<op>.default`` with the arguments the wrapper would
  pass, normalised once beforehand, so the difference to ``wrapper`` is the Python wrapper's share;
- ``torch``: the nearest plain-torch way to do the same step (e.g. ``torch.topk`` for top-k).

    pytest bench/bench_overhead.py --benchmark-timer=time.thread_time --benchmark-json=bench/results/overhead.json
    python bench/summarize.py bench/results/overhead.json

``time.thread_time`` (CPU time of the calling thread) rather than wall time: on a machine shared
with other jobs the wall clock also counts the time this process waits for a core, and
``process_time`` counts the OpenMP workers spinning between parallel regions. The
``_tiny`` cases are the issue-18 measure of a fixed cost: one short row, so the kernel's work is
a few hundred instructions.
"""
import pytest
import torch
import torch.nn.functional as F

import diffusion_kernels as dk
from diffusion_kernels.ops.attention import _attention_with_op
from diffusion_kernels.ops.confidence import _masked_confidence
from diffusion_kernels.ops.forward_mask import forward_mask_args
from diffusion_kernels.ops.transfer import select_transfer_args

OPS = torch.ops.diffusion_kernels
MASK_ID = 126336


def recorded_call(call_with_op, op):
    """(args, kwargs) that a wrapper taking its op as a parameter hands to ``op``: the wrapper's
    own normalisation, run once, so the raw-op timing uses exactly what the wrapper would pass."""
    seen = {}

    def record(*args, **kwargs):
        seen.update(args=args, kwargs=kwargs)
        return op(*args, **kwargs)

    call_with_op(record)
    return seen["args"], seen["kwargs"]


def masked_confidence_case(seq=4, vocab=64):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(1, seq, vocab, generator=g)
    x = torch.full((1, seq), MASK_ID)
    op = OPS.masked_confidence.default
    args, kwargs = recorded_call(lambda o: _masked_confidence(o, logits, x, MASK_ID), op)
    return {
        "wrapper": lambda: dk.masked_confidence(logits, x, MASK_ID),
        "raw-op": lambda: op(*args, **kwargs),
        # LLaDA's greedy step: softmax, then the best token and its probability
        "torch": lambda: logits.softmax(-1).max(-1),
    }


def transfer_inputs(batch=8, seq=256):
    """A sampler step at B = 8, L = 256: half the positions masked (finite confidence), k = L / 8."""
    g = torch.Generator().manual_seed(2)
    masked = torch.rand(batch, seq, generator=g) < 0.5
    conf = torch.where(masked, torch.rand(batch, seq, generator=g), torch.tensor(float("-inf")))
    x = torch.where(masked, torch.full((batch, seq), MASK_ID), torch.randint(0, 1000, (batch, seq), generator=g))
    x0 = torch.randint(0, 1000, (batch, seq), generator=g)
    k = torch.full((batch,), seq // 8, dtype=torch.int64)
    return conf, x, x0, k


def select_transfer_case(rule, in_place=False, batch=8, seq=256):
    conf, x, x0, k = transfer_inputs(batch, seq)
    op = OPS.select_transfer.default
    kw = dict(k=k) if rule == "k" else dict(threshold=0.9)
    if in_place:
        kw.update(x=x, x0=x0)
    args = select_transfer_args(conf, **kw)
    count = int(k[0])
    if rule == "threshold":
        torch_fn = lambda: conf >= 0.9  # noqa: E731  (Fast-dLLM's comparison, without the row-best rule)
    elif in_place:
        def torch_fn():  # LLaDA's top-k followed by the write of the proposals into x
            idx = torch.topk(conf, count, dim=-1).indices
            return x.scatter_(1, idx, x0.gather(1, idx))
    else:
        torch_fn = lambda: torch.topk(conf, count, dim=-1)  # noqa: E731
    return {"wrapper": lambda: dk.select_transfer(conf, **kw), "raw-op": lambda: op(*args), "torch": torch_fn}


def attention_case(block=8, cache_len=32, heads=2, queries=None):
    """One dual-cache step: a block of new rows (8) written at row 16 of a cache (32 rows; a shorter
    one takes the block in its last rows), every key visible; heads (2) of 16. ``queries`` rows of
    q (default: the block's)."""
    g = torch.Generator().manual_seed(3)
    batch, dim, start = 1, 16, min(16, cache_len - block)
    k, v = (torch.randn(batch, block, heads, dim, generator=g) for _ in range(2))
    q = torch.randn(batch, block if queries is None else queries, heads, dim, generator=g)
    k_cache, v_cache = (torch.randn(batch, cache_len, heads, dim, generator=g) for _ in range(2))
    op = OPS.attention_with_kv_cache.default
    args, kwargs = recorded_call(lambda o: _attention_with_op(o, q, k_cache, v_cache, k, v, cache_seqlens=start), op)

    def torch_fn():  # Fast-dLLM's dual-cache step: write the block's K/V, then SDPA over the cache
        k_cache[:, start:start + block].copy_(k)
        v_cache[:, start:start + block].copy_(v)
        return F.scaled_dot_product_attention(q.transpose(1, 2), k_cache.transpose(1, 2), v_cache.transpose(1, 2))

    return {
        "wrapper": lambda: dk.attention_with_kv_cache(q, k_cache, v_cache, k, v, cache_seqlens=start),
        "raw-op": lambda: op(*args, **kwargs),
        "torch": torch_fn,
    }


def forward_mask_case(batch=4, seq=64):
    g = torch.Generator().manual_seed(4)
    x0 = torch.randint(0, 1000, (batch, seq), generator=g)
    op = OPS.forward_mask.default
    args = forward_mask_args(x0, MASK_ID, seed=5, offset=0)
    eps = 1e-3

    def torch_fn():  # LLaDA's forward_process
        p = (1 - eps) * torch.rand(x0.shape[0]) + eps
        masked = torch.rand(x0.shape) < p[:, None]
        return torch.where(masked, MASK_ID, x0), masked, p[:, None].expand(x0.shape)

    return {"wrapper": lambda: dk.forward_mask(x0, MASK_ID, seed=5, offset=0), "raw-op": lambda: op(*args),
            "torch": torch_fn}


def masked_cross_entropy_case(rows=4, vocab=64):
    g = torch.Generator().manual_seed(6)
    logits = torch.randn(rows, vocab, generator=g)
    targets = torch.randint(0, vocab, (rows,), generator=g)
    masked = torch.tensor([True, False, True, True][:rows])
    op = OPS.masked_ce_forward.default
    return {
        "wrapper": lambda: dk.masked_cross_entropy(logits, targets, masked),
        "raw-op": lambda: op(logits, targets, masked),
        "torch": lambda: F.cross_entropy(logits, targets, reduction="none"),
    }


# The `_tiny` cases measure issue 18's fixed cost: one short row (16 elements), one query row.
# attention_with_kv_cache_noquery writes one new row and attends no query: what a call costs
# before and around the kernels, which at one query row still dominate on CPU.
CASES = {
    "masked_confidence": masked_confidence_case,
    "masked_confidence_tiny": lambda: masked_confidence_case(seq=1, vocab=16),
    "select_transfer_k": lambda: select_transfer_case("k"),
    "select_transfer_threshold": lambda: select_transfer_case("threshold"),
    "select_transfer_k_inplace": lambda: select_transfer_case("k", in_place=True),
    "select_transfer_k_tiny": lambda: select_transfer_case("k", batch=1, seq=16),
    "select_transfer_threshold_tiny": lambda: select_transfer_case("threshold", batch=1, seq=16),
    "select_transfer_k_inplace_tiny": lambda: select_transfer_case("k", in_place=True, batch=1, seq=16),
    "attention_with_kv_cache": attention_case,
    "attention_with_kv_cache_tiny": lambda: attention_case(block=1, cache_len=8, heads=1),
    "attention_with_kv_cache_noquery": lambda: attention_case(block=1, cache_len=8, heads=1, queries=0),
    "forward_mask": forward_mask_case,
    "forward_mask_tiny": lambda: forward_mask_case(batch=1, seq=16),
    "masked_cross_entropy": masked_cross_entropy_case,
    "masked_cross_entropy_tiny": lambda: masked_cross_entropy_case(rows=1, vocab=16),
}
IMPLS = ("wrapper", "raw-op", "torch")
IMPL_NAMES = {"wrapper": "ours", "raw-op": "raw op", "torch": "torch"}


@pytest.mark.parametrize("case,impl", [(c, i) for c in CASES for i in IMPLS], ids=[f"{c}-{i}" for c in CASES for i in IMPLS])
def test_overhead(benchmark, case, impl):
    fn = CASES[case]()[impl]
    fn()  # warm-up: first-call dispatch and allocator work stay out of the timing
    benchmark.group = f"overhead {case}"
    benchmark.extra_info.update(impl=IMPL_NAMES[impl], case=case)
    # iterations per round: at a few microseconds a call, the timer's own cost must not dominate
    benchmark.pedantic(fn, rounds=200, iterations=20, warmup_rounds=5)
