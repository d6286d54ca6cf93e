"""The decoding core's joint threshold with token editing (diffusion_kernels.decoding.editing),
which the SGLang adapter, generate()'s token editing and ReMDM share: against the transcription of
SGLang's JointThreshold (engine_stock.py), inside a longer sequence, and its argument checks."""
import doctest
import math

import pytest
import torch

import engine_stock as stock
from diffusion_kernels.decoding import EditState, JointThreshold, joint_threshold_step

MASK = 15
VOCAB = 16


def block_logits(g, batch, block, scale=1.5):
    logits = (torch.randn(batch, block, VOCAB, generator=g) * scale * 4).round() / 4
    logits[:, 2:4] = logits[:, 1:2]  # equal rows: tied confidences
    return logits


def start_ids(g, batch, block):
    ids = torch.randint(0, MASK, (batch, block), generator=g)
    ids[0] = MASK
    ids[1:, block // 2:] = MASK
    if batch > 3:
        ids[3] = 4  # fully decoded from the start
    return ids


@pytest.mark.parametrize("rule", [JointThreshold(max_post_edit_steps=4), JointThreshold(0.7, 0.2, 2, 0.0), JointThreshold(0.4, 0.0, 0, 1.25),
                                  JointThreshold(0.9, 0.5, 3, 0.5)])
def test_matches_sglang_transcription(rule):
    g = torch.Generator().manual_seed(int(rule.threshold * 100))
    batch, block = 6, 8
    ids = start_ids(g, batch, block)
    flat = ids.reshape(-1).clone()
    states = stock.sglang_joint_threshold_init(flat, batch, block, MASK)
    x = ids.clone()
    state = EditState.start(x, MASK)
    for step in range(rule.max_steps(block)):
        logits = block_logits(g, batch, block)
        done = stock.sglang_joint_threshold_step(flat, logits.reshape(batch * block, -1).clone(), states, batch, block,
                                                 MASK, rule.threshold, rule.edit_threshold, rule.max_post_edit_steps,
                                                 rule.penalty_lambda)
        res = joint_threshold_step(logits, x, rule, mask_id=MASK, state=state)
        assert res.done.tolist() == done, step
        assert torch.equal(x.reshape(-1), flat), step
        assert state.post_edit_steps.tolist() == [s["post_edit_steps"] for s in states]
        assert state.finished.tolist() == [s["finished"] for s in states]
        assert not bool((res.transferred & res.edited).any())


def test_block_inside_a_longer_sequence():
    """generate()'s layout: x holds prompt + blocks; only [block_start, block_end) is decoded or
    edited, with the same decisions as on the block alone (no penalty: at the block's first
    position it would read the token before the block)."""
    g = torch.Generator().manual_seed(1)
    rule = JointThreshold(0.6, 0.1, 2)
    batch, block, before, after = 4, 8, 5, 3
    ids = start_ids(g, batch, block)
    x = torch.cat([torch.randint(0, MASK, (batch, before), generator=g), ids, torch.full((batch, after), MASK)], 1)
    alone = ids.clone()
    s_full = EditState.start(x, MASK)
    s_alone = EditState.start(alone, MASK)
    outside = torch.cat([x[:, :before], x[:, before + block:]], 1)
    for _ in range(6):
        logits = block_logits(g, batch, before + block + after)
        joint_threshold_step(logits, x, rule, mask_id=MASK, state=s_full, block_start=before, block_end=before + block)
        joint_threshold_step(logits[:, before:before + block], alone, rule, mask_id=MASK, state=s_alone)
        assert torch.equal(x[:, before:before + block], alone)
        assert torch.equal(torch.cat([x[:, :before], x[:, before + block:]], 1), outside)
        assert torch.equal(s_full.finished, s_alone.finished)


def test_per_row_blocks_and_finished_rows_untouched():
    g = torch.Generator().manual_seed(2)
    x = torch.full((3, 12), MASK)
    starts, ends = torch.tensor([0, 4, 8]), torch.tensor([4, 8, 12])
    state = EditState.start(x, MASK)
    state.finished[1] = True
    res = joint_threshold_step(block_logits(g, 3, 12), x, JointThreshold(0.5), mask_id=MASK, state=state,
                               block_start=starts, block_end=ends)
    assert res.done.tolist() == [False, True, False]
    assert bool((x[1] == MASK).all())
    assert bool((x[0, 4:] == MASK).all()) and bool((x[2, :8] == MASK).all())
    assert int(res.transferred[0].sum()) >= 1 and int(res.transferred[2].sum()) >= 1
    assert bool(torch.isinf(res.confidence[0, 4:]).all())


def test_prompt_positions_holding_the_mask_id_are_kept():
    g = torch.Generator().manual_seed(3)
    x = torch.tensor([[MASK, 3, MASK, MASK]])
    state = EditState.start(x, MASK, prompt_mask=torch.tensor([[True, True, False, False]]))
    for _ in range(5):
        joint_threshold_step(block_logits(g, 1, 4), x, JointThreshold(0.1, 0.0, 1), mask_id=MASK, state=state)
    assert x[0, :2].tolist() == [MASK, 3] and bool((x[0, 2:] != MASK).all())


@pytest.mark.parametrize("kwargs,error", [
    (dict(threshold=math.nan), ValueError), (dict(max_post_edit_steps=-1), ValueError),
    (dict(max_post_edit_steps=2.0), TypeError), (dict(penalty_lambda=-0.5), ValueError),
    (dict(penalty_lambda=math.inf), ValueError), (dict(edit_threshold="0.5"), TypeError)])
def test_bad_rule_arguments(kwargs, error):
    with pytest.raises(error, match=next(iter(kwargs))):
        JointThreshold(**kwargs)


def test_docstring_examples():
    import diffusion_kernels.decoding.editing as editing
    import diffusion_kernels.integrations.dinfer as dinfer
    import diffusion_kernels.integrations.sglang as sglang
    import diffusion_kernels.integrations.vllm as vllm
    for module in (editing, sglang, vllm, dinfer):
        result = doctest.testmod(module, extraglobs={"torch": torch})
        assert result.failed == 0 and result.attempted > 0, module.__name__


@pytest.mark.emulated
def test_emulated_cuda_kernels_make_the_same_decisions(monkeypatch):
    """The step on the CUDA kernels (run by the SIMT emulator) edits exactly as on the CPU ones."""
    import diffusion_kernels.decoding.editing as editing
    import diffusion_kernels.decoding.rules as rules
    from diffusion_kernels.testing import emulated
    g = torch.Generator().manual_seed(4)
    rule = JointThreshold(0.6, 0.1, 1, 0.75)
    ids = start_ids(g, 4, 8)
    logits = [block_logits(g, 4, 8) for _ in range(4)]
    runs = []
    for use_emulator in (False, True):
        if use_emulator:
            monkeypatch.setattr(editing, "masked_confidence", emulated.masked_confidence)
            monkeypatch.setattr(rules, "select_transfer", emulated.select_transfer)
        x = ids.clone()
        state = EditState.start(x, MASK)
        trace = []
        for step_logits in logits:
            res = joint_threshold_step(step_logits, x, rule, mask_id=MASK, state=state)
            trace.append((x.clone(), res.done.clone(), state.post_edit_steps.clone(), state.finished.clone()))
        runs.append(trace)
    for cpu, emu in zip(*runs):
        assert all(torch.equal(a, b) for a, b in zip(cpu, emu))
