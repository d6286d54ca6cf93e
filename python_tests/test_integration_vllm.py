"""vLLM dllm-plugin adapter (diffusion_kernels.integrations.vllm) against a fake plugin and the
transcription of its LLaDA2 default policy (engine_stock.py): identical results per request."""
import sys

import pytest
import torch

import engine_fakes as fakes

MASK = 156895
DRAFT = 8
VOCAB = 40


@pytest.fixture
def plugin(monkeypatch):
    monkeypatch.delenv("DK_VLLM_OVERRIDE", raising=False)
    return fakes.install_dllm_plugin(monkeypatch, draft_size=DRAFT)


def drafts_and_logits(seed, batch):
    """Drafts with every kind of row; logits in quarters (ties in argmax and confidence); the
    mask id itself is not a column here (the plugin's LLaDA2 vocabulary has it, tested below)."""
    g = torch.Generator().manual_seed(seed)
    drafts = torch.randint(0, VOCAB, (batch, DRAFT), generator=g)
    for r in range(batch):
        kind = r % 4
        if kind == 0:
            drafts[r] = MASK
        elif kind == 2:
            drafts[r, int(torch.randint(1, DRAFT, (1,), generator=g)):] = MASK
        elif kind == 3:
            drafts[r][torch.rand(DRAFT, generator=g) < 0.5] = MASK
    logits = (torch.randn(batch, DRAFT, VOCAB, generator=g) * 6).round() / 4
    logits[1::3, 2:5] = logits[1::3, 1:2]  # identical rows: tied confidences
    return drafts, logits


CONFIGS = [
    {},
    {"commit_confidence_threshold": 0.3, "denoise_steps": 3, "denoise_step_index": 1},
    {"commit_confidence_threshold": 0.1, "num_transfer": 2, "grammar_extra_transfer": 1},
    {"commit_confidence_threshold": 0.99, "denoise_steps": 5, "denoise_step_index": 9},
    {"num_transfer": 0},
]


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("seed", range(2))
def test_policy_matches_stock(plugin, seed, config):
    from diffusion_kernels.integrations.vllm import DKRemaskingPolicy
    drafts, logits = drafts_and_logits(seed, 8)
    ours, stock = DKRemaskingPolicy(), plugin.stock_policy()
    for r in range(drafts.shape[0]):
        args = dict(input_draft=drafts[r].tolist(), logits=logits[r], remasking_config=config)
        assert ours.apply(**args) == stock.apply(**args)
    batched = ours.apply_batch(input_drafts=drafts, logits=logits.flatten(0, 1), remasking_configs=config)
    assert batched == [stock.apply(input_draft=d.tolist(), logits=l, remasking_config=config)
                       for d, l in zip(drafts, logits)]


def test_per_request_configs_and_mask_ids(plugin):
    from diffusion_kernels.integrations.vllm import DKRemaskingPolicy
    drafts, logits = drafts_and_logits(3, 4)
    configs = [{"mask_token_id": MASK}, {"mask_token_id": 7, "num_transfer": 3}, {"denoise_step_index": 2}, None]
    drafts[1][drafts[1] == MASK] = 7
    stock = plugin.stock_policy()
    got = DKRemaskingPolicy().apply_batch(input_drafts=drafts.tolist(), logits=logits, remasking_configs=configs)
    assert got == [stock.apply(input_draft=d.tolist(), logits=l, remasking_config=c)
                   for d, l, c in zip(drafts, logits, configs)]


def test_nested_list_logits_and_errors(plugin):
    from diffusion_kernels.integrations.vllm import DKRemaskingPolicy
    drafts, logits = drafts_and_logits(4, 1)
    args = dict(input_draft=drafts[0].tolist(), logits=logits[0].tolist(), remasking_config={"num_transfer": 2})
    assert DKRemaskingPolicy().apply(**args) == plugin.stock_policy().apply(**args)
    with pytest.raises(ValueError, match="DRAFT_SIZE"):
        DKRemaskingPolicy().apply(input_draft=[MASK] * (DRAFT - 1), logits=logits[0, 1:])
    with pytest.raises(ValueError, match="logits"):
        DKRemaskingPolicy().apply(input_draft=[MASK] * DRAFT)
    with pytest.raises(ValueError, match="denoise_steps"):
        DKRemaskingPolicy().apply(input_draft=[MASK] * DRAFT, logits=logits[0], remasking_config={"denoise_steps": 0})
    with pytest.raises(ValueError, match="num_transfer"):
        DKRemaskingPolicy().apply(input_draft=[MASK] * DRAFT, logits=logits[0], remasking_config={"num_transfer": -1})


