"""One dLLM decoding step inside a serving engine: our adapters vs the engine's stock step
(python_tests/engine_stock.py, transcribed from each engine) on the same inputs, at LLaDA2 shapes
(vocab 157184, block 32) and SDAR shapes (vocab 151936, block 4), float32 logits as SGLang passes.

    pytest bench/bench_engines.py --benchmark-json=bench/results/engines.json
    python bench/summarize.py bench/results/engines.json

Every round starts from the same tokens and state (about half the block masked, some positions
confident), so both sides do the same decisions; the in-place write of the tokens is included.
JointThreshold's state takes the block's unmasked positions as prompt (its first step in the
block holding the prompt's end), which neither decodes nor edits; the "no prompt in block" case is
a later block, where every position may be edited.
"""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python_tests"))

import engine_stock as stock  # noqa: E402
from diffusion_kernels.decoding import JointThreshold  # noqa: E402
from diffusion_kernels.integrations import sglang as dk_sglang  # noqa: E402
from diffusion_kernels.integrations.dinfer import DKThresholdParallelDecoder  # noqa: E402

LLADA2_MASK, SDAR_MASK = 156895, 151669
SHAPES = {  # name: (batch, block, vocab, mask id)
    "LLaDA2 B=1": (1, 32, 157184, LLADA2_MASK),
    "LLaDA2 B=8": (8, 32, 157184, LLADA2_MASK),
    "LLaDA2 B=64": (64, 32, 157184, LLADA2_MASK),
    "SDAR B=64": (64, 4, 151936, SDAR_MASK),
}


def step_inputs(batch, block, vocab, mask_id, device="cpu"):
    """Flat input ids with about half of each block masked (a prompt-free block in progress) and
    ``[batch * block, vocab]`` float32 logits with a confident token at about a third of the
    positions."""
    g = torch.Generator().manual_seed(batch * 7919 + block)
    ids = torch.randint(0, 1000, (batch, block), generator=g)
    ids[torch.rand(batch, block, generator=g) < 0.5] = mask_id
    ids[:, -1] = mask_id
    logits = torch.randn(batch * block, vocab, generator=g)
    sure = torch.rand(batch * block, generator=g) < 0.35
    logits[sure, torch.randint(0, 1000, (int(sure.sum()),), generator=g)] += 16.0
    return ids.reshape(-1).to(device), logits.to(device)


def joint_states(ids, batch, block, mask_id):
    return stock.sglang_joint_threshold_init(ids, batch, block, mask_id)


def _low_ours(ids, logits, batch, block, mask_id):
    dk_sglang.low_confidence_step(ids, logits, batch, block, mask_id, 0.95)


def _low_stock(ids, logits, batch, block, mask_id):
    stock.sglang_low_confidence_step(ids, logits, batch, block, mask_id, 0.95)


_RULE = JointThreshold()  # SGLang's defaults: threshold 0.5, edit 0, 16 post-edit steps, no penalty


def _joint_ours(ids, logits, batch, block, mask_id):
    dk_sglang.joint_threshold_engine_step(ids, logits, joint_states(ids, batch, block, mask_id), batch, block, mask_id,
                                          _RULE)


def _joint_stock(ids, logits, batch, block, mask_id):
    stock.sglang_joint_threshold_step(ids, logits, joint_states(ids, batch, block, mask_id), batch, block, mask_id)


def open_states(batch, block):
    """A block with no prompt position (every block after the prompt's): every committed position
    may be edited, so both steps need the logits of every position."""
    return [{"post_edit_steps": 0, "finished": False, "prompt_mask": [False] * block} for _ in range(batch)]


def _joint_open_ours(ids, logits, batch, block, mask_id):
    dk_sglang.joint_threshold_engine_step(ids, logits, open_states(batch, block), batch, block, mask_id, _RULE)


def _joint_open_stock(ids, logits, batch, block, mask_id):
    stock.sglang_joint_threshold_step(ids, logits, open_states(batch, block), batch, block, mask_id)


def _dinfer_ours(ids, logits, batch, block, mask_id):
    DKThresholdParallelDecoder(0, 0.9, mask_id=mask_id).decode(logits.view(batch, block, -1), 0, block,
                                                                ids.view(batch, block))


def _dinfer_stock(ids, logits, batch, block, mask_id):
    stock.dinfer_threshold_decode(logits.view(batch, block, -1), 0, block, ids.view(batch, block), mask_id, 0.9)


# name: ({impl: fn(flat ids, flat logits, batch, block, mask id)}, shapes)
CASES = {
    "SGLang LowConfidence": ({"ours": _low_ours, "sglang (stock)": _low_stock}, list(SHAPES)),
    "SGLang JointThreshold": ({"ours": _joint_ours, "sglang (stock)": _joint_stock}, list(SHAPES)),
    "SGLang JointThreshold, no prompt in block": ({"ours": _joint_open_ours, "sglang (stock)": _joint_open_stock},
                                                  ["LLaDA2 B=8"]),
    "dInfer threshold": ({"ours": _dinfer_ours, "dinfer (stock)": _dinfer_stock}, ["LLaDA2 B=1", "LLaDA2 B=8"]),
}
PARAMS = [(case, shape, impl) for case, (impls, shapes) in CASES.items() for shape in shapes for impl in impls]


@pytest.mark.parametrize("case,shape,impl", PARAMS, ids=[f"{c}-{s}-{i}" for c, s, i in PARAMS])
def test_engine_step(benchmark, case, shape, impl):
    batch, block, vocab, mask_id = SHAPES[shape]
    ids, logits = step_inputs(batch, block, vocab, mask_id)
    fn = CASES[case][0][impl]
    fn(ids.clone(), logits, batch, block, mask_id)  # warm-up
    benchmark.group = f"{case} {shape} block={block} V={vocab}"
    benchmark.extra_info.update(impl=impl, batch=batch, block=block, vocab=vocab)
    slow = impl != "ours" or batch == 64
    benchmark.pedantic(fn, setup=lambda: ((ids.clone(), logits, batch, block, mask_id), {}),
                       rounds=3 if slow else 10, iterations=1, warmup_rounds=0)


@pytest.mark.parametrize("impl", ["ours", "dllm-plugin (stock)"])
def test_vllm_llada2_policy(benchmark, impl, monkeypatch):
    """The dllm-plugin's default policy works on Python lists: one request, LLaDA2 shape (the
    plugin itself is faked; only its result type and config are used)."""
    import engine_fakes
    engine_fakes.install_dllm_plugin(monkeypatch, draft_size=32)
    from diffusion_kernels.integrations.vllm import DKRemaskingPolicy
    ids, logits = step_inputs(1, 32, 157184, LLADA2_MASK)
    draft = ids.tolist()
    cfg = {"mask_token_id": LLADA2_MASK, "denoise_step_index": 3}
    if impl == "ours":
        policy = DKRemaskingPolicy()

        def fn():
            return policy.apply(input_draft=draft, logits=logits, remasking_config=cfg)
    else:
        def fn():
            return stock.vllm_llada2_default_apply(draft, logits, cfg, draft_size=32)
    benchmark.group = "vLLM dllm-plugin LLaDA2 policy B=1 block=32 V=157184"
    benchmark.extra_info.update(impl=impl, batch=1, block=32, vocab=157184)
    benchmark.pedantic(fn, rounds=10 if impl == "ours" else 2, iterations=1, warmup_rounds=1 if impl == "ours" else 0)