def test_mask_proposals_and_full_decode(plugin):
    """The mask id a column of the logits (as in LLaDA2): a block decodes to the end in lockstep
    with the stock policy, committed ids returned once no mask is left."""
    from diffusion_kernels.integrations.vllm import DKRemaskingPolicy
    g = torch.Generator().manual_seed(5)
    mask = 50
    draft = [mask] * DRAFT
    ref = list(draft)
    ours, stock = DKRemaskingPolicy(), plugin.stock_policy()
    for step in range(DRAFT):
        logits = torch.randn(DRAFT, 4, generator=g)
        wide = torch.full((DRAFT, mask + 1), -30.0)
        wide[:, [0, 1, 2, mask]] = logits * 3
        cfg = {"denoise_step_index": step, "denoise_steps": 4, "mask_token_id": mask}
        a = ours.apply(input_draft=draft, logits=wide, remasking_config=cfg)
        b = stock.apply(input_draft=ref, logits=wide, remasking_config=cfg)
        assert a == b
        if a.committed_token_ids:
            break
        draft, ref = list(a.next_input_block), list(b.next_input_block)


def test_missing_plugin_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "dllm_plugin", None)
    from diffusion_kernels.integrations.vllm import DKRemaskingPolicy
    with pytest.raises(ImportError, match="vllm-dllm-plugin"):
        DKRemaskingPolicy().apply(input_draft=[0] * DRAFT, logits=torch.zeros(DRAFT, 3))


def test_register_is_opt_in_and_replaces_every_reference(monkeypatch, plugin):
    from diffusion_kernels.integrations import vllm as dk_vllm
    dk_vllm.register()
    assert plugin.runtime_worker.Llada2DefaultRemaskingPolicy is plugin.stock_policy
    monkeypatch.setenv("DK_VLLM_OVERRIDE", "1")
    dk_vllm.register()
    for mod in (plugin.remasking, plugin.default, plugin.runtime_worker):
        assert mod.Llada2DefaultRemaskingPolicy is dk_vllm.DKRemaskingPolicy


def test_register_without_plugin(monkeypatch):
    from diffusion_kernels.integrations import vllm as dk_vllm
    monkeypatch.setitem(sys.modules, "dllm_plugin", None)
    monkeypatch.delenv("DK_VLLM_OVERRIDE", raising=False)
    dk_vllm.register()  # not requested: nothing to do, no error
    monkeypatch.setenv("DK_VLLM_OVERRIDE", "1")
    with pytest.raises(ImportError, match="vllm-dllm-plugin"):
        dk_vllm.register()


def test_real_plugin_if_installed():
    pytest.importorskip("dllm_plugin.remasking")
    from dllm_plugin.config import DRAFT_SIZE
    from dllm_plugin.remasking import Llada2DefaultRemaskingPolicy

    from diffusion_kernels.integrations.vllm import DKRemaskingPolicy
    g = torch.Generator().manual_seed(6)
    for step in range(3):
        draft = [MASK if bool(m) else 5 for m in torch.rand(DRAFT_SIZE, generator=g) < 0.7]
        logits = (torch.randn(DRAFT_SIZE, 64, generator=g) * 8).round() / 4
        cfg = {"denoise_step_index": step, "commit_confidence_threshold": 0.5}
        assert DKRemaskingPolicy().apply(input_draft=draft, logits=logits, remasking_config=cfg) == \
            Llada2DefaultRemaskingPolicy().apply(input_draft=draft, logits=logits, remasking_config=cfg)
